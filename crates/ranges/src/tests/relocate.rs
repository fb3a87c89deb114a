//! Manual moves: refusals up front, and a move carried out together with the rebalancer's
//! plan (which promotes the learner), checked after every step — never below the target,
//! ending on `to` and off `from`.

use std::collections::BTreeMap;

use base::NodeId;

use super::split_map;
use crate::descriptor::{RangeId, ReplicaChange, Role};
use crate::rebalance::{MemberHealth, MemberInfo, RangeInfo, RebalanceConfig, Step, plan};
use crate::relocate::{MoveRefusal, MoveStep, move_step};

#[test]
fn a_move_is_refused_when_it_cannot_be_made() {
    let map = split_map(1);
    let desc = map.get(RangeId(1)).expect("range 1").clone();
    let refused = |from: u64, to: u64| {
        matches!(
            move_step(&desc, NodeId(from), NodeId(to), 3, false),
            MoveStep::Refuse(_)
        )
    };
    assert!(refused(4, 5), "from holds no replica");
    assert!(refused(1, 2), "to holds one already");
    assert!(refused(1, 1), "from is to");
    assert_eq!(
        move_step(&desc, NodeId(1), NodeId(4), 3, false),
        MoveStep::Change(ReplicaChange::AddLearner(NodeId(4)))
    );
    let mut map = map;
    map.change_replicas(RangeId(1), 1, ReplicaChange::AddLearner(NodeId(5)))
        .expect("add a learner");
    let busy = map.get(RangeId(1)).expect("range 1");
    assert!(matches!(
        move_step(busy, NodeId(1), NodeId(4), 3, false),
        MoveStep::Refuse(MoveRefusal::InFlight { .. })
    ));
    // The move's own learner vanished (its member left): refused, not waited for forever.
    assert!(matches!(
        move_step(&desc, NodeId(1), NodeId(4), 3, true),
        MoveStep::Refuse(_)
    ));
}

#[test]
fn a_move_with_the_rebalancer_ends_on_the_destination_and_never_below_target() {
    for (from, to) in [(1, 4), (2, 4), (3, 4)] {
        let mut map = split_map(1);
        let members: Vec<MemberInfo> = (1..=4)
            .map(|id| MemberInfo {
                id: NodeId(id),
                health: MemberHealth::Live,
                draining: false,
            })
            .collect();
        let leaders: BTreeMap<RangeId, NodeId> = [(RangeId(1), NodeId(1))].into();
        let mut started = false;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(steps < 20, "the move did not finish");
            let desc = map.get(RangeId(1)).expect("range 1").clone();
            assert!(desc.voters().count() >= 3, "below target: {desc:?}");
            match move_step(&desc, NodeId(from), NodeId(to), 3, started) {
                MoveStep::Done => break,
                MoveStep::Refuse(why) => panic!("refused: {why}"),
                MoveStep::Change(change) => {
                    map.change_replicas(RangeId(1), desc.generation, change)
                        .expect("the move's change applies");
                    started = true;
                }
                MoveStep::Wait => {
                    // The learner caught up; the rebalancer's round promotes it.
                    let info = RangeInfo {
                        descriptor: desc.clone(),
                        leader: leaders.get(&desc.id).copied(),
                        caught_up: desc.learners().collect(),
                        replicas: None,
                    };
                    let planned = plan(&members, &[info], &RebalanceConfig::default());
                    let Some(Step::Change { change, .. }) = planned.first().copied() else {
                        panic!("the rebalancer did not promote the learner: {planned:?}");
                    };
                    assert_eq!(change, ReplicaChange::Promote(NodeId(to)));
                    map.change_replicas(RangeId(1), desc.generation, change)
                        .expect("the promotion applies");
                }
            }
        }
        let desc = map.get(RangeId(1)).expect("range 1");
        assert_eq!(desc.role_of(NodeId(to)), Some(Role::Voter));
        assert_eq!(desc.role_of(NodeId(from)), None);
        assert_eq!(desc.voters().count(), 3);
    }
}

#[test]
fn a_move_the_rebalancer_finished_differently_is_done_without_going_below_target() {
    let mut map = split_map(1);
    let g = map.get(RangeId(1)).expect("range 1").generation;
    map.change_replicas(RangeId(1), g, ReplicaChange::AddLearner(NodeId(4)))
        .expect("learner");
    map.change_replicas(RangeId(1), g + 1, ReplicaChange::Promote(NodeId(4)))
        .expect("promote");
    // The rebalancer shed member 3, not the move's source 1.
    map.change_replicas(RangeId(1), g + 2, ReplicaChange::Remove(NodeId(3)))
        .expect("remove");
    let desc = map.get(RangeId(1)).expect("range 1");
    assert_eq!(
        move_step(desc, NodeId(1), NodeId(4), 3, true),
        MoveStep::Done
    );
}
