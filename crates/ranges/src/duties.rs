//! What the leader of a range does on each pass of its member's range loop, as pure rules the
//! driver (`range-node`) runs in order:
//!
//! - `classify`: what the metadata's descriptor of a range says its group still has to carry
//!   out — nothing, a change that keeps the span (a replica change, the bump releasing a
//!   frozen range), a merge (the span grew to the right), a split (the span shrank on the
//!   right), or something this member cannot carry out (its group is behind by more).
//! - `leader_duties`: the named duties of one pass for one led range — help stuck followers,
//!   close a timestamp, finish the metadata's change, align the Raft membership, watch a
//!   freeze, end the load window, split, merge, collect old versions — each paced by its own
//!   period, every range's periodic duties spread over the passes by its id.
//! - `StuckWatch`: when a follower that matches nothing of the leader's log is sent a
//!   snapshot (a new learner soon, anyone else at the voters' pace).
//!
//! Must never do I/O, read a clock or depend on a runtime: passes are counted by the driver.

use crate::descriptor::{RangeDescriptor, RangeId};

/// What a range's group still has to carry out of the metadata's descriptor of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// The group holds the metadata's descriptor.
    Nothing,
    /// The group holds a newer descriptor than the metadata seen here (which is behind).
    GroupAhead,
    /// A change that keeps the span: a replica change, or a bump.
    SameSpan,
    /// The metadata merged the range with its right neighbour.
    Merge,
    /// The metadata split the range; its right half starts where `meta` ends.
    Split,
    /// A change this member cannot carry out from what its group holds (it moved the start:
    /// the group is more than one change behind, and is brought up by a snapshot).
    Unknown,
}

/// What the metadata's descriptor `meta` of a range asks of its group, which holds `held`.
pub fn classify(meta: &RangeDescriptor, held: &RangeDescriptor) -> Pending {
    if meta.generation == held.generation {
        return Pending::Nothing;
    }
    if meta.generation < held.generation {
        return Pending::GroupAhead;
    }
    if meta.start != held.start {
        return Pending::Unknown;
    }
    match (&meta.end, &held.end) {
        (a, b) if a == b => Pending::SameSpan,
        // Grew to the right (unbounded now, or further): a merge.
        (None, Some(_)) => Pending::Merge,
        (Some(new), Some(old)) if new > old => Pending::Merge,
        // Shrank on the right: a split.
        _ => Pending::Split,
    }
}

/// How often the periodic duties come, in passes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DutyPeriods {
    /// A closed timestamp is proposed every this many passes (when the range wants one).
    pub close: u64,
    /// A load window (split and merge decisions, membership check) ends every this many.
    pub window: u64,
    /// A range looks for old versions to collect every this many (spread by range id).
    pub gc: u64,
}

/// What one led range shows at the start of a pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderView {
    pub range: RangeId,
    /// What the metadata's descriptor asks of the group (`classify`).
    pub pending: Pending,
    /// Frozen for a merge.
    pub frozen: bool,
    /// Writes arrived since the last closed timestamp (a close would move it on).
    pub wants_close: bool,
    /// The range has a right neighbour (a merge partner).
    pub has_right: bool,
}

/// A duty of a range's leader, in the order a pass runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Duty {
    /// Send snapshots to followers stuck behind the log (`StuckWatch` paces them).
    HelpStuck,
    /// Propose a closed timestamp (off the pass: it waits for its commit).
    Close,
    /// Carry out the metadata's change; the pass ends for this range.
    Finish(Pending),
    /// Bring the Raft membership to the descriptor's replicas; the pass goes on only once
    /// they match.
    AlignReplicas,
    /// Frozen: release the range if its freeze outlived its merge; the pass ends.
    WatchFreeze,
    /// End the load window (load per second over the window).
    EndLoadWindow,
    /// Split if the range is too large or too loaded; a proposed split ends the pass.
    Split,
    /// Merge with the right neighbour if both are small and quiet.
    MergeIfSmall,
    /// Collect versions older than the version TTL.
    CollectGarbage,
}

impl Duty {
    /// Whether the pass ends for the range after this duty whatever it did.
    pub fn ends_pass(self) -> bool {
        matches!(self, Duty::Finish(_) | Duty::WatchFreeze)
    }
}

/// The duties of pass number `pass` for one led range, in order. `AlignReplicas` and `Split`
/// may end the pass early (not aligned yet; a split proposed), which the driver reports by
/// stopping there.
pub fn leader_duties(periods: DutyPeriods, pass: u64, view: LeaderView) -> Vec<Duty> {
    let every = |period: u64| period.max(1);
    let end_window = pass % every(periods.window) == every(periods.window) - 1;
    let mut duties = vec![Duty::HelpStuck];
    if pass.is_multiple_of(every(periods.close)) && view.wants_close {
        duties.push(Duty::Close);
    }
    match view.pending {
        Pending::Nothing | Pending::GroupAhead => {}
        pending => {
            duties.push(Duty::Finish(pending));
            return duties;
        }
    }
    // A split or merge applied over a replica change the group had not carried out yet
    // leaves the descriptor's replicas ahead of the membership: checked once per window (it
    // is rare, and idle ranges are many), and only against the descriptor the group holds.
    if end_window && view.pending == Pending::Nothing {
        duties.push(Duty::AlignReplicas);
    }
    if view.frozen {
        duties.push(Duty::WatchFreeze);
        return duties;
    }
    if end_window {
        duties.push(Duty::EndLoadWindow);
    }
    duties.push(Duty::Split);
    if end_window && view.has_right {
        duties.push(Duty::MergeIfSmall);
    }
    if pass % every(periods.gc) == view.range.0 % every(periods.gc) {
        duties.push(Duty::CollectGarbage);
    }
    duties
}

/// The passes a leader waits before it sends snapshots to stuck followers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StuckPeriods {
    /// A stuck learner (a replica just added, with no state to match) first gets one after
    /// this many passes.
    pub learner_first: u32,
    /// Any stuck follower gets one every this many passes (a voter may only be restarting).
    pub every: u32,
}

/// On the leader of one range: how many passes in a row a follower has been stuck.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StuckWatch {
    passes: u32,
}

impl StuckWatch {
    /// Observes one pass: `stuck` when some follower matches nothing of the log, `learner`
    /// when one of those is a learner. True when snapshots are to be sent now.
    pub fn observe(&mut self, stuck: bool, learner: bool, periods: StuckPeriods) -> bool {
        if !stuck {
            self.passes = 0;
            return false;
        }
        self.passes = self.passes.saturating_add(1);
        // The learner's first snapshot comes early, any later one (it did not take it: dead
        // or slow) at the voters' pace, so a dead learner is not sent one every few passes.
        let early = learner && self.passes == periods.learner_first;
        early || self.passes.is_multiple_of(periods.every.max(1))
    }

    /// Whether some follower is being counted as stuck.
    pub fn counting(&self) -> bool {
        self.passes > 0
    }
}

/// How a leader gets a snapshot to followers that cannot take its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapshotAction {
    /// Purge the log up to this index (behind the latest snapshot): openraft then sends the
    /// snapshot to whoever needs an entry before it.
    PurgeUpTo(u64),
    /// No snapshot is ahead of the purge point yet: build one first.
    BuildSnapshot,
}

/// The purge point for stuck followers: up to the latest snapshot (`snapshot`), but never
/// past the least index any other follower matched (`least_matched`: openraft keeps what a
/// follower's replication stream may still send — a dead voter's stays open — so a purge
/// past it would never happen); only forward of what is purged already (`purged`).
pub fn snapshot_action(
    snapshot: Option<u64>,
    purged: Option<u64>,
    least_matched: Option<u64>,
) -> SnapshotAction {
    let upto = match (snapshot, least_matched) {
        (Some(snapshot), Some(matched)) => Some(snapshot.min(matched)),
        (snapshot, None) => snapshot,
        (None, Some(_)) => None,
    };
    match upto {
        Some(upto) if Some(upto) > purged => SnapshotAction::PurgeUpTo(upto),
        _ => SnapshotAction::BuildSnapshot,
    }
}
