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
/// Small named values of the quorum path itself (for example the dot counter floor of reaped
/// tombstones), keyed by name.
const META: TableDefinition<&[u8], &[u8]> = TableDefinition::new("quorum_meta");

/// One hint as stored: for which member, which object, and its bytes (unframed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hint {
    pub target: u64,
    pub bucket: String,
    pub key: Vec<u8>,
    pub object: Vec<u8>,
}

/// One object as a scan returns it: its bucket, key and bytes (unframed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
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

/// Which stored value a change applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    /// This member's replica of (bucket, key).
    Object { bucket: String, key: Vec<u8> },
    /// The hint held for member `target` of (bucket, key).
    Hint {
        target: u64,
        bucket: String,
        key: Vec<u8>,
    },
    /// A named value of the quorum path's own bookkeeping.
    Meta { name: &'static str },
}

/// A change of one stored value: from the current bytes (None: absent) to the new ones
/// (None: remove), or a refusal that leaves the value as it is.
pub type Change = Box<dyn FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, String> + Send>;

/// What one change of a batch did: the stored size before and the bytes after, or why it
/// was refused.
pub type ChangeOutcome = Result<(u64, Option<Vec<u8>>), String>;

/// The refusal of [`remove_if_unchanged`] when the value changed since it was read.
pub const CHANGED_SINCE_READ: &str = "changed since it was read";

/// A change that removes a value only while it still holds `expected`: a delivered hint that
/// was merged with a newer write meanwhile stays for the next delivery.
pub fn remove_if_unchanged(expected: Vec<u8>) -> Change {
    Box::new(move |old| match old {
        Some(old) if old == expected.as_slice() => Ok(None),
        _ => Err(CHANGED_SINCE_READ.to_owned()),
    })
}

impl Hint {
    /// Where this hint is stored.
    pub fn slot(&self) -> Slot {
        Slot::Hint {
            target: self.target,
            bucket: self.bucket.clone(),
            key: self.key.clone(),
        }
    }
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
        let db = crate::open_file(path)?;
        Self::with_db(db)
    }

    /// Opens an object store on a caller-provided backend (tests, the simulator's disk).
    pub fn open_with_backend(
        backend: impl redb::StorageBackend,
    ) -> Result<ObjectStore, StorageError> {
        let db = crate::open_backend(backend)?;
        Self::with_db(db)
    }

    fn with_db(db: Database) -> Result<ObjectStore, StorageError> {
        let tx = db.begin_write()?;
        tx.open_table(OBJECTS)?;
        tx.open_table(HINTS)?;
        tx.open_table(META)?;
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

    /// Applies a batch of changes in one durable transaction (one fsync for all: the group
    /// commit of the quorum write path). Each change sees the ones before it in the batch. A
    /// refused change leaves its value alone and does not affect the others; a storage error
    /// fails the whole batch (nothing of it is durable).
    pub fn write_changes(
        &self,
        changes: Vec<(Slot, Change)>,
    ) -> Result<Vec<ChangeOutcome>, StorageError> {
        let tx = self.db.begin_write()?;
        let mut outcomes = Vec::with_capacity(changes.len());
        {
            let mut objects = tx.open_table(OBJECTS)?;
            let mut hints = tx.open_table(HINTS)?;
            let mut meta = tx.open_table(META)?;
            for (slot, change) in changes {
                let (table, stored, what) = match &slot {
                    Slot::Object { bucket, key } => {
                        (&mut objects, stored_key(bucket, key), "quorum object")
                    }
                    Slot::Hint {
                        target,
                        bucket,
                        key,
                    } => (&mut hints, hint_key(*target, bucket, key), "quorum hint"),
                    Slot::Meta { name } => (&mut meta, name.as_bytes().to_vec(), "quorum meta"),
                };
                // A corrupt value refuses its own change only, not the batch.
                let old = match table.get(stored.as_slice())? {
                    Some(bytes) => match unframe(bytes.value(), what) {
                        Ok(payload) => Some(payload.to_vec()),
                        Err(error) => {
                            outcomes.push(Err(error.to_string()));
                            continue;
                        }
                    },
                    None => None,
                };
                let old_len = old.as_ref().map_or(0, |o| o.len() as u64);
                match change(old.as_deref()) {
                    Ok(Some(new)) => {
                        table.insert(stored.as_slice(), frame(&new).as_slice())?;
                        outcomes.push(Ok((old_len, Some(new))));
                    }
                    Ok(None) => {
                        table.remove(stored.as_slice())?;
                        outcomes.push(Ok((old_len, None)));
                    }
                    Err(refusal) => outcomes.push(Err(refusal)),
                }
            }
        }
        tx.commit()?;
        Ok(outcomes)
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

    /// Returns the named bookkeeping value `name`, verified.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(META)?;
        match table.get(name.as_bytes())? {
            None => Ok(None),
            Some(bytes) => Ok(Some(unframe(bytes.value(), "quorum meta")?.to_vec())),
        }
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

    /// Returns up to `limit` objects stored after (bucket, key) (`None`: from the first), in
    /// stored order, verified: the pages of a full scan that never holds one read transaction
    /// for long.
    pub fn objects_after(
        &self,
        after: Option<(&str, &[u8])>,
        limit: usize,
    ) -> Result<Vec<StoredObject>, StorageError> {
        use std::ops::Bound;
        let start = after.map(|(bucket, key)| stored_key(bucket, key));
        let lower = match &start {
            Some(start) => Bound::Excluded(start.as_slice()),
            None => Bound::Unbounded,
        };
        let tx = self.db.begin_read()?;
        let table = tx.open_table(OBJECTS)?;
        let mut page = Vec::new();
        for item in table.range::<&[u8]>((lower, Bound::Unbounded))? {
            if page.len() >= limit {
                break;
            }
            let (stored, value) = item?;
            let (bucket, key) = split_stored_key(stored.value())?;
            page.push(StoredObject {
                bucket,
                key,
                object: unframe(value.value(), "quorum object")?.to_vec(),
            });
        }
        Ok(page)
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

    /// Applies one change alone.
    fn change(store: &ObjectStore, slot: Slot, change: Change) -> ChangeOutcome {
        store
            .write_changes(vec![(slot, change)])
            .expect("batch")
            .remove(0)
    }

    fn object(bucket: &str, key: &[u8]) -> Slot {
        Slot::Object {
            bucket: bucket.into(),
            key: key.to_vec(),
        }
    }

    #[test]
    fn a_paged_scan_visits_every_object_once_across_buckets() {
        // Goal: pages of `objects_after` cover the store exactly. Method: 25 objects in two
        // buckets read back in pages of 4 (a hint or a meta value is no object: left out).
        let store = store();
        for i in 0..25u8 {
            let bucket = if i % 2 == 0 { "a" } else { "bb" };
            change(
                &store,
                object(bucket, &[i]),
                Box::new(move |_| Ok(Some(vec![i]))),
            )
            .expect("stored");
        }
        let hint = Slot::Hint {
            target: 7,
            bucket: "a".into(),
            key: vec![99],
        };
        change(&store, hint, Box::new(|_| Ok(Some(vec![1])))).expect("hint stored");
        let floor = Slot::Meta { name: "floor" };
        change(&store, floor, Box::new(|_| Ok(Some(vec![7])))).expect("meta stored");
        assert_eq!(store.meta("floor").expect("meta"), Some(vec![7]));
        assert_eq!(store.meta("other").expect("meta"), None);
        let mut seen = Vec::new();
        let mut cursor: Option<(String, Vec<u8>)> = None;
        loop {
            let after = cursor.as_ref().map(|(b, k)| (b.as_str(), k.as_slice()));
            let page = store.objects_after(after, 4).expect("page");
            assert!(page.len() <= 4);
            let Some(last) = page.last() else { break };
            cursor = Some((last.bucket.clone(), last.key.clone()));
            for object in page {
                assert_eq!(object.object, object.key, "{object:?}");
                seen.push((object.bucket, object.key[0]));
            }
        }
        let mut expected: Vec<(String, u8)> = (0..25u8)
            .map(|i| ((if i % 2 == 0 { "a" } else { "bb" }).to_owned(), i))
            .collect();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn changes_read_modify_write_and_buckets_do_not_mix() {
        let store = store();
        let append = |byte: u8| -> Change {
            Box::new(move |old| {
                let mut bytes = old.map(<[u8]>::to_vec).unwrap_or_default();
                bytes.push(byte);
                Ok(Some(bytes))
            })
        };
        change(&store, object("a", b"k"), append(1)).expect("append");
        let appended = change(&store, object("a", b"k"), append(2)).expect("append");
        assert_eq!(appended, (1, Some(vec![1, 2])));
        // ("a", "bk") and ("ab", "k") are different objects.
        change(&store, object("ab", b"k"), append(9)).expect("append");
        change(&store, object("a", b"bk"), append(7)).expect("append");
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
        // None removes.
        change(&store, object("a", b"k"), Box::new(|_| Ok(None))).expect("remove");
        assert_eq!(store.get("a", b"k").expect("get"), None);
        assert_eq!(store.len().expect("len"), 2);
    }

    #[test]
    fn a_batch_applies_in_order_and_a_refused_change_spares_the_others() {
        let store = store();
        let set = |bytes: &'static [u8]| -> Change { Box::new(move |_| Ok(Some(bytes.to_vec()))) };
        let object = |key: &[u8]| Slot::Object {
            bucket: "b".into(),
            key: key.to_vec(),
        };
        let appended: Change = Box::new(|old| {
            let mut bytes = old.map(<[u8]>::to_vec).unwrap_or_default();
            bytes.push(b'!');
            Ok(Some(bytes))
        });
        let outcomes = store
            .write_changes(vec![
                (object(b"k"), set(b"one")),
                (object(b"k"), appended),
                (object(b"x"), Box::new(|_| Err("refused".to_owned()))),
                (
                    Slot::Hint {
                        target: 3,
                        bucket: "b".into(),
                        key: b"k".to_vec(),
                    },
                    set(b"h"),
                ),
            ])
            .expect("batch");
        assert_eq!(
            outcomes[1],
            Ok((3, Some(b"one!".to_vec()))),
            "sees the earlier change"
        );
        assert_eq!(outcomes[2], Err("refused".to_owned()));
        assert_eq!(store.get("b", b"k").expect("get"), Some(b"one!".to_vec()));
        assert_eq!(store.get("b", b"x").expect("get"), None);
        assert_eq!(
            store.hints_for(3, 10).expect("hints")[0].object,
            b"h".to_vec()
        );
    }

    #[test]
    fn hints_are_kept_per_target_and_removed_only_as_delivered() {
        let store = store();
        let put = |target: u64, key: &[u8], bytes: &[u8]| {
            let bytes = bytes.to_vec();
            let slot = Slot::Hint {
                target,
                bucket: "b".into(),
                key: key.to_vec(),
            };
            let (old, new) =
                change(&store, slot, Box::new(move |_| Ok(Some(bytes)))).expect("hint");
            (old, new.map_or(0, |n| n.len() as u64))
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
        let kept = change(
            &store,
            stale.slot(),
            remove_if_unchanged(stale.object.clone()),
        );
        assert_eq!(kept, Err(CHANGED_SINCE_READ.to_owned()));
        let fresh = store.hints_for(7, 1).expect("hints").remove(0);
        let removed = change(
            &store,
            fresh.slot(),
            remove_if_unchanged(fresh.object.clone()),
        );
        assert_eq!(removed, Ok((5, None)));
        assert_eq!(store.hints_for(7, 10).expect("hints").len(), 1);
        assert!(
            store.get("b", b"k1").expect("get").is_none(),
            "hints are not data"
        );
    }
}
