//! A group's membership brought to its descriptor one step at a time (and never while a
//! change is in flight, never by a leader the descriptor drops), and who takes a leadership.

use std::collections::BTreeSet;

use base::NodeId;

use super::split_map;
use crate::descriptor::{RangeDescriptor, ReplicaChange};
use crate::membership::*;

fn ids(members: &[u64]) -> BTreeSet<NodeId> {
    members.iter().copied().map(NodeId).collect()
}

fn membership(voters: &[u64], learners: &[u64]) -> RaftMembership {
    RaftMembership {
        voters: ids(voters),
        nodes: ids(voters).union(&ids(learners)).copied().collect(),
        settled: true,
    }
}

/// The first range of a fresh map (voters 1, 2, 3) after `changes`.
fn described(changes: &[ReplicaChange]) -> RangeDescriptor {
    let mut map = split_map(1);
    let mut desc = map.iter().next().expect("range").clone();
    for &change in changes {
        desc = map
            .change_replicas(desc.id, desc.generation, change)
            .expect("change");
    }
    desc
}

/// Applies a step to the membership, as openraft would.
fn applied(mut current: RaftMembership, step: &MembershipStep) -> RaftMembership {
    match step {
        MembershipStep::AddLearner(member) => {
            current.nodes.insert(*member);
        }
        // Without `retain` (as the driver asks), replaced voters leave the membership.
        MembershipStep::ReplaceVoters(voters) => {
            for gone in current.voters.difference(voters) {
                current.nodes.remove(gone);
            }
            current.nodes.extend(voters.iter().copied());
            current.voters = voters.clone();
        }
        MembershipStep::Remove(member) => {
            current.nodes.remove(member);
            current.voters.remove(member);
        }
        other => panic!("not a change: {other:?}"),
    }
    current
}

#[test]
fn a_move_reaches_the_membership_as_learner_voters_then_removal() {
    // The metadata moved the replica on 3 to 4: learner 4, promoted, 3 removed.
    let desc = described(&[
        ReplicaChange::AddLearner(NodeId(4)),
        ReplicaChange::Promote(NodeId(4)),
        ReplicaChange::Remove(NodeId(3)),
    ]);
    let mut current = membership(&[1, 2, 3], &[]);
    let mut steps = Vec::new();
    loop {
        match membership_step(&desc, NodeId(1), &current) {
            MembershipStep::Done => break,
            step => {
                current = applied(current, &step);
                steps.push(step);
            }
        }
        assert!(steps.len() < 5, "{steps:?}");
    }
    assert_eq!(
        steps,
        vec![
            MembershipStep::AddLearner(NodeId(4)),
            MembershipStep::ReplaceVoters(ids(&[1, 2, 4])),
        ],
        "openraft's voter replacement drops the old voter with the joint change"
    );
    assert_eq!(current, membership(&[1, 2, 4], &[]));
}

#[test]
fn a_learner_the_descriptor_dropped_is_removed_and_a_matching_membership_is_done() {
    let desc = described(&[]);
    let current = membership(&[1, 2, 3], &[5]);
    assert_eq!(
        membership_step(&desc, NodeId(2), &current),
        MembershipStep::Remove(NodeId(5))
    );
    assert_eq!(
        membership_step(&desc, NodeId(2), &membership(&[1, 2, 3], &[])),
        MembershipStep::Done
    );
    // A learner the descriptor lists stays a learner.
    let with_learner = described(&[ReplicaChange::AddLearner(NodeId(5))]);
    assert_eq!(
        membership_step(&with_learner, NodeId(2), &current),
        MembershipStep::Done
    );
}

#[test]
fn nothing_changes_while_a_change_is_in_flight() {
    let desc = described(&[ReplicaChange::AddLearner(NodeId(4))]);
    let mut current = membership(&[1, 2, 3], &[]);
    current.settled = false;
    assert_eq!(
        membership_step(&desc, NodeId(1), &current),
        MembershipStep::Wait
    );
}

#[test]
fn a_leader_the_descriptor_drops_hands_over_to_a_voter_of_both() {
    // 1 leads; the metadata replaced 1 by 4 (not yet in the membership).
    let desc = described(&[
        ReplicaChange::AddLearner(NodeId(4)),
        ReplicaChange::Promote(NodeId(4)),
        ReplicaChange::Remove(NodeId(1)),
    ]);
    let current = membership(&[1, 2, 3], &[4]);
    assert_eq!(
        membership_step(&desc, NodeId(1), &current),
        MembershipStep::HandOver(vec![NodeId(2), NodeId(3)])
    );
    // Led by a voter of both, the change goes on.
    assert_eq!(
        membership_step(&desc, NodeId(2), &current),
        MembershipStep::ReplaceVoters(ids(&[2, 3, 4]))
    );
}

#[test]
fn only_a_caught_up_voter_takes_over_and_the_next_is_asked_in_turn() {
    let caught_up = Follower {
        voter: true,
        matched: Some(10),
    };
    assert!(takes_over_at_once(true, caught_up, Some(10)));
    assert!(
        !takes_over_at_once(false, caught_up, Some(10)),
        "not leading"
    );
    assert!(!takes_over_at_once(true, caught_up, Some(11)), "behind");
    let learner = Follower {
        voter: false,
        ..caught_up
    };
    assert!(!takes_over_at_once(true, learner, Some(10)));
    let unknown = Follower {
        voter: true,
        matched: None,
    };
    assert!(!takes_over_at_once(true, unknown, None), "nothing known");

    let voters = [NodeId(1), NodeId(2), NodeId(3), NodeId(4)];
    let can = |v: NodeId| v != NodeId(3);
    assert_eq!(
        next_transferee(&voters, NodeId(1), &[NodeId(2)], can),
        Some(NodeId(4)),
        "not the leader, not one tried, not one that cannot"
    );
    assert_eq!(
        next_transferee(&voters, NodeId(1), &[NodeId(2), NodeId(4)], can),
        None
    );
}
