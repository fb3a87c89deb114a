//! The token ring: which members hold which vnode tokens, the clockwise walk that gives a
//! token's preference list and fallbacks, and exact replica load. It holds only the token map;
//! it never hashes keys on its own, reads a clock or draws random numbers.

use std::collections::{BTreeMap, BTreeSet};

use base::NodeId;

use crate::token::{TokenRange, fraction_of_space, ranges_between, vnode_token};

pub use base::limits::VNODES_PER_MEMBER_MAX;

/// Why a ring could not be built or changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// `Ring::new` or `Ring::from_tokens` got no members.
    #[error("a ring needs at least one member")]
    NoMembers,
    /// `Ring::new` was asked for zero vnodes per member.
    #[error("vnodes per member must be at least 1")]
    ZeroVnodes,
    /// More vnodes per member than [`VNODES_PER_MEMBER_MAX`].
    #[error("{vnodes} vnodes per member is above the maximum of {max}")]
    TooManyVnodes {
        /// The count asked for (or found in a token map).
        vnodes: u32,
        /// [`VNODES_PER_MEMBER_MAX`].
        max: u32,
    },
    /// `Ring::new` got the same member twice.
    #[error("member {member} is listed more than once")]
    DuplicateMember {
        /// The repeated member.
        member: NodeId,
    },
    /// A token map gives members different numbers of vnodes.
    #[error(
        "member {member} holds {count} tokens but member {first} holds {expected}; every member must hold the same number"
    )]
    UnevenVnodes {
        /// The member whose count differs.
        member: NodeId,
        /// Its number of tokens.
        count: usize,
        /// The member with the lowest id, whose count is taken as the norm.
        first: NodeId,
        /// The number of tokens `first` holds.
        expected: usize,
    },
    /// `with_member` was asked to add a member the ring already has.
    #[error("member {member} is already in the ring")]
    AlreadyMember {
        /// The member.
        member: NodeId,
    },
    /// `without_member` was asked to remove a member the ring does not have.
    #[error("member {member} is not in the ring")]
    UnknownMember {
        /// The member.
        member: NodeId,
    },
    /// `without_member` was asked to remove the only member.
    #[error("cannot remove member {member}: it is the last member of the ring")]
    LastMember {
        /// The member.
        member: NodeId,
    },
    /// Every vnode index of a member hashed to a token already taken. Unreachable in practice
    /// (it needs about 2^32 collisions of a 64-bit hash); reported rather than looped on.
    #[error("member {member} found no free token among all vnode indexes")]
    TokensExhausted {
        /// The member.
        member: NodeId,
    },
}

/// How evenly a ring spreads replica load, from [`Ring::ownership`]: each member's load divided
/// by the mean load. A perfectly balanced ring has both at 1.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Balance {
    /// The most loaded member's load over the mean.
    pub max_over_mean: f64,
    /// The least loaded member's load over the mean.
    pub min_over_mean: f64,
}

/// A consistent-hash ring: a map from vnode token to the member that holds it.
///
/// Invariants: at least one member, and every member holds the same number of tokens,
/// between 1 and [`VNODES_PER_MEMBER_MAX`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    /// The stored form of the ring.
    tokens: BTreeMap<u64, NodeId>,
    /// The distinct members of `tokens`, ascending; derived, kept so walks know when to stop.
    members: Vec<NodeId>,
    /// How many tokens each member holds; the count a joining member gets.
    vnodes_per_member: u32,
}

impl Ring {
    /// Returns a ring where each of `members` holds `vnodes_per_member` vnodes. The input
    /// order does not matter.
    ///
    /// Member `m`'s tokens are `vnode_token(m, i)` for `i = 0, 1, ...`. Members are placed in
    /// ascending id order, and an index whose token is already taken is skipped in favor of the
    /// member's next index, so each member still gets exactly `vnodes_per_member` tokens and the
    /// result depends only on the set of members.
    pub fn new(members: &[NodeId], vnodes_per_member: u32) -> Result<Ring, RingError> {
        check_vnode_count(vnodes_per_member)?;
        let mut sorted = members.to_vec();
        sorted.sort_unstable();
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(RingError::DuplicateMember { member: pair[0] });
        }
        if sorted.is_empty() {
            return Err(RingError::NoMembers);
        }
        let mut tokens = BTreeMap::new();
        for member in &sorted {
            place_vnodes(&mut tokens, *member, vnodes_per_member)?;
        }
        Ok(Ring {
            tokens,
            members: sorted,
            vnodes_per_member,
        })
    }

    /// Returns the ring stored as `tokens`, as persisted by the metadata group. The tokens are
    /// taken as they are, whatever function made them: that is what lets a later change of
    /// [`vnode_token`] leave existing data in place.
    ///
    /// Fails if the map is empty, or if members hold different numbers of tokens or more than
    /// [`VNODES_PER_MEMBER_MAX`].
    pub fn from_tokens(tokens: BTreeMap<u64, NodeId>) -> Result<Ring, RingError> {
        let mut counts: BTreeMap<NodeId, usize> = BTreeMap::new();
        for member in tokens.values() {
            *counts.entry(*member).or_default() += 1;
        }
        let Some((&first, &expected)) = counts.iter().next() else {
            return Err(RingError::NoMembers);
        };
        if let Some((&member, &count)) = counts.iter().find(|(_, count)| **count != expected) {
            return Err(RingError::UnevenVnodes {
                member,
                count,
                first,
                expected,
            });
        }
        // A count beyond `u32` saturates, which the maximum check then refuses.
        let vnodes_per_member = u32::try_from(expected).unwrap_or(u32::MAX);
        check_vnode_count(vnodes_per_member)?;
        Ok(Ring {
            tokens,
            members: counts.into_keys().collect(),
            vnodes_per_member,
        })
    }

    /// Returns the stored form: every vnode token and the member holding it.
    pub fn tokens(&self) -> &BTreeMap<u64, NodeId> {
        &self.tokens
    }

    /// Returns the distinct members, ascending.
    pub fn members(&self) -> Vec<NodeId> {
        self.members.clone()
    }

    /// Returns the number of distinct members (at least 1).
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Returns whether `member` holds vnodes in this ring.
    pub fn contains(&self, member: NodeId) -> bool {
        self.members.binary_search(&member).is_ok()
    }

    /// Returns how many vnodes each member holds.
    pub fn vnodes_per_member(&self) -> u32 {
        self.vnodes_per_member
    }

    /// Returns this ring with `member` added, holding `vnodes_per_member` vnodes chosen as in
    /// [`Ring::new`] (skipping tokens already taken). Every other member keeps its tokens, so
    /// only ranges the newcomer's vnodes land in change hands.
    ///
    /// The result equals `Ring::new` of the enlarged member set unless one of the newcomer's
    /// tokens collides with a member of higher id, which `new` would have moved instead.
    pub fn with_member(&self, member: NodeId) -> Result<Ring, RingError> {
        if self.contains(member) {
            return Err(RingError::AlreadyMember { member });
        }
        let mut tokens = self.tokens.clone();
        place_vnodes(&mut tokens, member, self.vnodes_per_member)?;
        let mut members = self.members.clone();
        let at = members.partition_point(|existing| *existing < member);
        members.insert(at, member);
        Ok(Ring {
            tokens,
            members,
            vnodes_per_member: self.vnodes_per_member,
        })
    }

    /// Returns this ring with `member`'s vnodes removed; every other member keeps its tokens,
    /// so each range of the leaver passes to the next vnode clockwise.
    pub fn without_member(&self, member: NodeId) -> Result<Ring, RingError> {
        let Ok(at) = self.members.binary_search(&member) else {
            return Err(RingError::UnknownMember { member });
        };
        if self.members.len() == 1 {
            return Err(RingError::LastMember { member });
        }
        let mut tokens = self.tokens.clone();
        tokens.retain(|_, holder| *holder != member);
        let mut members = self.members.clone();
        members.remove(at);
        Ok(Ring {
            tokens,
            members,
            vnodes_per_member: self.vnodes_per_member,
        })
    }

    /// Returns the distinct members in clockwise order from the first vnode whose token is at
    /// least `token`, wrapping past `u64::MAX`; every member appears exactly once.
    ///
    /// The first N are the token's preference list. The rest are its fallbacks, in the order a
    /// sloppy quorum tries them when members of the preference list are unreachable (each
    /// fallback keeps a hint for the member it stands in for).
    pub fn walk(&self, token: u64) -> impl Iterator<Item = NodeId> + '_ {
        let mut seen = BTreeSet::new();
        self.tokens
            .range(token..)
            .chain(self.tokens.range(..token))
            .map(|(_, member)| *member)
            .filter(move |member| seen.insert(*member))
            .take(self.members.len())
    }

    /// Returns the first `min(n, member_count)` members of [`Ring::walk`]: the distinct members
    /// that store keys whose token is `token`, the first being the vnode's own holder.
    pub fn preference_list(&self, token: u64, n: usize) -> Vec<NodeId> {
        self.walk(token).take(n).collect()
    }

    /// Returns the ranges between consecutive vnode tokens, in ascending order of their end,
    /// each with the member holding the vnode at its end (the range's first replica).
    pub fn ranges(&self) -> impl Iterator<Item = (TokenRange, NodeId)> + '_ {
        let boundaries: Vec<u64> = self.tokens.keys().copied().collect();
        let holders: Vec<NodeId> = self.tokens.values().copied().collect();
        let ranges: Vec<TokenRange> = ranges_between(&boundaries).collect();
        ranges.into_iter().zip(holders)
    }

    /// Returns, for every member, the fraction of the token space whose preference list of
    /// length `n` contains it: the member's share of stored replicas, scaled so that the values
    /// sum to `min(n, member_count)`.
    ///
    /// Computed exactly from the ranges between vnode tokens (every token of a range has the
    /// same preference list), not by sampling; only the final division rounds.
    pub fn ownership(&self, n: usize) -> BTreeMap<NodeId, f64> {
        let mut owned: BTreeMap<NodeId, u128> =
            self.members.iter().map(|member| (*member, 0)).collect();
        for (range, _) in self.ranges() {
            for member in self.walk(range.end).take(n) {
                *owned.entry(member).or_default() += range.len();
            }
        }
        owned
            .into_iter()
            .map(|(member, tokens)| (member, fraction_of_space(tokens)))
            .collect()
    }

    /// Returns how the most and least loaded members compare with the mean of
    /// [`Ring::ownership`]. For `n == 0` nobody stores anything, which counts as balanced
    /// (both 1).
    pub fn balance(&self, n: usize) -> Balance {
        let ownership = self.ownership(n);
        let total: f64 = ownership.values().sum();
        // Precision: `member_count` is far below 2^53, so the conversion is exact.
        let mean = total / self.members.len() as f64;
        if mean <= 0.0 {
            return Balance {
                max_over_mean: 1.0,
                min_over_mean: 1.0,
            };
        }
        let max = ownership.values().copied().fold(f64::MIN, f64::max);
        let min = ownership.values().copied().fold(f64::MAX, f64::min);
        Balance {
            max_over_mean: max / mean,
            min_over_mean: min / mean,
        }
    }
}

/// Returns an error unless `vnodes` is in `1..=VNODES_PER_MEMBER_MAX`.
fn check_vnode_count(vnodes: u32) -> Result<(), RingError> {
    if vnodes == 0 {
        return Err(RingError::ZeroVnodes);
    }
    if vnodes > VNODES_PER_MEMBER_MAX {
        return Err(RingError::TooManyVnodes {
            vnodes,
            max: VNODES_PER_MEMBER_MAX,
        });
    }
    Ok(())
}

/// Gives `member` `count` tokens in `tokens`: `vnode_token(member, i)` for ascending `i`,
/// skipping indexes whose token is already taken (by anyone, the member included).
fn place_vnodes(
    tokens: &mut BTreeMap<u64, NodeId>,
    member: NodeId,
    count: u32,
) -> Result<(), RingError> {
    let mut placed = 0;
    // Bounded by the index space; each skipped index is a 64-bit hash collision.
    for index in 0..=u32::MAX {
        if placed == count {
            return Ok(());
        }
        if let std::collections::btree_map::Entry::Vacant(slot) =
            tokens.entry(vnode_token(member, index))
        {
            slot.insert(member);
            placed += 1;
        }
    }
    if placed == count {
        Ok(())
    } else {
        Err(RingError::TokensExhausted { member })
    }
}
