//! A manual move of one replica (`quorate range move BUCKET KEY --from A --to B`): from the
//! range's descriptor as the metadata holds it now, the next step that takes the replica on
//! `from` to `to`. The move goes the way every rebalancing move goes, so it never takes the
//! range below its replica target: a learner on `to`; its promotion once it has caught up
//! (the rebalancer's, which promotes every caught-up learner); then the removal of `from`
//! (its group's leader hands leadership over first if it is `from`). The driver re-reads the
//! descriptor after every step and asks again.

use base::NodeId;

use crate::descriptor::{RangeDescriptor, ReplicaChange, Role};

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
    /// The move cannot be made (why, for the caller).
    Refuse(String),
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
            return MoveStep::Refuse(format!("member {from} is both source and destination"));
        }
        if desc.role_of(from) != Some(Role::Voter) {
            return MoveStep::Refuse(format!("member {from} has no voting replica of range {id}"));
        }
        if desc.role_of(to).is_some() {
            return MoveStep::Refuse(format!("member {to} already has a replica of range {id}"));
        }
        if let Some(learner) = desc.learners().next() {
            return MoveStep::Refuse(format!(
                "range {id} has a replica change in flight (a learner on member {learner}); try again"
            ));
        }
        return MoveStep::Change(ReplicaChange::AddLearner(to));
    }
    match desc.role_of(to) {
        None => MoveStep::Refuse(format!(
            "the learner on member {to} left range {id} before it caught up (is the member live?)"
        )),
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
