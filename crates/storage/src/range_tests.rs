//! Tests of the range data file: versions kept by `versioned::stored` over a redb table read
//! back as over the in-memory reference, a range's data and record commit together, and a
//! crash returns both to the last durable commit, consistently.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use base::HlcTimestamp;
use proptest::prelude::*;
use versioned::{StoredVersions, StoredVersionsMut};

use crate::RangeStore;

fn ts(physical: u64) -> HlcTimestamp {
    HlcTimestamp {
        physical,
        logical: 0,
    }
}

/// A disk whose writes since the last sync a crash loses: `crash` returns the synced image.
#[derive(Debug, Clone, Default)]
struct LossyDisk {
    images: Arc<Mutex<(Vec<u8>, Vec<u8>)>>,
}

impl LossyDisk {
    /// A disk holding what this one had synced, as after a power cut.
    fn crash(&self) -> LossyDisk {
        let synced = self.images.lock().expect("disk lock").1.clone();
        LossyDisk {
            images: Arc::new(Mutex::new((synced.clone(), synced))),
        }
    }
}

impl redb::StorageBackend for LossyDisk {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.images.lock().expect("disk lock").0.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let images = self.images.lock().expect("disk lock");
        let start = offset as usize;
        out.copy_from_slice(&images.0[start..start + out.len()]);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.images
            .lock()
            .expect("disk lock")
            .0
            .resize(len as usize, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        let mut images = self.images.lock().expect("disk lock");
        images.1 = images.0.clone();
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut images = self.images.lock().expect("disk lock");
        let start = offset as usize;
        if images.0.len() < start + data.len() {
            images.0.resize(start + data.len(), 0);
        }
        images.0[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }
}

fn write_version(
    store: &RangeStore,
    bucket: &str,
    key: &[u8],
    at: u64,
    applied: u64,
    durable: bool,
) {
    let tx = store.write().expect("write");
    {
        let mut data = tx.data(bucket).expect("table");
        let mut range = StoredVersionsMut::new(&mut data, b"", None);
        range
            .write(key, ts(at), Some(b"v"), HlcTimestamp::ZERO)
            .expect("store")
            .expect("new version");
    }
    tx.set_meta(1, &applied.to_be_bytes()).expect("meta");
    tx.commit(durable).expect("commit");
}

fn applied(store: &RangeStore) -> Option<u64> {
    let record = store.read().expect("read").meta(1).expect("meta")?;
    Some(u64::from_be_bytes(record.try_into().expect("8 bytes")))
}

fn keys(store: &RangeStore, bucket: &str) -> Vec<Vec<u8>> {
    let read = store.read().expect("read");
    let Some(data) = read.data(bucket).expect("table") else {
        return Vec::new();
    };
    StoredVersions::new(&data, b"", None)
        .scan(b"", None, ts(u64::MAX >> 1), 1000, u64::MAX)
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

#[test]
fn a_crash_returns_data_and_record_to_the_last_durable_commit_together() {
    let disk = LossyDisk::default();
    let store = RangeStore::open_with_backend(disk.clone()).expect("open");
    write_version(&store, "b", b"k1", 1, 1, true);
    write_version(&store, "b", b"k2", 2, 2, false);
    write_version(&store, "b", b"k3", 3, 3, false);
    assert_eq!(applied(&store), Some(3));
    assert_eq!(keys(&store, "b").len(), 3);
    // The power goes while the store is open (dropping it would close it cleanly).
    let crashed = disk.crash();
    drop(store);

    let after = RangeStore::open_with_backend(crashed.clone()).expect("reopen");
    assert_eq!(
        applied(&after),
        Some(1),
        "the record of the last durable commit"
    );
    assert_eq!(
        keys(&after, "b"),
        vec![b"k1".to_vec()],
        "and exactly its data"
    );

    // `sync` makes the commits before it durable.
    write_version(&after, "b", b"k2", 2, 2, false);
    after.sync().expect("sync");
    write_version(&after, "b", b"k3", 3, 3, false);
    let crashed_again = crashed.crash();
    drop(after);
    let again = RangeStore::open_with_backend(crashed_again).expect("reopen");
    assert_eq!(applied(&again), Some(2));
    assert_eq!(keys(&again, "b"), vec![b"k1".to_vec(), b"k2".to_vec()]);
}

#[test]
fn a_dropped_transaction_changes_neither_data_nor_record() {
    let store =
        RangeStore::open_with_backend(redb::backends::InMemoryBackend::new()).expect("open");
    write_version(&store, "b", b"k1", 1, 1, false);
    {
        let tx = store.write().expect("write");
        let mut data = tx.data("b").expect("table");
        StoredVersionsMut::new(&mut data, b"", None)
            .write(b"k2", ts(2), Some(b"v"), HlcTimestamp::ZERO)
            .expect("store")
            .expect("new");
        drop(data);
        tx.set_meta(1, &2u64.to_be_bytes()).expect("meta");
        // Dropped, not committed (an apply that failed half way).
    }
    assert_eq!(applied(&store), Some(1));
    assert_eq!(keys(&store, "b"), vec![b"k1".to_vec()]);
}

#[test]
fn buckets_are_apart_and_a_dropped_bucket_is_gone() {
    let store =
        RangeStore::open_with_backend(redb::backends::InMemoryBackend::new()).expect("open");
    write_version(&store, "a", b"k", 1, 1, false);
    write_version(&store, "b", b"k", 1, 2, false);
    let read = store.read().expect("read");
    let mut buckets = read.buckets().expect("buckets");
    buckets.sort();
    assert_eq!(buckets, vec!["a".to_string(), "b".to_string()]);
    drop(read);
    let tx = store.write().expect("write");
    tx.drop_bucket("a").expect("drop");
    tx.commit(false).expect("commit");
    assert!(
        store
            .read()
            .expect("read")
            .data("a")
            .expect("table")
            .is_none()
    );
    assert_eq!(keys(&store, "b"), vec![b"k".to_vec()]);
    assert_eq!(store.read().expect("read").metas().expect("metas").len(), 1);
}

#[test]
fn a_corrupt_version_is_refused_not_served() {
    let store =
        RangeStore::open_with_backend(redb::backends::InMemoryBackend::new()).expect("open");
    let tx = store.write().expect("write");
    {
        // A raw entry whose frame does not match its bytes.
        let name = "data/b".to_string();
        let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(&name);
        let mut table = tx.tx.open_table(def).expect("table");
        let key = versioned::encode_key(b"k", ts(1));
        table
            .insert(key.as_slice(), &[0, 0, 0, 0, 1, b'v'][..])
            .expect("insert");
    }
    tx.commit(false).expect("commit");
    let read = store.read().expect("read");
    let data = read.data("b").expect("table").expect("exists");
    let got = StoredVersions::new(&data, b"", None).get(b"k", ts(5));
    assert!(
        matches!(got, Err(crate::StorageError::Corrupt { .. })),
        "{got:?}"
    );
}

#[derive(Clone, Debug)]
enum Op {
    Write(u8, u64, bool),
    Gc(u64),
    Clear(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..8u8, 1..50u64, any::<bool>()).prop_map(|(k, t, d)| Op::Write(k, t, d)),
        1 => (1..50u64).prop_map(Op::Gc),
        1 => (0..3u8).prop_map(Op::Clear),
    ]
}

/// The span of range `r` (three ranges cut the keys 0..8 at 3 and 6).
fn span(r: u8) -> (Vec<u8>, Option<Vec<u8>>) {
    match r {
        0 => (Vec::new(), Some(vec![3])),
        1 => (vec![3], Some(vec![6])),
        _ => (vec![6], None),
    }
}

proptest! {
    /// Goal: versions kept in a redb table behave exactly as in the in-memory store, range by
    /// range (writes, refusals, GC, a range's removal), whatever the commits' durability.
    #[test]
    fn redb_data_tables_behave_as_the_in_memory_store(ops in proptest::collection::vec(op(), 1..40)) {
        let store = RangeStore::open_with_backend(redb::backends::InMemoryBackend::new()).expect("open");
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let mut gc = HlcTimestamp::ZERO;
        for op in ops {
            let tx = store.write().expect("write");
            let mut data = tx.data("b").expect("table");
            let durable = matches!(op, Op::Write(_, _, true));
            match op {
                Op::Write(k, t, _) => {
                    let (start, end) = span(k / 3);
                    let value = (t % 3 != 0).then(|| vec![k; t as usize % 5]);
                    let got = StoredVersionsMut::new(&mut data, &start, end.as_deref())
                        .write(&[k], ts(t), value.as_deref(), gc).expect("store");
                    let expected = StoredVersionsMut::new(&mut model, &start, end.as_deref())
                        .write(&[k], ts(t), value.as_deref(), gc).expect("model");
                    prop_assert_eq!(got, expected);
                }
                Op::Gc(t) => {
                    let got = StoredVersionsMut::new(&mut data, b"", None).gc(gc, ts(t)).expect("store");
                    let expected = StoredVersionsMut::new(&mut model, b"", None).gc(gc, ts(t)).expect("model");
                    prop_assert_eq!(got, expected);
                    gc = gc.max(ts(t));
                }
                Op::Clear(r) => {
                    let (start, end) = span(r);
                    let got = StoredVersionsMut::new(&mut data, &start, end.as_deref()).clear().expect("store");
                    let expected = StoredVersionsMut::new(&mut model, &start, end.as_deref()).clear().expect("model");
                    prop_assert_eq!(got, expected);
                }
            }
            drop(data);
            tx.commit(durable).expect("commit");
            let read = store.read().expect("read");
            let data = read.data("b").expect("table").expect("exists");
            for r in 0..3 {
                let (start, end) = span(r);
                let got = StoredVersions::new(&data, &start, end.as_deref()).scan(b"", None, ts(60), 100, u64::MAX).expect("store");
                let expected = StoredVersions::new(&model, &start, end.as_deref()).scan(b"", None, ts(60), 100, u64::MAX).expect("model");
                prop_assert_eq!(got, expected);
            }
            let mut listed = Vec::new();
            StoredVersions::new(&data, b"", None).versions(&mut |k, t, v| {
                listed.push((k, t, v.map(<[u8]>::to_vec)));
                true
            }).expect("store");
            let mut expected = Vec::new();
            StoredVersions::new(&model, b"", None).versions(&mut |k, t, v| {
                expected.push((k, t, v.map(<[u8]>::to_vec)));
                true
            }).expect("model");
            prop_assert_eq!(listed, expected);
        }
    }
}
