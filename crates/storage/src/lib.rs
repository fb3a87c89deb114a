//! Durable storage of one member on redb: the Raft log with its hard state, the state machine's
//! tables, the latest snapshot file, the objects of quorum buckets it replicates, and the data
//! of the consensus-bucket ranges it holds (`ranges`). Every stored value is framed with a CRC32 that is
//! verified on read, so corruption is reported and refused, never served. It must never
//! interpret what it stores: encodings belong to the crates that own the data.

mod frame;
mod log;
mod objects;
mod ranges;
mod snapshot;
mod state;

pub use frame::{frame, unframe};
pub use log::{GroupWrite, LogStore};
pub use objects::{
    CHANGED_SINCE_READ, Change, ChangeOutcome, Hint, ObjectStore, Slot, StoredObject,
    remove_if_unchanged,
};
pub use ranges::{Data, DataMut, RangeRead, RangeStore, RangeWrite};
pub use redb::StorageBackend;
pub use snapshot::SnapshotFile;
pub use state::{StateStore, StateView, StateWrite, StoreSizes};

/// A storage operation that failed. A write that returns this may or may not be durable; the
/// caller (the Raft adapters) stops the member rather than guess.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("open {path}: {source}")]
    Open {
        path: String,
        source: redb::DatabaseError,
    },
    #[error("storage transaction: {0}")]
    Transaction(#[from] redb::TransactionError),
    #[error("storage table: {0}")]
    Table(#[from] redb::TableError),
    #[error("storage read or write: {0}")]
    Io(#[from] redb::StorageError),
    #[error("storage commit: {0}")]
    Commit(#[from] redb::CommitError),
    #[error("snapshot file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("stored range version: {0}")]
    Version(#[from] versioned::StoredError),
}

/// Opens or creates the redb file at `path`.
fn open_file(path: &std::path::Path) -> Result<redb::Database, StorageError> {
    redb::Database::create(path).map_err(|source| StorageError::Open {
        path: path.display().to_string(),
        source,
    })
}

/// Opens or creates a redb database on a caller-provided backend (tests, the simulator's disk).
fn open_backend(backend: impl redb::StorageBackend) -> Result<redb::Database, StorageError> {
    redb::Database::builder()
        .create_with_backend(backend)
        .map_err(|source| StorageError::Open {
            path: "<backend>".into(),
            source,
        })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod range_tests;
