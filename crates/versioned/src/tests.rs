//! The versioned keys against a model that keeps every accepted write, and the codec's order.

use base::HlcTimestamp;
use proptest::prelude::*;

use crate::{Version, VersionedMap, WriteTooOld, decode_key, encode_key};

fn ts(physical: u64) -> HlcTimestamp {
    HlcTimestamp {
        physical,
        logical: 0,
    }
}

#[test]
fn reads_see_the_newest_version_at_or_below_their_time() {
    let mut map = VersionedMap::new();
    map.put(b"k", ts(10), b"a".to_vec()).expect("put");
    map.put(b"k", ts(20), b"b".to_vec()).expect("put");
    map.delete(b"k", ts(30)).expect("delete");
    assert_eq!(map.get(b"k", ts(9)), None);
    let at = |t| map.get(b"k", ts(t)).and_then(|v| v.value);
    assert_eq!(at(10), Some(b"a".to_vec()));
    assert_eq!(at(19), Some(b"a".to_vec()));
    assert_eq!(at(25), Some(b"b".to_vec()));
    assert_eq!(at(30), None, "deleted");
    assert_eq!(
        map.put(b"k", ts(30), b"c".to_vec()),
        Err(WriteTooOld {
            attempted: ts(30),
            existing: ts(30)
        })
    );
    map.put(b"k", ts(31), b"c".to_vec())
        .expect("after the tombstone");
    assert_eq!(
        map.get(b"k", ts(40)),
        Some(Version {
            ts: ts(31),
            value: Some(b"c".to_vec())
        })
    );
}

#[test]
fn scans_see_each_key_once_at_their_time_in_order() {
    let mut map = VersionedMap::new();
    for (i, key) in [b"a", b"b", b"c", b"d"].iter().enumerate() {
        map.put(*key, ts(10 + i as u64), key.to_vec()).expect("put");
    }
    map.put(b"b", ts(50), b"b2".to_vec()).expect("put");
    map.delete(b"c", ts(50)).expect("delete");
    let keys = |t, limit| -> Vec<Vec<u8>> {
        map.scan(b"a", Some(b"d"), ts(t), limit)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    };
    assert_eq!(keys(11, 10), vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(
        keys(49, 10),
        vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
    );
    assert_eq!(keys(60, 10), vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(keys(60, 1), vec![b"a".to_vec()]);
    let b = map.scan(b"b", None, ts(60), 10);
    assert_eq!(b[0].1.value, Some(b"b2".to_vec()));
    assert_eq!(b.len(), 2, "b and d");
}

#[test]
fn gc_keeps_what_reads_at_the_threshold_see_and_refuses_writes_below_it() {
    let mut map = VersionedMap::new();
    map.put(b"k", ts(10), b"a".to_vec()).expect("put");
    map.put(b"k", ts(20), b"b".to_vec()).expect("put");
    map.put(b"k", ts(40), b"c".to_vec()).expect("put");
    map.put(b"gone", ts(10), b"x".to_vec()).expect("put");
    map.delete(b"gone", ts(15)).expect("delete");
    let before = map.bytes();
    assert_eq!(map.gc(ts(30)), 3, "k@10, gone@10 and its tombstone");
    assert_eq!(
        map.get(b"k", ts(30)).and_then(|v| v.value),
        Some(b"b".to_vec())
    );
    assert_eq!(
        map.get(b"k", ts(45)).and_then(|v| v.value),
        Some(b"c".to_vec())
    );
    assert_eq!(map.len(), 1);
    assert!(map.bytes() < before);
    assert_eq!(map.gc(ts(25)), 0, "the threshold never goes back");
    assert!(matches!(
        map.put(b"new", ts(30), b"y".to_vec()),
        Err(WriteTooOld { existing, .. }) if existing == ts(30)
    ));
}

#[test]
fn the_middle_key_halves_the_bytes_and_split_and_absorb_undo_each_other() {
    let mut map = VersionedMap::new();
    for i in 0..10u8 {
        map.put(&[b'a' + i], ts(1), vec![0; 99]).expect("put");
    }
    assert_eq!(map.middle_key(), Some(b"f".to_vec()));
    let whole = map.clone();
    let right = map.split_off(b"f");
    assert_eq!((map.len(), right.len()), (5, 5));
    assert_eq!(map.bytes() + right.bytes(), whole.bytes());
    assert_eq!(map.get(b"f", ts(2)), None);
    assert!(right.get(b"f", ts(2)).is_some());
    map.absorb(right);
    assert_eq!(map, whole);
    assert_eq!(VersionedMap::new().middle_key(), None);
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u64),
    Delete(u8, u64),
    Gc(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..6u8, 1..60u64).prop_map(|(k, t)| Op::Put(k, t)),
        2 => (0..6u8, 1..60u64).prop_map(|(k, t)| Op::Delete(k, t)),
        1 => (1..60u64).prop_map(Op::Gc),
    ]
}

/// Every accepted write, the model: a read at `t` is the newest accepted write at or below it.
fn model_get(writes: &[(u8, u64, Option<Vec<u8>>)], key: u8, at: u64) -> Option<Vec<u8>> {
    writes
        .iter()
        .filter(|(k, t, _)| *k == key && *t <= at)
        .max_by_key(|(_, t, _)| *t)
        .and_then(|(_, _, v)| v.clone())
}

proptest! {
    /// Goal: reads at or above the GC threshold agree with a model that never forgets, writes
    /// are refused exactly when too old, and the byte count stays the sum of what is kept.
    #[test]
    fn reads_agree_with_a_model_that_keeps_everything(ops in proptest::collection::vec(op(), 1..80)) {
        let mut map = VersionedMap::new();
        let mut writes: Vec<(u8, u64, Option<Vec<u8>>)> = Vec::new();
        let mut threshold = 0;
        for op in ops {
            match op {
                Op::Put(k, t) | Op::Delete(k, t) => {
                    let value = matches!(op, Op::Put(..)).then(|| vec![k; (t % 7) as usize]);
                    let newest = writes.iter().filter(|(key, _, _)| *key == k).map(|(_, t, _)| *t).max();
                    let too_old = t <= threshold || newest.is_some_and(|n| n >= t);
                    let result = match &value {
                        Some(v) => map.put(&[k], ts(t), v.clone()),
                        None => map.delete(&[k], ts(t)),
                    };
                    prop_assert_eq!(result.is_err(), too_old);
                    if result.is_ok() {
                        writes.push((k, t, value));
                    }
                }
                Op::Gc(t) => {
                    // The cheap check says exactly whether the GC would drop anything.
                    let predicted = map.would_gc(ts(t));
                    prop_assert_eq!(predicted, map.gc(ts(t)) > 0);
                    threshold = threshold.max(t);
                }
            }
            for key in 0..6u8 {
                for at in threshold..62 {
                    let got = map.get(&[key], ts(at)).and_then(|v| v.value);
                    prop_assert_eq!(got, model_get(&writes, key, at), "key {} at {}", key, at);
                }
            }
            prop_assert_eq!(map.bytes(), map.recount());
            let listed = map.versions().map(|(k, t, v)| (k.to_vec(), t, v.map(<[u8]>::to_vec)));
            let rebuilt = VersionedMap::from_versions(map.gc_threshold(), listed);
            prop_assert_eq!(rebuilt.as_ref(), Ok(&map), "a snapshot's versions rebuild the map");
            if let Some(middle) = map.middle_key() {
                let mut left = map.clone();
                let right = left.split_off(&middle);
                prop_assert!(!left.is_empty() && !right.is_empty());
                prop_assert_eq!(left.bytes() + right.bytes(), map.bytes());
            }
            let scanned: Vec<u8> = map.scan(b"", None, ts(61), 100).into_iter().map(|(k, _)| k[0]).collect();
            let expected: Vec<u8> = (0..6u8).filter(|&k| model_get(&writes, k, 61).is_some()).collect();
            prop_assert_eq!(scanned, expected);
        }
    }

    /// Goal: encoded keys sort as (key ascending, timestamp descending) and decode back.
    #[test]
    fn encoded_keys_sort_by_key_then_newest_first(
        a in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xff), any::<u8>()], 0..6),
        b in proptest::collection::vec(prop_oneof![Just(0u8), Just(1u8), Just(0xff), any::<u8>()], 0..6),
        ta in (any::<u64>(), any::<u32>()),
        tb in (any::<u64>(), any::<u32>()),
    ) {
        let ta = HlcTimestamp { physical: ta.0, logical: ta.1 };
        let tb = HlcTimestamp { physical: tb.0, logical: tb.1 };
        let (ea, eb) = (encode_key(&a, ta), encode_key(&b, tb));
        prop_assert_eq!(decode_key(&ea), Ok((a.clone(), ta)));
        let expected = a.cmp(&b).then(tb.cmp(&ta));
        prop_assert_eq!(ea.cmp(&eb), expected);
    }
}

#[test]
fn bytes_that_are_not_a_versioned_key_are_refused() {
    use crate::DecodeError;
    assert_eq!(decode_key(b"short"), Err(DecodeError::TooShort(5)));
    let mut bad = encode_key(b"a\x00b", ts(1));
    bad[2] = 0x07; // the escape after 0x00 is neither 0xff nor the terminator
    assert_eq!(decode_key(&bad), Err(DecodeError::BadEscape(1)));
    let mut missing = vec![b'x'; 14];
    missing[13] = 1;
    assert_eq!(decode_key(&missing), Err(DecodeError::NoTerminator));
}

#[test]
fn a_snapshot_listing_one_version_twice_is_refused() {
    // Goal: rebuilding from a list that names a key's version twice fails instead of keeping
    // one silently. Method: list the same (key, ts) twice.
    let twice = [
        (b"k".to_vec(), ts(3), Some(b"a".to_vec())),
        (b"k".to_vec(), ts(3), None),
    ];
    assert_eq!(
        VersionedMap::from_versions(HlcTimestamp::ZERO, twice),
        Err(crate::DuplicateVersion { ts: ts(3) })
    );
}
