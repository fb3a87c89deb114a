//! Split decisions: by size at the middle key, by load only after sustained hot windows and
//! only where both sides get a real share of the requests.

use super::split_map;
use crate::descriptor::RangeId;
use crate::merge::{MergeConfig, align, merge_candidates, merge_fits};
use crate::split::{LOAD_SAMPLES_MAX, LoadTracker, Split, SplitConfig, SplitReason, decide_split};

fn config() -> SplitConfig {
    SplitConfig {
        range_max_bytes: 1000,
        load_split_qps: 100.0,
        load_split_windows: 2,
    }
}

#[test]
fn a_range_over_its_size_splits_at_its_middle_key() {
    let map = split_map(1);
    let range = map.lookup(b"");
    let load = LoadTracker::new();
    assert_eq!(
        decide_split(range, 1000, Some(b"m"), &load, &config()),
        None
    );
    assert_eq!(
        decide_split(range, 1001, Some(b"m"), &load, &config()),
        Some(Split {
            at: b"m".to_vec(),
            reason: SplitReason::Size
        })
    );
    // The start key would leave an empty left half; no key means not measured yet.
    assert_eq!(decide_split(range, 5000, Some(b""), &load, &config()), None);
    assert_eq!(decide_split(range, 5000, None, &load, &config()), None);
}

#[test]
fn load_splits_need_sustained_heat_and_a_balancing_key() {
    let map = split_map(1);
    let range = map.lookup(b"").clone();
    let mut load = LoadTracker::new();
    let hot_window = |load: &mut LoadTracker| {
        // 300 requests in one second over keys a..=f, uniformly.
        for i in 0..300u32 {
            load.record(&[b'a' + (i % 6) as u8]);
        }
        load.end_window(&range, 1.0, &config())
    };
    assert_eq!(hot_window(&mut load), 300.0);
    assert_eq!(
        decide_split(&range, 0, None, &load, &config()),
        None,
        "one window is a burst"
    );
    hot_window(&mut load);
    let split = decide_split(&range, 0, None, &load, &config()).expect("a load split");
    assert_eq!(split.reason, SplitReason::Load);
    assert_eq!(split.at, b"d".to_vec(), "half the requests go to a, b, c");
    // A quiet window resets the streak.
    load.end_window(&range, 1.0, &config());
    assert_eq!(load.hot_windows(), 0);
    assert_eq!(decide_split(&range, 0, None, &load, &config()), None);
}

#[test]
fn one_hot_key_is_not_split_around() {
    let map = split_map(1);
    let range = map.lookup(b"").clone();
    let mut load = LoadTracker::new();
    for _ in 0..3 {
        for i in 0..1000u32 {
            // 95 % on one key: no split puts a quarter on each side.
            let key: &[u8] = if i % 20 == 0 { b"a" } else { b"h" };
            load.record(key);
        }
        load.end_window(&range, 1.0, &config());
    }
    assert_eq!(load.hot_windows(), 3);
    assert_eq!(decide_split(&range, 0, None, &load, &config()), None);
}

#[test]
fn the_load_sample_stays_bounded() {
    let map = split_map(1);
    let range = map.lookup(b"").clone();
    let mut load = LoadTracker::new();
    for i in 0..100_000u32 {
        load.record(&i.to_be_bytes());
        assert!(load.samples_len() <= LOAD_SAMPLES_MAX);
    }
    load.end_window(&range, 10.0, &config());
    assert_eq!(load.qps(), 10_000.0);
}

#[test]
fn small_quiet_neighbours_merge_in_pairs() {
    let map = split_map(5);
    let config = MergeConfig {
        merge_max_bytes: 100,
        merge_max_qps: 10.0,
    };
    // r1+r2 small, r3 big, r4+r5 small but r5 busy.
    let stats = |id: RangeId| match id.0 {
        1 | 2 => Some((40, 1.0)),
        3 => Some((500, 0.0)),
        4 => Some((10, 1.0)),
        5 => Some((10, 50.0)),
        _ => None,
    };
    let candidates = merge_candidates(&map, stats, &config);
    assert_eq!(candidates.len(), 1);
    assert_eq!(
        (candidates[0].left, candidates[0].right),
        (RangeId(1), RangeId(2))
    );
    assert!(candidates[0].replicas_aligned);
    // Without stats nothing merges.
    assert!(merge_candidates(&map, |_| None, &config).is_empty());
    let (r1, r2) = (
        map.get(RangeId(1)).expect("r1").clone(),
        map.get(RangeId(2)).expect("r2").clone(),
    );
    assert!(merge_fits(&r1, &r2, (40, 1.0), (40, 1.0), &config));
    assert!(
        !merge_fits(&r1, &r2, (60, 1.0), (60, 1.0), &config),
        "too big together"
    );
    assert!(
        !merge_fits(&r2, &r1, (1, 0.0), (1, 0.0), &config),
        "not neighbours that way"
    );
    // A range made by a split by hand stays: neither rule merges it into its left neighbour.
    let sticky = crate::descriptor::RangeDescriptor {
        sticky: true,
        ..r2.clone()
    };
    assert!(!merge_fits(&r1, &sticky, (1, 0.0), (1, 0.0), &config));
    let mut by_hand = split_map(1);
    let whole = by_hand.get(RangeId(1)).expect("r1").clone();
    let (_, right) = by_hand
        .split_by_hand(RangeId(1), whole.generation, b"m", RangeId(2))
        .expect("split by hand");
    assert!(right.sticky && by_hand.get(RangeId(2)).expect("r2").sticky);
    assert!(merge_candidates(&by_hand, |_| Some((1, 0.0)), &config).is_empty());
}

#[test]
fn align_brings_the_right_replicas_to_the_left_ones() {
    use base::NodeId;

    use crate::descriptor::ReplicaChange;
    let mut map = split_map(2);
    let r2 = map.get(RangeId(2)).expect("r2").clone();
    map.change_replicas(RangeId(2), r2.generation, ReplicaChange::Remove(NodeId(3)))
        .expect("remove");
    let r2 = map.get(RangeId(2)).expect("r2").clone();
    map.change_replicas(
        RangeId(2),
        r2.generation,
        ReplicaChange::AddLearner(NodeId(4)),
    )
    .expect("add");
    let left = map.get(RangeId(1)).expect("r1").clone();
    let mut steps = Vec::new();
    for _ in 0..10 {
        let right = map.get(RangeId(2)).expect("r2").clone();
        let Some(change) = align(&left, &right) else {
            break;
        };
        steps.push(change);
        map.change_replicas(RangeId(2), right.generation, change)
            .expect("aligning change");
    }
    assert_eq!(
        steps,
        vec![
            ReplicaChange::AddLearner(NodeId(3)),
            ReplicaChange::Promote(NodeId(3)),
            ReplicaChange::Remove(NodeId(4)),
        ]
    );
    let right = map.get(RangeId(2)).expect("r2").clone();
    let (g1, g2) = (left.generation, right.generation);
    map.merge(RangeId(1), g1, g2).expect("aligned ranges merge");
}
