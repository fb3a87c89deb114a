//! A consensus bucket's ranges in memory: three members, the metadata as one linearizable
//! `ranges::RangeMap` (what the metadata group holds), and each range's Raft group as an
//! abstract log — entries commit while a majority of the range's replicas is up, a leader is
//! one of the replicas the simulation elects, and every replica applies the log at its own
//! pace through the real `ranges::RangeMachine` over an in-memory store (`ranges::MemRange`).
//! The real pure cores decide: `ranges::classify` what a leader carries out of the metadata
//! (splits), `ranges::MergeRun` the merge sequence (freeze, fetch, commit, apply, release),
//! `ranges::RangeCache` the clients' routing. Clients run the range-set workload (unique adds,
//! each its own key; whole-bucket reads paged range by range, each page linearizable on the
//! range's leader). A seeded plan splits and merges ranges, changes leaders, crash-restarts
//! members (a crash loses what a replica applied since its member last synced; splits and
//! merges are synced as they apply, as the real state machine does) and loses requests and
//! replies (an add whose reply is lost has an unknown outcome).
//!
//! Invariants are checked at every step: the metadata partitions the bucket's keys, no range's
//! generation goes backwards, and on no member do two serving (unfrozen) replicas overlap.
//! Then everything heals, the leaders finish what the metadata is ahead by, a final read runs
//! until it succeeds, and the set checker judges the history (linearizable reads: every read
//! holds every add acknowledged, or seen by another read, before it began).
//!
//! What this file owns is the world and the step loop; `clients` is the workload and its
//! history, `changes` the splits and merges.

use std::collections::{BTreeMap, BTreeSet};

use base::{HlcTimestamp, NodeId};
use check::Report;
use ranges::{MemRange, RangeCommand, RangeDescriptor, RangeId, RangeMap, RangeState};

use crate::SimRng;

mod changes;
mod checks;
mod clients;
mod moves;
mod registers;

use changes::Merging;
use checks::{describe, describe_range};
use clients::Client;
use moves::Moving;

/// Members of the cluster; a range has replicas on three of them (`moves::TARGET`).
const MEMBERS: u64 = 4;
/// Clients running the workload.
const CLIENTS: usize = 3;
/// Steps in which clients start operations and faults happen; then everything heals.
const OPS_STEPS: u64 = 4_000;
/// Steps after healing before the final read starts (leaders finish pending changes).
const SETTLE_STEPS: u64 = 300;
/// Steps at most: a run that has not finished its final read by then fails (a livelock).
const STEPS_MAX: u64 = 20_000;
/// Reads see every version.
const NEWEST: HlcTimestamp = HlcTimestamp {
    physical: u64::MAX,
    logical: u32::MAX,
};

/// A bug planted to prove the checkers catch it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Canary {
    /// A replica asked to scan from a key its range no longer holds (split away) answers an
    /// empty page up to where the asker thought the range ended, instead of refusing.
    SplitStaleRead,
    /// Applying a merge drops the right neighbour's versions.
    MergeLosesRight,
    /// Follower reads are served at any closed timestamp, however old.
    FollowerReadUnbounded,
}

/// What the clients run.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Workload {
    /// Unique adds, each its own key; whole-bucket reads (the set checker, linearizable reads).
    Set,
    /// Writes, linearizable reads and follower reads of a few registers (the linearizable
    /// register checker and the bounded-staleness checker).
    Register,
}

impl Workload {
    /// The suite's workload for `seed`: the set on even seeds, the registers on odd ones.
    pub fn for_seed(seed: u64) -> Workload {
        if seed.is_multiple_of(2) {
            Workload::Set
        } else {
            Workload::Register
        }
    }
}

/// What a run is asked to do.
#[derive(Copy, Clone, Debug)]
pub struct Settings {
    pub seed: u64,
    pub canary: Option<Canary>,
    pub workload: Workload,
}

/// What a run did and how it was judged.
#[derive(Debug)]
pub struct Outcome {
    pub seed: u64,
    pub report: Report,
    /// The first broken invariant, or a run that did not finish.
    pub invariant: Result<(), String>,
    /// Splits, merges and replica changes of moves that took effect in the metadata.
    pub splits: u64,
    pub merges: u64,
    pub moves: u64,
    /// Snapshots installed (new replicas, and replicas whose own log ended before the purged
    /// log).
    pub snapshots: u64,
    /// A hash of the history: the same seed gives the same run.
    pub history_hash: u64,
    pub steps: u64,
}

impl Outcome {
    pub fn is_valid(&self) -> bool {
        matches!(self.report.verdict, check::Verdict::Valid) && self.invariant.is_ok()
    }

    pub fn is_invalid(&self) -> bool {
        matches!(self.report.verdict, check::Verdict::Invalid(_)) || self.invariant.is_err()
    }

    pub fn summary(&self) -> String {
        let verdict = crate::verdict_text(&self.report.verdict);
        let invariant = match &self.invariant {
            Ok(()) => "invariants held".to_owned(),
            Err(why) => format!("broken: {why}"),
        };
        format!(
            "seed {}: {verdict} ({} ops checked, {} steps, {} splits, {} merges, {} replica \
             changes, {} snapshots); {invariant}",
            self.seed,
            self.report.ops_checked,
            self.steps,
            self.splits,
            self.merges,
            self.moves,
            self.snapshots
        )
    }
}

/// One member: up or down, its replicas as applied, and as last synced.
#[derive(Clone, Debug)]
struct Member {
    up: bool,
    replicas: BTreeMap<RangeId, MemRange>,
    durable: BTreeMap<RangeId, MemRange>,
}

impl Member {
    fn sync(&mut self) {
        self.durable = self.replicas.clone();
    }
}

/// One range's Raft group, abstracted: its committed log, its leader and its Raft membership.
#[derive(Clone, Debug, Default)]
struct Group {
    log: Vec<RangeCommand>,
    leader: Option<NodeId>,
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    /// The log up to here is purged (behind a snapshot): a replica whose own log does not
    /// reach it needs a snapshot.
    purged: u64,
    /// Merged away: the group runs no more.
    gone: bool,
}

impl Group {
    /// A new group whose membership is `descriptor`'s replicas.
    fn of(descriptor: &RangeDescriptor) -> Group {
        Group {
            voters: descriptor.voters().collect(),
            learners: descriptor.learners().collect(),
            ..Group::default()
        }
    }
}

/// The simulated cluster.
pub(crate) struct Sim {
    rng: SimRng,
    canary: Option<Canary>,
    workload: Workload,
    step: u64,
    members: BTreeMap<NodeId, Member>,
    /// The metadata: the bucket's ranges.
    meta: RangeMap,
    next_range: u64,
    groups: BTreeMap<RangeId, Group>,
    /// The highest generation the metadata ever gave each range.
    generations: BTreeMap<RangeId, u64>,
    /// The highest closed timestamp each replica has shown since its member last restarted.
    closed: BTreeMap<(NodeId, RangeId), HlcTimestamp>,
    merging: Option<Merging>,
    moving: Option<Moving>,
    /// Per merged range, the end the metadata merged it to and its right neighbour's
    /// generation then (the real metadata's `merged_right_generation`): which frozen state a
    /// leader finishing the merge must take.
    merged_right: BTreeMap<RangeId, (Option<Vec<u8>>, u64)>,
    clients: Vec<Client>,
    history: Vec<check::Event>,
    next_element: u64,
    splits: u64,
    merges: u64,
    moves: u64,
    final_read_done: bool,
    broken: Option<String>,
    /// How far each replica's own log of its group reaches (appended and fsync'd there: a
    /// crash keeps it).
    received: BTreeMap<(NodeId, RangeId), u64>,
    /// Snapshots installed on replicas whose own log did not reach the purged log.
    snapshots: u64,
    /// The latest replica lifecycle events, shown with a broken invariant.
    notes: std::collections::VecDeque<String>,
}

/// Runs one seed.
pub fn run(settings: Settings) -> Outcome {
    let mut sim = Sim::new(settings);
    while sim.step < STEPS_MAX && !sim.final_read_done && sim.broken.is_none() {
        sim.tick();
        sim.check_invariants();
    }
    if !sim.final_read_done && sim.broken.is_none() {
        sim.broken = Some(format!(
            "the final read did not complete in {STEPS_MAX} steps: {}",
            sim.stuck()
        ));
    }
    if let Some(why) = sim.broken.take() {
        let notes: Vec<String> = sim.notes.iter().cloned().collect();
        sim.broken = Some(format!(
            "{why}\n  latest events:\n    {}",
            notes.join("\n    ")
        ));
    }
    sim.judge(settings.seed)
}

impl Sim {
    fn new(settings: Settings) -> Sim {
        let ids: Vec<NodeId> = (1..=MEMBERS).map(NodeId).collect();
        let placed: Vec<NodeId> = (1..=moves::TARGET as u64).map(NodeId).collect();
        let meta = RangeMap::new(RangeId(1), &placed);
        let first = meta.lookup(b"").clone();
        let members = ids
            .iter()
            .map(|&id| {
                let replicas: BTreeMap<RangeId, MemRange> = if placed.contains(&id) {
                    BTreeMap::from([(first.id, MemRange::new(RangeState::new(first.clone())))])
                } else {
                    BTreeMap::new()
                };
                let member = Member {
                    up: true,
                    durable: replicas.clone(),
                    replicas,
                };
                (id, member)
            })
            .collect();
        let mut rng = SimRng::new(settings.seed);
        let leader = Some(*rng.pick(&placed));
        Sim {
            canary: settings.canary,
            workload: settings.workload,
            step: 0,
            members,
            next_range: 2,
            groups: BTreeMap::from([(
                first.id,
                Group {
                    leader,
                    ..Group::of(&first)
                },
            )]),
            generations: BTreeMap::from([(first.id, first.generation)]),
            closed: BTreeMap::new(),
            meta,
            merging: None,
            moving: None,
            merged_right: BTreeMap::new(),
            clients: (0..CLIENTS).map(Client::new).collect(),
            history: Vec::new(),
            next_element: 0,
            splits: 0,
            merges: 0,
            moves: 0,
            final_read_done: false,
            broken: None,
            received: BTreeMap::new(),
            snapshots: 0,
            notes: std::collections::VecDeque::new(),
            rng,
        }
    }

    /// The virtual time of this step, in microseconds.
    fn now(&self) -> u64 {
        self.step * 1_000
    }

    fn healing(&self) -> bool {
        self.step >= OPS_STEPS
    }

    /// One step: one action picked by the seed.
    fn tick(&mut self) {
        self.step += 1;
        if self.step == OPS_STEPS {
            self.heal();
        }
        let roll = self.rng.range(0, 100);
        match roll {
            0..=39 => {
                let client = self.rng.range(0, CLIENTS as u64) as usize;
                self.client_step(client);
            }
            40..=64 => self.apply_somewhere(),
            65..=74 => self.leader_duty(),
            75..=79 => self.elect(),
            80..=82 => self.merge_step(),
            83..=84 => self.move_step(),
            85..=87 if !self.healing() => self.split_somewhere(),
            88..=89 if !self.healing() => self.start_merge(),
            90 if !self.healing() => self.start_move(),
            91 => {
                let member = NodeId(self.rng.range(1, MEMBERS + 1));
                self.reconcile(member);
            }
            92 => self.purge_somewhere(),
            93..=95 if !self.healing() => self.crash_or_restart(),
            _ => {
                let member = NodeId(self.rng.range(1, MEMBERS + 1));
                if let Some(m) = self.members.get_mut(&member).filter(|m| m.up) {
                    m.sync();
                }
            }
        }
        if self.step >= OPS_STEPS + SETTLE_STEPS && !self.clients[0].is_final() {
            self.start_final_read();
        }
    }

    /// Every member up, every group led.
    fn heal(&mut self) {
        let down: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(_, m)| !m.up)
            .map(|(id, _)| *id)
            .collect();
        for id in down {
            self.restart(id);
        }
        let ids: Vec<RangeId> = self.groups.keys().copied().collect();
        for id in ids {
            if self.groups[&id].leader.is_none() {
                self.elect_group(id);
            }
        }
    }

    /// A crash (never of the last member up before healing) or a restart.
    fn crash_or_restart(&mut self) {
        let id = NodeId(self.rng.range(1, MEMBERS + 1));
        if self.members[&id].up {
            self.note(format!("crash {id}"));
            let member = self.members.get_mut(&id).expect("member");
            member.up = false;
            for group in self.groups.values_mut() {
                if group.leader == Some(id) {
                    group.leader = None;
                }
            }
        } else {
            self.restart(id);
        }
    }

    /// A member comes back with what it last synced; its replicas replay the log from there.
    fn restart(&mut self, id: NodeId) {
        self.note(format!("restart {id}"));
        // What it applied since its last sync is replayed from the log: its replicas may show
        // older closed timestamps until then.
        self.closed.retain(|(member, _), _| *member != id);
        let member = self.members.get_mut(&id).expect("member");
        member.up = true;
        member.replicas = member.durable.clone();
    }

    /// Elects a leader in a random group.
    fn elect(&mut self) {
        let ids: Vec<RangeId> = self
            .groups
            .iter()
            .filter(|(_, g)| !g.gone)
            .map(|(id, _)| *id)
            .collect();
        if ids.is_empty() {
            return;
        }
        let id = *self.rng.pick(&ids);
        self.elect_group(id);
    }

    /// A new leader for `id`: one of the up members holding a replica of it (a Raft election
    /// picks a member with the whole committed log; every replica can apply it).
    fn elect_group(&mut self, id: RangeId) {
        let Some((voters, log_len)) = self
            .groups
            .get(&id)
            .map(|g| (g.voters.clone(), g.log.len() as u64))
        else {
            return;
        };
        let candidates: Vec<NodeId> = self
            .members
            .iter()
            .filter(|(member, m)| {
                // Raft elects a voter whose log holds every committed entry.
                m.up && voters.contains(member)
                    && m.replicas.contains_key(&id)
                    && self.received.get(&(**member, id)).copied().unwrap_or(0) >= log_len
            })
            .map(|(member, _)| *member)
            .collect();
        let leader = (!candidates.is_empty()).then(|| *self.rng.pick(&candidates));
        if let Some(group) = self.groups.get_mut(&id) {
            group.leader = leader;
        }
    }

    /// A leader whose group has a replica on a member that is down purges its log behind a
    /// snapshot, up to what every up replica's own log holds (the real
    /// `ranges::snapshot_action`, which never purges past another follower's match): the down
    /// one will need a snapshot if its log ends before.
    fn purge_somewhere(&mut self) {
        let ids: Vec<RangeId> = self.meta.iter().map(|r| r.id).collect();
        let id = *self.rng.pick(&ids);
        let Some(leader) = self.caught_up_leader(id) else {
            return;
        };
        let holders: Vec<(NodeId, bool)> = self
            .members
            .iter()
            .filter(|(_, m)| m.replicas.contains_key(&id))
            .map(|(member, m)| (*member, m.up))
            .collect();
        if holders.iter().all(|(_, up)| *up) {
            return;
        }
        let snapshot = self.members[&leader].replicas[&id].applied();
        let upto = holders
            .iter()
            .filter(|(member, up)| *up && *member != leader)
            .map(|(member, _)| self.received.get(&(*member, id)).copied().unwrap_or(0))
            .min()
            .map_or(snapshot, |least| least.min(snapshot));
        // The snapshot is durable on the leader (the real `build_snapshot` syncs first).
        self.members.get_mut(&leader).expect("leader").sync();
        let group = self.groups.get_mut(&id).expect("group");
        group.purged = group.purged.max(upto);
    }

    /// The leader of `id`, if its member is up, once its replica applied the whole log.
    fn caught_up_leader(&mut self, id: RangeId) -> Option<NodeId> {
        let leader = self.groups.get(&id).and_then(|g| g.leader)?;
        (self.members[&leader].up && self.catch_up(leader, id, None)).then_some(leader)
    }

    /// Whether a majority of `id`'s voters is up, so its entries commit.
    fn quorum_up(&self, id: RangeId) -> bool {
        let Some(group) = self.groups.get(&id) else {
            return false;
        };
        let up = group
            .voters
            .iter()
            .filter(|v| self.members[v].up && self.members[v].replicas.contains_key(&id))
            .count();
        up * 2 > group.voters.len()
    }

    /// Appends `command` to `id`'s log if its leader `at` may (it leads, a quorum is up);
    /// returns the entry's index (1-based).
    fn propose(&mut self, id: RangeId, at: NodeId, command: RangeCommand) -> Option<u64> {
        let group = self.groups.get(&id)?;
        if group.gone || group.leader != Some(at) || !self.quorum_up(id) {
            return None;
        }
        let group = self.groups.get_mut(&id).expect("checked");
        group.log.push(command);
        let index = group.log.len() as u64;
        // Appended on every up replica of the group (a majority of voters, checked above).
        let holders: Vec<NodeId> = group
            .voters
            .union(&group.learners)
            .copied()
            .filter(|m| self.members[m].up && self.members[m].replicas.contains_key(&id))
            .collect();
        for member in holders {
            self.received.insert((member, id), index);
        }
        Some(index)
    }

    /// Applies `id`'s log on `member`'s replica up to `upto` (or its end); false when the
    /// member holds no replica of it.
    fn catch_up(&mut self, member: NodeId, id: RangeId, upto: Option<u64>) -> bool {
        loop {
            let Some(replica) = self.members[&member].replicas.get(&id) else {
                return false;
            };
            let group = &self.groups[&id];
            let log = &group.log;
            let next = replica.applied() + 1;
            let own = self.received.get(&(member, id)).copied().unwrap_or(0);
            if next > own && next <= log.len() as u64 {
                if next <= group.purged {
                    // Its own log ends before the purged log begins: only a snapshot helps.
                    return false;
                }
                // The leader sends what its log lacks.
                let end = log.len() as u64;
                self.received.insert((member, id), end);
                continue;
            }
            if next > upto.unwrap_or(log.len() as u64).min(log.len() as u64) {
                return true;
            }
            let command = log[next as usize - 1].clone();
            self.apply_one(member, id, next, command);
        }
    }

    /// Applies one entry on one replica, with what a split or merge does to the member.
    fn apply_one(&mut self, member: NodeId, id: RangeId, index: u64, command: RangeCommand) {
        let command = match (self.canary, command) {
            (Some(Canary::MergeLosesRight), RangeCommand::Merge { merged, mut right }) => {
                right.versions.clear();
                RangeCommand::Merge { merged, right }
            }
            (_, command) => command,
        };
        let merged_away = match &command {
            RangeCommand::Merge { right, .. } => Some(right.machine.state().descriptor().id),
            _ => None,
        };
        let is_change = matches!(
            command,
            RangeCommand::Split { .. } | RangeCommand::Merge { .. } | RangeCommand::Freeze { .. }
        );
        let what = describe(&command);
        let m = self.members.get_mut(&member).expect("member");
        let replica = m.replicas.get_mut(&id).expect("checked by the caller");
        let held = describe_range(replica.state().descriptor());
        let outcome = replica.apply(index, None, command);
        if outcome.breaks_invariant() {
            self.broken = Some(format!(
                "step {}: member {member}: range {id}'s entry {index} ({what}) does not fit the \
                 replica ({held}): {outcome:?}",
                self.step
            ));
            return;
        }
        if let ranges::Outcome::Split { right } = outcome {
            let half = replica.half(*right);
            let right_id = half.state().descriptor().id;
            m.replicas.insert(right_id, half);
        }
        if let Some(gone) = merged_away {
            // The frozen right replica here is retired once this member's merged one applied
            // the merge.
            m.replicas.remove(&gone);
            self.received.remove(&(member, gone));
        }
        if is_change {
            let now = m
                .replicas
                .get(&id)
                .map(|r| describe_range(r.state().descriptor()));
            self.notes.push_back(format!(
                "{}: {member} applied {what} at {index} of {id}: {now:?}",
                self.step
            ));
            if self.notes.len() > 40 {
                self.notes.pop_front();
            }
            let m = self.members.get_mut(&member).expect("member");
            // Descriptor changes are synced as they apply (the real state machine's rule).
            m.sync();
        }
    }

    /// A random up member's random replica applies a few entries.
    fn apply_somewhere(&mut self) {
        let member = NodeId(self.rng.range(1, MEMBERS + 1));
        if !self.members[&member].up {
            return;
        }
        let ids: Vec<RangeId> = self.members[&member].replicas.keys().copied().collect();
        if ids.is_empty() {
            return;
        }
        let id = *self.rng.pick(&ids);
        let applied = self.members[&member].replicas[&id].applied();
        let upto = applied + self.rng.range(1, 4);
        self.catch_up(member, id, Some(upto));
    }

    /// The leader of a random group carries out what the metadata is ahead by.
    fn leader_duty(&mut self) {
        let ids: Vec<RangeId> = self.meta.iter().map(|r| r.id).collect();
        let id = *self.rng.pick(&ids);
        let Some(leader) = self.caught_up_leader(id) else {
            return;
        };
        let held = self.members[&leader].replicas[&id]
            .state()
            .descriptor()
            .clone();
        let Some(meta) = self.meta.get(id).cloned() else {
            return;
        };
        let command = match ranges::classify(&meta, &held) {
            ranges::Pending::Split => {
                let Some(end) = meta.end.as_ref() else {
                    return;
                };
                let right = self.meta.lookup(end).clone();
                RangeCommand::Split { left: meta, right }
            }
            ranges::Pending::SameSpan => return self.membership_duty(id, leader, meta),
            ranges::Pending::Merge => {
                // Committed and not applied: the right neighbour's frozen state, from any
                // replica of it that applied the freeze.
                // Named while the range keeps the merge's span (the real metadata's rule).
                let Some((merged_end, right_generation)) = self.merged_right.get(&id).cloned()
                else {
                    return;
                };
                if merged_end != meta.end {
                    return;
                }
                let Some(right) = self.meta_right_frozen(&held, id, right_generation) else {
                    return;
                };
                RangeCommand::Merge {
                    merged: meta,
                    right: Box::new(right),
                }
            }
            // A leader closes the present now and then (follower reads are served at it).
            ranges::Pending::Nothing if self.rng.chance(300) => RangeCommand::Close {
                ts: HlcTimestamp {
                    physical: self.now(),
                    logical: 0,
                },
            },
            ranges::Pending::Nothing | ranges::Pending::GroupAhead | ranges::Pending::Unknown => {
                return;
            }
        };
        self.propose(id, leader, command);
    }

    /// The frozen state of the right neighbour a committed merge gave `id`: the replica
    /// starting where `held` ends, frozen into `id` at `generation`.
    fn meta_right_frozen(
        &self,
        held: &RangeDescriptor,
        id: RangeId,
        generation: u64,
    ) -> Option<ranges::FrozenRange> {
        let end = held.end.as_ref()?;
        self.members
            .values()
            .filter(|m| m.up)
            .flat_map(|m| m.replicas.values())
            .find(|r| {
                let frozen = r.state().descriptor();
                &frozen.start == end
                    && frozen.generation == generation
                    && r.state().merging_into() == Some(id)
            })
            .map(|r| r.frozen())
    }

    /// Keeps `what` among the latest lifecycle events.
    fn note(&mut self, what: String) {
        if self.notes.len() == 40 {
            self.notes.pop_front();
        }
        let step = self.step;
        self.notes.push_back(format!("{step}: {what}"));
    }

    fn judge(self, seed: u64) -> Outcome {
        let history_hash = self.history.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, e| {
            let line = check::codec::encode_event(e);
            line.bytes()
                .fold(h, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
        });
        let report = match check::History::from_events(&self.history) {
            Ok(history) if self.workload == Workload::Register => registers_report(&history),
            Ok(history) => check::set::check_set_with(&history, check::set::Reads::Linearizable),
            Err(error) => Report {
                checker: "set".to_owned(),
                verdict: check::Verdict::Unknown(format!("malformed history: {error}")),
                ops_checked: 0,
                parts: 1,
            },
        };
        Outcome {
            seed,
            report,
            invariant: self.broken.map_or(Ok(()), Err),
            splits: self.splits,
            merges: self.merges,
            moves: self.moves,
            snapshots: self.snapshots,
            history_hash,
            steps: self.step,
        }
    }
}

/// The register workload's verdict: every register linearizable, every follower read within
/// its staleness bound.
fn registers_report(history: &check::History) -> Report {
    let model = check::model::Register { cas: false };
    let linear = check::check_linearizable(&model, history, check::Budget::default());
    let staleness = check::staleness::check_staleness(history);
    Report {
        checker: "follower-register".to_owned(),
        ops_checked: linear.ops_checked + staleness.ops_checked,
        parts: linear.parts + staleness.parts,
        verdict: check::Verdict::combine([linear.verdict, staleness.verdict]),
    }
}
