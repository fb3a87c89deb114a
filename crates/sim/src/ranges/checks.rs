//! What the range simulation checks at every step — the metadata partitions the keys, no
//! range's generation goes backwards, every range keeps its replica target, no replica's
//! closed timestamp goes backwards between restarts, no member serves overlapping unfrozen
//! replicas — and how a failed run describes itself (what the final read is stuck on, ranges
//! and commands in a few words).

use ranges::{RangeCommand, RangeDescriptor};

use super::{Sim, moves};

impl Sim {
    pub(super) fn check_invariants(&mut self) {
        if self.broken.is_some() {
            return;
        }
        if let Err(error) = self.meta.check() {
            self.broken = Some(format!("step {}: the metadata: {error}", self.step));
            return;
        }
        for range in self.meta.iter() {
            if range.voters().count() < moves::TARGET {
                self.broken = Some(format!(
                    "step {}: range {} has {} voters, below the target of {}",
                    self.step,
                    range.id,
                    range.voters().count(),
                    moves::TARGET
                ));
                return;
            }
            let seen = self.generations.entry(range.id).or_insert(range.generation);
            if range.generation < *seen {
                self.broken = Some(format!(
                    "step {}: range {} went back from generation {} to {}",
                    self.step, range.id, seen, range.generation
                ));
                return;
            }
            *seen = range.generation;
        }
        for (member_id, member) in &self.members {
            for (range, replica) in &member.replicas {
                let closed = replica.state().closed();
                let seen = self.closed.entry((*member_id, *range)).or_insert(closed);
                if closed < *seen {
                    self.broken = Some(format!(
                        "step {}: member {member_id}'s closed timestamp of range {range} went back from {seen:?} to {closed:?}",
                        self.step
                    ));
                    return;
                }
                *seen = closed;
            }
        }
        for (id, member) in &self.members {
            let mut spans: Vec<&RangeDescriptor> = member
                .replicas
                .values()
                .filter(|r| r.state().merging_into().is_none())
                .map(|r| r.state().descriptor())
                .collect();
            spans.sort_by(|a, b| a.start.cmp(&b.start));
            for pair in spans.windows(2) {
                let overlaps = pair[0].end.as_ref().is_none_or(|end| *end > pair[1].start);
                if overlaps {
                    self.broken = Some(format!(
                        "step {}: member {id} serves overlapping replicas {} and {}",
                        self.step,
                        describe_range(pair[0]),
                        describe_range(pair[1])
                    ));
                    return;
                }
            }
        }
    }

    /// What the final read is stuck on, for a run that did not finish.
    pub(super) fn stuck(&self) -> String {
        let mut out = Vec::new();
        for range in self.meta.iter() {
            let group = &self.groups[&range.id];
            let settled = group.leader.is_some()
                && self
                    .members
                    .values()
                    .filter_map(|m| m.replicas.get(&range.id))
                    .all(|r| r.state().descriptor().generation == range.generation);
            if settled {
                continue;
            }
            let holders: Vec<String> = self
                .members
                .iter()
                .filter_map(|(id, m)| {
                    let down = if m.up { "" } else { " down" };
                    m.replicas.get(&range.id).map(|r| {
                        let held = r.state().descriptor();
                        format!("{id}@{} applied {}{down}", held.generation, r.applied())
                    })
                })
                .collect();
            let pending: Vec<String> = self
                .members
                .values()
                .filter_map(|m| m.replicas.get(&range.id))
                .filter(|r| r.state().descriptor().generation < range.generation)
                .map(|r| {
                    let held = r.state().descriptor();
                    format!(
                        "{:?} from {}",
                        ranges::classify(range, held),
                        describe_range(held)
                    )
                })
                .take(1)
                .collect();
            let frozen: Vec<String> = self
                .members
                .values()
                .flat_map(|m| m.replicas.values())
                .filter(|r| r.state().merging_into() == Some(range.id))
                .map(|r| describe_range(r.state().descriptor()))
                .collect();
            out.push(format!(
                "{} leader {:?} voters {:?} learners {:?} held by {holders:?} {pending:?} frozen into it {frozen:?} merged_right {:?}",
                describe_range(range),
                group.leader,
                group.voters,
                group.learners,
                self.merged_right.get(&range.id)
            ));
        }
        out.join("; ")
    }
}

/// A descriptor in a few words, for failures.
pub(super) fn describe_range(range: &RangeDescriptor) -> String {
    let text = |key: &[u8]| String::from_utf8_lossy(key).into_owned();
    format!(
        "{}@{} [{:?}, {:?})",
        range.id,
        range.generation,
        text(&range.start),
        range.end.as_deref().map(text)
    )
}

/// A command in a few words, for failures.
pub(super) fn describe(command: &RangeCommand) -> String {
    match command {
        RangeCommand::Split { left, right } => {
            format!(
                "split into {} and {}",
                describe_range(left),
                describe_range(right)
            )
        }
        RangeCommand::Merge { merged, right } => format!(
            "merge into {} of {}",
            describe_range(merged),
            describe_range(right.machine.state().descriptor())
        ),
        RangeCommand::SetDescriptor(range) => format!("descriptor {}", describe_range(range)),
        RangeCommand::Freeze { generation, into } => format!("freeze at {generation} into {into}"),
        other => format!("{other:?}").chars().take(60).collect(),
    }
}
