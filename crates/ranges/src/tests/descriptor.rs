//! The descriptor rules: splits, merges and replica changes, each against the generation it
//! was made for; and a property test that any sequence of them keeps a partition.

use base::NodeId;
use proptest::prelude::*;

use super::{key, split_map};
use crate::descriptor::{RangeError, RangeId, RangeMap, ReplicaChange, Role};

fn members() -> Vec<NodeId> {
    vec![NodeId(1), NodeId(2), NodeId(3)]
}

#[test]
fn a_new_bucket_is_one_range_over_every_key() {
    let map = RangeMap::new(RangeId(7), &members());
    assert_eq!(map.len(), 1);
    for k in [&b""[..], b"a", b"\xff\xff"] {
        assert_eq!(map.lookup(k).id, RangeId(7));
    }
    map.check().expect("partition");
    assert_eq!(map.lookup(b"x").quorum(), 2);
}

#[test]
fn a_split_bumps_both_halves_and_keeps_every_key_routed() {
    let mut map = RangeMap::new(RangeId(1), &members());
    let (left, right) = map.split(RangeId(1), 1, b"m", RangeId(2)).expect("split");
    assert_eq!((left.generation, right.generation), (2, 2));
    assert_eq!(left.end.as_deref(), Some(&b"m"[..]));
    assert_eq!(right.start, b"m");
    assert_eq!(right.replicas, left.replicas);
    assert_eq!(map.lookup(b"l").id, RangeId(1));
    assert_eq!(map.lookup(b"m").id, RangeId(2));
    assert_eq!(map.lookup(b"zz").id, RangeId(2));
    map.check().expect("partition");
}

#[test]
fn a_split_made_for_an_old_generation_or_at_a_bad_key_is_refused() {
    let mut map = RangeMap::new(RangeId(1), &members());
    map.split(RangeId(1), 1, b"m", RangeId(2)).expect("split");
    assert_eq!(
        map.split(RangeId(1), 1, b"c", RangeId(3)),
        Err(RangeError::StaleGeneration {
            range: RangeId(1),
            expected: 1,
            current: 2
        })
    );
    // At the start (an empty left half), outside, or with a used id.
    assert_eq!(
        map.split(RangeId(2), 2, b"m", RangeId(3)),
        Err(RangeError::SplitKeyOutside(RangeId(2)))
    );
    assert_eq!(
        map.split(RangeId(1), 2, b"q", RangeId(3)),
        Err(RangeError::SplitKeyOutside(RangeId(1)))
    );
    assert_eq!(
        map.split(RangeId(1), 2, b"c", RangeId(2)),
        Err(RangeError::IdInUse(RangeId(2)))
    );
    assert_eq!(
        map.split(RangeId(9), 1, b"c", RangeId(3)),
        Err(RangeError::NoSuchRange(RangeId(9)))
    );
}

#[test]
fn a_merge_needs_a_neighbour_with_the_same_replicas() {
    let mut map = split_map(3); // r1 [, k01), r2 [k01, k02), r3 [k02, )
    assert_eq!(
        map.merge(RangeId(3), 3, 0),
        Err(RangeError::NoRightNeighbour(RangeId(3)))
    );
    let r2 = map.get(RangeId(2)).expect("r2").clone();
    map.change_replicas(
        RangeId(2),
        r2.generation,
        ReplicaChange::AddLearner(NodeId(4)),
    )
    .expect("add a learner");
    let (g1, g2) = (
        map.get(RangeId(1)).expect("r1").generation,
        map.get(RangeId(2)).expect("r2").generation,
    );
    assert_eq!(
        map.merge(RangeId(1), g1, g2),
        Err(RangeError::ReplicasDiffer {
            left: RangeId(1),
            right: RangeId(2)
        })
    );
    map.change_replicas(RangeId(2), g2, ReplicaChange::Remove(NodeId(4)))
        .expect("remove it again");
    let g2 = map.get(RangeId(2)).expect("r2").generation;
    assert!(matches!(
        map.merge(RangeId(1), g1, g2 - 1),
        Err(RangeError::StaleGeneration { .. })
    ));
    let merged = map.merge(RangeId(1), g1, g2).expect("merge");
    assert_eq!(merged.generation, g1.max(g2) + 1);
    assert_eq!(merged.end, Some(key(2)));
    assert_eq!(map.len(), 2);
    assert_eq!(map.lookup(&key(1)).id, RangeId(1));
    assert!(map.get(RangeId(2)).is_none());
    map.check().expect("partition");
}

#[test]
fn replica_changes_go_one_step_at_a_time_and_keep_a_voter() {
    let mut map = RangeMap::new(RangeId(1), &[NodeId(1)]);
    let added = map
        .change_replicas(RangeId(1), 1, ReplicaChange::AddLearner(NodeId(2)))
        .expect("add");
    assert_eq!(added.role_of(NodeId(2)), Some(Role::Learner));
    assert_eq!(added.quorum(), 1);
    assert_eq!(
        map.change_replicas(RangeId(1), 2, ReplicaChange::AddLearner(NodeId(2))),
        Err(RangeError::AlreadyReplica {
            range: RangeId(1),
            member: NodeId(2)
        })
    );
    assert_eq!(
        map.change_replicas(RangeId(1), 2, ReplicaChange::Promote(NodeId(1))),
        Err(RangeError::NotALearner {
            range: RangeId(1),
            member: NodeId(1)
        })
    );
    assert_eq!(
        map.change_replicas(RangeId(1), 2, ReplicaChange::Remove(NodeId(1))),
        Err(RangeError::LastVoter {
            range: RangeId(1),
            member: NodeId(1)
        })
    );
    let promoted = map
        .change_replicas(RangeId(1), 2, ReplicaChange::Promote(NodeId(2)))
        .expect("promote");
    assert_eq!(promoted.voters().count(), 2);
    let removed = map
        .change_replicas(RangeId(1), 3, ReplicaChange::Remove(NodeId(1)))
        .expect("remove");
    assert_eq!(removed.voters().collect::<Vec<_>>(), vec![NodeId(2)]);
    assert_eq!(
        map.change_replicas(RangeId(1), 4, ReplicaChange::Remove(NodeId(1))),
        Err(RangeError::NotAReplica {
            range: RangeId(1),
            member: NodeId(1)
        })
    );
}

#[test]
fn stored_descriptors_that_do_not_partition_are_refused() {
    let map = split_map(3);
    let mut gap: Vec<_> = map.iter().cloned().collect();
    gap.remove(1);
    assert!(matches!(
        RangeMap::from_descriptors(gap),
        Err(RangeError::NotAPartition(_))
    ));
    let mut bounded: Vec<_> = map.iter().cloned().collect();
    bounded.last_mut().expect("a range").end = Some(b"zz".to_vec());
    assert!(RangeMap::from_descriptors(bounded).is_err());
    let mut twice: Vec<_> = map.iter().cloned().collect();
    twice[1].id = twice[0].id;
    assert!(RangeMap::from_descriptors(twice).is_err());
    assert!(RangeMap::from_descriptors(Vec::new()).is_err());
    let same = RangeMap::from_descriptors(map.iter().cloned()).expect("a partition");
    assert_eq!(same, map);
}

#[test]
fn overlapping_lists_the_ranges_of_a_scan_in_order() {
    let map = split_map(5); // [, k01) [k01, k02) [k02, k03) [k03, k04) [k04, )
    let ids = |from: &[u8], to: Option<&[u8]>| {
        map.overlapping(from, to)
            .map(|r| r.id.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(b"", None), vec![1, 2, 3, 4, 5]);
    assert_eq!(ids(&key(1), Some(&key(3))), vec![2, 3]);
    assert_eq!(ids(b"k015", Some(b"k025")), vec![2, 3]);
    assert_eq!(ids(b"k035", None), vec![4, 5]);
    assert_eq!(ids(b"a", Some(b"b")), vec![1]);
}

#[derive(Clone, Debug)]
enum Op {
    Split(u8, Vec<u8>),
    Merge(u8),
    Add(u8, u64),
    Promote(u8, u64),
    Remove(u8, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 1..4))
            .prop_map(|(r, k)| Op::Split(r, k)),
        any::<u8>().prop_map(Op::Merge),
        (any::<u8>(), 1..6u64).prop_map(|(r, m)| Op::Add(r, m)),
        (any::<u8>(), 1..6u64).prop_map(|(r, m)| Op::Promote(r, m)),
        (any::<u8>(), 1..6u64).prop_map(|(r, m)| Op::Remove(r, m)),
    ]
}

proptest! {
    /// Goal: no sequence of changes, accepted or refused, breaks the partition, and every
    /// accepted change raises the generation of what it touched above all it replaced.
    #[test]
    fn any_change_sequence_keeps_a_partition(ops in proptest::collection::vec(op(), 1..60)) {
        let mut map = RangeMap::new(RangeId(1), &members());
        let mut next_id = 2;
        for op in ops {
            let ranges: Vec<_> = map.iter().cloned().collect();
            let pick = |r: u8| ranges[r as usize % ranges.len()].clone();
            let before = map.clone();
            match op {
                Op::Split(r, at) => {
                    let range = pick(r);
                    if let Ok((left, right)) = map.split(range.id, range.generation, &at, RangeId(next_id)) {
                        next_id += 1;
                        prop_assert!(left.generation > range.generation);
                        prop_assert_eq!(right.generation, left.generation);
                    }
                }
                Op::Merge(r) => {
                    let range = pick(r);
                    let right_gen = range.end.as_ref().map_or(0, |end| map.lookup(end).generation);
                    if let Ok(merged) = map.merge(range.id, range.generation, right_gen) {
                        prop_assert!(merged.generation > range.generation.max(right_gen));
                    }
                }
                Op::Add(r, m) | Op::Promote(r, m) | Op::Remove(r, m) => {
                    let range = pick(r);
                    let member = NodeId(m);
                    let change = match op {
                        Op::Add(..) => ReplicaChange::AddLearner(member),
                        Op::Promote(..) => ReplicaChange::Promote(member),
                        _ => ReplicaChange::Remove(member),
                    };
                    if let Ok(changed) = map.change_replicas(range.id, range.generation, change) {
                        prop_assert_eq!(changed.generation, range.generation + 1);
                    } else {
                        prop_assert_eq!(&map, &before);
                    }
                }
            }
            prop_assert!(map.check().is_ok(), "{:?}", map.check());
            for probe in [&b""[..], b"\x00", b"\x80", b"\xff\xff\xff"] {
                prop_assert!(map.lookup(probe).contains(probe));
            }
        }
    }
}
