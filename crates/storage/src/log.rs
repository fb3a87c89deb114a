//! The Raft logs and hard state of every group of a member, in one redb file of their own, so
//! log appends (fsync'd before they are acknowledged) do not queue behind state-machine
//! commits, and one fsync covers the appends of many groups (`write_batch`). Entries are keyed
//! by (group, index), hard-state values by (group, name); a group is a plain number whose
//! meaning is the caller's. A file written before groups existed (one log, tables keyed by
//! index and by name) is moved into group 0 in one transaction when it is opened.

use std::ops::{Bound, RangeBounds};
use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};

use crate::{StorageError, frame, unframe};

const ENTRIES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("raft_group_entries");
const HARD_STATE: TableDefinition<(u64, &str), &[u8]> =
    TableDefinition::new("raft_group_hard_state");
/// The tables of a file from before groups: one log, group 0's.
const LEGACY_ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_entries");
const LEGACY_HARD_STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_hard_state");

/// What one group writes in a batch: entries (appended or overwritten) and named hard-state
/// values.
#[derive(Clone, Copy, Debug)]
pub struct GroupWrite<'a> {
    pub group: u64,
    pub entries: &'a [(u64, Vec<u8>)],
    pub hard_state: &'a [(&'a str, &'a [u8])],
}

/// The page cache of the log file: appends pass through it and the groups' own caches serve
/// recent entries, so a small one does (redb's default, 1 GiB, filled with the entries of a
/// large-value load and stayed resident).
const LOG_FILE_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// The Raft logs of a member's groups: entry bytes by (group, index), plus named hard-state
/// values (vote, committed, purged) by group.
pub struct LogStore {
    db: Database,
}

impl LogStore {
    /// Opens or creates the log file at `path`.
    pub fn open(path: &Path) -> Result<LogStore, StorageError> {
        let db = redb::Database::builder()
            .set_cache_size(LOG_FILE_CACHE_BYTES)
            .create(path)
            .map_err(|source| StorageError::Open {
                path: path.display().to_string(),
                source,
            })?;
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
        let legacy = tx
            .list_tables()?
            .any(|table| table.name() == LEGACY_ENTRIES.name());
        {
            let mut entries = tx.open_table(ENTRIES)?;
            let mut state = tx.open_table(HARD_STATE)?;
            if legacy {
                for item in tx.open_table(LEGACY_ENTRIES)?.iter()? {
                    let (index, bytes) = item?;
                    entries.insert((0, index.value()), bytes.value())?;
                }
                for item in tx.open_table(LEGACY_HARD_STATE)?.iter()? {
                    let (name, bytes) = item?;
                    state.insert((0, name.value()), bytes.value())?;
                }
            }
        }
        if legacy {
            tx.delete_table(LEGACY_ENTRIES)?;
            tx.delete_table(LEGACY_HARD_STATE)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Appends (or overwrites) entries of `group` and makes them durable before returning.
    pub fn append(&self, group: u64, entries: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
        self.write_batch(
            &[GroupWrite {
                group,
                entries,
                hard_state: &[],
            }],
            true,
        )
    }

    /// Writes the entries and hard-state values of any number of groups in one transaction,
    /// fsync'd before returning when `durable` (the log writer's group commit across groups).
    pub fn write_batch(
        &self,
        writes: &[GroupWrite<'_>],
        durable: bool,
    ) -> Result<(), StorageError> {
        let mut tx = self.db.begin_write()?;
        if !durable {
            tx.set_durability(Durability::None)
                .expect("no persistent savepoints are used");
        }
        {
            let mut table = tx.open_table(ENTRIES)?;
            let mut state = tx.open_table(HARD_STATE)?;
            for write in writes {
                for (index, bytes) in write.entries {
                    table.insert((write.group, *index), frame(bytes).as_slice())?;
                }
                for (name, value) in write.hard_state {
                    state.insert((write.group, *name), frame(value).as_slice())?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes every entry of `group` at or after `from`, durably.
    pub fn truncate_from(&self, group: u64, from: u64) -> Result<(), StorageError> {
        let tx = self.db.begin_write()?;
        tx.open_table(ENTRIES)?
            .retain_in((group, from)..=(group, u64::MAX), |_, _| false)?;
        tx.commit()?;
        Ok(())
    }

    /// Removes every entry of `group` at or before `upto` and records `purged` (an encoded log
    /// id) in the same durable transaction.
    pub fn purge_upto(&self, group: u64, upto: u64, purged: &[u8]) -> Result<(), StorageError> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(ENTRIES)?;
            table.retain_in((group, 0)..=(group, upto), |_, _| false)?;
            tx.open_table(HARD_STATE)?
                .insert((group, "purged"), frame(purged).as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes everything of `group`: its entries and its hard state (a range replica that
    /// left this member).
    pub fn remove_group(&self, group: u64) -> Result<(), StorageError> {
        let tx = self.db.begin_write()?;
        {
            tx.open_table(ENTRIES)?
                .retain_in((group, 0)..=(group, u64::MAX), |_, _| false)?;
            let end = match group.checked_add(1) {
                Some(next) => Bound::Excluded((next, "")),
                None => Bound::Unbounded,
            };
            let start: Bound<(u64, &str)> = Bound::Included((group, ""));
            tx.open_table(HARD_STATE)?
                .retain_in::<(u64, &str), _>((start, end), |_, _| false)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Returns the entries of `group` with index in `range`, in order, verified.
    pub fn entries(
        &self,
        group: u64,
        range: impl RangeBounds<u64>,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(s) => Bound::Included((group, *s)),
            Bound::Excluded(s) => Bound::Excluded((group, *s)),
            Bound::Unbounded => Bound::Included((group, 0)),
        };
        let end = match range.end_bound() {
            Bound::Included(e) => Bound::Included((group, *e)),
            Bound::Excluded(e) => Bound::Excluded((group, *e)),
            Bound::Unbounded => Bound::Included((group, u64::MAX)),
        };
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ENTRIES)?;
        let mut out = Vec::new();
        for item in table.range::<(u64, u64)>((start, end))? {
            let (key, bytes) = item?;
            let (_, index) = key.value();
            out.push((
                index,
                unframe(
                    bytes.value(),
                    &format!("raft entry {index} of group {group}"),
                )?
                .to_vec(),
            ));
        }
        Ok(out)
    }

    /// Returns the last entry of `group`, verified.
    pub fn last(&self, group: u64) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(ENTRIES)?;
        let last = table
            .range((group, 0)..=(group, u64::MAX))?
            .next_back()
            .transpose()?;
        match last {
            None => Ok(None),
            Some((key, bytes)) => {
                let (_, index) = key.value();
                let what = format!("raft entry {index} of group {group}");
                Ok(Some((index, unframe(bytes.value(), &what)?.to_vec())))
            }
        }
    }

    /// Stores a named hard-state value of `group` (vote, committed), fsync'd when `durable`.
    pub fn put_hard_state(
        &self,
        group: u64,
        name: &str,
        value: &[u8],
        durable: bool,
    ) -> Result<(), StorageError> {
        self.write_batch(
            &[GroupWrite {
                group,
                entries: &[],
                hard_state: &[(name, value)],
            }],
            durable,
        )
    }

    /// Returns a named hard-state value of `group`, verified.
    pub fn hard_state(&self, group: u64, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(HARD_STATE)?;
        match table.get((group, name))? {
            None => Ok(None),
            Some(bytes) => Ok(Some(unframe(bytes.value(), name)?.to_vec())),
        }
    }

    /// The groups that have entries or hard state here, in order (one lookup per group, not
    /// a scan of the entries).
    pub fn groups(&self) -> Result<Vec<u64>, StorageError> {
        let tx = self.db.begin_read()?;
        let mut groups = std::collections::BTreeSet::new();
        let entries = tx.open_table(ENTRIES)?;
        let mut from = Some(0u64);
        while let Some(group) = from {
            let Some(item) = entries.range((group, 0)..)?.next() else {
                break;
            };
            let found = item?.0.value().0;
            groups.insert(found);
            from = found.checked_add(1);
        }
        let state = tx.open_table(HARD_STATE)?;
        let mut from = Some(0u64);
        while let Some(group) = from {
            let Some(item) = state.range((group, "")..)?.next() else {
                break;
            };
            let found = item?.0.value().0;
            groups.insert(found);
            from = found.checked_add(1);
        }
        Ok(groups.into_iter().collect())
    }
}
