//! The state machine's tables in their own redb file: records by 16-byte revision key and named
//! metadata (applied log id, membership, revisions). One commit per applied batch; commits may
//! skip fsync because the Raft log can replay them, and [`StateStore::sync`] makes everything
//! durable before the log is purged past it.

use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use crate::{StorageError, frame, unframe};

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The state machine's durable tables.
pub struct StateStore {
    db: Database,
    /// The file, when the backend is one (for its size).
    path: Option<PathBuf>,
}

/// A consistent read view of the state tables (see [`StateStore::view`]).
pub struct StateView {
    tx: redb::ReadTransaction,
}

impl StateView {
    /// Calls `visit` with every record and then every metadata value of the view, verified.
    pub fn scan(
        &self,
        mut visit_record: impl FnMut(&[u8], &[u8]) -> Result<(), StorageError>,
        mut visit_meta: impl FnMut(&str, &[u8]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        for item in self.tx.open_table(RECORDS)?.iter()? {
            let (key, value) = item?;
            visit_record(key.value(), unframe(value.value(), "mvcc record")?)?;
        }
        for item in self.tx.open_table(META)?.iter()? {
            let (name, value) = item?;
            visit_meta(name.value(), unframe(value.value(), name.value())?)?;
        }
        Ok(())
    }
}

/// How big the state file is, and how much of it holds live data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreSizes {
    /// Bytes the file takes on disk (etcd's `dbSize`).
    pub file_bytes: u64,
    /// Bytes of keys, values and tree metadata (etcd's `dbSizeInUse`); the rest is free
    /// space the file will reuse.
    pub in_use_bytes: u64,
}

/// What one applied batch changes, committed atomically.
#[derive(Default, Debug)]
pub struct StateWrite {
    pub puts: Vec<(Vec<u8>, Vec<u8>)>,
    pub removes: Vec<Vec<u8>>,
    pub meta: Vec<(&'static str, Vec<u8>)>,
}

impl StateStore {
    /// Opens or creates the state file at `path`.
    pub fn open(path: &Path) -> Result<StateStore, StorageError> {
        let db = crate::open_file(path)?;
        Self::with_db(db, Some(path.to_path_buf()))
    }

    /// Opens empty state tables in memory (to inspect a snapshot without a data dir).
    pub fn in_memory() -> Result<StateStore, StorageError> {
        Self::open_with_backend(redb::backends::InMemoryBackend::new())
    }

    /// Opens state tables on a caller-provided backend (the simulator's disk).
    pub fn open_with_backend(
        backend: impl redb::StorageBackend,
    ) -> Result<StateStore, StorageError> {
        let db = crate::open_backend(backend)?;
        Self::with_db(db, None)
    }

    fn with_db(db: Database, path: Option<PathBuf>) -> Result<StateStore, StorageError> {
        let tx = db.begin_write()?;
        tx.open_table(RECORDS)?;
        tx.open_table(META)?;
        tx.commit()?;
        Ok(StateStore { db, path })
    }

    /// Commits one batch. With `durable` false the commit is atomic but not fsync'd: a crash
    /// returns the tables to the last durable commit, which the Raft log replays forward.
    pub fn write(&self, write: &StateWrite, durable: bool) -> Result<(), StorageError> {
        let mut tx = self.db.begin_write()?;
        if !durable {
            tx.set_durability(Durability::None)
                .expect("no persistent savepoints are used");
        }
        {
            let mut records = tx.open_table(RECORDS)?;
            for (key, value) in &write.puts {
                records.insert(key.as_slice(), frame(value).as_slice())?;
            }
            for key in &write.removes {
                records.remove(key.as_slice())?;
            }
            let mut meta = tx.open_table(META)?;
            for (name, value) in &write.meta {
                meta.insert(*name, frame(value).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Makes every earlier commit durable.
    pub fn sync(&self) -> Result<(), StorageError> {
        let tx = self.db.begin_write()?;
        tx.commit()?;
        Ok(())
    }

    /// Returns the record stored under `key`, verified.
    pub fn record(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(RECORDS)?;
        match table.get(key)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(unframe(bytes.value(), "mvcc record")?.to_vec())),
        }
    }

    /// Returns a named metadata value, verified.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(META)?;
        match table.get(name)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(unframe(bytes.value(), name)?.to_vec())),
        }
    }

    /// Calls `visit` with every record and then every metadata value, from one consistent
    /// read view, verified. Used to rebuild the index.
    pub fn scan(
        &self,
        visit_record: impl FnMut(&[u8], &[u8]) -> Result<(), StorageError>,
        visit_meta: impl FnMut(&str, &[u8]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        self.view()?.scan(visit_record, visit_meta)
    }

    /// Takes a read view of everything committed so far. Reading it later sees exactly that
    /// state, whatever is committed meanwhile, so a snapshot can be copied out without
    /// holding up the writer.
    pub fn view(&self) -> Result<StateView, StorageError> {
        Ok(StateView {
            tx: self.db.begin_read()?,
        })
    }

    /// Returns how many records are stored.
    pub fn record_count(&self) -> Result<u64, StorageError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(RECORDS)?.len()?)
    }

    /// Returns the file's size and the bytes in use. Walks the tables' pages, so it costs a
    /// little more as the state grows.
    pub fn sizes(&self) -> Result<StoreSizes, StorageError> {
        let tx = self.db.begin_read()?;
        let mut in_use = 0;
        for stats in [
            tx.open_table(RECORDS)?.stats()?,
            tx.open_table(META)?.stats()?,
        ] {
            in_use += stats.stored_bytes() + stats.metadata_bytes();
        }
        let file_bytes = match &self.path {
            Some(path) => std::fs::metadata(path)
                .map_err(|source| StorageError::File {
                    path: path.display().to_string(),
                    source,
                })?
                .len(),
            None => in_use,
        };
        Ok(StoreSizes {
            file_bytes,
            in_use_bytes: in_use.min(file_bytes),
        })
    }

    /// Replaces every table's content with `write`'s, durably (installing a snapshot).
    pub fn replace(&self, write: &StateWrite) -> Result<(), StorageError> {
        let tx = self.db.begin_write()?;
        {
            tx.open_table(RECORDS)?.retain(|_, _| false)?;
            tx.open_table(META)?.retain(|_, _| false)?;
            let mut records = tx.open_table(RECORDS)?;
            for (key, value) in &write.puts {
                records.insert(key.as_slice(), frame(value).as_slice())?;
            }
            let mut meta = tx.open_table(META)?;
            for (name, value) in &write.meta {
                meta.insert(*name, frame(value).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}
