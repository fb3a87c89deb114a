//! Members marked as draining (`quorate member drain`): the rebalancer gives them no new range
//! replicas and moves theirs away. The mark lives in the topology so every member's planner
//! sees it alike, and goes with the member when it leaves the cluster.

use proto::quorate::raft::v1 as pb;

/// Marks or unmarks `change.member` as draining; `known` says whether it is a member of the
/// cluster (an unknown member is refused, unmarking one is always allowed, so a mark left by
/// a member removed meanwhile can be cleared).
pub fn apply_member_drain(
    topology: &mut pb::Topology,
    change: &pb::MemberDrain,
    known: bool,
) -> pb::MemberDrainResponse {
    if change.draining && !known {
        return pb::MemberDrainResponse {
            refusal: format!("member {:x} is not a member of the cluster", change.member),
            refusal_kind: proto::quorate::v1::Refusal::NotFound as i32,
            draining: topology.draining.clone(),
        };
    }
    topology.draining.retain(|&m| m != change.member);
    if change.draining {
        topology.draining.push(change.member);
        topology.draining.sort_unstable();
    }
    pb::MemberDrainResponse {
        draining: topology.draining.clone(),
        ..Default::default()
    }
}

/// Forgets the drain marks of members that left the cluster; true when one was dropped.
pub fn forget_drained(topology: &mut pb::Topology, gone: &[u64]) -> bool {
    let before = topology.draining.len();
    topology.draining.retain(|m| !gone.contains(m));
    topology.draining.len() != before
}
