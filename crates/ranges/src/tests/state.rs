//! A range replica's state: keys outside its span are refused with its descriptor, scans stop
//! at its end and say where to go on, splits and merges move versions; and a property test
//! that a bucket whose ranges split and merge under writes scans, range by range, exactly as
//! one unsplit store would.

use std::collections::BTreeMap;

use base::{HlcTimestamp, NodeId};
use proptest::prelude::*;
use versioned::VersionedMap;

use crate::descriptor::{RangeDescriptor, RangeId, RangeMap};
use crate::memory::MemStore;
use crate::state::{RangeOpError, RangeState, ScanPart};

/// A range's record with its own store: one replica, as the rules see it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mem {
    state: RangeState,
    store: MemStore,
}

impl Mem {
    fn new(descriptor: RangeDescriptor) -> Mem {
        Mem {
            state: RangeState::new(descriptor),
            store: MemStore::new(),
        }
    }

    fn put(&mut self, key: &[u8], at: HlcTimestamp, value: Vec<u8>) -> Result<(), RangeOpError> {
        self.state
            .put(&mut self.store, key, at, &value)
            .expect("memory")
    }

    fn delete(&mut self, key: &[u8], at: HlcTimestamp) -> Result<(), RangeOpError> {
        self.state.delete(&mut self.store, key, at).expect("memory")
    }

    fn get(
        &self,
        key: &[u8],
        at: HlcTimestamp,
    ) -> Result<Option<versioned::Version>, RangeOpError> {
        self.state.get(&self.store, key, at).expect("memory")
    }

    fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        at: HlcTimestamp,
        limit: usize,
    ) -> Result<ScanPart, RangeOpError> {
        self.state
            .scan(&self.store, from, to, at, limit)
            .expect("memory")
    }

    fn scan_bounded(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        at: HlcTimestamp,
        limit: usize,
        max: u64,
    ) -> Result<ScanPart, RangeOpError> {
        self.state
            .scan_bounded(&self.store, from, to, at, limit, max)
            .expect("memory")
    }

    fn gc(&mut self, threshold: HlcTimestamp) -> Result<usize, RangeOpError> {
        self.state.gc(&mut self.store, threshold).expect("memory")
    }

    fn freeze(&mut self, generation: u64, into: RangeId) -> Result<(), RangeOpError> {
        self.state.freeze(generation, into)
    }

    /// The split applied here: the right half's replica on this member reads the same store.
    fn split(
        &mut self,
        left: RangeDescriptor,
        right: RangeDescriptor,
    ) -> Result<Mem, RangeOpError> {
        let right = self
            .state
            .split(&self.store, left, right)
            .expect("memory")?;
        Ok(Mem {
            state: right,
            store: self.store.clone(),
        })
    }

    fn merge(&mut self, merged: RangeDescriptor, right: Mem) -> Result<(), RangeOpError> {
        let versions = right.state.list(&right.store).expect("memory");
        self.state
            .merge(&mut self.store, merged, &right.state, &versions)
            .expect("memory")
    }

    fn bytes(&self) -> u64 {
        self.state.bytes()
    }

    fn descriptor(&self) -> &RangeDescriptor {
        self.state.descriptor()
    }

    fn merging_into(&self) -> Option<RangeId> {
        self.state.merging_into()
    }
}

fn ts(physical: u64) -> HlcTimestamp {
    HlcTimestamp {
        physical,
        logical: 0,
    }
}

fn bucket() -> (RangeMap, Mem) {
    let map = RangeMap::new(RangeId(1), &[NodeId(1), NodeId(2), NodeId(3)]);
    let state = Mem::new(map.lookup(b"").clone());
    (map, state)
}

#[test]
fn after_a_split_each_half_serves_only_its_keys() {
    let (mut map, mut left) = bucket();
    for key in [&b"a"[..], b"m", b"z"] {
        left.put(key, ts(1), key.to_vec()).expect("put");
    }
    let (l, r) = map.split(RangeId(1), 1, b"m", RangeId(2)).expect("split");
    let right = left.split(l.clone(), r.clone()).expect("apply the split");
    // The left replica no longer serves "m" or "z": it says the range moved, with its view.
    match left.get(b"z", ts(5)) {
        Err(RangeOpError::KeyOutside { descriptor }) => assert_eq!(descriptor, l),
        other => panic!("left served a key split away: {other:?}"),
    }
    assert!(matches!(
        left.put(b"q", ts(6), b"q".to_vec()),
        Err(RangeOpError::KeyOutside { .. })
    ));
    assert_eq!(
        right
            .get(b"z", ts(5))
            .expect("right serves z")
            .and_then(|v| v.value),
        Some(b"z".to_vec())
    );
    assert!(left.get(b"a", ts(5)).expect("left serves a").is_some());
    assert_eq!(left.bytes() + right.bytes(), 6);
}

#[test]
fn scans_stop_at_the_range_end_and_say_where_to_go_on() {
    let (mut map, mut left) = bucket();
    for key in [&b"a"[..], b"b", b"m", b"n"] {
        left.put(key, ts(1), key.to_vec()).expect("put");
    }
    let (l, r) = map.split(RangeId(1), 1, b"m", RangeId(2)).expect("split");
    let right = left.split(l, r).expect("apply");
    let part = left.scan(b"", None, ts(2), 10).expect("scan");
    assert_eq!(part.entries.len(), 2);
    assert_eq!(part.resume, Some(b"m".to_vec()));
    let cut = left.scan(b"", None, ts(2), 1).expect("scan");
    assert_eq!(
        cut.resume,
        Some(b"a\x00".to_vec()),
        "the key after the last one returned"
    );
    let within = left.scan(b"a", Some(b"b"), ts(2), 10).expect("scan");
    assert_eq!((within.entries.len(), within.resume), (1, None));
    let rest = right.scan(b"m", None, ts(2), 10).expect("scan");
    assert_eq!((rest.entries.len(), rest.resume), (2, None));
    assert!(matches!(
        right.scan(b"a", None, ts(2), 10),
        Err(RangeOpError::KeyOutside { .. })
    ));
}

#[test]
fn reads_below_gc_and_mismatched_changes_are_refused() {
    let (mut map, mut state) = bucket();
    state.put(b"k", ts(10), b"v".to_vec()).expect("put");
    state.gc(ts(20)).expect("gc");
    assert_eq!(
        state.get(b"k", ts(15)),
        Err(RangeOpError::BelowGc {
            at: ts(15),
            threshold: ts(20)
        })
    );
    assert!(matches!(
        state.put(b"k", ts(20), b"w".to_vec()),
        Err(RangeOpError::WriteTooOld(_))
    ));
    let (l, r) = map.split(RangeId(1), 1, b"m", RangeId(2)).expect("split");
    // Halves swapped: refused, the state unchanged.
    let before = state.clone();
    assert!(matches!(
        state.split(r.clone(), l.clone()),
        Err(RangeOpError::BadChange { .. })
    ));
    assert_eq!(state, before);
    let mut right = state.split(l, r).expect("apply");
    let g = |map: &RangeMap, id| map.get(RangeId(id)).expect("range").generation;
    // A merge takes only a right neighbour frozen for it.
    let merged = map
        .clone()
        .merge(RangeId(1), g(&map, 1), g(&map, 2))
        .expect("merge");
    let before = state.clone();
    assert!(matches!(
        state.merge(merged.clone(), right.clone()),
        Err(RangeOpError::BadChange { .. })
    ));
    assert_eq!(state, before);
    right.freeze(g(&map, 2), RangeId(1)).expect("freeze");
    let merged = map
        .merge(RangeId(1), g(&map, 1), g(&map, 2))
        .expect("merge");
    state.merge(merged.clone(), right).expect("apply the merge");
    assert_eq!(state.descriptor(), &merged);
    assert_eq!(
        state.get(b"k", ts(30)).expect("read").and_then(|v| v.value),
        Some(b"v".to_vec())
    );
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8),
    Delete(u8),
    Split(u8),
    Merge(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Put),
        1 => any::<u8>().prop_map(Op::Delete),
        2 => any::<u8>().prop_map(Op::Split),
        1 => any::<u8>().prop_map(Op::Merge),
    ]
}

proptest! {
    /// Goal: whatever splits and merges happen between writes, a scan that walks the ranges by
    /// their resume keys returns every visible key once, in order, with the value one unsplit
    /// store has; every write lands in exactly the range the map routes it to.
    #[test]
    fn a_bucket_split_and_merged_scans_like_one_store(
        ops in proptest::collection::vec(op(), 1..80),
        limit in 1usize..5,
    ) {
        let (mut map, first) = bucket();
        let mut states: BTreeMap<RangeId, Mem> = BTreeMap::from([(RangeId(1), first)]);
        let mut model = VersionedMap::new();
        let mut next_id = 2;
        for (step, op) in ops.into_iter().enumerate() {
            let now = ts(step as u64 + 1);
            match op {
                Op::Put(k) | Op::Delete(k) => {
                    let key = [k];
                    let range = map.lookup(&key).id;
                    let state = states.get_mut(&range).expect("a state per range");
                    if matches!(op, Op::Put(_)) {
                        state.put(&key, now, vec![k, k]).expect("routed put");
                        model.put(&key, now, vec![k, k]).expect("model put");
                    } else {
                        state.delete(&key, now).expect("routed delete");
                        model.delete(&key, now).expect("model delete");
                    }
                    for (id, other) in &states {
                        if *id != range {
                            prop_assert!(other.get(&key, now).is_err(), "two ranges serve one key");
                        }
                    }
                }
                Op::Split(at) => {
                    let range = map.lookup(&[at]).clone();
                    if let Ok((l, r)) = map.split(range.id, range.generation, &[at], RangeId(next_id)) {
                        next_id += 1;
                        let state = states.get_mut(&range.id).expect("state");
                        let right = state.split(l, r.clone()).expect("apply the split");
                        states.insert(r.id, right);
                    }
                }
                Op::Merge(k) => {
                    let range = map.lookup(&[k]).clone();
                    let Some(end) = range.end.clone() else { continue };
                    let right = map.lookup(&end).clone();
                    if let Ok(merged) = map.merge(range.id, range.generation, right.generation) {
                        let mut right_state = states.remove(&right.id).expect("right state");
                        right_state.freeze(right.generation, range.id).expect("freeze");
                        states.get_mut(&range.id).expect("left").merge(merged, right_state).expect("apply");
                    }
                }
            }
            // Walk the whole bucket as a client would: range by range, by resume keys.
            let at = ts(step as u64 + 1);
            let mut from: Vec<u8> = Vec::new();
            let mut seen = Vec::new();
            loop {
                let range = map.lookup(&from).id;
                let part = states[&range].scan(&from, None, at, limit).expect("scan");
                seen.extend(part.entries.into_iter().map(|(k, v)| (k, v.value)));
                match part.resume {
                    Some(next) => from = next,
                    None => break,
                }
            }
            let expected: Vec<(Vec<u8>, Option<Vec<u8>>)> = model
                .scan(b"", None, at, usize::MAX)
                .into_iter()
                .map(|(k, v)| (k, v.value))
                .collect();
            prop_assert_eq!(seen, expected);
            prop_assert_eq!(states.len(), map.len());
        }
    }
}

#[test]
fn a_frozen_range_refuses_everything_until_a_descriptor_change_thaws_it() {
    let mut map = RangeMap::new(RangeId(1), &[NodeId(1)]);
    let mut state = Mem::new(map.lookup(b"").clone());
    let generation = map.lookup(b"").generation;
    state.put(b"k", ts(10), b"v".to_vec()).expect("write");
    // A freeze for a generation the range has left is refused and changes nothing.
    assert!(matches!(
        state.freeze(generation + 1, RangeId(9)),
        Err(RangeOpError::StaleGeneration { .. })
    ));
    assert_eq!(state.merging_into(), None);
    state.freeze(generation, RangeId(9)).expect("freeze");
    state
        .freeze(generation, RangeId(9))
        .expect("frozen again for the same merge");
    assert!(matches!(
        state.freeze(generation, RangeId(8)),
        Err(RangeOpError::Merging {
            into: RangeId(9),
            ..
        })
    ));
    let before = state.clone();
    for refused in [
        state.put(b"k", ts(20), b"w".to_vec()).err(),
        state.delete(b"k", ts(20)).err(),
        state.get(b"k", ts(30)).err(),
        state.scan(b"", None, ts(30), 10).err(),
        state.gc(ts(15)).err(),
    ] {
        assert!(
            matches!(refused, Some(RangeOpError::Merging { .. })),
            "{refused:?}"
        );
    }
    assert_eq!(state, before, "nothing changed while frozen");
    // The metadata changed the range (the merge did not commit): it serves again.
    let (left, right) = map
        .split(RangeId(1), generation, b"m", RangeId(2))
        .expect("split");
    let right_state = state.split(left, right).expect("apply the split");
    assert_eq!(
        (state.merging_into(), right_state.merging_into()),
        (None, None)
    );
    state.put(b"a", ts(20), b"w".to_vec()).expect("thawed");
}

#[test]
fn a_scan_page_is_cut_by_bytes_and_always_moves_on() {
    let map = crate::descriptor::RangeMap::new(RangeId(1), &[base::NodeId(1)]);
    let mut state = Mem::new(map.lookup(b"").clone());
    let at = |p| base::HlcTimestamp {
        physical: p,
        logical: 0,
    };
    for (i, key) in [b"a", b"b", b"c"].iter().enumerate() {
        state
            .put(*key, at(i as u64 + 1), vec![b'x'; 100])
            .expect("put");
    }
    let part = state
        .scan_bounded(b"", None, at(10), 10, 250)
        .expect("scan");
    assert_eq!(
        part.entries.len(),
        2,
        "101 + 101 bytes fit in 250, a third does not"
    );
    assert_eq!(part.resume, Some(b"b\0".to_vec()));
    // One entry larger than the bound is still served, so the scan moves on.
    let part = state.scan_bounded(b"", None, at(10), 10, 10).expect("scan");
    assert_eq!(part.entries.len(), 1);
    assert_eq!(part.resume, Some(b"a\0".to_vec()));
    // Unbounded: everything.
    let part = state.scan_bounded(b"", None, at(10), 10, 0).expect("scan");
    assert_eq!(part.entries.len(), 3);
    assert_eq!(part.resume, None);
}

#[test]
fn a_merge_on_one_store_replaces_whatever_the_right_span_held_with_the_frozen_versions() {
    // One member's store: the left range and a lagging replica of its right neighbour share
    // it. The merge must leave the right span holding exactly the frozen versions it carries.
    let (mut map, mut left) = bucket();
    let (l, r) = map.split(RangeId(1), 1, b"m", RangeId(2)).expect("split");
    let mut right = left.split(l, r).expect("apply the split");
    right.put(b"n", ts(1), b"current".to_vec()).expect("put");
    right.put(b"p", ts(2), b"current".to_vec()).expect("put");
    let g = |map: &RangeMap, id| map.get(RangeId(id)).expect("range").generation;
    right.freeze(g(&map, 2), RangeId(1)).expect("freeze");
    // This member's copy of the right span lags: only "x", written long ago, and no "n"/"p".
    left.store = MemStore::new();
    let mut stale = crate::state::RangeState::new(right.descriptor().clone());
    stale
        .put(&mut left.store, b"x", ts(1), b"stale")
        .expect("memory")
        .expect("put");
    let merged = map
        .merge(RangeId(1), g(&map, 1), g(&map, 2))
        .expect("merge");
    let carried = right.bytes();
    left.merge(merged, right).expect("apply the merge");
    let keys: Vec<Vec<u8>> = left
        .scan(b"", None, ts(10), 10)
        .expect("scan")
        .entries
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, vec![b"n".to_vec(), b"p".to_vec()]);
    assert_eq!(left.bytes(), carried, "the left half was empty");
}

#[test]
fn a_follower_read_is_served_at_the_closed_timestamp_only_within_its_bound() {
    use crate::follower::{FollowerRead, follower_read};
    use base::clock::HlcTimestamp;
    let closed = HlcTimestamp {
        physical: 10_000_000,
        logical: 3,
    };
    // 2 s after the close, a bound of 2 s serves; 1 s does not.
    let now = 12_000_000;
    assert_eq!(
        follower_read(false, closed, now, 2_000),
        FollowerRead::At(closed)
    );
    assert_eq!(
        follower_read(false, closed, now, 1_999),
        FollowerRead::TooStale(closed)
    );
    // Never closed: nothing a follower may serve, whatever the bound.
    assert_eq!(
        follower_read(false, HlcTimestamp::ZERO, now, u32::MAX),
        FollowerRead::TooStale(HlcTimestamp::ZERO)
    );
    // No state yet.
    assert_eq!(
        follower_read(true, closed, now, 2_000),
        FollowerRead::NoState
    );
    // A clock behind the close (skew) serves: the closed timestamp is as fresh as it gets.
    assert_eq!(
        follower_read(false, closed, 9_000_000, 0),
        FollowerRead::At(closed)
    );
}
