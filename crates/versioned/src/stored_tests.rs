//! The stored versions against `VersionedMap`, the rules' reference: the same operations on
//! both give the same answers, byte counts and GC, and a range's span neither reads nor
//! touches its neighbours' entries in the same store.

use std::collections::BTreeMap;

use base::HlcTimestamp;
use proptest::prelude::*;

use crate::VersionedMap;
use crate::stored::{StoredVersions, StoredVersionsMut, gc_drops};

fn ts(physical: u64) -> HlcTimestamp {
    HlcTimestamp {
        physical,
        logical: 0,
    }
}

type Store = BTreeMap<Vec<u8>, Vec<u8>>;

/// The span the tests' range covers: keys from "a" up to, not including, [0xff].
const START: &[u8] = b"a";
const END: &[u8] = &[0xff];

#[test]
fn gc_drops_what_versioned_map_drops() {
    // Newest first: a value above, the visible one, two older.
    let shape = [
        (ts(40), false),
        (ts(20), false),
        (ts(10), true),
        (ts(5), false),
    ];
    assert_eq!(gc_drops(&shape, ts(30)), vec![2, 3]);
    assert_eq!(
        gc_drops(&shape, ts(10)),
        vec![2, 3],
        "a visible tombstone goes too"
    );
    assert_eq!(gc_drops(&shape, ts(4)), Vec::<usize>::new());
}

#[test]
fn a_key_s_versions_are_its_own_not_a_longer_key_s() {
    let mut store = Store::new();
    let mut range = StoredVersionsMut::new(&mut store, b"", None);
    let gc = HlcTimestamp::ZERO;
    for (key, at) in [
        (&b"a"[..], 1),
        (b"a\0", 2),
        (b"a\x01", 3),
        (b"ab", 4),
        (b"a\xff", 5),
    ] {
        range
            .write(key, ts(at), Some(key), gc)
            .expect("store")
            .expect("new");
    }
    for (key, at) in [
        (&b"a"[..], 1),
        (b"a\0", 2),
        (b"a\x01", 3),
        (b"ab", 4),
        (b"a\xff", 5),
    ] {
        assert_eq!(range.newest(key).expect("store"), Some(ts(at)), "{key:?}");
        let got = range.get(key, ts(9)).expect("store").and_then(|v| v.value);
        assert_eq!(got.as_deref(), Some(key));
    }
    let keys: Vec<Vec<u8>> = range
        .scan(b"", None, ts(9), 100, u64::MAX)
        .expect("store")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        vec![
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"a\x01".to_vec(),
            b"ab".to_vec(),
            b"a\xff".to_vec()
        ]
    );
}

#[test]
fn a_scan_stops_at_the_byte_bound_after_the_entry_that_reaches_it() {
    let mut store = Store::new();
    let mut range = StoredVersionsMut::new(&mut store, b"", None);
    for key in [b"a", b"b", b"c"] {
        range
            .write(key, ts(1), Some(&[0; 9]), HlcTimestamp::ZERO)
            .expect("store")
            .expect("new");
    }
    let got = range.scan(b"", None, ts(1), 100, 15).expect("store");
    assert_eq!(got.len(), 2, "10 bytes, then 20 reach 15");
}

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, u64),
    Delete(Vec<u8>, u64),
    Gc(u64),
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![Just(0u8), Just(1u8), Just(b'a'), Just(b'b'), Just(0xfe)],
        1..4,
    )
    .prop_map(|mut k| {
        k[0] = if k[0] == 0 || k[0] == 1 { b'a' } else { k[0] };
        k
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (key(), 1..60u64).prop_map(|(k, t)| Op::Put(k, t)),
        2 => (key(), 1..60u64).prop_map(|(k, t)| Op::Delete(k, t)),
        1 => (1..60u64).prop_map(Op::Gc),
    ]
}

/// Entries of neighbouring ranges, which the range's operations must leave alone.
fn neighbours(store: &mut Store) -> Store {
    let mut before = StoredVersionsMut::new(store, b"", Some(START));
    for key in [&b""[..], b"\0", b"Z", b"`\xff"] {
        before
            .write(key, ts(7), Some(b"left"), HlcTimestamp::ZERO)
            .expect("store")
            .expect("new");
    }
    let mut after = StoredVersionsMut::new(store, END, None);
    for key in [END, &[0xff, 0][..], &[0xff, 0xff]] {
        after
            .write(key, ts(7), Some(b"right"), HlcTimestamp::ZERO)
            .expect("store")
            .expect("new");
    }
    store.clone()
}

fn outside(store: &Store) -> Store {
    let (from, to) = crate::stored::span_bounds(START, Some(END));
    store
        .iter()
        .filter(|(k, _)| **k < from || **k >= to.clone().expect("bounded"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

proptest! {
    /// Goal: stored versions keep `VersionedMap`'s rules exactly (reads, refusals, GC, bytes,
    /// the split point, the snapshot listing), and stay inside their span.
    #[test]
    fn stored_versions_agree_with_the_versioned_map(ops in proptest::collection::vec(op(), 1..60)) {
        let mut map = VersionedMap::new();
        let mut store = Store::new();
        let others = neighbours(&mut store);
        let mut bytes = 0u64;
        let mut gc = HlcTimestamp::ZERO;
        let mut keys: Vec<Vec<u8>> = Vec::new();
        for op in ops {
            let mut range = StoredVersionsMut::new(&mut store, START, Some(END));
            match &op {
                Op::Put(k, t) | Op::Delete(k, t) => {
                    let value = matches!(op, Op::Put(..)).then(|| vec![k[0]; (*t % 7) as usize]);
                    let expected = match &value {
                        Some(v) => map.put(k, ts(*t), v.clone()),
                        None => map.delete(k, ts(*t)),
                    };
                    let got = range.write(k, ts(*t), value.as_deref(), gc).expect("store");
                    prop_assert_eq!(got.as_ref().err(), expected.as_ref().err());
                    if let Ok(added) = got {
                        bytes += added;
                    }
                    if !keys.contains(k) {
                        keys.push(k.clone());
                    }
                }
                Op::Gc(t) => {
                    prop_assert_eq!(range.would_gc(gc, ts(*t)).expect("store"), map.would_gc(ts(*t)));
                    let before = map.bytes();
                    let dropped = map.gc(ts(*t));
                    let (got, freed) = range.gc(gc, ts(*t)).expect("store");
                    prop_assert_eq!(got, dropped);
                    prop_assert_eq!(freed, before - map.bytes());
                    bytes -= freed;
                    gc = gc.max(ts(*t));
                }
            }
            let view = StoredVersions::new(&store, START, Some(END));
            prop_assert_eq!(bytes, map.bytes());
            prop_assert_eq!(view.bytes().expect("store"), map.bytes());
            prop_assert_eq!(view.middle_key(bytes).expect("store"), map.middle_key());
            for k in &keys {
                prop_assert_eq!(view.newest(k).expect("store"), map.newest(k));
                for at in [1, 10, 30, 59, 61] {
                    prop_assert_eq!(view.get(k, ts(at)).expect("store"), map.get(k, ts(at)));
                }
            }
            for (at, limit) in [(61, 100), (30, 3), (10, 1)] {
                let got = view.scan(b"", None, ts(at), limit, u64::MAX).expect("store");
                prop_assert_eq!(got, map.scan(b"", None, ts(at), limit));
                let got = view.scan(b"ab", Some(b"b\x01"), ts(at), limit, u64::MAX).expect("store");
                prop_assert_eq!(got, map.scan(b"ab", Some(b"b\x01"), ts(at), limit));
            }
            let mut listed = Vec::new();
            view.versions(&mut |k, t, v| {
                listed.push((k, t, v.map(<[u8]>::to_vec)));
                true
            }).expect("store");
            let expected: Vec<_> = map.versions().map(|(k, t, v)| (k.to_vec(), t, v.map(<[u8]>::to_vec))).collect();
            prop_assert_eq!(listed, expected);
            prop_assert_eq!(outside(&store), others.clone(), "the neighbours' entries are untouched");
        }
        let mut range = StoredVersionsMut::new(&mut store, START, Some(END));
        range.clear().expect("store");
        prop_assert_eq!(store, others);
    }
}
