//! Range descriptors and a bucket's map of them. A bucket's keyspace, all byte strings, is
//! partitioned into ranges `[start, end)`: the first starts at the empty key, each ends where
//! the next starts, the last has no end. Every change — a split, a merge, a replica change —
//! names the generation its proposer saw and bumps it: a split gives both halves the parent's
//! generation plus one, a merge the larger of the two plus one, so a range's generation is
//! larger than that of every range it descends from. Two descriptors that overlap are
//! therefore ordered by generation, which is how the routing cache tells new from stale.

use std::collections::{BTreeMap, BTreeSet};

use base::NodeId;

/// A range, cluster-wide (allocated by the metadata group; never reused).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RangeId(pub u64);

impl std::fmt::Display for RangeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "r{}", self.0)
    }
}

/// What a replica does in its range's Raft group.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Counts towards quorums.
    Voter,
    /// Receives the log (catching up after it joined) but does not vote.
    Learner,
}

/// One replica of a range.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Replica {
    pub member: NodeId,
    pub role: Role,
}

/// A range: its span, its replicas and its generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeDescriptor {
    pub id: RangeId,
    /// The range's first key (inclusive).
    pub start: Vec<u8>,
    /// The first key after the range; `None` for the end of the keyspace.
    pub end: Option<Vec<u8>>,
    pub replicas: Vec<Replica>,
    /// Bumped by every change; see the module documentation.
    pub generation: u64,
    /// The range's start was made by a split by hand: automatic merges leave it in place (a
    /// merge by hand does not).
    pub sticky: bool,
}

impl RangeDescriptor {
    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }

    /// Whether the range shares a key with `[start, end)` (`end` `None`: no end).
    pub fn overlaps(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        let starts_before_other_ends = end.is_none_or(|end| self.start.as_slice() < end);
        let ends_after_other_starts = self.end.as_deref().is_none_or(|own| own > start);
        starts_before_other_ends && ends_after_other_starts
    }

    /// The members whose replica votes.
    pub fn voters(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.replicas
            .iter()
            .filter(|r| r.role == Role::Voter)
            .map(|r| r.member)
    }

    /// The members whose replica is a learner.
    pub fn learners(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.replicas
            .iter()
            .filter(|r| r.role == Role::Learner)
            .map(|r| r.member)
    }

    /// The role of `member`'s replica, if it has one.
    pub fn role_of(&self, member: NodeId) -> Option<Role> {
        self.replicas
            .iter()
            .find(|r| r.member == member)
            .map(|r| r.role)
    }

    /// Voters needed for a quorum.
    pub fn quorum(&self) -> usize {
        self.voters().count() / 2 + 1
    }

    /// Whether `other` has the same replicas in the same roles, order aside (what a merge
    /// needs).
    pub fn same_replicas(&self, other: &RangeDescriptor) -> bool {
        let set = |d: &RangeDescriptor| d.replicas.iter().copied().collect::<BTreeSet<Replica>>();
        set(self) == set(other)
    }
}

/// One change of a range's replicas.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReplicaChange {
    /// A new replica on `member`, not voting until promoted.
    AddLearner(NodeId),
    /// `member`'s learner becomes a voter.
    Promote(NodeId),
    /// `member`'s replica leaves the range.
    Remove(NodeId),
}

/// Why a descriptor change is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    #[error("range {0} does not exist")]
    NoSuchRange(RangeId),
    #[error(
        "range {range} changed: generation {current}, the change was made for {expected}; try again"
    )]
    StaleGeneration {
        range: RangeId,
        expected: u64,
        current: u64,
    },
    #[error("split key is not strictly inside range {0}")]
    SplitKeyOutside(RangeId),
    #[error("range id {0} is already in use")]
    IdInUse(RangeId),
    #[error("range {0} is the last range: nothing to merge it with")]
    NoRightNeighbour(RangeId),
    #[error("ranges {left} and {right} have different replicas; align them before merging")]
    ReplicasDiffer { left: RangeId, right: RangeId },
    #[error("member {member} already has a replica of range {range}")]
    AlreadyReplica { range: RangeId, member: NodeId },
    #[error("member {member} has no learner of range {range} to promote")]
    NotALearner { range: RangeId, member: NodeId },
    #[error("member {member} has no replica of range {range}")]
    NotAReplica { range: RangeId, member: NodeId },
    #[error("removing member {member} would leave range {range} without a voter")]
    LastVoter { range: RangeId, member: NodeId },
    #[error("the descriptors do not partition the keyspace: {0}")]
    NotAPartition(String),
}

/// A bucket's ranges: a partition of its keyspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeMap {
    /// By start key.
    ranges: BTreeMap<Vec<u8>, RangeDescriptor>,
}

impl RangeMap {
    /// A new bucket's map: one range `id` over every key, on `voters`.
    pub fn new(id: RangeId, voters: &[NodeId]) -> RangeMap {
        let replicas = voters
            .iter()
            .map(|&member| Replica {
                member,
                role: Role::Voter,
            })
            .collect();
        let first = RangeDescriptor {
            id,
            start: Vec::new(),
            end: None,
            replicas,
            generation: 1,
            sticky: false,
        };
        RangeMap {
            ranges: BTreeMap::from([(Vec::new(), first)]),
        }
    }

    /// A map from stored descriptors, refused unless they partition the keyspace with
    /// distinct ids.
    pub fn from_descriptors(
        descriptors: impl IntoIterator<Item = RangeDescriptor>,
    ) -> Result<RangeMap, RangeError> {
        let ranges: BTreeMap<Vec<u8>, RangeDescriptor> = descriptors
            .into_iter()
            .map(|d| (d.start.clone(), d))
            .collect();
        let map = RangeMap { ranges };
        map.check()?;
        Ok(map)
    }

    /// Checks the partition: starts at the empty key, no gap, no overlap, no end at the last,
    /// distinct ids, every range with a voter.
    pub fn check(&self) -> Result<(), RangeError> {
        let broken = |why: String| Err(RangeError::NotAPartition(why));
        let mut expected_start: Option<&[u8]> = Some(&[]);
        let mut ids = BTreeSet::new();
        for (start, range) in &self.ranges {
            match expected_start {
                None => return broken(format!("{} starts after the unbounded range", range.id)),
                Some(expected) if expected != start.as_slice() => {
                    return broken(format!(
                        "{} does not start where its left neighbour ends",
                        range.id
                    ));
                }
                Some(_) => {}
            }
            if range
                .end
                .as_deref()
                .is_some_and(|end| end <= start.as_slice())
            {
                return broken(format!("{} is empty or reversed", range.id));
            }
            if !ids.insert(range.id) {
                return broken(format!("{} appears twice", range.id));
            }
            if range.voters().next().is_none() {
                return broken(format!("{} has no voter", range.id));
            }
            expected_start = range.end.as_deref();
        }
        match expected_start {
            None => Ok(()),
            Some(_) if self.ranges.is_empty() => broken("no range".to_owned()),
            Some(_) => broken("the last range has an end".to_owned()),
        }
    }

    /// The range holding `key` (there always is one).
    pub fn lookup(&self, key: &[u8]) -> &RangeDescriptor {
        self.ranges
            .range::<[u8], _>((std::ops::Bound::Unbounded, std::ops::Bound::Included(key)))
            .next_back()
            .map(|(_, range)| range)
            .expect("a range map covers every key: the first range starts at the empty key")
    }

    /// The range `id`, if it is in this map.
    pub fn get(&self, id: RangeId) -> Option<&RangeDescriptor> {
        self.ranges.values().find(|r| r.id == id)
    }

    /// The ranges in key order.
    pub fn iter(&self) -> impl Iterator<Item = &RangeDescriptor> {
        self.ranges.values()
    }

    /// The number of ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Always false: a map has at least one range.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The ranges sharing a key with `[from, to)` (`to` `None`: to the end), in key order.
    pub fn overlapping<'a>(
        &'a self,
        from: &'a [u8],
        to: Option<&'a [u8]>,
    ) -> impl Iterator<Item = &'a RangeDescriptor> + 'a {
        let first_start = self.lookup(from).start.clone();
        self.ranges
            .range(first_start..)
            .map(|(_, range)| range)
            .take_while(move |range| range.overlaps(from, to))
    }

    fn current(&self, id: RangeId, expected: u64) -> Result<&RangeDescriptor, RangeError> {
        let range = self.get(id).ok_or(RangeError::NoSuchRange(id))?;
        if range.generation != expected {
            return Err(RangeError::StaleGeneration {
                range: id,
                expected,
                current: range.generation,
            });
        }
        Ok(range)
    }

    /// Splits range `id` (at generation `expected`) at `at`: the left half keeps the id, the
    /// right half `[at, end)` becomes `new_id` on the same replicas. Returns both halves.
    pub fn split(
        &mut self,
        id: RangeId,
        expected: u64,
        at: &[u8],
        new_id: RangeId,
    ) -> Result<(RangeDescriptor, RangeDescriptor), RangeError> {
        let range = self.current(id, expected)?;
        if at <= range.start.as_slice() || !range.contains(at) {
            return Err(RangeError::SplitKeyOutside(id));
        }
        if self.get(new_id).is_some() {
            return Err(RangeError::IdInUse(new_id));
        }
        let generation = range.generation + 1;
        let left = RangeDescriptor {
            end: Some(at.to_vec()),
            generation,
            ..range.clone()
        };
        let right = RangeDescriptor {
            id: new_id,
            start: at.to_vec(),
            generation,
            sticky: false,
            ..range.clone()
        };
        self.ranges.insert(left.start.clone(), left.clone());
        self.ranges.insert(right.start.clone(), right.clone());
        Ok((left, right))
    }

    /// A split by hand: as `split`, and the right half's start is sticky.
    pub fn split_by_hand(
        &mut self,
        id: RangeId,
        expected: u64,
        at: &[u8],
        new_id: RangeId,
    ) -> Result<(RangeDescriptor, RangeDescriptor), RangeError> {
        let (left, mut right) = self.split(id, expected, at, new_id)?;
        right.sticky = true;
        self.ranges.insert(right.start.clone(), right.clone());
        Ok((left, right))
    }

    /// Merges range `left` (at generation `expected_left`) with its right neighbour (at
    /// `expected_right`): the result keeps the left id and spans both. Both must have the same
    /// replicas.
    pub fn merge(
        &mut self,
        left: RangeId,
        expected_left: u64,
        expected_right: u64,
    ) -> Result<RangeDescriptor, RangeError> {
        let left_range = self.current(left, expected_left)?;
        let Some(end) = left_range.end.clone() else {
            return Err(RangeError::NoRightNeighbour(left));
        };
        let right_range = self
            .ranges
            .get(&end)
            .expect("a range with an end has a right neighbour in a partition");
        if right_range.generation != expected_right {
            return Err(RangeError::StaleGeneration {
                range: right_range.id,
                expected: expected_right,
                current: right_range.generation,
            });
        }
        if !left_range.same_replicas(right_range) {
            return Err(RangeError::ReplicasDiffer {
                left,
                right: right_range.id,
            });
        }
        let merged = RangeDescriptor {
            end: right_range.end.clone(),
            generation: left_range.generation.max(right_range.generation) + 1,
            ..left_range.clone()
        };
        self.ranges.remove(&end);
        self.ranges.insert(merged.start.clone(), merged.clone());
        Ok(merged)
    }

    /// Gives range `id` (at generation `expected`) the next generation and changes nothing
    /// else: a merge that froze it and was given up invalidates itself this way (a merge
    /// commits only for the generation its proposer saw).
    pub fn bump(&mut self, id: RangeId, expected: u64) -> Result<RangeDescriptor, RangeError> {
        let range = self.current(id, expected)?;
        let bumped = RangeDescriptor {
            generation: range.generation + 1,
            ..range.clone()
        };
        self.ranges.insert(bumped.start.clone(), bumped.clone());
        Ok(bumped)
    }

    /// Changes the replicas of range `id` (at generation `expected`) by one step. A voter
    /// cannot be removed if it is the last.
    pub fn change_replicas(
        &mut self,
        id: RangeId,
        expected: u64,
        change: ReplicaChange,
    ) -> Result<RangeDescriptor, RangeError> {
        let range = self.current(id, expected)?;
        let mut replicas = range.replicas.clone();
        match change {
            ReplicaChange::AddLearner(member) => {
                if range.role_of(member).is_some() {
                    return Err(RangeError::AlreadyReplica { range: id, member });
                }
                replicas.push(Replica {
                    member,
                    role: Role::Learner,
                });
            }
            ReplicaChange::Promote(member) => {
                let Some(replica) = replicas
                    .iter_mut()
                    .find(|r| r.member == member && r.role == Role::Learner)
                else {
                    return Err(RangeError::NotALearner { range: id, member });
                };
                replica.role = Role::Voter;
            }
            ReplicaChange::Remove(member) => {
                let Some(role) = range.role_of(member) else {
                    return Err(RangeError::NotAReplica { range: id, member });
                };
                if role == Role::Voter && range.voters().count() == 1 {
                    return Err(RangeError::LastVoter { range: id, member });
                }
                replicas.retain(|r| r.member != member);
            }
        }
        replicas.sort();
        let changed = RangeDescriptor {
            replicas,
            generation: range.generation + 1,
            ..range.clone()
        };
        self.ranges.insert(changed.start.clone(), changed.clone());
        Ok(changed)
    }
}
