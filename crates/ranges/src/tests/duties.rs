//! A leader's pass: classifying the metadata's change against the held descriptor, the duties
//! of a pass in order with their periods, and when stuck followers are sent snapshots.

use base::NodeId;

use super::{key, split_map};
use crate::descriptor::{RangeDescriptor, RangeId, ReplicaChange};
use crate::duties::*;

/// A range as its group holds it, and the metadata's later descriptors of it after a split,
/// a merge and a replica change.
fn held_and_changes() -> (RangeDescriptor, [RangeDescriptor; 3]) {
    let mut map = split_map(2);
    let held = map.iter().next().expect("first").clone();
    let mut split = map.clone();
    let (left, _) = split
        .split(held.id, held.generation, &key(0), RangeId(9))
        .expect("split");
    let right = map.iter().nth(1).expect("second").clone();
    let merged = map
        .merge(held.id, held.generation, right.generation)
        .expect("merge");
    let mut moved = split_map(2);
    let changed = moved
        .change_replicas(
            held.id,
            held.generation,
            ReplicaChange::AddLearner(NodeId(4)),
        )
        .expect("add learner");
    (held, [left, merged, changed])
}

#[test]
fn a_metadata_change_is_classified_against_the_held_descriptor() {
    let (held, [split, merged, changed]) = held_and_changes();
    assert_eq!(classify(&held, &held), Pending::Nothing);
    assert_eq!(classify(&split, &held), Pending::Split);
    assert_eq!(classify(&merged, &held), Pending::Merge);
    assert_eq!(classify(&changed, &held), Pending::SameSpan);
    // The group ahead of the metadata seen here: nothing to carry out.
    assert_eq!(classify(&held, &changed), Pending::GroupAhead);
    // A start that moved: more than one change behind.
    let mut moved = split.clone();
    moved.start = b"a".to_vec();
    assert_eq!(classify(&moved, &held), Pending::Unknown);
    // The last range growing to unbounded is a merge too.
    let mut unbounded = merged.clone();
    unbounded.end = None;
    assert_eq!(classify(&unbounded, &held), Pending::Merge);
}

const PERIODS: DutyPeriods = DutyPeriods {
    close: 2,
    window: 5,
    gc: 10,
};

fn view(pending: Pending) -> LeaderView {
    LeaderView {
        range: RangeId(3),
        pending,
        frozen: false,
        wants_close: false,
        has_right: true,
    }
}

#[test]
fn a_quiet_pass_only_looks_for_stuck_followers_and_splits() {
    assert_eq!(
        leader_duties(PERIODS, 1, view(Pending::Nothing)),
        vec![Duty::HelpStuck, Duty::Split]
    );
}

#[test]
fn a_window_end_aligns_ends_the_window_and_looks_for_a_merge() {
    assert_eq!(
        leader_duties(PERIODS, 4, view(Pending::Nothing)),
        vec![
            Duty::HelpStuck,
            Duty::AlignReplicas,
            Duty::EndLoadWindow,
            Duty::Split,
            Duty::MergeIfSmall
        ]
    );
    // The last range has no merge partner; a group ahead of the metadata is not aligned to it.
    let last = LeaderView {
        has_right: false,
        pending: Pending::GroupAhead,
        ..view(Pending::Nothing)
    };
    assert_eq!(
        leader_duties(PERIODS, 9, last),
        vec![Duty::HelpStuck, Duty::EndLoadWindow, Duty::Split]
    );
}

#[test]
fn a_pending_change_is_finished_before_anything_else_and_ends_the_pass() {
    for pending in [
        Pending::SameSpan,
        Pending::Merge,
        Pending::Split,
        Pending::Unknown,
    ] {
        let duties = leader_duties(PERIODS, 4, view(pending));
        assert_eq!(duties, vec![Duty::HelpStuck, Duty::Finish(pending)]);
        assert!(duties.last().is_some_and(|d| d.ends_pass()));
    }
}

#[test]
fn a_frozen_range_only_watches_its_freeze() {
    let frozen = LeaderView {
        frozen: true,
        ..view(Pending::Nothing)
    };
    assert_eq!(
        leader_duties(PERIODS, 1, frozen),
        vec![Duty::HelpStuck, Duty::WatchFreeze]
    );
    assert_eq!(
        leader_duties(PERIODS, 4, frozen),
        vec![Duty::HelpStuck, Duty::AlignReplicas, Duty::WatchFreeze]
    );
}

#[test]
fn closes_and_collections_come_at_their_own_pace_spread_by_range() {
    let writing = LeaderView {
        wants_close: true,
        ..view(Pending::Nothing)
    };
    let closes: Vec<u64> = (0..10)
        .filter(|&pass| leader_duties(PERIODS, pass, writing).contains(&Duty::Close))
        .collect();
    assert_eq!(closes, vec![0, 2, 4, 6, 8]);
    // No writes since the last close: nothing to close.
    assert!(
        (0..10).all(
            |pass| !leader_duties(PERIODS, pass, view(Pending::Nothing)).contains(&Duty::Close)
        )
    );
    for range in [3, 7] {
        let ranged = LeaderView {
            range: RangeId(range),
            ..view(Pending::Nothing)
        };
        let collections: Vec<u64> = (0..30)
            .filter(|&pass| leader_duties(PERIODS, pass, ranged).contains(&Duty::CollectGarbage))
            .collect();
        assert_eq!(collections, vec![range, range + 10, range + 20]);
    }
    // Periods of zero are taken as one, never a division by zero.
    let zero = DutyPeriods {
        close: 0,
        window: 0,
        gc: 0,
    };
    assert!(leader_duties(zero, 7, writing).contains(&Duty::CollectGarbage));
}

#[test]
fn a_stuck_learner_gets_a_snapshot_early_and_a_voter_at_the_voters_pace() {
    let periods = StuckPeriods {
        learner_first: 2,
        every: 5,
    };
    let sent = |learner: bool| {
        let mut watch = StuckWatch::default();
        (1..=11)
            .filter(|_| watch.observe(true, learner, periods))
            .count()
    };
    let mut watch = StuckWatch::default();
    let learner: Vec<bool> = (0..10)
        .map(|_| watch.observe(true, true, periods))
        .collect();
    assert_eq!(
        learner,
        [
            false, true, false, false, true, false, false, false, false, true
        ]
    );
    assert_eq!(sent(false), 2, "passes 5 and 10");
    // Caught up: the count starts over.
    assert!(watch.counting());
    assert!(!watch.observe(false, false, periods));
    assert!(!watch.counting());
}

#[test]
fn the_purge_point_is_the_snapshot_but_never_past_a_follower_nor_backwards() {
    assert_eq!(
        snapshot_action(Some(100), Some(10), Some(150)),
        SnapshotAction::PurgeUpTo(100)
    );
    assert_eq!(
        snapshot_action(Some(100), Some(10), Some(40)),
        SnapshotAction::PurgeUpTo(40),
        "a follower still needs entries after 40"
    );
    assert_eq!(
        snapshot_action(Some(100), None, None),
        SnapshotAction::PurgeUpTo(100),
        "no other follower matched anything"
    );
    // Nothing ahead of what is purged: build a snapshot first.
    assert_eq!(
        snapshot_action(Some(100), Some(100), None),
        SnapshotAction::BuildSnapshot
    );
    assert_eq!(
        snapshot_action(Some(100), Some(50), Some(30)),
        SnapshotAction::BuildSnapshot
    );
    assert_eq!(
        snapshot_action(None, None, Some(30)),
        SnapshotAction::BuildSnapshot
    );
}
