//! A range group's Raft membership brought to the replicas its descriptor lists, and the
//! choice of who takes over a leadership, as pure rules the group's driver
//! (`consensus::range::group::moves`) asks each pass:
//!
//! - `membership_step`: the next change of the Raft membership — a learner added, the voters
//!   replaced (joint consensus inside openraft), a member dropped — one per call, only once
//!   the last change is committed; a leader the descriptor makes a non-voter hands leadership
//!   to a voter first.
//! - `takes_over_at_once` and `next_transferee`: a leadership goes only to a voter whose log
//!   matches all of the leader's (a leader that marked a transfer proposes nothing more, so a
//!   target that cannot win would leave the range without writes); should the target not take
//!   over, the next voter that could is asked, in turn.
//!
//! Must never do I/O, read a clock or depend on a runtime.

use std::collections::BTreeSet;

use base::NodeId;

use crate::descriptor::RangeDescriptor;

/// A group's Raft membership as its leader sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftMembership {
    pub voters: BTreeSet<NodeId>,
    /// Voters and learners.
    pub nodes: BTreeSet<NodeId>,
    /// The last membership change is committed (openraft refuses the next one before).
    pub settled: bool,
}

/// The next step towards the membership a descriptor lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MembershipStep {
    /// A change is in flight: ask again next pass.
    Wait,
    /// The leader is not a voter of the descriptor: hand leadership to one of these (voters
    /// of both the descriptor and the current membership, in order), then ask again.
    HandOver(Vec<NodeId>),
    /// Add this member as a learner.
    AddLearner(NodeId),
    /// Make these the voters.
    ReplaceVoters(BTreeSet<NodeId>),
    /// Drop this member (a learner, or a voter already replaced).
    Remove(NodeId),
    /// The membership matches the descriptor: record it in the range's state.
    Done,
}

/// The next step that brings `current` (as `leader` sees it) to the replicas of `desc`.
pub fn membership_step(
    desc: &RangeDescriptor,
    leader: NodeId,
    current: &RaftMembership,
) -> MembershipStep {
    if !current.settled {
        return MembershipStep::Wait;
    }
    let voters: BTreeSet<NodeId> = desc.voters().collect();
    let wanted: BTreeSet<NodeId> = desc.replicas.iter().map(|r| r.member).collect();
    if !voters.contains(&leader) {
        return MembershipStep::HandOver(
            voters
                .iter()
                .copied()
                .filter(|v| current.voters.contains(v))
                .collect(),
        );
    }
    if let Some(&learner) = wanted.iter().find(|id| !current.nodes.contains(id)) {
        return MembershipStep::AddLearner(learner);
    }
    if voters != current.voters {
        return MembershipStep::ReplaceVoters(voters);
    }
    if let Some(&extra) = current.nodes.iter().find(|id| !wanted.contains(id)) {
        return MembershipStep::Remove(extra);
    }
    MembershipStep::Done
}

/// What a leader knows of one member of its group, for a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Follower {
    pub voter: bool,
    /// The last log index the leader knows it holds.
    pub matched: Option<u64>,
}

/// Whether a member could take a leadership over at once: the asker leads, and the member is
/// a voter whose log matches all of the leader's (`last` is the leader's last log index).
pub fn takes_over_at_once(leading: bool, follower: Follower, last: Option<u64>) -> bool {
    leading && follower.voter && follower.matched.is_some() && follower.matched == last
}

/// After a transfer did not finish: the next voter to ask, in `voters`' order, that is not
/// the leader `me`, was not `tried`, and `can` take over now. `None` when none can yet.
pub fn next_transferee(
    voters: &[NodeId],
    me: NodeId,
    tried: &[NodeId],
    can: impl Fn(NodeId) -> bool,
) -> Option<NodeId> {
    voters
        .iter()
        .copied()
        .find(|v| *v != me && !tried.contains(v) && can(*v))
}
