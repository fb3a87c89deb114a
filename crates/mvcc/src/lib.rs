//! etcd v3 keyspace semantics as a pure state machine: one cluster revision, per-key create and
//! mod revisions and versions, tombstones, history until compaction, Range/Put/DeleteRange/Txn/
//! Compact exactly as etcd answers them. It must never perform I/O: record bytes come from a
//! [`RecordSource`] and changes leave as a [`ChangeSet`] the caller persists.

pub mod codec;
mod keyspace;
mod lease;
mod range;
mod txn;
pub mod validate;
mod watch;

pub use codec::{CodecError, Record, Rev};
pub use keyspace::{ChangeSet, Indexed, Keyspace, RecordSource};
pub use lease::{LEASE_TTL_MAX, Lease};
pub use watch::{Change, History, WatchFilter};

#[cfg(test)]
mod tests;
