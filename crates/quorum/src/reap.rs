//! Tombstone reaping decisions: a deleted key's entry (its tombstones and causal context) may
//! go once the delete is older than the grace period and every other replica of the key
//! answers with the same delete or no entry. A replica that does not answer keeps the entry
//! everywhere; one that answers with a copy lacking the delete is sent it first, and the next
//! round tries again — so a stale copy of a deleted value never finds a replica without the
//! delete. Before the entry goes, the member raises its durable reaped-counter floor to its
//! own counter in the entry's context (see `replica::coordinate`).

use base::{HlcTimestamp, NodeId};
use crdt::Object;

use crate::ReplicaError;

/// Whether `object` is a delete older than `older_than`: only tombstones, all written before.
pub fn reapable(object: &Object, older_than: HlcTimestamp) -> bool {
    !object.siblings.is_empty()
        && object
            .siblings
            .iter()
            .all(|s| s.is_tombstone() && s.timestamp < older_than)
}

/// What to do with a reapable entry, given the other replicas' answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reap {
    /// Every other replica holds the same delete or nothing: raise the floor to `floor`, then
    /// remove the entry (if unchanged since it was read).
    Remove { floor: u64 },
    /// Keep the entry for now, and send it to `repair` (replicas whose copy it supersedes).
    Keep { repair: Vec<NodeId> },
}

/// Decides on the entry `mine` of member `me`, given each other replica's answer.
pub fn decide(
    me: NodeId,
    mine: &Object,
    answers: &[(NodeId, Result<Option<Object>, ReplicaError>)],
) -> Reap {
    let mut everywhere = true;
    let mut repair = Vec::new();
    for (member, answer) in answers {
        match answer {
            // It may lack the delete: keep the entry until it answers.
            Err(_) => everywhere = false,
            Ok(None) => {}
            Ok(Some(copy)) if copy == mine => {}
            Ok(Some(copy)) => {
                everywhere = false;
                if mine.supersedes_or_equals(copy) {
                    repair.push(*member);
                }
            }
        }
    }
    if everywhere {
        Reap::Remove {
            floor: mine.context.get(me.0),
        }
    } else {
        Reap::Keep { repair }
    }
}
