//! Causality for the quorum buckets: dotted version vectors, the per-key state built on them,
//! and their versioned binary forms. It must never perform I/O, read a clock, draw random
//! numbers or depend on iteration order it does not control; every timestamp and actor id
//! comes in as an argument.
//!
//! # The model
//!
//! Every write to a key gets a **dot**: the id of the replica that coordinated it (the
//! *actor*) and that replica's running count of writes to the key. A replica's state for a key
//! is an [`Object`]: a **version vector** (its *context*: every dot it has seen, superseded or
//! not) and the **siblings** still standing, each a value with its own dot and an HLC
//! timestamp.
//!
//! A client reads the siblings and the context, and hands the context back (as a token) with
//! its next put. The coordinator drops exactly the siblings that context covers — the ones the
//! client saw and so meant to replace — and adds the new value under a fresh dot. Siblings
//! the client did not see stay. Because the dot belongs to the sibling, not to the replica,
//! concurrent writers that all go through one coordinator each leave one sibling: k blind
//! writes give k siblings, and the next write that read them leaves one. A single version
//! vector per object cannot do this: if the coordinator bumps its own entry for every write, a
//! write that started from an older read looks like it descends the newer one and silently
//! replaces it (a lost write); if it keeps every value whose vector is not dominated instead,
//! it cannot tell which of them a given client saw and the sibling count only grows.
//!
//! Replicas sync by [`Object::merge`]: a sibling survives unless the other side has seen its
//! dot and no longer keeps it, and the contexts join. The merge is commutative, associative and
//! idempotent, so replicas converge whatever the order and repetition of anti-entropy, read
//! repair and hinted handoff.
//!
//! # Deletes
//!
//! A delete is a write whose value is a **tombstone** (`None`); it supersedes what its client
//! saw like any put, so a stale replica's copy cannot come back. Tombstones are dropped by
//! [`Object::prune_tombstones`] only after a grace period, and the context outlives them.
//!
//! # Last writer wins
//!
//! A bucket with [`Conflicts::Lww`] keeps one sibling: the greatest by (timestamp, actor,
//! counter). Readers never see siblings, but of two concurrent writes the one with the smaller
//! timestamp is lost, and so is a later write whose coordinator's clock ran behind the value it
//! replaced. HLC timestamps keep that window to the clock offset bound; buckets that cannot
//! lose writes use [`Conflicts::Siblings`].

pub mod codec;
mod object;
mod vv;

pub use codec::{DecodeError, FORMAT_VERSION, decode_object, encode_object};
pub use object::{CLAIMED_COUNTER_MAX, Conflicts, Object, Sibling};
pub use vv::{Causality, Dot, VersionVector};

#[cfg(test)]
mod tests;
