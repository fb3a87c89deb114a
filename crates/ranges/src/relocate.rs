//! A manual move of one replica (`quorate range move BUCKET KEY --from A --to B`): from the
//! range's descriptor as the metadata holds it now, the next step that takes the replica on
//! `from` to `to`. The move goes the way every rebalancing move goes, so it never takes the
//! range below its replica target: a learner on `to`; its promotion once it has caught up
//! (the rebalancer's, which promotes every caught-up learner); then the removal of `from`
//! (its group's leader hands leadership over first if it is `from`). The driver re-reads the
//! descriptor after every step and asks again.

use base::NodeId;

use crate::descriptor::{RangeDescriptor, RangeId, ReplicaChange, Role};

/// What the move does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MoveStep {
    /// Commit this change for the descriptor's generation.
    Change(ReplicaChange),
    /// The learner on `to` is catching up: ask again later.
    Wait,
    /// The replica is on `to` and no longer on `from` — or, should the rebalancer have shed
    /// another voter first, the range is at its target with `to` voting and `from` kept.
    Done,
    /// The move cannot be made.
    Refuse(MoveRefusal),
}

/// Why a move cannot be made.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MoveRefusal {
    #[error("member {0} is both source and destination")]
    SameMember(NodeId),
    #[error("member {member} has no voting replica of range {range}")]
    NoVoter { member: NodeId, range: RangeId },
    #[error("member {member} already has a replica of range {range}")]
    AlreadyReplica { member: NodeId, range: RangeId },
    /// Another replica change is under way: a later attempt may succeed.
    #[error(
        "range {range} has a replica change in flight (a learner on member {learner}); try again"
    )]
    InFlight { range: RangeId, learner: NodeId },
    #[error(
        "the learner on member {member} left range {range} before it caught up (is the member live?)"
    )]
    LearnerLeft { member: NodeId, range: RangeId },
}

impl MoveRefusal {
    /// Whether the same move may succeed when asked again later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            MoveRefusal::InFlight { .. } | MoveRefusal::LearnerLeft { .. }
        )
    }
}

/// The next step of moving `desc`'s replica from `from` to `to`, for a range that should have
/// `target` voters; `started` once the learner on `to` has been added by this move.
pub fn move_step(
    desc: &RangeDescriptor,
    from: NodeId,
    to: NodeId,
    target: usize,
    started: bool,
) -> MoveStep {
    let id = desc.id;
    if !started {
        if from == to {
            return MoveStep::Refuse(MoveRefusal::SameMember(from));
        }
        if desc.role_of(from) != Some(Role::Voter) {
            return MoveStep::Refuse(MoveRefusal::NoVoter {
                member: from,
                range: id,
            });
        }
        if desc.role_of(to).is_some() {
            return MoveStep::Refuse(MoveRefusal::AlreadyReplica {
                member: to,
                range: id,
            });
        }
        if let Some(learner) = desc.learners().next() {
            return MoveStep::Refuse(MoveRefusal::InFlight { range: id, learner });
        }
        return MoveStep::Change(ReplicaChange::AddLearner(to));
    }
    match desc.role_of(to) {
        None => MoveStep::Refuse(MoveRefusal::LearnerLeft {
            member: to,
            range: id,
        }),
        Some(Role::Learner) => MoveStep::Wait,
        Some(Role::Voter) => {
            let voters = desc.voters().count();
            match desc.role_of(from) {
                Some(_) if voters > target => MoveStep::Change(ReplicaChange::Remove(from)),
                Some(Role::Learner) => MoveStep::Change(ReplicaChange::Remove(from)),
                _ => MoveStep::Done,
            }
        }
    }
}
