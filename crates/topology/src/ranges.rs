//! The ranges of consensus buckets as the metadata group keeps them: `RangeDescriptor`s in
//! the topology, by bucket then start key, and the next range id. A new consensus bucket gets
//! one range over all its keys; every later change — split, merge, one replica change — goes
//! through `apply_range_change`, which checks it with the `ranges` rules against the
//! generation its proposer saw, so a change computed from stale metadata changes nothing and
//! says why.

use base::NodeId;
use proto::quorate::raft::v1 as pb;
use proto::quorate::v1::Refusal;
use ranges::{RangeDescriptor, RangeError, RangeId, RangeMap, Replica, ReplicaChange, Role};

/// A stored descriptor as the `ranges` rules take it.
pub fn descriptor_from_pb(range: &pb::RangeDescriptor) -> RangeDescriptor {
    RangeDescriptor {
        id: RangeId(range.id),
        start: range.start.clone(),
        end: range.end.clone(),
        replicas: range
            .replicas
            .iter()
            .map(|r| Replica {
                member: NodeId(r.member),
                role: if r.learner {
                    Role::Learner
                } else {
                    Role::Voter
                },
            })
            .collect(),
        generation: range.generation,
        sticky: range.sticky,
    }
}

/// A descriptor of `bucket` as the metadata stores it.
pub fn descriptor_to_pb(bucket: &str, range: &RangeDescriptor) -> pb::RangeDescriptor {
    pb::RangeDescriptor {
        id: range.id.0,
        bucket: bucket.to_owned(),
        start: range.start.clone(),
        end: range.end.clone(),
        replicas: range
            .replicas
            .iter()
            .map(|r| pb::RangeReplica {
                member: r.member.0,
                learner: r.role == Role::Learner,
            })
            .collect(),
        generation: range.generation,
        sticky: range.sticky,
        merged_right_generation: 0,
    }
}

/// The ranges of `bucket`, or `None` when it has none (not a consensus bucket). Stored
/// descriptors that do not partition the bucket's keys are an error: the metadata is corrupt.
pub fn bucket_ranges(
    topology: &pb::Topology,
    bucket: &str,
) -> Result<Option<RangeMap>, RangeError> {
    let mut descriptors = topology
        .ranges
        .iter()
        .filter(|r| r.bucket == bucket)
        .map(descriptor_from_pb)
        .peekable();
    if descriptors.peek().is_none() {
        return Ok(None);
    }
    RangeMap::from_descriptors(descriptors).map(Some)
}

/// The id the next new range gets (ids start at 1).
fn peek_id(topology: &pb::Topology) -> RangeId {
    RangeId(topology.next_range_id.max(1))
}

fn next_id(topology: &mut pb::Topology) -> RangeId {
    let id = peek_id(topology);
    topology.next_range_id = id.0 + 1;
    id
}

/// Replaces the stored ranges of `bucket` by `map`'s, keeping the order (bucket, start).
fn store(topology: &mut pb::Topology, bucket: &str, map: &RangeMap) {
    // A merged range keeps the generation of the right neighbour it took while it keeps the
    // merge's span (what the pure map does not hold): a leader finishing the merge fetches
    // the neighbour frozen at that generation, and a replica change committed before the
    // group applied the merge must not lose it.
    type Span = (u64, Vec<u8>, Option<Vec<u8>>);
    let merged: std::collections::HashMap<Span, u64> = topology
        .ranges
        .iter()
        .filter(|r| r.bucket == bucket && r.merged_right_generation != 0)
        .map(|r| {
            (
                (r.id, r.start.clone(), r.end.clone()),
                r.merged_right_generation,
            )
        })
        .collect();
    topology.ranges.retain(|r| r.bucket != bucket);
    topology.ranges.extend(map.iter().map(|range| {
        let mut pb = descriptor_to_pb(bucket, range);
        let span = (pb.id, pb.start.clone(), pb.end.clone());
        pb.merged_right_generation = merged.get(&span).copied().unwrap_or(0);
        pb
    }));
    topology
        .ranges
        .sort_by(|a, b| (a.bucket.as_str(), &a.start).cmp(&(b.bucket.as_str(), &b.start)));
}

/// Gives a new consensus bucket its first range, over all its keys, on `voters`; returns it.
/// A bucket that already has ranges keeps them (the create was applied before).
pub fn create_bucket_ranges(
    topology: &mut pb::Topology,
    bucket: &str,
    voters: &[NodeId],
) -> Result<pb::RangeDescriptor, RangeError> {
    if let Some(map) = bucket_ranges(topology, bucket)? {
        return Ok(descriptor_to_pb(bucket, map.lookup(b"")));
    }
    let map = RangeMap::new(peek_id(topology), voters);
    map.check()?;
    next_id(topology);
    store(topology, bucket, &map);
    Ok(descriptor_to_pb(bucket, map.lookup(b"")))
}

/// The replica change as a range change's payload (what `apply_range_change` takes back).
pub fn replica_change_to_pb(change: ReplicaChange) -> pb::range_change::Change {
    use pb::range_change::Change;
    match change {
        ReplicaChange::AddLearner(member) => Change::AddLearner(member.0),
        ReplicaChange::Promote(member) => Change::Promote(member.0),
        ReplicaChange::Remove(member) => Change::Remove(member.0),
    }
}

/// How many ranges, of every bucket, have a replica (voter or learner) on `member`.
pub fn replicas_on(topology: &pb::Topology, member: u64) -> usize {
    topology
        .ranges
        .iter()
        .filter(|r| r.replicas.iter().any(|replica| replica.member == member))
        .count()
}

/// Drops every range of `bucket` (the bucket was deleted).
pub fn drop_bucket_ranges(topology: &mut pb::Topology, bucket: &str) {
    topology.ranges.retain(|r| r.bucket != bucket);
}

/// Applies one range change; a refused change leaves the topology as it was and says why.
pub fn apply_range_change(
    topology: &mut pb::Topology,
    change: &pb::RangeChange,
) -> pb::RangeChangeResponse {
    use pb::range_change::Change;
    let map = match bucket_ranges(topology, &change.bucket) {
        Ok(Some(map)) => map,
        Ok(None) => {
            return refuse(
                Refusal::WrongKind,
                format!(
                    "bucket {:?} has no ranges: it is not a consensus bucket",
                    change.bucket
                ),
            );
        }
        Err(error) => {
            return refuse(
                Refusal::Corrupt,
                format!("the ranges of {:?}: {error}", change.bucket),
            );
        }
    };
    let outcome = match planned(topology, &map, change) {
        Ok(outcome) => outcome,
        Err(refusal) => return refusal,
    };
    match outcome {
        Ok((changed, next)) => {
            if matches!(
                change.change,
                Some(Change::SplitAt(_) | Change::SplitByHandAt(_))
            ) {
                next_id(topology);
            }
            store(topology, &change.bucket, &next);
            let mut changed: Vec<pb::RangeDescriptor> = changed
                .iter()
                .map(|r| descriptor_to_pb(&change.bucket, r))
                .collect();
            if let Some(Change::MergeRightGeneration(right)) = change.change {
                for merged in changed.iter_mut().chain(
                    topology
                        .ranges
                        .iter_mut()
                        .filter(|r| r.bucket == change.bucket && r.id == change.range),
                ) {
                    merged.merged_right_generation = right;
                }
            }
            pb::RangeChangeResponse {
                ranges: changed,
                ..Default::default()
            }
        }
        Err(error) => refuse(refusal_of(&error), error.to_string()),
    }
}

/// What `change` makes of `map`: the ranges it changes and the map after it, or why a range
/// rule refuses it; `Err` is a refusal of the change itself.
fn planned(
    topology: &pb::Topology,
    map: &RangeMap,
    change: &pb::RangeChange,
) -> Result<Result<(Vec<RangeDescriptor>, RangeMap), RangeError>, pb::RangeChangeResponse> {
    use pb::range_change::Change;
    let (range, generation) = (RangeId(change.range), change.generation);
    let outcome = match &change.change {
        None => {
            return Err(refuse(
                Refusal::Invalid,
                "the change names no operation".to_owned(),
            ));
        }
        Some(Change::SplitAt(at)) => {
            let new_id = peek_id(topology);
            let mut next = map.clone();
            next.split(range, generation, at, new_id)
                .map(|(left, right)| (vec![left, right], next))
        }
        Some(Change::SplitByHandAt(at)) => {
            let new_id = peek_id(topology);
            let mut next = map.clone();
            next.split_by_hand(range, generation, at, new_id)
                .map(|(left, right)| (vec![left, right], next))
        }
        Some(Change::MergeRightGeneration(right)) => {
            let mut next = map.clone();
            next.merge(range, generation, *right)
                .map(|merged| (vec![merged], next))
        }
        Some(Change::Bump(true)) => {
            let mut next = map.clone();
            next.bump(range, generation)
                .map(|bumped| (vec![bumped], next))
        }
        Some(Change::Bump(false)) => {
            return Err(refuse(Refusal::Invalid, "a bump must be true".to_owned()));
        }
        Some(Change::AddLearner(member)) => replica_change(
            map,
            range,
            generation,
            ReplicaChange::AddLearner(NodeId(*member)),
        ),
        Some(Change::Promote(member)) => replica_change(
            map,
            range,
            generation,
            ReplicaChange::Promote(NodeId(*member)),
        ),
        Some(Change::Remove(member)) => replica_change(
            map,
            range,
            generation,
            ReplicaChange::Remove(NodeId(*member)),
        ),
    };
    Ok(outcome)
}

fn replica_change(
    map: &RangeMap,
    range: RangeId,
    generation: u64,
    change: ReplicaChange,
) -> Result<(Vec<RangeDescriptor>, RangeMap), RangeError> {
    let mut next = map.clone();
    next.change_replicas(range, generation, change)
        .map(|changed| (vec![changed], next))
}

/// A refused range change: nothing changed, and why.
fn refuse(kind: Refusal, refusal: String) -> pb::RangeChangeResponse {
    pb::RangeChangeResponse {
        refusal,
        refusal_kind: kind as i32,
        ranges: Vec::new(),
    }
}

/// The kind of refusal a range rule's error is, for callers to decide on.
pub fn refusal_of(error: &RangeError) -> Refusal {
    match error {
        RangeError::NoSuchRange(_) | RangeError::NotAReplica { .. } => Refusal::NotFound,
        RangeError::StaleGeneration { .. } => Refusal::Stale,
        RangeError::SplitKeyOutside(_)
        | RangeError::NoRightNeighbour(_)
        | RangeError::ReplicasDiffer { .. }
        | RangeError::AlreadyReplica { .. }
        | RangeError::NotALearner { .. }
        | RangeError::LastVoter { .. } => Refusal::Invalid,
        RangeError::IdInUse(_) | RangeError::NotAPartition(_) => Refusal::Corrupt,
    }
}
