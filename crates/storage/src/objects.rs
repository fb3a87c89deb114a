//! The objects of quorum buckets held by this member as a replica, in their own redb file: one
//! framed value per (bucket, key), each change committed durably (fsync'd) before it returns,
//! since a replica's acknowledgement counts toward a write quorum. The store does not interpret
//! the objects; the caller's closure turns the old bytes into the new ones inside one write
//! transaction, so concurrent read-modify-writes of one member never interleave.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::{StorageError, frame, unframe};

const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("quorum_objects");

/// The quorum-bucket objects of one member.
pub struct ObjectStore {
    db: Database,
}

/// The stored key of (bucket, key): the bucket's length (u16, big-endian), the bucket, the
/// key — unambiguous, and every bucket's keys are contiguous.
fn stored_key(bucket: &str, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + bucket.len() + key.len());
    out.extend_from_slice(&(bucket.len() as u16).to_be_bytes());
    out.extend_from_slice(bucket.as_bytes());
    out.extend_from_slice(key);
    out
}

impl ObjectStore {
    /// Opens or creates the object file at `path`.
    pub fn open(path: &Path) -> Result<ObjectStore, StorageError> {
        let db = Database::create(path).map_err(|source| StorageError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Self::with_db(db)
    }

    /// Opens an object store on a caller-provided backend (tests, the simulator's disk).
    pub fn open_with_backend(
        backend: impl redb::StorageBackend,
    ) -> Result<ObjectStore, StorageError> {
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(|source| StorageError::Open {
                path: "<backend>".into(),
                source,
            })?;
        Self::with_db(db)
    }

    fn with_db(db: Database) -> Result<ObjectStore, StorageError> {
        let tx = db.begin_write()?;
        tx.open_table(OBJECTS)?;
        tx.commit()?;
        Ok(ObjectStore { db })
    }

    /// Returns the object of (bucket, key), verified.
    pub fn get(&self, bucket: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OBJECTS)?;
        match table.get(stored_key(bucket, key).as_slice())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(unframe(bytes.value(), "quorum object")?.to_vec())),
        }
    }

    /// Replaces the object of (bucket, key) by what `change` makes of the current one (`None`
    /// when absent; returning `None` removes it) and commits durably. Returns what `change`
    /// returned. An error from `change` aborts the transaction and changes nothing.
    pub fn update<E: From<StorageError>>(
        &self,
        bucket: &str,
        key: &[u8],
        change: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, E>,
    ) -> Result<Option<Vec<u8>>, E> {
        let stored = stored_key(bucket, key);
        let tx = self.db.begin_write().map_err(StorageError::from)?;
        let new = {
            let mut table = tx.open_table(OBJECTS).map_err(StorageError::from)?;
            let old = match table.get(stored.as_slice()).map_err(StorageError::from)? {
                Some(bytes) => Some(unframe(bytes.value(), "quorum object")?.to_vec()),
                None => None,
            };
            let new = change(old.as_deref())?;
            match &new {
                Some(bytes) => {
                    table
                        .insert(stored.as_slice(), frame(bytes).as_slice())
                        .map_err(StorageError::from)?;
                }
                None => {
                    table
                        .remove(stored.as_slice())
                        .map_err(StorageError::from)?;
                }
            }
            new
        };
        tx.commit().map_err(StorageError::from)?;
        Ok(new)
    }

    /// Returns how many objects are stored.
    pub fn len(&self) -> Result<u64, StorageError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(OBJECTS)?.len()?)
    }

    /// Whether no object is stored.
    pub fn is_empty(&self) -> Result<bool, StorageError> {
        Ok(self.len()? == 0)
    }

    /// Calls `visit` with (key, object) of every object of `bucket`, verified, in key order.
    pub fn scan_bucket(
        &self,
        bucket: &str,
        mut visit: impl FnMut(&[u8], &[u8]),
    ) -> Result<(), StorageError> {
        let prefix = stored_key(bucket, b"");
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OBJECTS)?;
        for item in table.range(prefix.as_slice()..)? {
            let (key, value) = item?;
            let Some(user_key) = key.value().strip_prefix(prefix.as_slice()) else {
                break;
            };
            visit(user_key, unframe(value.value(), "quorum object")?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> ObjectStore {
        ObjectStore::open_with_backend(redb::backends::InMemoryBackend::new()).expect("open")
    }

    #[test]
    fn updates_read_modify_write_and_buckets_do_not_mix() {
        let store = store();
        let appended = |store: &ObjectStore, bucket: &str, key: &[u8], byte: u8| {
            store
                .update::<StorageError>(bucket, key, |old| {
                    let mut bytes = old.map(<[u8]>::to_vec).unwrap_or_default();
                    bytes.push(byte);
                    Ok(Some(bytes))
                })
                .expect("update")
        };
        appended(&store, "a", b"k", 1);
        assert_eq!(appended(&store, "a", b"k", 2), Some(vec![1, 2]));
        // ("a", "bk") and ("ab", "k") are different objects.
        appended(&store, "ab", b"k", 9);
        appended(&store, "a", b"bk", 7);
        assert_eq!(store.get("a", b"k").expect("get"), Some(vec![1, 2]));
        assert_eq!(store.get("ab", b"k").expect("get"), Some(vec![9]));
        let mut seen = Vec::new();
        store
            .scan_bucket("a", |k, v| seen.push((k.to_vec(), v.to_vec())))
            .expect("scan");
        assert_eq!(
            seen,
            vec![(b"bk".to_vec(), vec![7]), (b"k".to_vec(), vec![1, 2])]
        );
        // A failing change leaves the object as it was; None removes it.
        let failed = store.update("a", b"k", |_| {
            Err(StorageError::Corrupt {
                what: "test".into(),
                detail: "refused".into(),
            })
        });
        assert!(failed.is_err());
        assert_eq!(store.get("a", b"k").expect("get"), Some(vec![1, 2]));
        store
            .update::<StorageError>("a", b"k", |_| Ok(None))
            .expect("remove");
        assert_eq!(store.get("a", b"k").expect("get"), None);
        assert_eq!(store.len().expect("len"), 2);
    }
}
