//! The Raft log and hard state in their own redb file, so log appends (fsync'd before they are
//! acknowledged) do not queue behind state-machine commits.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use crate::{StorageError, frame, unframe};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_entries");
const HARD_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_hard_state");

/// The Raft log: entry bytes by index, plus named hard-state values (vote, committed, purged).
pub struct LogStore {
    db: Database,
}

impl LogStore {
    /// Opens or creates the log file at `path`.
    pub fn open(path: &Path) -> Result<LogStore, StorageError> {
        let db = crate::open_file(path)?;
        let store = LogStore { db };
        store.init()?;
        Ok(store)
    }

    /// Opens a log on a caller-provided backend (the simulator's disk).
    pub fn open_with_backend(backend: impl redb::StorageBackend) -> Result<LogStore, StorageError> {
        let db = crate::open_backend(backend)?;
        let store = LogStore { db };
        store.init()?;
        Ok(store)
    }

    fn init(&self) -> Result<(), StorageError> {
        let tx = self.db.begin_write()?;
        tx.open_table(ENTRIES)?;
        tx.open_table(HARD_STATE)?;
        tx.commit()?;
        Ok(())
    }

    /// Appends (or overwrites) entries and makes them durable before returning.
    pub fn append(&self, entries: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
        self.write_batch(entries, &[], true)
    }

    /// Writes entries (appended or overwritten) and named hard-state values in one
    /// transaction, fsync'd before returning when `durable` (the log writer's group commit).
    pub fn write_batch(
        &self,
        entries: &[(u64, Vec<u8>)],
        hard_state: &[(&str, &[u8])],
        durable: bool,
    ) -> Result<(), StorageError> {
        let mut tx = self.db.begin_write()?;
        if !durable {
            tx.set_durability(Durability::None)
                .expect("no persistent savepoints are used");
        }
        {
            let mut table = tx.open_table(ENTRIES)?;
            for (index, bytes) in entries {
                table.insert(*index, frame(bytes).as_slice())?;
            }
            let mut state = tx.open_table(HARD_STATE)?;
            for (name, value) in hard_state {
                state.insert(*name, frame(value).as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes every entry at or after `from`, durably.
    pub fn truncate_from(&self, from: u64) -> Result<(), StorageError> {
        self.remove_range(from..)
    }

    /// Removes every entry at or before `upto` and records `purged` (an encoded log id) in the
    /// same durable transaction.
    pub fn purge_upto(&self, upto: u64, purged: &[u8]) -> Result<(), StorageError> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(ENTRIES)?;
            table.retain_in(..=upto, |_, _| false)?;
            tx.open_table(HARD_STATE)?
                .insert("purged", frame(purged).as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    fn remove_range(&self, range: std::ops::RangeFrom<u64>) -> Result<(), StorageError> {
        let tx = self.db.begin_write()?;
        tx.open_table(ENTRIES)?.retain_in(range, |_, _| false)?;
        tx.commit()?;
        Ok(())
    }

    /// Returns the entries with index in `range`, in order, verified.
    pub fn entries(
        &self,
        range: impl std::ops::RangeBounds<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ENTRIES)?;
        let mut out = Vec::new();
        for item in table.range(range)? {
            let (index, bytes) = item?;
            let index = index.value();
            out.push((
                index,
                unframe(bytes.value(), &format!("raft entry {index}"))?.to_vec(),
            ));
        }
        Ok(out)
    }

    /// Returns the last entry, verified.
    pub fn last(&self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ENTRIES)?;
        match table.last()? {
            None => Ok(None),
            Some((index, bytes)) => {
                let index = index.value();
                Ok(Some((
                    index,
                    unframe(bytes.value(), &format!("raft entry {index}"))?.to_vec(),
                )))
            }
        }
    }

    /// Durably stores a named hard-state value (vote, committed).
    pub fn put_hard_state(
        &self,
        name: &str,
        value: &[u8],
        durable: bool,
    ) -> Result<(), StorageError> {
        self.write_batch(&[], &[(name, value)], durable)
    }

    /// Returns a named hard-state value, verified.
    pub fn hard_state(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(HARD_STATE)?;
        match table.get(name)? {
            None => Ok(None),
            Some(bytes) => Ok(Some(unframe(bytes.value(), name)?.to_vec())),
        }
    }
}
