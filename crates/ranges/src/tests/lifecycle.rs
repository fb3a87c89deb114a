//! A replica's life on a member: how it starts, when it waits for a split's seed, when it is
//! kept past its removal from the metadata, and what proves the removal carried out.

use base::NodeId;

use crate::lifecycle::*;

#[test]
fn a_replica_starts_from_its_state_waits_for_a_seed_or_awaits_a_snapshot() {
    // Held state (record or log) wins whatever else holds.
    assert_eq!(start_replica(true, 7, true), Start::FromState);
    // A bucket's first range starts empty on every replica.
    assert_eq!(
        start_replica(false, FIRST_GENERATION, false),
        Start::FromState
    );
    // Born of a split not applied here yet: its seed will come.
    assert_eq!(start_replica(false, 7, true), Start::Wait);
    // Added to a range it never held: the leader's snapshot brings the state.
    assert_eq!(start_replica(false, 7, false), Start::AwaitSnapshot);
}

const PLACED: RunningReplica = RunningReplica {
    placed_here: true,
    in_metadata: true,
    awaits_merge: false,
    leads: false,
    removal_seen: false,
};

#[test]
fn a_placed_replica_or_one_a_merge_still_needs_is_kept() {
    assert_eq!(keep_replica(PLACED), Keep::Keep);
    let frozen = RunningReplica {
        placed_here: false,
        in_metadata: false,
        awaits_merge: true,
        ..PLACED
    };
    assert_eq!(keep_replica(frozen), Keep::Keep);
    // Merged away and applied by the merged range here: retired.
    let merged = RunningReplica {
        awaits_merge: false,
        ..frozen
    };
    assert_eq!(keep_replica(merged), Keep::Retire);
}

#[test]
fn a_removed_replica_is_retired_only_once_its_group_carried_the_removal_out() {
    let removed = RunningReplica {
        placed_here: false,
        ..PLACED
    };
    assert_eq!(keep_replica(removed), Keep::AskRemoval);
    assert_eq!(
        keep_replica(RunningReplica {
            removal_seen: true,
            ..removed
        }),
        Keep::Retire
    );
    // A leader the metadata dropped hands over first: kept even once others saw the change.
    assert_eq!(
        keep_replica(RunningReplica {
            leads: true,
            removal_seen: true,
            ..removed
        }),
        Keep::Keep
    );
}

#[test]
fn a_frozen_replica_waits_only_for_a_merged_range_not_yet_applied_here() {
    assert!(awaits_merge(Some(4), Some(5)));
    assert!(!awaits_merge(Some(5), Some(5)));
    assert!(
        !awaits_merge(None, Some(5)),
        "no replica of the merged range here"
    );
    assert!(!awaits_merge(Some(4), None), "the merged range is gone too");
}

#[test]
fn only_a_committed_membership_without_this_member_proves_the_removal() {
    let me = NodeId(3);
    assert!(removal_seen(true, &[NodeId(1), NodeId(2)], me));
    assert!(
        !removal_seen(false, &[NodeId(1), NodeId(2)], me),
        "uncommitted"
    );
    assert!(!removal_seen(true, &[NodeId(1), NodeId(3)], me));
}

#[test]
fn a_new_replica_waits_for_a_local_replica_that_holds_or_may_grow_into_its_span() {
    use crate::descriptor::{RangeDescriptor, RangeId};
    let range = |id: u64, start: &str, end: Option<&str>| RangeDescriptor {
        id: RangeId(id),
        start: start.as_bytes().to_vec(),
        end: end.map(|e| e.as_bytes().to_vec()),
        replicas: Vec::new(),
        generation: 1,
        sticky: false,
    };
    let new = range(9, "m", Some("t"));
    // Still holds the start: its split has not applied here.
    assert!(stands_in_way(&range(1, "a", Some("z")), false, false, &new));
    // Left of the span and behind: a merge in its log may reach into it.
    assert!(stands_in_way(&range(2, "c", Some("f")), true, false, &new));
    // ... unless frozen (it only waits to be retired) or caught up (its span is final).
    assert!(!stands_in_way(&range(2, "c", Some("f")), true, true, &new));
    assert!(!stands_in_way(
        &range(2, "c", Some("f")),
        false,
        false,
        &new
    ));
    // Right of the span: merges grow rightwards, never into it.
    assert!(!stands_in_way(&range(3, "t", None), true, false, &new));
    // The range itself never stands in its own way.
    assert!(!stands_in_way(&range(9, "a", None), true, false, &new));
}
