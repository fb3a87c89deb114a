//! The merge sequence: every transition of a run (each way to end, each release), alignment's
//! steps and what makes it wait, and the watch that releases a freeze outliving its merge.

use std::time::Duration;

use base::NodeId;

use super::split_map;
use crate::descriptor::{RangeDescriptor, RangeMap, ReplicaChange};
use crate::merging::*;

const MAX: u64 = 1000;

fn neighbours() -> (RangeDescriptor, RangeDescriptor) {
    let map = split_map(2);
    let ranges: Vec<RangeDescriptor> = map.iter().cloned().collect();
    (ranges[0].clone(), ranges[1].clone())
}

/// A run started on two neighbours, with its first step checked.
fn started() -> (MergeRun, RangeDescriptor, RangeDescriptor) {
    let (left, right) = neighbours();
    let (run, first) = MergeRun::start(&left, &right, MAX);
    assert_eq!(
        first,
        MergeStep::Freeze {
            range: right.id,
            generation: right.generation,
            into: left.id,
        }
    );
    assert_eq!(run.phase(), MergePhase::Freezing);
    (run, left, right)
}

fn release_of(right: &RangeDescriptor) -> MergeStep {
    MergeStep::Release {
        range: right.id,
        generation: right.generation,
    }
}

#[test]
fn a_merge_freezes_fetches_commits_and_applies() {
    let (mut run, left, right) = started();
    assert_eq!(
        run.on(MergeEvent::Frozen(CommandFate::Done)),
        MergeStep::Fetch {
            range: right.id,
            generation: right.generation,
            into: left.id,
        }
    );
    assert_eq!(
        run.on(MergeEvent::Fetched(Some(MAX))),
        MergeStep::Commit {
            left: left.id,
            left_generation: left.generation,
            right_generation: right.generation,
        },
        "exactly the limit fits"
    );
    assert_eq!(run.on(MergeEvent::Committed(true)), MergeStep::Apply);
    assert_eq!(
        run.on(MergeEvent::Applied(CommandFate::Done)),
        MergeStep::End(MergeEnd::Merged)
    );
    assert_eq!(run.phase(), MergePhase::Ended);
    // An ended run stays ended, whatever comes late.
    assert_eq!(
        run.on(MergeEvent::Committed(false)),
        MergeStep::End(MergeEnd::Merged)
    );
}

#[test]
fn a_committed_merge_not_applied_is_left_to_the_next_leader() {
    for fate in [CommandFate::NotApplied, CommandFate::Unknown] {
        let (mut run, _, _) = started();
        run.on(MergeEvent::Frozen(CommandFate::Done));
        run.on(MergeEvent::Fetched(Some(1)));
        run.on(MergeEvent::Committed(true));
        assert_eq!(
            run.on(MergeEvent::Applied(fate)),
            MergeStep::End(MergeEnd::Decided),
            "{fate:?}: decided, never released"
        );
    }
}

#[test]
fn a_freeze_not_applied_ends_without_a_release() {
    let (mut run, _, _) = started();
    assert_eq!(
        run.on(MergeEvent::Frozen(CommandFate::NotApplied)),
        MergeStep::End(MergeEnd::NotMerged(MergeFailure::FreezeNotApplied))
    );
}

#[test]
fn every_way_to_give_up_after_a_possible_freeze_releases_the_right_range() {
    type Steps = Vec<MergeEvent>;
    let cases: Vec<(Steps, MergeFailure)> = vec![
        (
            vec![MergeEvent::Frozen(CommandFate::Unknown)],
            MergeFailure::FreezeUnknown,
        ),
        (
            vec![
                MergeEvent::Frozen(CommandFate::Done),
                MergeEvent::Fetched(None),
            ],
            MergeFailure::NoFrozenState,
        ),
        (
            vec![
                MergeEvent::Frozen(CommandFate::Done),
                MergeEvent::Fetched(Some(MAX + 1)),
            ],
            MergeFailure::TooLarge {
                bytes: MAX + 1,
                max: MAX,
            },
        ),
        (
            vec![
                MergeEvent::Frozen(CommandFate::Done),
                MergeEvent::Fetched(Some(10)),
                MergeEvent::Committed(false),
            ],
            MergeFailure::CommitRefused,
        ),
    ];
    for (events, failure) in cases {
        let (mut run, _, right) = started();
        let mut last = None;
        for event in events {
            last = Some(run.on(event));
        }
        assert_eq!(last, Some(release_of(&right)), "{failure:?}");
        assert_eq!(run.phase(), MergePhase::Releasing);
        // Asked again before the release is done: the release again, never an end.
        assert_eq!(run.on(MergeEvent::Fetched(Some(1))), release_of(&right));
        assert_eq!(
            run.on(MergeEvent::Released),
            MergeStep::End(MergeEnd::NotMerged(failure))
        );
    }
}

#[test]
fn an_event_out_of_order_never_leaves_a_range_frozen() {
    // Before the commit: released. After it: decided.
    let (mut run, _, right) = started();
    assert_eq!(run.on(MergeEvent::Committed(true)), release_of(&right));
    let (mut run, _, right) = started();
    run.on(MergeEvent::Frozen(CommandFate::Done));
    assert_eq!(
        run.on(MergeEvent::Applied(CommandFate::Done)),
        release_of(&right)
    );
    let (mut run, _, _) = started();
    run.on(MergeEvent::Frozen(CommandFate::Done));
    run.on(MergeEvent::Fetched(Some(1)));
    run.on(MergeEvent::Committed(true));
    assert_eq!(
        run.on(MergeEvent::Released),
        MergeStep::End(MergeEnd::Decided)
    );
}

fn view(led: bool, applied_generation: u64) -> Option<GroupView> {
    Some(GroupView {
        led,
        applied_generation,
    })
}

/// Two neighbours whose right one moved its replica from member 3 to member 4, in their map.
fn misaligned() -> (RangeMap, RangeDescriptor, RangeDescriptor) {
    let mut map = split_map(2);
    let right = map.iter().nth(1).expect("right").clone();
    let mut changed = right.clone();
    for change in [
        ReplicaChange::AddLearner(NodeId(4)),
        ReplicaChange::Promote(NodeId(4)),
        ReplicaChange::Remove(NodeId(3)),
    ] {
        changed = map
            .change_replicas(right.id, changed.generation, change)
            .expect("move");
    }
    let left = map.iter().next().expect("left").clone();
    (map, left, changed)
}

#[test]
fn alignment_adds_promotes_once_caught_up_then_removes() {
    let (left, right) = neighbours();
    assert_eq!(
        align_step(&left, &right, &[], view(true, right.generation)),
        AlignStep::Aligned
    );
    let (mut map, left, mut right) = misaligned();
    let mut expected = vec![
        AlignStep::Change(ReplicaChange::AddLearner(NodeId(3))),
        AlignStep::PromoteIfCaughtUp(NodeId(3)),
        AlignStep::Change(ReplicaChange::Remove(NodeId(4))),
    ]
    .into_iter();
    loop {
        let step = align_step(&left, &right, &[], view(true, right.generation));
        let change = match step {
            AlignStep::Aligned => break,
            AlignStep::Change(change) => change,
            AlignStep::PromoteIfCaughtUp(member) => ReplicaChange::Promote(member),
            AlignStep::Wait => panic!("waited with a led, applied group"),
        };
        assert_eq!(Some(step), expected.next());
        right = map
            .change_replicas(right.id, right.generation, change)
            .expect("change");
    }
    assert_eq!(expected.next(), None, "every step taken");
    assert!(left.same_replicas(&right));
}

#[test]
fn alignment_waits_for_a_leader_an_applied_descriptor_and_no_draining_member() {
    let (_, left, right) = misaligned();
    let generation = right.generation;
    for (draining, seen) in [
        (vec![], None),
        (vec![], view(false, generation)),
        (vec![], view(true, generation - 1)),
        (vec![NodeId(3)], view(true, generation)),
    ] {
        assert_eq!(
            align_step(&left, &right, &draining, seen),
            AlignStep::Wait,
            "draining {draining:?}, view {seen:?}"
        );
    }
    // A member draining that is not one of left's replicas does not hold it up.
    assert_eq!(
        align_step(&left, &right, &[NodeId(4)], view(true, generation)),
        AlignStep::Change(ReplicaChange::AddLearner(NodeId(3)))
    );
}

#[test]
fn a_freeze_is_released_only_after_outliving_a_merge_at_the_same_generation() {
    let max = Duration::from_secs(10);
    let at = Duration::from_secs;
    let mut watch = FreezeWatch::default();
    assert!(!watch.observe(None, 5, at(0), max));
    assert!(!watch.timing());
    assert!(!watch.observe(Some(5), 5, at(1), max));
    assert!(watch.timing());
    assert!(!watch.observe(Some(5), 5, at(10), max), "9 s frozen");
    // The metadata moved on (committed or released): never released by the watch.
    assert!(!watch.observe(Some(5), 6, at(30), max));
    assert!(watch.observe(Some(5), 5, at(11), max), "10 s frozen");
    assert!(!watch.timing(), "starts over after a release");
    // Thawed and frozen again: the clock starts again.
    assert!(!watch.observe(Some(5), 5, at(12), max));
    assert!(!watch.observe(None, 5, at(13), max));
    assert!(!watch.observe(Some(5), 5, at(20), max));
    assert!(!watch.observe(Some(5), 5, at(29), max));
    assert!(watch.observe(Some(5), 5, at(30), max));
    // Released by a bump and frozen again by a later merge, without the watch seeing the
    // thaw: a new freeze, timed from when it is first seen.
    assert!(!watch.observe(Some(6), 6, at(31), max));
    assert!(
        !watch.observe(Some(7), 7, at(45), max),
        "a new generation: a new freeze"
    );
    assert!(!watch.observe(Some(7), 7, at(54), max));
    assert!(watch.observe(Some(7), 7, at(55), max));
}
