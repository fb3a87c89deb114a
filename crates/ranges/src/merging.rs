//! The sequence of one merge of a range with its right neighbour, as pure state machines the
//! driver (`range-node`) feeds with what its calls returned and asks what to do next:
//!
//! - `align_step`: before a merge, the next change that brings the right neighbour's replicas
//!   onto the left one's — never towards a draining member, never while the neighbour's group
//!   has not applied its current descriptor, a promotion only once the learner caught up.
//! - `MergeRun`: the merge itself, in four steps each safe to stop after — **freeze** the
//!   right range in its own group (its state is final from then on), **fetch** that final
//!   state and check it fits one Raft entry, **commit** in the metadata (refused unless both
//!   ranges are still at the generations the merge saw; from here the merge is decided),
//!   **apply** in the left range's group. A merge that ends before its commit **releases** the
//!   right range (a bump of its generation, exclusive with the commit by the same rule) when
//!   it may have frozen it; after the commit, the left range's next leader finishes step 4.
//! - `FreezeWatch`: on the leader of a frozen range, when a freeze has outlived its merge (the
//!   driver died between freeze and commit) and the range must be released.
//!
//! Must never do I/O, read a clock or depend on a runtime: time comes in as durations.

use std::time::Duration;

use base::NodeId;

use crate::descriptor::{RangeDescriptor, RangeId, ReplicaChange};

/// What a range's group made of a command the driver routed to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandFate {
    /// Applied.
    Done,
    /// Certainly not applied (refused, or never proposed).
    NotApplied,
    /// Handed to a leader and lost: it may have applied.
    Unknown,
}

/// What the right neighbour's group shows of itself, as its status answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupView {
    /// Whether the group has a leader.
    pub led: bool,
    /// The generation of the descriptor the group applied.
    pub applied_generation: u64,
}

/// The next step of bringing `right`'s replicas onto `left`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlignStep {
    /// Same replicas: the merge can go on.
    Aligned,
    /// Nothing to do now (a change under way, no leader, a draining member): ask again later.
    Wait,
    /// Commit this replica change for `right` at its generation.
    Change(ReplicaChange),
    /// Commit this promotion once the learner has caught up with `right`'s leader.
    PromoteIfCaughtUp(NodeId),
}

/// The next step of aligning `right` (as the metadata has it, its group as `view` shows it,
/// `None` when no replica answered) to `left`, with `draining` members taking no replicas.
pub fn align_step(
    left: &RangeDescriptor,
    right: &RangeDescriptor,
    draining: &[NodeId],
    view: Option<GroupView>,
) -> AlignStep {
    let Some(change) = crate::merge::align(left, right) else {
        return if left.same_replicas(right) {
            AlignStep::Aligned
        } else {
            // Only a learner of `left` differs: `left`'s own change finishes first.
            AlignStep::Wait
        };
    };
    if left.replicas.iter().any(|r| draining.contains(&r.member)) {
        return AlignStep::Wait;
    }
    let applied = view.is_some_and(|v| v.led && v.applied_generation == right.generation);
    if !applied {
        return AlignStep::Wait;
    }
    match change {
        ReplicaChange::Promote(member) => AlignStep::PromoteIfCaughtUp(member),
        other => AlignStep::Change(other),
    }
}

/// Where a merge run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergePhase {
    Freezing,
    Fetching,
    Committing,
    Applying,
    /// Releasing the right range before ending unmerged.
    Releasing,
    Ended,
}

/// What the driver learned from the step it carried out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeEvent {
    /// The freeze command's fate in the right range's group.
    Frozen(CommandFate),
    /// The right range's final state, of this many bytes, from a replica that applied the
    /// freeze; `None` when no replica gave it.
    Fetched(Option<u64>),
    /// Whether the metadata committed the merge (`false`: refused, or its fate unknown — the
    /// release that follows is refused by the metadata if the commit did happen, so it is
    /// safe either way).
    Committed(bool),
    /// The Merge command's fate in the left range's group.
    Applied(CommandFate),
    /// The release was carried out (whatever the metadata answered: a refused bump means the
    /// range changed meanwhile, which released it too).
    Released,
}

/// What the driver does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MergeStep {
    /// Freeze `range` at `generation` for a merge into `into`, in its own group.
    Freeze {
        range: RangeId,
        generation: u64,
        into: RangeId,
    },
    /// Fetch the frozen state of `range` (frozen at `generation` for `into`) from a replica.
    Fetch {
        range: RangeId,
        generation: u64,
        into: RangeId,
    },
    /// Commit the merge in the metadata: `left` at `left_generation` takes its right
    /// neighbour at `right_generation`.
    Commit {
        left: RangeId,
        left_generation: u64,
        right_generation: u64,
    },
    /// Propose the Merge command, with the fetched state, in the merged range's group.
    Apply,
    /// Release `range` by a bump of `generation` in the metadata.
    Release { range: RangeId, generation: u64 },
    /// The run is over.
    End(MergeEnd),
}

/// How a merge run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeEnd {
    /// Committed and applied in the merged range's group.
    Merged,
    /// Committed; the merged range's group has not applied it yet (its leader will).
    Decided,
    /// Not merged, and nothing left frozen.
    NotMerged(MergeFailure),
}

/// Why a merge did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeFailure {
    /// The right range's group did not take the freeze (it changed, or was not reachable).
    FreezeNotApplied,
    /// The freeze's fate is unknown (released to be safe).
    FreezeUnknown,
    /// No replica gave the frozen state.
    NoFrozenState,
    /// The right range holds more than one Raft entry carries.
    TooLarge { bytes: u64, max: u64 },
    /// The metadata refused the commit (a range changed since the merge read it).
    CommitRefused,
}

/// One merge of `left` with its right neighbour `right`: feed each step's outcome to `on`.
#[derive(Clone, Debug)]
pub struct MergeRun {
    left: RangeId,
    left_generation: u64,
    right: RangeId,
    right_generation: u64,
    max_bytes: u64,
    phase: MergePhase,
    /// The end announced once a release is done.
    after_release: Option<MergeFailure>,
    /// How it ended, once it has.
    ended: Option<MergeEnd>,
}

impl MergeRun {
    /// A merge of `left` with `right` (as the metadata has them) whose right state may be at
    /// most `max_bytes`; returns it and its first step.
    pub fn start(
        left: &RangeDescriptor,
        right: &RangeDescriptor,
        max_bytes: u64,
    ) -> (MergeRun, MergeStep) {
        let run = MergeRun {
            left: left.id,
            left_generation: left.generation,
            right: right.id,
            right_generation: right.generation,
            max_bytes,
            phase: MergePhase::Freezing,
            after_release: None,
            ended: None,
        };
        let first = MergeStep::Freeze {
            range: right.id,
            generation: right.generation,
            into: left.id,
        };
        (run, first)
    }

    pub fn phase(&self) -> MergePhase {
        self.phase
    }

    /// The next step after `event`. An event that does not belong to the current phase is a
    /// driver bug: the run ends unmerged, releasing the right range if it may be frozen.
    pub fn on(&mut self, event: MergeEvent) -> MergeStep {
        use MergeEvent as E;
        use MergePhase as P;
        match (self.phase, event) {
            (P::Freezing, E::Frozen(CommandFate::Done)) => {
                self.phase = P::Fetching;
                MergeStep::Fetch {
                    range: self.right,
                    generation: self.right_generation,
                    into: self.left,
                }
            }
            (P::Freezing, E::Frozen(CommandFate::NotApplied)) => {
                self.end(MergeEnd::NotMerged(MergeFailure::FreezeNotApplied))
            }
            (P::Freezing, E::Frozen(CommandFate::Unknown)) => {
                self.release(MergeFailure::FreezeUnknown)
            }
            (P::Fetching, E::Fetched(None)) => self.release(MergeFailure::NoFrozenState),
            (P::Fetching, E::Fetched(Some(bytes))) if bytes > self.max_bytes => {
                self.release(MergeFailure::TooLarge {
                    bytes,
                    max: self.max_bytes,
                })
            }
            (P::Fetching, E::Fetched(Some(_))) => {
                self.phase = P::Committing;
                MergeStep::Commit {
                    left: self.left,
                    left_generation: self.left_generation,
                    right_generation: self.right_generation,
                }
            }
            (P::Committing, E::Committed(true)) => {
                self.phase = P::Applying;
                MergeStep::Apply
            }
            (P::Committing, E::Committed(false)) => self.release(MergeFailure::CommitRefused),
            (P::Applying, E::Applied(CommandFate::Done)) => self.end(MergeEnd::Merged),
            (P::Applying, E::Applied(_)) => self.end(MergeEnd::Decided),
            (P::Releasing, E::Released) => {
                let failure = self
                    .after_release
                    .expect("a release always says what it ends with");
                self.end(MergeEnd::NotMerged(failure))
            }
            (P::Ended, _) => MergeStep::End(self.ended.expect("an ended run knows its end")),
            // Out of order: past the commit the merge is decided; before it, release.
            (P::Applying, _) => self.end(MergeEnd::Decided),
            (P::Releasing, _) => MergeStep::Release {
                range: self.right,
                generation: self.right_generation,
            },
            (P::Freezing | P::Fetching | P::Committing, _) => {
                self.release(MergeFailure::FreezeUnknown)
            }
        }
    }

    fn release(&mut self, failure: MergeFailure) -> MergeStep {
        self.phase = MergePhase::Releasing;
        self.after_release = Some(failure);
        MergeStep::Release {
            range: self.right,
            generation: self.right_generation,
        }
    }

    fn end(&mut self, end: MergeEnd) -> MergeStep {
        self.phase = MergePhase::Ended;
        self.ended = Some(end);
        MergeStep::End(end)
    }
}

/// On the leader of one range: how long it has been frozen at the generation the metadata
/// still gives it, and whether that is longer than a merge may take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FreezeWatch {
    /// The generation of the freeze being timed, and when it was first seen (the driver's
    /// monotonic time).
    since: Option<(u64, Duration)>,
}

impl FreezeWatch {
    /// Observes the range at `now`: `frozen_at` is the generation its group holds while it is
    /// frozen for a merge (`None` when not frozen), `meta_generation` the generation the
    /// metadata gives it. True when the freeze has lasted `max` with the metadata still at
    /// the frozen generation (neither committed into the left neighbour nor released): it
    /// must be released now, and the watch starts over. A freeze at another generation is a
    /// new freeze, timed from now.
    pub fn observe(
        &mut self,
        frozen_at: Option<u64>,
        meta_generation: u64,
        now: Duration,
        max: Duration,
    ) -> bool {
        let Some(generation) = frozen_at else {
            self.since = None;
            return false;
        };
        if generation != meta_generation {
            // The metadata moved on (committed or released): the group follows by itself.
            return false;
        }
        let since = match self.since {
            Some((timed, since)) if timed == generation => since,
            _ => {
                self.since = Some((generation, now));
                now
            }
        };
        if now.saturating_sub(since) >= max {
            self.since = None;
            return true;
        }
        false
    }

    /// Whether a freeze is being timed.
    pub fn timing(&self) -> bool {
        self.since.is_some()
    }
}
