//! Placement for the Dynamo-style (AP) buckets: which members store a key. It owns the token
//! ring, the key and vnode token functions, preference lists, replica load and the data that a
//! membership change moves. It is pure: it never performs I/O, reads a clock, draws random
//! numbers or depends on a runtime, and every result depends only on its arguments.
//!
//! # Tokens
//!
//! Keys and vnodes share one circle of `u64` tokens. A key's token is a hash of its bucket and
//! key ([`key_token`]); it is stored by the vnode whose token is the first at or after it,
//! wrapping past `u64::MAX`. The key hash is part of the on-disk and wire contract.
//!
//! # Why vnodes
//!
//! With one token per member, arcs between random tokens vary wildly in length, so some
//! members would store several times more than others. Giving each member many vnodes (many
//! tokens) averages those arcs: the spread of a member's load shrinks roughly with the square
//! root of the vnode count (see the balance test for measured numbers). Vnodes also spread
//! change: when a member fails or leaves, each of its many small ranges passes to whichever
//! member is next clockwise, so its load lands on many members rather than on one neighbour,
//! and when one joins it takes a little from everyone.
//!
//! # Why tokens are stored
//!
//! A [`Ring`] is kept as an explicit map from token to member ([`Ring::tokens`]); the metadata
//! Raft group persists that map, and [`Ring::from_tokens`] rebuilds a ring from it. The vnode
//! token function ([`vnode_token`]) only chooses tokens for a joining member. So a future
//! change of that function moves no data, and every member, whatever its version, agrees on
//! placement as long as it agrees on the stored map.
//!
//! # Preference lists and fallbacks
//!
//! [`Ring::walk`] lists the distinct members clockwise from a token. Its first N members are
//! the token's preference list ([`Ring::preference_list`]): the replicas that store the key and
//! that read and write quorums are counted over. The remaining members are the fallbacks: when
//! a member of the preference list is unreachable, a sloppy quorum writes to the next fallback
//! instead, which keeps the write as a hint and hands it to the intended member once it is back.
//!
//! # Measuring change
//!
//! [`placement_changes`] compares two rings range by range; [`moved_fraction`] is the share of
//! the token space whose replica set changed, and [`moved_replica_fraction`] the share of stored
//! replicas that must be streamed to a new holder.

mod movement;
mod ring;
mod token;

pub use movement::{RangeChange, moved_fraction, moved_replica_fraction, placement_changes};
pub use ring::{Balance, Ring, RingError, VNODES_PER_MEMBER_MAX};
pub use token::{TOKEN_SPACE, TokenRange, key_token, vnode_token};

#[cfg(test)]
mod tests;
