//! The versions of a consensus bucket's keys, by hybrid-logical-clock timestamp: the rules a
//! range's state machine keeps (issue #15) and transactions read at a snapshot through (issue
//! #16). Pure: no I/O, no clock; timestamps come in with each call.
//!
//! - A write at timestamp `t` adds a version; a delete adds a tombstone. A write at or below
//!   the key's newest version, or at or below the GC threshold, is refused (`WriteTooOld`,
//!   with that version or the threshold): versions of a key only grow in time, so a read at
//!   `t` never changes once `t` is in the past.
//! - A read at `t` sees, per key, the newest version at or below `t`, unless it is a
//!   tombstone.
//! - `gc(threshold)` drops what no read at or above `threshold` can see: per key, every version
//!   older than the newest one at or below the threshold, and that one too if it is a
//!   tombstone. Reads below the threshold may miss versions; the caller refuses them
//!   (`gc_threshold` says where it is).
//! - `stored` keeps a range's versions in an ordered store (the member's storage engine) as
//!   the span of its keys, with these same rules, so a split or merge moves no data.
//! - `codec` is the storage order: a key's versions sit together, newest first, and keys sort
//!   as their bytes do.

pub mod codec;
mod map;
pub mod stored;

pub use codec::{DecodeError, decode_key, encode_key};
pub use map::{DuplicateVersion, Version, VersionedMap, WriteTooOld};
pub use stored::{OrderedStore, OrderedStoreMut, StoredError, StoredVersions, StoredVersionsMut};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod stored_tests;
