//! [`RangeGroup`]: this member's replica of one range, its own openraft group on the member's
//! shared log writer. The leader stamps writes with the member's HLC and proposes them; reads
//! are linearizable on the leader (ReadIndex, then the local state once applied up to it). A
//! replica that does not lead refuses with the leader it knows, so the gateway goes there: no
//! request is forwarded inside the group.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base::{EtcdError, Hlc, HlcTimestamp};
use openraft::async_runtime::WatchReceiver;
use openraft::{ReadPolicy, ServerState};
use proto::quorate::raft::v1 as pb;
use ranges::{
    LoadTracker, QuiesceConfig, QuiesceInput, QuiesceOutput, Quiescer, RangeId, RangeState, Split,
    SplitConfig,
};

use crate::log_store::LogWriter;
use crate::network::NetworkFactory;
use crate::range::codec as range_codec;
use crate::range::files::RangeFiles;
use crate::range::machine::RangeStateMachine;
use crate::replica::Replica;
use crate::types::*;

mod moves;
mod peer;
mod reads;
mod upgrade;

use upgrade::upgrade_first_range;

type RangeRaft = openraft::Raft<TypeConfig, RangeStateMachine>;

/// Reads see every version: the newest timestamp there is.
const NEWEST: HlcTimestamp = HlcTimestamp {
    physical: u64::MAX,
    logical: u32::MAX,
};

/// How a range group is configured.
#[derive(Debug, Clone)]
pub struct RangeGroupOptions {
    /// The range as this member last saw it in the metadata.
    pub descriptor: pb::RangeDescriptor,
    /// Start the group's log with its voters: true on a replica that holds the range's first
    /// state (a new bucket's empty range, or a split's seed); every such replica writes the
    /// same first entry. A replica without it waits for the leader's snapshot.
    pub initialize: bool,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Applied entries between snapshots.
    pub snapshot_entries: u64,
    pub logs_kept_after_snapshot: u64,
    pub request_timeout: Duration,
    /// When the group stops heartbeating (ticks are the driver's `quiesce_tick` calls).
    pub quiesce: QuiesceConfig,
}

/// This member's replica of one range (cheap to clone).
#[derive(Clone)]
pub struct RangeGroup {
    raft: RangeRaft,
    machine: RangeStateMachine,
    member: NodeId,
    range: RangeId,
    request_timeout: Duration,
    clock: Arc<dyn base::Clock>,
    hlc: Arc<Mutex<Hlc>>,
    /// Requests served as leader in the current load window, sampled for the split key.
    load: Arc<Mutex<LoadTracker>>,
    /// Set while this replica holds no state of the range (it was added without a seed) until
    /// the leader's snapshot arrives: appends are refused meanwhile, so no entry is ever
    /// applied to an empty state that should have held the seed.
    awaiting_snapshot: Arc<AtomicBool>,
    /// Set once the replica said it waits for a snapshot (said once, not per message).
    said_waiting: Arc<AtomicBool>,
    /// Whether the group sleeps here (`ranges::quiesce`), and the role it was last seen in.
    quiet: Arc<Mutex<Quiet>>,
    /// Set by every message from the leader (an append, a heartbeat, a snapshot); cleared by
    /// each quiescence tick.
    heard_from_leader: Arc<AtomicBool>,
    /// Set by every client write and leader read; the next close (`close_timestamp`) clears
    /// it, so an idle range stops closing and can quiesce.
    active_since_close: Arc<AtomicBool>,
    #[cfg(feature = "canary")]
    canary: Option<crate::Canary>,
}

struct Quiet {
    quiescer: Quiescer,
    role: Option<ServerState>,
}

fn internal(error: impl std::fmt::Display) -> EtcdError {
    EtcdError::Internal(error.to_string())
}

fn refused(why: pb::range_refusal::Why) -> pb::RangeCallResponse {
    pb::RangeCallResponse {
        result: Some(pb::range_call_response::Result::Refused(pb::RangeRefusal {
            why: Some(why),
        })),
    }
}

impl RangeGroup {
    /// Starts this member's replica of `options.descriptor`'s range on `log` (the range's
    /// group on the member's writer), reaching peers as `main` does.
    pub async fn start(
        main: &Replica,
        writer: &LogWriter,
        files: RangeFiles,
        options: RangeGroupOptions,
        hlc: Arc<Mutex<Hlc>>,
    ) -> Result<RangeGroup, EtcdError> {
        let range = RangeId(options.descriptor.id);
        let config = crate::replica::raft_config(
            format!("quorate-range-{}", range.0),
            crate::replica::RaftTiming {
                heartbeat_interval: options.heartbeat_interval,
                election_timeout_min: options.election_timeout_min,
                election_timeout_max: options.election_timeout_max,
                snapshot_entries: options.snapshot_entries,
                logs_kept_after_snapshot: options.logs_kept_after_snapshot,
            },
        )?;
        let has_log = writer.has_group(range.0).map_err(internal)?;
        if options.initialize && !has_log && !files.has_state(range).map_err(internal)? {
            // A bucket's first range: its seed (empty, at the descriptor it was created with)
            // is saved before its log, so a restart replays the log on the state it was
            // written for, whatever the metadata holds by then.
            let (files, descriptor) = (files.clone(), options.descriptor.clone());
            tokio::task::spawn_blocking(move || files.save_first_seed(&descriptor))
                .await
                .map_err(internal)?
                .map_err(internal)?;
        }
        if options.initialize && !has_log {
            // The state this log starts from (a split's seed, written unsynced with the
            // split) is made durable before the log exists: a log never outlives the state
            // it was written for, so after a crash a replica with a log always has its seed.
            let files = files.clone();
            tokio::task::spawn_blocking(move || files.store().sync())
                .await
                .map_err(internal)?
                .map_err(internal)?;
        }
        if options.initialize {
            let voters: std::collections::BTreeSet<NodeId> = options
                .descriptor
                .replicas
                .iter()
                .filter(|r| !r.learner)
                .map(|r| r.member)
                .collect();
            let writer = writer.clone();
            tokio::task::spawn_blocking(move || writer.create_group(range.0, voters))
                .await
                .map_err(internal)?
                .map_err(internal)?;
        }
        let mut log = writer.open_group(range.0).map_err(internal)?;
        if has_log
            && !files.has_state(range).map_err(internal)?
            && !files.is_gone(range).map_err(internal)?
        {
            upgrade_first_range(&mut log, &files, &options.descriptor).await?;
        }
        // A replica with neither a log nor a snapshot or seed of the range has nothing to apply
        // entries to: it waits for the leader's snapshot.
        let awaiting_snapshot = !log.has_log() && !files.has_state(range).map_err(internal)?;
        let machine =
            RangeStateMachine::open(files, &options.descriptor, log.has_log()).map_err(internal)?;
        #[cfg(feature = "canary")]
        if main.canary() == Some(crate::Canary::MergeLosesRight) {
            machine.plant_merge_loses_right(main.id());
        }
        let network = NetworkFactory {
            peers: main.peers.clone(),
            book: main.book.clone(),
            group: range.0,
        };
        let raft = RangeRaft::new(main.id(), config, network, log, machine.clone())
            .await
            .map_err(internal)?;
        machine.started();
        Ok(RangeGroup {
            raft,
            machine,
            member: main.id(),
            range,
            request_timeout: options.request_timeout,
            clock: main.clock.clone(),
            hlc,
            load: Arc::new(Mutex::new(LoadTracker::new())),
            awaiting_snapshot: Arc::new(AtomicBool::new(awaiting_snapshot)),
            said_waiting: Arc::new(AtomicBool::new(false)),
            quiet: Arc::new(Mutex::new(Quiet {
                quiescer: Quiescer::new(options.quiesce),
                role: None,
            })),
            heard_from_leader: Arc::new(AtomicBool::new(false)),
            active_since_close: Arc::new(AtomicBool::new(false)),
            #[cfg(feature = "canary")]
            canary: main.canary(),
        })
    }

    pub fn range(&self) -> RangeId {
        self.range
    }

    /// The leader this replica knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// The descriptor this replica holds.
    pub fn descriptor(&self) -> pb::RangeDescriptor {
        self.machine.descriptor()
    }

    /// What this replica reports for `range list`.
    pub fn status(&self) -> pb::RangeStatusResponse {
        let (bytes, applied, merging_into) = self.machine.read(|m, _| {
            let state = m.state();
            (
                state.bytes(),
                m.applied(),
                state.merging_into().map_or(0, |r| r.0),
            )
        });
        let (raft_members, raft_membership_committed) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            let members = m
                .membership_config
                .membership()
                .nodes()
                .map(|(id, _)| *id)
                .collect();
            let committed = m.membership_config.log_id().as_ref().map(|l| l.index)
                <= m.local_committed.as_ref().map(|l| l.index);
            (members, committed)
        };
        pb::RangeStatusResponse {
            raft_members,
            raft_membership_committed,
            leader: self.leader().unwrap_or(0),
            bytes,
            applied,
            descriptor: Some(self.descriptor()),
            load: self.load(),
            merging_into,
            checksums: self
                .machine
                .checksums()
                .into_iter()
                .map(|(index, sum)| pb::RangeChecksum {
                    index,
                    sha256: sum.to_vec(),
                })
                .collect(),
        }
    }

    fn not_leader(&self) -> pb::RangeCallResponse {
        let leader = self.leader().filter(|l| *l != self.member).unwrap_or(0);
        refused(pb::range_refusal::Why::NotLeader(leader))
    }

    /// Counts a request for `key` in the current load window.
    fn record_load(&self, key: &[u8]) {
        self.load.lock().expect("load lock poisoned").record(key);
    }

    /// Ends the load window (of `seconds`) and returns its requests per second.
    pub fn end_load_window(&self, seconds: f64, config: &SplitConfig) -> f64 {
        let descriptor = self.machine.read(|m, _| m.state().descriptor().clone());
        self.load
            .lock()
            .expect("load lock poisoned")
            .end_window(&descriptor, seconds, config)
    }

    /// Requests per second in the last load window.
    pub fn load(&self) -> f64 {
        self.load.lock().expect("load lock poisoned").qps()
    }

    /// Whether this range should split now, by size or load, and where.
    pub fn split_decision(&self, config: &SplitConfig) -> Option<Split> {
        let load = self.load.lock().expect("load lock poisoned");
        let decided = self.machine.try_read_data(|m, _, view| {
            let state = m.state();
            let middle = if state.bytes() > config.range_max_bytes {
                state.middle_key(view)?
            } else {
                None
            };
            Ok::<_, storage::StorageError>(ranges::decide_split(
                state.descriptor(),
                state.bytes(),
                middle.as_deref(),
                &load,
                config,
            ))
        });
        decided.unwrap_or_else(|error| {
            tracing::warn!(range = self.range.0, %error, "read the range for a split");
            None
        })
    }

    /// Proposes a split the metadata committed (the group's side of it).
    pub async fn apply_split(
        &self,
        left: pb::RangeDescriptor,
        right: pb::RangeDescriptor,
    ) -> Result<pb::RangeCallResponse, EtcdError> {
        let command = pb::RangeCommand {
            op: Some(pb::range_command::Op::Split(pb::RangeSplit {
                left: Some(left),
                right: Some(right),
            })),
            ..Default::default()
        };
        self.propose(command).await
    }

    /// A reading of this member's hybrid logical clock.
    fn hlc_now(&self) -> HlcTimestamp {
        let mut hlc = self.hlc.lock().expect("hlc lock poisoned");
        hlc.now(self.clock.physical_micros())
    }

    /// On the leader: proposes dropping the versions no read newer than `ttl` ago can see,
    /// when there are any (an idle range with nothing to drop is left asleep). True when it
    /// proposed.
    pub async fn collect_garbage(&self, ttl: Duration) -> Result<bool, EtcdError> {
        let now = self.hlc_now();
        let threshold = HlcTimestamp {
            physical: now.physical.saturating_sub(ttl.as_micros() as u64),
            logical: 0,
        };
        let would = self
            .machine
            .try_read_data(|m, _, view| m.state().would_gc(view, threshold))
            .map_err(internal)?;
        if !would {
            return Ok(false);
        }
        let command = pb::RangeCommand {
            op: Some(pb::range_command::Op::Gc(range_codec::ts_to_pb(threshold))),
            ..Default::default()
        };
        self.propose(command).await?;
        Ok(true)
    }

    /// Whether `close_timestamp` would propose now (this replica leads and a client wrote or
    /// read since the last close): asked first, so idle ranges cost no task per pass.
    pub fn wants_close(&self) -> bool {
        self.active_since_close.load(Ordering::Acquire) && self.is_leader()
    }

    /// On the leader: closes the present (`RangeCommand::Close` at this member's HLC reading)
    /// when a client wrote or read since the last close, so that every replica serves follower
    /// reads about a close interval old; an idle range stops closing, and quiesces. True
    /// when it proposed.
    pub async fn close_timestamp(&self) -> Result<bool, EtcdError> {
        if !self.is_leader() || !self.active_since_close.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        let now = self.hlc_now();
        let command = pb::RangeCommand {
            op: Some(pb::range_command::Op::Close(range_codec::ts_to_pb(now))),
            ..Default::default()
        };
        self.propose(command).await?;
        Ok(true)
    }

    /// The left neighbour this replica's range is frozen for, if it is.
    pub fn merging_into(&self) -> Option<u64> {
        self.machine
            .read(|m, _| m.state().merging_into().map(|r| r.0))
    }

    /// Proposes a descriptor change the metadata committed that keeps the range's span (a
    /// replica change, or the bump of a merge given up, which thaws a frozen range).
    pub async fn set_descriptor(
        &self,
        descriptor: pb::RangeDescriptor,
    ) -> Result<pb::RangeCallResponse, EtcdError> {
        let command = pb::RangeCommand {
            op: Some(pb::range_command::Op::SetDescriptor(descriptor)),
            ..Default::default()
        };
        self.propose(command).await
    }

    /// Proposes freezing the range (seen at `generation`) for a merge into `into`.
    pub async fn freeze(
        &self,
        generation: u64,
        into: u64,
    ) -> Result<pb::RangeCallResponse, EtcdError> {
        let command = pb::RangeCommand {
            op: Some(pb::range_command::Op::Freeze(pb::RangeFreeze {
                generation,
                into,
            })),
            ..Default::default()
        };
        self.propose(command).await
    }

    /// Proposes a merge the metadata committed: the range becomes `merged`, taking `right`,
    /// its right neighbour's state frozen for it.
    pub async fn apply_merge(
        &self,
        merged: pb::RangeDescriptor,
        right: pb::RangeSnapshot,
    ) -> Result<pb::RangeCallResponse, EtcdError> {
        let command = pb::RangeCommand {
            op: Some(pb::range_command::Op::Merge(pb::RangeMerge {
                merged: Some(merged),
                right: Some(right),
            })),
            ..Default::default()
        };
        self.propose(command).await
    }

    /// The replica's state in snapshot form when it is the range of `bucket` starting at
    /// `start` and is frozen for a merge into `into` (final: it changes no more).
    pub fn frozen_snapshot(
        &self,
        bucket: &str,
        start: &[u8],
        into: u64,
        generation: u64,
    ) -> Option<pb::RangeSnapshot> {
        let snapshot = self.machine.try_read_data(|m, own_bucket, view| {
            let state = m.state();
            let matches = own_bucket == bucket
                && state.descriptor().start == start
                && state.descriptor().generation == generation
                && state.merging_into().map(|r| r.0) == Some(into);
            if !matches {
                return Ok(None);
            }
            let versions = state.list(view)?;
            Ok::<_, storage::StorageError>(Some(range_codec::snapshot_to_pb(
                m, own_bucket, &versions,
            )))
        });
        snapshot.unwrap_or_else(|error| {
            tracing::warn!(range = self.range.0, %error, "read the frozen range");
            None
        })
    }

    /// On the leader: the followers that have matched nothing of the log (a replica started
    /// without the range's state refuses appends until it gets a snapshot), each with
    /// whether it is a learner (one just added, which always needs a snapshot).
    pub fn stuck_followers(&self) -> Vec<(NodeId, bool)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let Some(replication) = m.replication.as_ref() else {
            return Vec::new();
        };
        let membership = m.membership_config.membership();
        replication
            .iter()
            .filter(|(id, matched)| **id != self.member && matched.is_none())
            .map(|(id, _)| (*id, !membership.voter_ids().any(|v| v == *id)))
            .collect()
    }

    /// Makes the leader send snapshots to followers that cannot take its log: purges the log
    /// behind its latest snapshot, or takes one first when none is ahead of the purge point
    /// (`ranges::snapshot_action`, which never purges past what another follower matched).
    pub async fn send_snapshots(&self) {
        let (snapshot, purged, least_matched) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            let least_matched = m
                .replication
                .iter()
                .flat_map(|r| r.iter())
                .filter_map(|(id, matched)| {
                    (*id != self.member).then_some(matched.map(|l| l.index))
                })
                .flatten()
                .min();
            (
                m.snapshot.map(|id| id.index),
                m.purged.map(|id| id.index),
                least_matched,
            )
        };
        match ranges::snapshot_action(snapshot, purged, least_matched) {
            ranges::SnapshotAction::PurgeUpTo(upto) => {
                tracing::info!(
                    range = self.range.0,
                    upto,
                    "log purged behind the snapshot: a follower that cannot take the log gets \
                     the snapshot"
                );
                let _ = self.raft.trigger().purge_log(upto).await;
            }
            ranges::SnapshotAction::BuildSnapshot => {
                tracing::info!(
                    range = self.range.0,
                    "range snapshot built for a follower that cannot take the log"
                );
                let _ = self.raft.trigger().snapshot().await;
            }
        }
    }

    /// One quiescence tick (`ranges::quiesce`), called by the driver every heartbeat
    /// interval: an idle, caught-up leader stops ticking (no heartbeats); a follower of a
    /// silent leader the detector knows `live` stops ticking (no election timer); either
    /// ticks again on activity, and a follower wakes to elect another once its leader is not
    /// known live.
    pub fn quiesce_tick(&self, live: &dyn Fn(NodeId) -> bool) {
        let heard = self.heard_from_leader.swap(false, Ordering::AcqRel);
        // Read inside the metrics borrow: copying the replication map out was an allocation
        // per group per tick.
        let (state, leader, followers_caught_up, followers_live) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            let mut followers = m
                .replication
                .iter()
                .flat_map(|r| r.iter())
                .filter(|(id, _)| **id != self.member);
            let caught_up = followers
                .clone()
                .all(|(_, matched)| matched.as_ref().map(|l| l.index) == m.last_log_index);
            let followers_live = followers.all(|(id, _)| live(*id));
            (m.state, m.current_leader, caught_up, followers_live)
        };
        let mut quiet = self.quiet.lock().expect("quiet lock poisoned");
        if quiet.role != Some(state) {
            quiet.role = Some(state);
            let output = quiet.quiescer.handle(QuiesceInput::RoleChanged);
            self.carry_out(output);
        }
        let input = match state {
            ServerState::Leader => QuiesceInput::LeaderTick {
                followers_caught_up,
                followers_live,
            },
            ServerState::Follower => QuiesceInput::FollowerTick {
                heard_from_leader: heard,
                leader_live: leader.filter(|l| *l != self.member).is_some_and(live),
            },
            // A candidate or learner never sleeps: the one is electing, the other never does.
            _ => return,
        };
        let output = quiet.quiescer.handle(input);
        self.carry_out(output);
    }

    /// Whether the group sleeps on this replica.
    pub fn is_quiesced(&self) -> bool {
        self.quiet
            .lock()
            .expect("quiet lock poisoned")
            .quiescer
            .is_quiesced()
    }

    /// A proposal or read on the leader: wakes a quiesced group.
    fn activity(&self) {
        let mut quiet = self.quiet.lock().expect("quiet lock poisoned");
        let output = quiet.quiescer.handle(QuiesceInput::Activity);
        self.carry_out(output);
    }

    fn carry_out(&self, output: QuiesceOutput) {
        if output != QuiesceOutput::Stay {
            tracing::debug!(range = self.range.0, ?output, "range quiescence");
        }
        match output {
            QuiesceOutput::Stay => {}
            // The tick drives both a follower's election timer and a leader's heartbeats.
            QuiesceOutput::Quiesce | QuiesceOutput::Sleep => self.raft.runtime_config().tick(false),
            QuiesceOutput::Wake => self.raft.runtime_config().tick(true),
        }
    }

    /// Starts an election now (a range born of a split on the member that led its parent, so
    /// it need not wait out an election timeout).
    pub async fn campaign(&self) {
        let _ = self.raft.trigger().elect(true).await;
    }

    /// Proposes a range command on this replica when it leads (writes are stamped with this
    /// member's HLC first). An error after proposing is `Timeout`: the outcome is unknown.
    pub async fn write(
        &self,
        command: pb::RangeCommand,
    ) -> Result<pb::RangeCallResponse, EtcdError> {
        self.active_since_close.store(true, Ordering::Release);
        match &command.op {
            Some(pb::range_command::Op::Put(put)) => self.record_load(&put.key),
            Some(pb::range_command::Op::Delete(delete)) => self.record_load(&delete.key),
            _ => {}
        }
        // A frozen range refuses every write when it applies it; refusing here, before
        // proposing, keeps the answer certain: a write still in a frozen group's log when the
        // group is retired would otherwise end as "server stopped", which may mean applied.
        if let Some(into) = self.merging_into() {
            return Ok(refused(pb::range_refusal::Why::Merging(into)));
        }
        self.propose(command).await
    }

    /// A split or merge is checked against this leader's state before it is proposed: one
    /// applied already is answered done without a proposal, one that does not fit is refused
    /// here — so a split or merge refused on apply can only mean a replica whose state its log
    /// was not written for, which stops that replica (`RangeStateMachine`).
    fn vet_change(
        &self,
        command: &pb::RangeCommand,
    ) -> Result<Option<pb::RangeCallResponse>, EtcdError> {
        if !matches!(
            command.op,
            Some(pb::range_command::Op::Split(_) | pb::range_command::Op::Merge(_))
        ) {
            return Ok(None);
        }
        let decoded = range_codec::command_from_pb(command).map_err(internal)?;
        self.machine
            .read(|m, bucket| match m.would_change(&decoded) {
                Ok(true) => Ok(None),
                Ok(false) => Ok(Some(pb::RangeCallResponse {
                    result: Some(pb::range_call_response::Result::Written(
                        range_codec::outcome_to_pb(&ranges::Outcome::Done, bucket),
                    )),
                })),
                Err(error) => Ok(Some(refused(
                    range_codec::refusal_to_pb(&error, bucket)
                        .why
                        .expect("a refusal says why"),
                ))),
            })
    }

    /// Proposes `command` on the leader; a written answer carries the log index it was
    /// applied at (`RangeCommandResponse.index`).
    async fn propose(
        &self,
        mut command: pb::RangeCommand,
    ) -> Result<pb::RangeCallResponse, EtcdError> {
        if !self.is_leader() {
            return Ok(self.not_leader());
        }
        self.activity();
        if let Some(answer) = self.vet_change(&command)? {
            return Ok(answer);
        }
        let now = self.hlc_now();
        match &mut command.op {
            Some(pb::range_command::Op::Put(put)) if put.ts.is_none() => {
                put.ts = Some(range_codec::ts_to_pb(now));
            }
            Some(pb::range_command::Op::Delete(delete)) if delete.ts.is_none() => {
                delete.ts = Some(range_codec::ts_to_pb(now));
            }
            _ => {}
        }
        let proposal = pb::Command {
            op: Some(pb::command::Op::Range(command)),
        };
        let write = async {
            let request = Request(proposal);
            match self.raft.client_write(request.clone()).await {
                // A leader that was quiesced holds no leader lease (no heartbeat round was
                // acknowledged lately), and openraft refuses writes without one: renew it
                // with one acknowledged round, then write. Nothing was proposed before.
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward)))
                    if forward.leader_id.is_none() && self.is_leader() =>
                {
                    self.raft
                        .ensure_linearizable(ReadPolicy::ReadIndex)
                        .await
                        .map_err(|e| {
                            RaftError::APIError(ClientWriteError::ForwardToLeader(match e {
                                RaftError::APIError(LinearizableReadError::ForwardToLeader(f)) => f,
                                _ => forward,
                            }))
                        })?;
                    self.raft.client_write(request).await
                }
                other => other,
            }
        };
        let Ok(written) = tokio::time::timeout(self.request_timeout, write).await else {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            tracing::warn!(
                range = self.range.0,
                state = ?m.state,
                last_log = ?m.last_log_index,
                committed = ?m.local_committed,
                applied = ?m.last_applied,
                replication = ?m.replication,
                "range write not committed within the request timeout"
            );
            return Err(EtcdError::Timeout);
        };
        match written {
            Ok(response) => match response.data.op {
                Some(pb::command_response::Op::Range(mut reply)) => {
                    reply.index = response.data.index;
                    Ok(pb::RangeCallResponse {
                        result: Some(pb::range_call_response::Result::Written(reply)),
                    })
                }
                other => Err(internal(format!("range write answered with {other:?}"))),
            },
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Ok(self.not_leader()),
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                Err(EtcdError::Timeout)
            }
            Err(RaftError::APIError(other)) => Err(internal(other)),
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped),
        }
    }

    /// Stops the group.
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, range = self.range.0, "range group shutdown");
        }
    }
}
