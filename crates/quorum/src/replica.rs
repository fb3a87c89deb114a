//! What a replica does with a coordinator's call, as pure functions of its stored copy: admit
//! the call by its ring epoch, apply a coordinated write (a new dot above what the member may
//! have reaped) or merge a copy. Storing the result durably before answering is the driver's
//! (its group-committing writer runs these functions inside the write transaction).

use base::HlcTimestamp;
use crdt::{Conflicts, Dot, Object, VersionVector};

use crate::ReplicaError;

/// Admits a call placed at ring epoch `placed` by a member at epoch `mine`: refused when the
/// member has applied a later ring (0 marks a call that is never refused, such as a hint
/// delivered without a placement).
pub fn admit(placed: u64, mine: u64) -> Result<(), ReplicaError> {
    if placed != 0 && placed < mine {
        return Err(ReplicaError::StaleEpoch {
            placed,
            current: mine,
        });
    }
    Ok(())
}

/// A client write as the coordinating replica applies it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Coordinated {
    /// The context the client read (the siblings it supersedes).
    pub context: VersionVector,
    /// The coordinating member, whose dot the write gets.
    pub actor: u64,
    pub timestamp: HlcTimestamp,
    /// The value; `None` for a delete.
    pub value: Option<Vec<u8>>,
    pub conflicts: Conflicts,
    /// Above every counter of the member's own dots in any entry it reaped (see `reap`).
    pub reaped_floor: u64,
}

/// The copy after the coordinating replica applies `write` to its stored copy `old`.
pub fn coordinate(old: Option<Object>, write: &Coordinated) -> Object {
    let held = old.is_some();
    let mut object = old.unwrap_or_default();
    if !held && write.reaped_floor > 0 {
        // This member may have reaped the key: its next dot goes above every dot of its own a
        // remaining tombstone could cover.
        object.context.add_dot(&Dot {
            actor: write.actor,
            counter: write.reaped_floor,
        });
    }
    object.update(
        &write.context,
        write.actor,
        write.timestamp,
        write.value.clone(),
        write.conflicts,
    );
    object
}

/// The copy after merging `incoming` into the stored copy `old`.
pub fn merge(old: Option<Object>, incoming: &Object, conflicts: Conflicts) -> Object {
    let mut object = old.unwrap_or_default();
    object.merge(incoming, conflicts);
    object
}
