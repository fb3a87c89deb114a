//! The member's range data in its own redb file (`ranges.redb`): every consensus-bucket range
//! replica on the member keeps its versions here, one table per bucket (`data/<bucket>`) in
//! which a range is the span of its keys, and one metadata record per range (its applied
//! index, descriptor and the rest, encoded by the range's owner) in `meta`. A range's data
//! and its record change in one transaction, so the applied index always names the state
//! the data holds. Commits may skip the fsync (the range's Raft log replays them); `sync`
//! makes everything durable before a log is purged past it. Memory is redb's page cache, set
//! at open: the data lives on disk. Synced commits save redb's allocator state (quick
//! repair): reopened after a crash, the file is not walked to rebuild it (a 2.7 GB file took
//! 1.5 s to reopen after SIGKILL without, under 1 ms with).
//!
//! What the bytes mean is not this module's business: the data tables implement
//! `versioned::OrderedStore`, and `versioned::stored` keeps the versions' rules over them.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use versioned::stored::Entry;
use versioned::{OrderedStore, OrderedStoreMut};

use crate::{StorageError, frame, unframe};

const META: TableDefinition<u64, &[u8]> = TableDefinition::new("meta");
/// Client sessions of each range, by (range, client).
const SESSIONS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("sessions");
const DATA_PREFIX: &str = "data/";

fn data_table(bucket: &str) -> String {
    format!("{DATA_PREFIX}{bucket}")
}

fn definition(name: &str) -> TableDefinition<'_, &'static [u8], &'static [u8]> {
    TableDefinition::new(name)
}

/// The range data of one member.
pub struct RangeStore {
    db: Database,
}

/// One transaction over the range data: every change of one applied batch, committed at once.
pub struct RangeWrite {
    pub(crate) tx: redb::WriteTransaction,
}

/// A consistent read view of the range data (a snapshot streams from one).
pub struct RangeRead {
    tx: redb::ReadTransaction,
}

/// One bucket's data table, being written (reads see the transaction's own writes).
pub struct DataMut<'t> {
    table: redb::Table<'t, &'static [u8], &'static [u8]>,
}

/// One bucket's data table in a read view.
pub struct Data {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl RangeStore {
    /// Opens or creates the range data file at `path` with a page cache of `cache_bytes`.
    pub fn open(path: &Path, cache_bytes: usize) -> Result<RangeStore, StorageError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)
            .map_err(|source| StorageError::Open {
                path: path.display().to_string(),
                source,
            })?;
        Self::with_db(db)
    }

    /// Range data in memory (tests).
    pub fn in_memory() -> Result<RangeStore, StorageError> {
        Self::open_with_backend(redb::backends::InMemoryBackend::new())
    }

    /// Opens range data on a caller-provided backend (tests, the simulator's disk).
    pub fn open_with_backend(
        backend: impl redb::StorageBackend,
    ) -> Result<RangeStore, StorageError> {
        Self::with_db(crate::open_backend(backend)?)
    }

    fn with_db(db: Database) -> Result<RangeStore, StorageError> {
        let tx = db.begin_write()?;
        tx.open_table(META)?;
        tx.open_table(SESSIONS)?;
        tx.commit()?;
        Ok(RangeStore { db })
    }

    /// Starts a transaction (one writer at a time: others wait for it).
    pub fn write(&self) -> Result<RangeWrite, StorageError> {
        Ok(RangeWrite {
            tx: self.db.begin_write()?,
        })
    }

    /// A consistent view of the data as of the last commit.
    pub fn read(&self) -> Result<RangeRead, StorageError> {
        Ok(RangeRead {
            tx: self.db.begin_read()?,
        })
    }

    /// Makes every earlier commit durable.
    pub fn sync(&self) -> Result<(), StorageError> {
        let mut tx = self.db.begin_write()?;
        tx.set_quick_repair(true);
        tx.commit()?;
        Ok(())
    }
}

impl RangeWrite {
    /// The data table of `bucket` (created on first use).
    pub fn data(&self, bucket: &str) -> Result<DataMut<'_>, StorageError> {
        let name = data_table(bucket);
        Ok(DataMut {
            table: self.tx.open_table(definition(&name))?,
        })
    }

    /// Sets range `range`'s record.
    pub fn set_meta(&self, range: u64, record: &[u8]) -> Result<(), StorageError> {
        self.tx
            .open_table(META)?
            .insert(range, frame(record).as_slice())?;
        Ok(())
    }

    /// Removes range `range`'s record.
    pub fn remove_meta(&self, range: u64) -> Result<(), StorageError> {
        self.tx.open_table(META)?.remove(range)?;
        Ok(())
    }

    /// Range `range`'s record as this transaction has it.
    pub fn meta(&self, range: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let table = self.tx.open_table(META)?;
        let value = table.get(range)?;
        match value {
            Some(value) => Ok(Some(unframe(value.value(), "range record")?.to_vec())),
            None => Ok(None),
        }
    }

    /// Every range's record as this transaction has it, by range id.
    pub fn metas(&self) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        all_metas(&self.tx.open_table(META)?)
    }

    /// Sets (`Some`) or removes client `client`'s session of range `range`.
    pub fn set_session(
        &self,
        range: u64,
        client: u64,
        session: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let mut table = self.tx.open_table(SESSIONS)?;
        match session {
            Some(bytes) => {
                table.insert((range, client), frame(bytes).as_slice())?;
            }
            None => {
                table.remove((range, client))?;
            }
        }
        Ok(())
    }

    /// Removes every session of range `range`.
    pub fn clear_sessions(&self, range: u64) -> Result<(), StorageError> {
        let mut table = self.tx.open_table(SESSIONS)?;
        let clients: Vec<u64> = table
            .range((range, 0)..=(range, u64::MAX))?
            .map(|item| item.map(|(key, _)| key.value().1))
            .collect::<Result<_, _>>()?;
        for client in clients {
            table.remove((range, client))?;
        }
        Ok(())
    }

    /// Drops `bucket`'s data table and everything in it (the bucket was deleted).
    pub fn drop_bucket(&self, bucket: &str) -> Result<(), StorageError> {
        let name = data_table(bucket);
        self.tx.delete_table(definition(&name))?;
        Ok(())
    }

    /// Commits. With `durable` false the commit is atomic but not fsync'd: a crash returns the
    /// data to the last durable commit, which the ranges' logs replay forward.
    pub fn commit(mut self, durable: bool) -> Result<(), StorageError> {
        if durable {
            self.tx.set_quick_repair(true);
        } else {
            self.tx
                .set_durability(Durability::None)
                .expect("no persistent savepoints are used");
        }
        self.tx.commit()?;
        Ok(())
    }
}

impl RangeRead {
    /// The data table of `bucket`, `None` when nothing was ever written to it.
    pub fn data(&self, bucket: &str) -> Result<Option<Data>, StorageError> {
        let name = data_table(bucket);
        match self.tx.open_table(definition(&name)) {
            Ok(table) => Ok(Some(Data { table })),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Range `range`'s record, verified.
    pub fn meta(&self, range: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let table = self.tx.open_table(META)?;
        match table.get(range)? {
            Some(value) => Ok(Some(unframe(value.value(), "range record")?.to_vec())),
            None => Ok(None),
        }
    }

    /// Every range's record, by range id, verified.
    pub fn metas(&self) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        all_metas(&self.tx.open_table(META)?)
    }

    /// Range `range`'s sessions, by client, verified.
    pub fn sessions(&self, range: u64) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let table = self.tx.open_table(SESSIONS)?;
        let mut out = Vec::new();
        for item in table.range((range, 0)..=(range, u64::MAX))? {
            let (key, value) = item?;
            out.push((
                key.value().1,
                unframe(value.value(), "range session")?.to_vec(),
            ));
        }
        Ok(out)
    }

    /// The buckets that have a data table.
    pub fn buckets(&self) -> Result<Vec<String>, StorageError> {
        Ok(self
            .tx
            .list_tables()?
            .filter_map(|t| t.name().strip_prefix(DATA_PREFIX).map(str::to_owned))
            .collect())
    }
}

fn all_metas<T: ReadableTable<u64, &'static [u8]>>(
    table: &T,
) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
    let mut out = Vec::new();
    for item in table.iter()? {
        let (range, value) = item?;
        out.push((
            range.value(),
            unframe(value.value(), "range record")?.to_vec(),
        ));
    }
    Ok(out)
}

/// The first entry of `table` in `[from, to)`, its value verified.
fn first<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    from: &[u8],
    to: Option<&[u8]>,
) -> Result<Option<Entry>, StorageError> {
    let mut range = match to {
        Some(to) => table.range::<&[u8]>(from..to)?,
        None => table.range::<&[u8]>(from..)?,
    };
    match range.next() {
        Some(item) => {
            let (key, value) = item?;
            let value = unframe(value.value(), "range version")?.to_vec();
            Ok(Some((key.value().to_vec(), value)))
        }
        None => Ok(None),
    }
}

/// Visits `table`'s entries in `[from, to)`, values verified, until `visit` returns false.
fn scan<T: ReadableTable<&'static [u8], &'static [u8]>>(
    table: &T,
    from: &[u8],
    to: Option<&[u8]>,
    visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
) -> Result<(), StorageError> {
    let range = match to {
        Some(to) => table.range::<&[u8]>(from..to)?,
        None => table.range::<&[u8]>(from..)?,
    };
    for item in range {
        let (key, value) = item?;
        if !visit(key.value(), unframe(value.value(), "range version")?) {
            break;
        }
    }
    Ok(())
}

impl OrderedStore for DataMut<'_> {
    type Error = StorageError;

    fn first(&self, from: &[u8], to: Option<&[u8]>) -> Result<Option<Entry>, StorageError> {
        first(&self.table, from, to)
    }

    fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        scan(&self.table, from, to, visit)
    }
}

impl OrderedStoreMut for DataMut<'_> {
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.table.insert(key, frame(value).as_slice())?;
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), StorageError> {
        self.table.remove(key)?;
        Ok(())
    }
}

impl OrderedStore for Data {
    type Error = StorageError;

    fn first(&self, from: &[u8], to: Option<&[u8]>) -> Result<Option<Entry>, StorageError> {
        first(&self.table, from, to)
    }

    fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        scan(&self.table, from, to, visit)
    }
}
