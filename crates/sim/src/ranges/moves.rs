//! Replica moves in the range simulation, by the real cores: a move walks `ranges::move_step`
//! on the metadata (a learner on the destination, promoted once caught up, the source removed;
//! never below the replica target); a range's leader brings its group's Raft membership to the
//! metadata's descriptor one `ranges::membership_step` at a time (a learner gets the leader's
//! state as a snapshot), handing its leadership over first when the descriptor drops it, and
//! records the descriptor once the membership matches; each member keeps or retires its
//! replicas by `ranges::keep_replica` and starts the ones placed on it by
//! `ranges::start_replica`.

use base::NodeId;
use ranges::{MembershipStep, MoveStep, RangeCommand, RangeDescriptor, RangeId};

use super::{MEMBERS, Sim};

/// Voters every range keeps.
pub(super) const TARGET: usize = 3;

/// A move in progress.
#[derive(Clone, Debug)]
pub(super) struct Moving {
    range: RangeId,
    from: NodeId,
    to: NodeId,
    started: bool,
}

impl Sim {
    /// Starts moving a random range's replica from one of its voters to a member without one,
    /// unless a move is running.
    pub(super) fn start_move(&mut self) {
        if self.moving.is_some() {
            return;
        }
        let ranges: Vec<RangeDescriptor> = self.meta.iter().cloned().collect();
        let range = self.rng.pick(&ranges).clone();
        let voters: Vec<NodeId> = range.voters().collect();
        let free: Vec<NodeId> = (1..=MEMBERS)
            .map(NodeId)
            .filter(|m| range.role_of(*m).is_none())
            .collect();
        if voters.is_empty() || free.is_empty() {
            return;
        }
        self.moving = Some(Moving {
            range: range.id,
            from: *self.rng.pick(&voters),
            to: *self.rng.pick(&free),
            started: false,
        });
    }

    /// The running move's next step in the metadata.
    pub(super) fn move_step(&mut self) {
        let Some(mut moving) = self.moving.take() else {
            return;
        };
        let Some(desc) = self.meta.get(moving.range).cloned() else {
            return; // Merged away: the move ends.
        };
        let change = match ranges::move_step(&desc, moving.from, moving.to, TARGET, moving.started)
        {
            MoveStep::Done | MoveStep::Refuse(_) => return,
            MoveStep::Change(change) => change,
            // The rebalancer promotes a learner once its leader reports it caught up.
            MoveStep::Wait if self.caught_up(moving.range, moving.to) => {
                ranges::ReplicaChange::Promote(moving.to)
            }
            MoveStep::Wait => {
                self.moving = Some(moving);
                return;
            }
        };
        if self
            .meta
            .change_replicas(moving.range, desc.generation, change)
            .is_ok()
        {
            self.moves += 1;
            moving.started |= matches!(change, ranges::ReplicaChange::AddLearner(_));
        }
        self.moving = Some(moving);
    }

    /// Whether `member`'s replica of `range` has applied its group's whole log.
    fn caught_up(&self, range: RangeId, member: NodeId) -> bool {
        let log = self.groups.get(&range).map_or(0, |g| g.log.len() as u64);
        self.members[&member]
            .replicas
            .get(&range)
            .is_some_and(|r| r.applied() == log)
    }

    /// On `leader` of `id`, whose metadata descriptor `meta` keeps the span the group holds:
    /// the next membership step, or the descriptor recorded once the membership matches.
    pub(super) fn membership_duty(&mut self, id: RangeId, leader: NodeId, meta: RangeDescriptor) {
        let group = &self.groups[&id];
        let current = ranges::RaftMembership {
            voters: group.voters.clone(),
            nodes: group.voters.union(&group.learners).copied().collect(),
            settled: true,
        };
        match ranges::membership_step(&meta, leader, &current) {
            MembershipStep::Wait => {}
            MembershipStep::Done => {
                self.propose(id, leader, RangeCommand::SetDescriptor(meta));
            }
            MembershipStep::HandOver(voters) => {
                let to = voters
                    .into_iter()
                    .find(|v| self.members[v].up && self.members[v].replicas.contains_key(&id));
                if let (Some(to), Some(group)) = (to, self.groups.get_mut(&id)) {
                    group.leader = Some(to);
                }
            }
            step => {
                if !self.quorum_up(id) {
                    return;
                }
                let group = self.groups.get_mut(&id).expect("checked above");
                match step {
                    MembershipStep::AddLearner(member) => {
                        group.learners.insert(member);
                    }
                    MembershipStep::ReplaceVoters(voters) => {
                        for voter in &voters {
                            group.learners.remove(voter);
                        }
                        group.voters = voters;
                    }
                    MembershipStep::Remove(member) => {
                        group.voters.remove(&member);
                        group.learners.remove(&member);
                    }
                    MembershipStep::Wait | MembershipStep::Done | MembershipStep::HandOver(_) => {}
                }
            }
        }
    }

    /// One member's reconcile pass: retire what it no longer holds for anyone, start (from
    /// the leader's snapshot) what its groups list without a replica here.
    pub(super) fn reconcile(&mut self, member: NodeId) {
        if !self.members[&member].up {
            return;
        }
        let held: Vec<RangeId> = self.members[&member].replicas.keys().copied().collect();
        for id in held {
            let meta = self.meta.get(id).cloned();
            let replica = &self.members[&member].replicas[&id];
            let awaits_merge = replica.state().merging_into().is_some_and(|into| {
                ranges::lifecycle::awaits_merge(
                    self.members[&member]
                        .replicas
                        .get(&into)
                        .map(|r| r.state().descriptor().generation),
                    self.meta.get(into).map(|m| m.generation),
                )
            });
            let group = self.groups.get(&id);
            let running = ranges::RunningReplica {
                placed_here: meta.as_ref().is_some_and(|m| m.role_of(member).is_some()),
                in_metadata: meta.is_some(),
                awaits_merge,
                leads: group.and_then(|g| g.leader) == Some(member),
                removal_seen: group
                    .is_none_or(|g| !g.voters.contains(&member) && !g.learners.contains(&member)),
            };
            if ranges::keep_replica(running) == ranges::Keep::Retire {
                self.note(format!("{member} retires {id}"));
                // Its log goes with it.
                self.received.remove(&(member, id));
                let m = self.members.get_mut(&member).expect("member");
                m.replicas.remove(&id);
                m.durable.remove(&id);
            }
        }
        let listed: Vec<RangeId> = self
            .groups
            .iter()
            .filter(|(_, g)| {
                !g.gone && (g.voters.contains(&member) || g.learners.contains(&member))
            })
            .map(|(id, _)| *id)
            .filter(|id| !self.members[&member].replicas.contains_key(id))
            .collect();
        for id in listed {
            self.start_from_snapshot(member, id);
        }
        // Replicas whose own log ends before their group's purged log catch up by a snapshot.
        let behind: Vec<RangeId> = self.members[&member]
            .replicas
            .iter()
            .filter(|(id, r)| {
                let own = self.received.get(&(member, **id)).copied().unwrap_or(0);
                self.groups
                    .get(id)
                    .is_some_and(|g| !g.gone && r.applied().max(own) < g.purged)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in behind {
            self.install_snapshot(member, id);
        }
    }

    /// Starts `member`'s replica of `id` as `ranges::start_replica` says: a range whose split
    /// has not applied here waits for its seed; anything else takes the leader's state.
    fn start_from_snapshot(&mut self, member: NodeId, id: RangeId) {
        let Some(meta) = self.meta.get(id).cloned() else {
            return;
        };
        let parent_holds_start = self.members[&member].replicas.values().any(|r| {
            let held = r.state().descriptor();
            let behind = self
                .meta
                .get(held.id)
                .is_none_or(|m| m.generation > held.generation);
            let frozen = r.state().merging_into().is_some();
            ranges::stands_in_way(held, behind, frozen, &meta)
        });
        if ranges::start_replica(false, meta.generation, parent_holds_start)
            != ranges::Start::AwaitSnapshot
        {
            return;
        }
        self.install_snapshot(member, id);
    }

    /// `member`'s replica of `id` takes its leader's state (a snapshot), unless another
    /// replica here still holds part of its span (the real `vet_snapshot`, over every record
    /// not gone: that one must apply its split or merge, or be retired, first).
    pub(super) fn install_snapshot(&mut self, member: NodeId, id: RangeId) {
        if self.groups.get(&id).and_then(|g| g.leader) == Some(member) {
            return;
        }
        let Some(leader) = self.caught_up_leader(id) else {
            return;
        };
        let snapshot = self.members[&leader].replicas[&id].clone();
        let span = snapshot.state().descriptor().clone();
        let overlaps = self.members[&member].replicas.values().any(|r| {
            let held = r.state().descriptor();
            held.id != id
                && held.end.as_ref().is_none_or(|end| *end > span.start)
                && span.end.as_ref().is_none_or(|end| *end > held.start)
        });
        if overlaps {
            return;
        }
        let there: Vec<String> = self.members[&member]
            .replicas
            .values()
            .map(|r| super::describe_range(r.state().descriptor()))
            .collect();
        self.note(format!(
            "{member} installs {} beside {there:?}",
            super::describe_range(&span)
        ));
        self.received.insert((member, id), snapshot.applied());
        self.snapshots += 1;
        let m = self.members.get_mut(&member).expect("member");
        m.replicas.insert(id, snapshot);
        // An installed snapshot is synced in one transaction (the real install's rule).
        m.sync();
    }
}
