//! A member's part in a ring change, decided per stored object: which members a stream must
//! send the object to (those the pending ring adds as its replicas, from
//! `placement::movement`'s changed ranges), and after the switch whether the member still
//! replicates it or drops it.

use base::NodeId;
use placement::{RangeChange, Ring, placement_changes};

/// The ranges whose replicas change between two rings, for one replica count.
#[derive(Clone, Debug)]
pub struct HandoffPlan {
    /// In ascending order of range end.
    changes: Vec<RangeChange>,
}

impl HandoffPlan {
    /// The plan of moving keys with `n` replicas from `current` to `next`.
    pub fn new(current: &Ring, next: &Ring, n: usize) -> HandoffPlan {
        HandoffPlan {
            changes: placement_changes(current, next, n),
        }
    }

    /// The members `me` must stream an object with key token `token` to: those the next ring
    /// adds to its replicas, other than `me`.
    pub fn targets(&self, token: u64, me: NodeId) -> Vec<NodeId> {
        // The range holding `token` is the first one ending at or after it, or the one that
        // wraps past the top of the token space (the first); only changed ranges are listed.
        let at = self.changes.partition_point(|c| c.range.end < token);
        let change = [at, 0]
            .into_iter()
            .filter_map(|i| self.changes.get(i))
            .find(|c| c.range.contains(token));
        match change {
            Some(change) => change.added.iter().copied().filter(|m| *m != me).collect(),
            None => Vec::new(),
        }
    }
}

/// Whether `me` replicates keys with token `token` and `n` replicas on `ring` (after a switch,
/// an object it does not is dropped).
pub fn keeps(ring: &Ring, token: u64, n: usize, me: NodeId) -> bool {
    ring.preference_list(token, n).contains(&me)
}
