//! Splits and merges in the range simulation. A split is committed in the metadata at a key of
//! the seed's choosing; the range's leader carries it into the group later (`leader_duty`),
//! and every replica that applies it starts the right half's replica from the seed it leaves.
//! A merge runs the real `ranges::MergeRun`, one step per simulation step: freeze the right
//! range in its group, fetch its final state from a replica that applied the freeze, commit in
//! the metadata, apply in the left group — and release the right range by a bump when it gives
//! up after a possible freeze.

use ranges::{
    CommandFate, FrozenRange, MergeEnd, MergeEvent, MergeRun, MergeStep, RangeCommand,
    RangeDescriptor, RangeId,
};

use super::{Group, Sim};

/// The largest right range a merge carries (entries of versions): small enough that some
/// merges give up for size.
const MERGE_VERSIONS_MAX: u64 = 400;

/// A merge in progress: the run, its next step, and what the steps brought back.
pub(super) struct Merging {
    run: MergeRun,
    step: MergeStep,
    left: RangeDescriptor,
    right: RangeDescriptor,
    frozen: Option<FrozenRange>,
    merged: Option<RangeDescriptor>,
}

impl Sim {
    /// Commits a split of a random range at a random key prefix in the metadata.
    pub(super) fn split_somewhere(&mut self) {
        let at = format!("{:03}", self.rng.range(0, 1000)).into_bytes();
        let range = self.meta.lookup(&at).clone();
        // Proposed as the real driver does: only once the range's group serves the
        // metadata's generation of it.
        if !self.serving(&range) {
            return;
        }
        let new_id = RangeId(self.next_range);
        if let Ok((_, right)) = self.meta.split(range.id, range.generation, &at, new_id) {
            self.next_range += 1;
            self.splits += 1;
            self.groups.insert(new_id, Group::of(&right));
        }
    }

    /// Starts a merge of a random range with its right neighbour, unless one is running.
    pub(super) fn start_merge(&mut self) {
        if self.merging.is_some() {
            return;
        }
        let ranges: Vec<RangeDescriptor> = self.meta.iter().cloned().collect();
        if ranges.len() < 2 {
            return;
        }
        let at = self.rng.range(0, ranges.len() as u64 - 1) as usize;
        let (left, right) = (ranges[at].clone(), ranges[at + 1].clone());
        // Neighbours on different members are aligned first (the real driver's
        // `ranges::align_step`); the simulation merges aligned ones only.
        if !left.same_replicas(&right) || !self.serving(&left) || !self.serving(&right) {
            return;
        }
        let (run, step) = MergeRun::start(&left, &right, MERGE_VERSIONS_MAX);
        self.merging = Some(Merging {
            run,
            step,
            left,
            right,
            frozen: None,
            merged: None,
        });
    }

    /// Carries out the running merge's next step and feeds its outcome back.
    pub(super) fn merge_step(&mut self) {
        let Some(mut merging) = self.merging.take() else {
            return;
        };
        let event = match merging.step.clone() {
            MergeStep::Freeze {
                range,
                generation,
                into,
            } => MergeEvent::Frozen(self.command(range, RangeCommand::Freeze { generation, into })),
            MergeStep::Fetch {
                range,
                generation,
                into,
            } => {
                merging.frozen = self.fetch_frozen(range, generation, into);
                MergeEvent::Fetched(merging.frozen.as_ref().map(|f| f.versions.len() as u64))
            }
            MergeStep::Commit {
                left,
                left_generation,
                right_generation,
            } => {
                let merged = self
                    .meta
                    .merge(left, left_generation, right_generation)
                    .ok();
                if let Some(merged) = &merged {
                    self.merges += 1;
                    self.merged_right
                        .insert(left, (merged.end.clone(), right_generation));
                }
                merging.merged = merged.clone();
                MergeEvent::Committed(merged.is_some())
            }
            MergeStep::Apply => {
                let (Some(merged), Some(frozen)) = (merging.merged.clone(), merging.frozen.take())
                else {
                    self.broken = Some("a merge applied what it never fetched".to_owned());
                    return;
                };
                let command = RangeCommand::Merge {
                    merged,
                    right: Box::new(frozen),
                };
                MergeEvent::Applied(self.command(merging.left.id, command))
            }
            MergeStep::Release { range, generation } => {
                let _ = self.meta.bump(range, generation);
                MergeEvent::Released
            }
            MergeStep::End(end) => {
                if matches!(end, MergeEnd::Merged | MergeEnd::Decided)
                    && let Some(group) = self.groups.get_mut(&merging.right.id)
                {
                    group.gone = true;
                }
                return;
            }
        };
        merging.step = merging.run.on(event);
        self.merging = Some(merging);
    }

    /// Whether `range`'s group has a leader that applied the metadata's generation of it.
    fn serving(&mut self, range: &RangeDescriptor) -> bool {
        let Some(leader) = self.caught_up_leader(range.id) else {
            return false;
        };
        self.members[&leader].replicas[&range.id]
            .state()
            .descriptor()
            .generation
            == range.generation
    }

    /// Proposes `command` in `id`'s group through its leader and applies it there: its fate.
    fn command(&mut self, id: RangeId, command: RangeCommand) -> CommandFate {
        let Some(leader) = self.caught_up_leader(id) else {
            return CommandFate::NotApplied;
        };
        let Some(index) = self.propose(id, leader, command) else {
            // Without a quorum the proposal may still commit once one is back.
            return CommandFate::Unknown;
        };
        self.catch_up(leader, id, Some(index));
        let Some(replica) = self.members[&leader].replicas.get(&id) else {
            return CommandFate::Unknown;
        };
        let state = replica.state();
        let took = match &self.groups[&id].log[index as usize - 1] {
            RangeCommand::Freeze { into, .. } => state.merging_into() == Some(*into),
            RangeCommand::Merge { merged, .. } => {
                state.descriptor().generation >= merged.generation
            }
            _ => true,
        };
        if took {
            CommandFate::Done
        } else {
            CommandFate::NotApplied
        }
    }

    /// The state of `range` frozen at `generation` for a merge into `into`, from any up
    /// replica that applied that freeze (one frozen at another generation, for a merge given
    /// up, holds another state).
    pub(super) fn fetch_frozen(
        &self,
        range: RangeId,
        generation: u64,
        into: RangeId,
    ) -> Option<FrozenRange> {
        self.members
            .values()
            .filter(|m| m.up)
            .filter_map(|m| m.replicas.get(&range))
            .find(|r| {
                r.state().merging_into() == Some(into)
                    && r.state().descriptor().generation == generation
            })
            .map(|r| r.frozen())
    }
}
