//! A member's replica of a range from start to retirement, as pure rules its driver
//! (`range-node::groups`) asks on every reconcile pass:
//!
//! - `start_replica`: a replica the metadata places here starts from the state it holds
//!   (its record or log), or empty for a bucket's first range; a range born of a split this
//!   member's replica of the parent has not applied yet waits for the seed that split writes;
//!   anything else starts without state and waits for its leader's snapshot.
//! - `keep_replica`: a replica no longer placed here is kept while it is the frozen right side
//!   of a merge this member's replica of the merged range has not applied (a leader may still
//!   fetch its state), and while its group has not carried out the removal (the leader may
//!   still replicate to it: a replica retired and added back would show it a log gone
//!   backwards); a range gone from the metadata altogether is retired at once.
//! - `removal_seen`: what proves the removal carried out — a replica whose committed Raft
//!   membership no longer holds this member.
//!
//! Must never do I/O, read a clock or depend on a runtime.

use base::NodeId;

use crate::descriptor::RangeDescriptor;

/// The generation of a bucket's first range: no split, merge or replica change yet, so its
/// replicas are the ones it was created with and all start it empty.
pub const FIRST_GENERATION: u64 = 1;

/// How a replica the metadata places here starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Not yet: the split that makes this range has not applied here, its seed will come.
    Wait,
    /// Start from the state this member holds (or empty, for a bucket's first range).
    FromState,
    /// Start without state and wait for the leader's snapshot.
    AwaitSnapshot,
}

/// How to start this member's replica of a range at `generation`: `holds_state` when the
/// member has its record or its log, `parent_holds_start` when a local replica of another
/// range of the bucket stands in its way (`stands_in_way`: its split has not applied here, or
/// its merges may still grow it into the range).
pub fn start_replica(holds_state: bool, generation: u64, parent_holds_start: bool) -> Start {
    if holds_state || generation == FIRST_GENERATION {
        return Start::FromState;
    }
    if parent_holds_start {
        return Start::Wait;
    }
    Start::AwaitSnapshot
}

/// Whether a local replica holding `held` stands in the way of a new replica of `span` on the
/// same member (the new one must wait, or its snapshot would share keys with it in the
/// member's one store): it still holds `span`'s start (the split that makes `span` has not
/// applied here), or it is `behind` the metadata and starts before `span`'s end, so the merges
/// still in its log may grow it into `span` (merges only extend a range to the right). A
/// frozen replica never grows. Found by the range simulation: a lagging replica replaying a
/// merge came to overlap a replica installed from a snapshot meanwhile.
pub fn stands_in_way(
    held: &RangeDescriptor,
    behind: bool,
    frozen: bool,
    span: &RangeDescriptor,
) -> bool {
    if held.id == span.id {
        return false;
    }
    let grows_into = behind && !frozen && span.end.as_ref().is_none_or(|end| held.start < *end);
    held.contains(&span.start) || grows_into
}

/// What a running replica is, as the reconcile pass sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunningReplica {
    /// The metadata places a replica of the range on this member.
    pub placed_here: bool,
    /// The metadata still has the range (it was not merged away).
    pub in_metadata: bool,
    /// The replica is frozen for a merge into a range whose merge this member's replica of
    /// it has not applied yet.
    pub awaits_merge: bool,
    /// This replica leads its group.
    pub leads: bool,
    /// Another replica's committed Raft membership no longer holds this member
    /// (`removal_seen`).
    pub removal_seen: bool,
}

/// What the reconcile pass does with a running replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Keep,
    /// Keep it, and ask the other replicas whether the removal is carried out.
    AskRemoval,
    /// Stop it and remove its log and data (its record marked gone first).
    Retire,
}

/// Whether a running replica stays.
pub fn keep_replica(replica: RunningReplica) -> Keep {
    if replica.placed_here || replica.awaits_merge {
        return Keep::Keep;
    }
    if !replica.in_metadata {
        return Keep::Retire;
    }
    if replica.leads {
        // It led when the metadata dropped it: it hands over first; it is not gone until
        // another replica records the change.
        return Keep::Keep;
    }
    if replica.removal_seen {
        Keep::Retire
    } else {
        Keep::AskRemoval
    }
}

/// Whether the frozen replica of a range merged into `into` must wait: this member's replica
/// of `into` holds `local_generation` (if it runs one) and the metadata gives the merged range
/// `merged_generation` (if it still has it).
pub fn awaits_merge(local_generation: Option<u64>, merged_generation: Option<u64>) -> bool {
    match (local_generation, merged_generation) {
        (Some(local), Some(merged)) => local < merged,
        _ => false,
    }
}

/// Whether a replica's status proves this member's removal carried out: its Raft membership
/// is committed and does not hold `me`.
pub fn removal_seen(committed: bool, members: &[NodeId], me: NodeId) -> bool {
    committed && !members.contains(&me)
}
