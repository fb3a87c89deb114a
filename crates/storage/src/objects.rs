//! The objects of quorum buckets held by this member as a replica, in their own redb file: one
//! framed value per (bucket, key), each change committed durably (fsync'd) before it returns,
//! since a replica's acknowledgement counts toward a write quorum. Hints — objects held for
//! another member that was unreachable — live in a second table keyed by (target member,
//! bucket, key), also durable. The store does not interpret
//! the objects; the caller's closure turns the old bytes into the new ones inside one write
//! transaction, so concurrent read-modify-writes of one member never interleave.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::{StorageError, frame, unframe};

const OBJECTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("quorum_objects");
const HINTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("quorum_hints");

/// One hint as stored: for which member, which object, and its bytes (unframed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    pub target: u64,
    pub bucket: String,
    pub key: Vec<u8>,
    pub object: Vec<u8>,
}

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

/// Splits a stored key back into (bucket, key).
fn split_stored_key(stored: &[u8]) -> Result<(String, Vec<u8>), StorageError> {
    let corrupt = |detail: &str| StorageError::Corrupt {
        what: "quorum key".into(),
        detail: detail.into(),
    };
    let length: [u8; 2] = stored
        .get(..2)
        .ok_or_else(|| corrupt("truncated"))?
        .try_into()
        .expect("2 bytes");
    let end = 2 + u16::from_be_bytes(length) as usize;
    let bucket = stored
        .get(2..end)
        .ok_or_else(|| corrupt("truncated bucket"))?;
    let bucket = String::from_utf8(bucket.to_vec()).map_err(|_| corrupt("bucket not UTF-8"))?;
    Ok((bucket, stored[end..].to_vec()))
}

fn hint_key(target: u64, bucket: &str, key: &[u8]) -> Vec<u8> {
    let mut out = target.to_be_bytes().to_vec();
    out.extend_from_slice(&stored_key(bucket, key));
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
        tx.open_table(HINTS)?;
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

    /// Replaces the hint of (target, bucket, key) by what `change` makes of the current one
    /// and commits durably. Returns the stored size before and after (bytes of object), for
    /// the caller's accounting.
    pub fn update_hint<E: From<StorageError>>(
        &self,
        target: u64,
        bucket: &str,
        key: &[u8],
        change: impl FnOnce(Option<&[u8]>) -> Result<Vec<u8>, E>,
    ) -> Result<(u64, u64), E> {
        let stored = hint_key(target, bucket, key);
        let tx = self.db.begin_write().map_err(StorageError::from)?;
        let sizes = {
            let mut table = tx.open_table(HINTS).map_err(StorageError::from)?;
            let old = match table.get(stored.as_slice()).map_err(StorageError::from)? {
                Some(bytes) => Some(unframe(bytes.value(), "quorum hint")?.to_vec()),
                None => None,
            };
            let new = change(old.as_deref())?;
            table
                .insert(stored.as_slice(), frame(&new).as_slice())
                .map_err(StorageError::from)?;
            (old.map_or(0, |o| o.len() as u64), new.len() as u64)
        };
        tx.commit().map_err(StorageError::from)?;
        Ok(sizes)
    }

    /// Up to `limit` hints held for `target`, verified, in key order.
    pub fn hints_for(&self, target: u64, limit: usize) -> Result<Vec<Hint>, StorageError> {
        let prefix = target.to_be_bytes();
        let tx = self.db.begin_read()?;
        let table = tx.open_table(HINTS)?;
        let mut hints = Vec::new();
        for item in table.range(prefix.as_slice()..)? {
            let (stored, value) = item?;
            let Some(rest) = stored.value().strip_prefix(prefix.as_slice()) else {
                break;
            };
            if hints.len() == limit {
                break;
            }
            let (bucket, key) = split_stored_key(rest)?;
            hints.push(Hint {
                target,
                bucket,
                key,
                object: unframe(value.value(), "quorum hint")?.to_vec(),
            });
        }
        Ok(hints)
    }

    /// Removes a delivered hint if it still holds `delivered` (a hint merged with a newer write
    /// meanwhile stays for the next round). Returns whether it was removed.
    pub fn remove_hint(&self, hint: &Hint) -> Result<bool, StorageError> {
        let stored = hint_key(hint.target, &hint.bucket, &hint.key);
        let tx = self.db.begin_write()?;
        let removed = {
            let mut table = tx.open_table(HINTS)?;
            let same = match table.get(stored.as_slice())? {
                Some(bytes) => unframe(bytes.value(), "quorum hint")? == hint.object.as_slice(),
                None => false,
            };
            if same {
                table.remove(stored.as_slice())?;
            }
            same
        };
        tx.commit()?;
        Ok(removed)
    }

    /// Bytes of hints held for each target member.
    pub fn hint_bytes(&self) -> Result<std::collections::BTreeMap<u64, u64>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(HINTS)?;
        let mut bytes = std::collections::BTreeMap::new();
        for item in table.iter()? {
            let (stored, value) = item?;
            let target: [u8; 8] = stored
                .value()
                .get(..8)
                .ok_or_else(|| StorageError::Corrupt {
                    what: "quorum hint key".into(),
                    detail: "truncated".into(),
                })?
                .try_into()
                .expect("8 bytes");
            let object = unframe(value.value(), "quorum hint")?;
            *bytes.entry(u64::from_be_bytes(target)).or_insert(0) += object.len() as u64;
        }
        Ok(bytes)
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

    #[test]
    fn hints_are_kept_per_target_and_removed_only_as_delivered() {
        let store = store();
        let put = |target: u64, key: &[u8], bytes: &[u8]| {
            store
                .update_hint::<StorageError>(target, "b", key, |_| Ok(bytes.to_vec()))
                .expect("hint")
        };
        assert_eq!(put(7, b"k1", b"abc"), (0, 3));
        assert_eq!(put(7, b"k1", b"abcd"), (3, 4));
        put(7, b"k2", b"xy");
        put(9, b"k1", b"z");
        let hints = store.hints_for(7, 10).expect("hints");
        assert_eq!(hints.len(), 2);
        assert_eq!(hints[0].key, b"k1");
        assert_eq!(hints[0].bucket, "b");
        assert_eq!(store.hints_for(7, 1).expect("hints").len(), 1);
        let bytes = store.hint_bytes().expect("bytes");
        assert_eq!(bytes.get(&7), Some(&6));
        assert_eq!(bytes.get(&9), Some(&1));
        // A hint rewritten since it was read is not removed.
        let stale = hints[0].clone();
        put(7, b"k1", b"newer");
        assert!(!store.remove_hint(&stale).expect("remove"));
        let fresh = store.hints_for(7, 1).expect("hints").remove(0);
        assert!(store.remove_hint(&fresh).expect("remove"));
        assert_eq!(store.hints_for(7, 10).expect("hints").len(), 1);
        assert!(
            store.get("b", b"k1").expect("get").is_none(),
            "hints are not data"
        );
    }
}
