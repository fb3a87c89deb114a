//! [`Replica`]: one member's handle on one consensus group. Services propose writes through it
//! (forwarded to the leader when this member does not lead), read at a chosen consistency, and
//! the transport hands it the Raft messages peers send.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base::EtcdError;
use openraft::async_runtime::WatchReceiver;
use openraft::{Config, ReadPolicy, ServerState, SnapshotPolicy};
use proto::etcdserverpb::{RangeRequest, RangeResponse};
use proto::quorate::raft::v1 as pb;
use storage::{SnapshotFile, StateStore};
use tokio::time::Instant;

use crate::codec;
use crate::lessor::{Lessor, SharedLessor};
use crate::log_store::LogStore;
use crate::network::{AddressBook, NetworkFactory, PeerError, Peers};
use crate::state_machine::StateMachine;
use crate::types::*;

mod leases;
mod members;

/// How a replica is configured.
#[derive(Debug, Clone)]
pub struct RaftOptions {
    pub id: NodeId,
    /// The group's initial members, used only when `bootstrap` is true.
    pub initial_members: BTreeMap<NodeId, Member>,
    /// Initialize the group (etcd's `--initial-cluster-state new`); a member that already has a
    /// log ignores this.
    pub bootstrap: bool,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Applied entries between snapshots (and log compaction).
    pub snapshot_entries: u64,
    /// Entries kept in the log behind a snapshot.
    pub logs_kept_after_snapshot: u64,
    /// How long a request waits for consensus.
    pub request_timeout: Duration,
    /// How often the leader records remaining lease TTLs through Raft.
    pub lease_checkpoint_interval: Duration,
    /// The cluster's id: a peer of another cluster never counts as evidence of removal.
    pub cluster_id: u64,
    /// The member's clock: lease deadlines are read from it.
    pub clock: Arc<dyn base::Clock>,
    /// A planted bug to run (tester canaries only).
    #[cfg(feature = "canary")]
    pub canary: Option<crate::Canary>,
}

impl RaftOptions {
    /// Returns options with Quorate's defaults for member `id`.
    pub fn new(
        id: NodeId,
        initial_members: BTreeMap<NodeId, Member>,
        bootstrap: bool,
        clock: Arc<dyn base::Clock>,
    ) -> RaftOptions {
        RaftOptions {
            clock,
            id,
            initial_members,
            bootstrap,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            snapshot_entries: base::limits::SNAPSHOT_ENTRIES_DEFAULT,
            logs_kept_after_snapshot: base::limits::RAFT_LOGS_KEPT_AFTER_SNAPSHOT,
            request_timeout: base::limits::REQUEST_TIMEOUT,
            lease_checkpoint_interval: base::limits::LEASE_CHECKPOINT_INTERVAL_DEFAULT,
            cluster_id: 0,
            #[cfg(feature = "canary")]
            canary: None,
        }
    }
}

/// What a member reports about itself (etcd's Status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub committed_index: u64,
    pub revision: i64,
    pub compacted_revision: i64,
    pub is_learner: bool,
    pub members: BTreeMap<NodeId, Member>,
    pub learners: Vec<NodeId>,
    pub record_count: u64,
    /// The last log index purged behind a snapshot (0: none).
    pub purged_index: u64,
    /// The state file's size and the bytes of it in use.
    pub db_size: u64,
    pub db_size_in_use: u64,
}

/// One member's handle on its consensus group (cheap to clone).
#[derive(Clone)]
pub struct Replica {
    raft: Raft,
    state: StateMachine,
    pub(crate) peers: Arc<dyn Peers>,
    id: NodeId,
    request_timeout: Duration,
    /// Serializes membership changes on the leader: openraft refuses a change while another
    /// is uncommitted, so concurrent ones wait here instead.
    membership_changes: Arc<tokio::sync::Mutex<()>>,
    lessor: SharedLessor,
    pub(crate) clock: Arc<dyn base::Clock>,
    /// The smallest TTL a lease is granted (etcd's: 1.5 election timeouts).
    lease_ttl_min: i64,
    stop: Arc<tokio::sync::watch::Sender<bool>>,
    /// Snapshots received from a leader and installed since start.
    snapshots_installed: Arc<std::sync::atomic::AtomicU64>,
    cluster_id: u64,
    #[cfg(feature = "canary")]
    canary: Option<crate::Canary>,
    /// A voter that has not acknowledged the leader for this long counts as down when a
    /// membership change is checked for safety.
    election_timeout: Duration,
    /// Set (with the evidence) once this member learns it was removed from the group.
    removed: Arc<tokio::sync::watch::Sender<Option<String>>>,
    /// Every member's peer URL, kept from the membership; range groups address peers by it.
    pub(crate) book: AddressBook,
}

fn internal(error: impl std::fmt::Display) -> EtcdError {
    EtcdError::Internal(error.to_string())
}

impl Replica {
    /// Opens the group's storage, starts Raft, and bootstraps a new group when asked. `log` is
    /// the main group's log (`LogWriter::open_group(MAIN_GROUP)`), on the member's one writer.
    pub async fn start(
        options: RaftOptions,
        log: LogStore,
        state: StateStore,
        snapshot: SnapshotFile,
        peers: Arc<dyn Peers>,
    ) -> Result<Replica, EtcdError> {
        let config = raft_config(
            "quorate".into(),
            RaftTiming {
                heartbeat_interval: options.heartbeat_interval,
                election_timeout_min: options.election_timeout_min,
                election_timeout_max: options.election_timeout_max,
                snapshot_entries: options.snapshot_entries,
                logs_kept_after_snapshot: options.logs_kept_after_snapshot,
            },
        )?;
        let state_machine = StateMachine::open(state, snapshot).map_err(internal)?;
        let book: AddressBook = Default::default();
        let network = NetworkFactory {
            peers: peers.clone(),
            book: book.clone(),
            group: crate::log_store::MAIN_GROUP,
        };
        let raft = Raft::new(options.id, config, network, log, state_machine.clone())
            .await
            .map_err(internal)?;
        if options.bootstrap && !raft.is_initialized().await.map_err(internal)? {
            match raft.initialize(options.initial_members.clone()).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(error) => return Err(internal(error)),
            }
        }
        let lessor = Arc::new(Lessor::new(
            options.election_timeout_max,
            options.lease_checkpoint_interval,
        ));
        let lease_ttl_min = (options.election_timeout_min * 3 / 2)
            .as_millis()
            .div_ceil(1000)
            .max(1) as i64;
        let replica = Replica {
            raft,
            state: state_machine,
            peers,
            id: options.id,
            request_timeout: options.request_timeout,
            membership_changes: Arc::new(tokio::sync::Mutex::new(())),
            lessor,
            clock: options.clock.clone(),
            lease_ttl_min,
            stop: Arc::new(tokio::sync::watch::Sender::new(false)),
            snapshots_installed: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            cluster_id: options.cluster_id,
            #[cfg(feature = "canary")]
            canary: options.canary,
            election_timeout: options.election_timeout_max,
            removed: Arc::new(tokio::sync::watch::Sender::new(None)),
            book: book.clone(),
        };
        tokio::spawn(replica.clone().run_lessor());
        tokio::spawn(replica.clone().follow_addresses(book));
        tokio::spawn(replica.clone().watch_removal());
        Ok(replica)
    }

    /// Returns this member's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Returns the leader this member knows of.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// Returns the current Raft term.
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// Returns the current revision of the local keyspace.
    pub fn revision(&self) -> i64 {
        self.state.shared.positions().0
    }

    /// Returns this member's status.
    pub fn status(&self) -> ReplicaStatus {
        let (revision, compacted_revision, applied_index) = self.state.shared.positions();
        let sizes = self.state.shared.sizes();
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let members: BTreeMap<NodeId, Member> = membership
            .nodes()
            .map(|(id, member)| (*id, member.clone()))
            .collect();
        let learners: Vec<NodeId> = membership.learner_ids().collect();
        ReplicaStatus {
            id: self.id,
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index,
            committed_index: m.local_committed.map_or(0, |id| id.index),
            revision,
            compacted_revision,
            is_learner: !voters.contains(&self.id) && members.contains_key(&self.id),
            members,
            learners,
            record_count: self.state.shared.record_count(),
            purged_index: m.purged.map_or(0, |id| id.index),
            db_size: sizes.file_bytes,
            db_size_in_use: sizes.in_use_bytes,
        }
    }

    /// Waits until some member leads, or the deadline passes.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<NodeId> {
        let waited = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await;
        waited.ok().and_then(|m| m.current_leader)
    }

    fn leader_url(&self) -> Option<(NodeId, String)> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let leader = m.current_leader?;
        let member = m.membership_config.membership().get_node(&leader)?.clone();
        Some((leader, member.peer_urls.first()?.clone()))
    }

    /// Replicates a write through the leader and returns the state machine's reply. An error
    /// after the write may have been appended is `Timeout`: its outcome is unknown.
    pub async fn propose(&self, command: pb::Command) -> Result<pb::CommandResponse, EtcdError> {
        #[cfg(feature = "canary")]
        if let Some(early) = self.canary_ack_early(&command).await {
            return early;
        }
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let write = self.raft.client_write(Request(command.clone()));
            let Ok(written) = tokio::time::timeout(remaining, write).await else {
                // The entry may be in the log already: the outcome is unknown.
                return Err(EtcdError::Timeout);
            };
            match written {
                Ok(response) => return reply_result(response.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
                    let leader = forward.leader_id.zip(forward.leader_node);
                    if let Some((_, member)) = leader.filter(|(id, _)| *id != self.id) {
                        let url = member.peer_urls.first().cloned().unwrap_or_default();
                        let remaining = deadline.saturating_duration_since(Instant::now());
                        let request = pb::ForwardRequest {
                            group: 0,
                            command: Some(command.clone()),
                        };
                        match self.peers.forward(&url, request, remaining).await {
                            Ok(reply) => {
                                self.await_applied(reply.index, deadline).await;
                                return reply_result(reply);
                            }
                            Err(error) => retry_after(error)?,
                        }
                    }
                    if !self.await_leader_change(deadline).await {
                        return Err(EtcdError::NoLeader);
                    }
                }
                Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                    return Err(EtcdError::Timeout);
                }
                Err(RaftError::APIError(other)) => return Err(internal(other)),
                Err(RaftError::Fatal(_)) => return Err(EtcdError::Stopped),
            }
        }
    }

    /// The planted bug this member runs, if any.
    #[cfg(feature = "canary")]
    pub fn canary(&self) -> Option<crate::Canary> {
        self.canary
    }

    /// The `ack-before-commit` canary: on the leader, a put is handed to Raft and answered at
    /// once, before it is committed or applied.
    #[cfg(feature = "canary")]
    async fn canary_ack_early(
        &self,
        command: &pb::Command,
    ) -> Option<Result<pb::CommandResponse, EtcdError>> {
        let is_put = matches!(command.op, Some(pb::command::Op::Put(_)));
        if self.canary != Some(crate::Canary::AckBeforeCommit) || !is_put || !self.is_leader() {
            return None;
        }
        if self
            .raft
            .client_write_ff(Request(command.clone()), None)
            .await
            .is_err()
        {
            return Some(Err(EtcdError::Stopped));
        }
        Some(Ok(pb::CommandResponse {
            op: Some(pb::command_response::Op::Put(Default::default())),
            revision: self.revision(),
            index: 0,
        }))
    }

    /// Waits (until `deadline` at most) for this member to apply the entry at `index`, so a
    /// client that wrote through this member reads its write here, even serializably. The
    /// write is committed either way; past the deadline the caller answers anyway.
    async fn await_applied(&self, index: u64, deadline: Instant) {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let applied = self
            .raft
            .wait(Some(remaining))
            .applied_index_at_least(Some(index), "forwarded write applied locally")
            .await;
        if applied.is_err() {
            tracing::debug!(
                index,
                "forwarded write not yet applied here at the deadline"
            );
        }
    }

    /// Proposes on this member only, for a write forwarded by a follower.
    pub async fn propose_local(
        &self,
        command: pb::Command,
    ) -> Result<pb::CommandResponse, EtcdError> {
        #[cfg(feature = "canary")]
        if let Some(early) = self.canary_ack_early(&command).await {
            return early;
        }
        let write = self.raft.client_write(Request(command));
        let Ok(written) = tokio::time::timeout(self.request_timeout, write).await else {
            return Err(EtcdError::Timeout);
        };
        match written {
            Ok(response) => Ok(response.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(EtcdError::NotLeader)
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                Err(EtcdError::Timeout)
            }
            Err(RaftError::APIError(other)) => Err(internal(other)),
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped),
        }
    }

    /// Returns the group's membership as this member knows it.
    pub fn membership(&self) -> pb::Membership {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        codec::membership_to_pb(m.membership_config.membership())
    }

    /// Returns the quorum bucket definitions and the token ring as this member has applied
    /// them.
    pub fn topology(&self) -> pb::Topology {
        self.state.shared.topology()
    }

    /// Returns how many times the applied topology changed since start: what is derived
    /// from `topology` stays valid while this stays the same.
    pub fn topology_version(&self) -> u64 {
        self.state.shared.topology_version()
    }

    /// Returns the ring epoch this member has applied.
    pub fn topology_epoch(&self) -> u64 {
        self.state.shared.topology_epoch()
    }

    /// Commits a bucket change through Raft; the reply's `refusal` says why nothing changed.
    pub async fn change_bucket(
        &self,
        change: pb::BucketChange,
    ) -> Result<pb::BucketChangeResponse, EtcdError> {
        let command = pb::Command {
            op: Some(pb::command::Op::Bucket(change)),
        };
        match self.propose(command).await?.op {
            Some(pb::command_response::Op::Bucket(reply)) => Ok(reply),
            other => Err(internal(format!("bucket change answered with {other:?}"))),
        }
    }

    /// Commits a split, merge or replica change of a range through Raft (the metadata group);
    /// the reply's `refusal` says why nothing changed.
    pub async fn change_range(
        &self,
        change: pb::RangeChange,
    ) -> Result<pb::RangeChangeResponse, EtcdError> {
        let command = pb::Command {
            op: Some(pb::command::Op::RangeChange(change)),
        };
        match self.propose(command).await?.op {
            Some(pb::command_response::Op::RangeChange(reply)) => Ok(reply),
            other => Err(internal(format!("range change answered with {other:?}"))),
        }
    }

    /// Marks a member as draining or not through Raft (the metadata group); the reply's
    /// `refusal` says why nothing changed.
    pub async fn change_drain(
        &self,
        change: pb::MemberDrain,
    ) -> Result<pb::MemberDrainResponse, EtcdError> {
        let command = pb::Command {
            op: Some(pb::command::Op::Drain(change)),
        };
        match self.propose(command).await?.op {
            Some(pb::command_response::Op::Drain(reply)) => Ok(reply),
            other => Err(internal(format!("drain answered with {other:?}"))),
        }
    }

    /// Commits a step of a ring change through Raft; the reply's `refusal` says why nothing
    /// changed.
    pub async fn change_ring(
        &self,
        change: pb::RingChange,
    ) -> Result<pb::RingChangeResponse, EtcdError> {
        let command = pb::Command {
            op: Some(pb::command::Op::Ring(change)),
        };
        match self.propose(command).await?.op {
            Some(pb::command_response::Op::Ring(reply)) => Ok(reply),
            other => Err(internal(format!("ring change answered with {other:?}"))),
        }
    }

    /// Runs `local` when this member leads, otherwise `remote` at the leader's peer URL with the
    /// time left; retries until the request deadline while the leader is unknown, changing or
    /// unreachable (the one retry rule: `retry_after`).
    async fn at_leader<T, L, LF, R, RF>(&self, mut local: L, mut remote: R) -> Result<T, EtcdError>
    where
        L: FnMut() -> LF,
        LF: std::future::Future<Output = Result<T, EtcdError>>,
        R: FnMut(String, Duration) -> RF,
        RF: std::future::Future<Output = Result<T, PeerError>>,
    {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            match self.leader_url() {
                Some((leader, _)) if leader == self.id => match local().await {
                    Err(EtcdError::NotLeader) => {}
                    other => return other,
                },
                Some((_, url)) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    match remote(url, remaining).await {
                        Ok(value) => return Ok(value),
                        Err(error) => retry_after(error)?,
                    }
                }
                None => {}
            }
            if !self.await_leader_change(deadline).await {
                return Err(EtcdError::NoLeader);
            }
        }
    }

    /// Waits a little for the leader to change or appear; false when the deadline passed.
    async fn await_leader_change(&self, deadline: Instant) -> bool {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return false;
        }
        let step = remaining.min(Duration::from_millis(100));
        let _ = self
            .raft
            .wait(Some(step))
            .metrics(|m| m.current_leader.is_some(), "leader")
            .await;
        Instant::now() < deadline
    }

    /// On the leader: confirms leadership with a quorum (ReadIndex) and returns the index a
    /// linearizable read must wait for.
    pub async fn read_index(&self) -> Result<u64, EtcdError> {
        let read = tokio::time::timeout(
            self.request_timeout,
            self.raft.ensure_linearizable(ReadPolicy::ReadIndex),
        )
        .await;
        match read {
            Err(_) => Err(EtcdError::Timeout),
            Ok(Ok(read_log_id)) => Ok(read_log_id.index()),
            Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_)))) => {
                Err(EtcdError::NotLeader)
            }
            Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_)))) => {
                Err(EtcdError::NoLeader)
            }
            Ok(Err(RaftError::Fatal(_))) => Err(EtcdError::Stopped),
        }
    }

    /// Waits until a linearizable read on this member would see every write acknowledged
    /// before the call: ReadIndex from the leader, then local apply up to it.
    pub async fn linearizable_barrier(&self) -> Result<(), EtcdError> {
        let deadline = Instant::now() + self.request_timeout;
        loop {
            let index = match self.leader_url() {
                Some((leader, _)) if leader == self.id => match self.read_index().await {
                    Err(EtcdError::NotLeader) => None,
                    other => Some(other?),
                },
                Some((_, url)) => {
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    match self.peers.read_index(&url, remaining).await {
                        Ok(index) => Some(index),
                        Err(error) => {
                            retry_after(error)?;
                            None
                        }
                    }
                }
                None => None,
            };
            if let Some(index) = index {
                let remaining = deadline.saturating_duration_since(Instant::now());
                return self
                    .raft
                    .wait(Some(remaining))
                    .applied_index_at_least(Some(index), "read index applied")
                    .await
                    .map(|_| ())
                    .map_err(|_| EtcdError::Timeout);
            }
            if !self.await_leader_change(deadline).await {
                return Err(EtcdError::NoLeader);
            }
        }
    }

    /// Reads a range from the local keyspace, after a ReadIndex barrier when `linearizable`.
    pub async fn range(
        &self,
        request: &RangeRequest,
        linearizable: bool,
    ) -> Result<RangeResponse, EtcdError> {
        #[cfg(feature = "canary")]
        let linearizable = linearizable && self.canary != Some(crate::Canary::StaleRead);
        if linearizable {
            self.linearizable_barrier().await?;
        }
        self.state.shared.range(request)
    }

    /// Returns a receiver of the latest applied revision, for watchers to wait on.
    pub fn subscribe_revision(&self) -> tokio::sync::watch::Receiver<i64> {
        self.state.shared.feed.subscribe()
    }

    /// Returns the changes `filter` selects from revision `from` on, at most about
    /// `max_changes` (a revision is never split), and where the next read starts. Fails with
    /// `Compacted` when that history is gone.
    pub fn changes(
        &self,
        filter: &mvcc::WatchFilter,
        from: i64,
        max_changes: usize,
    ) -> Result<mvcc::History, EtcdError> {
        #[cfg(feature = "canary")]
        if self.canary == Some(crate::Canary::WatchGap) {
            let mut history = self.state.shared.changes(filter, from, max_changes)?;
            if history.changes.len() > 1 {
                history.changes.remove(0);
            }
            return Ok(history);
        }
        self.state.shared.changes(filter, from, max_changes)
    }

    /// Returns the key-value written at `rev` (for a watch event's `prev_kv`); `None` once
    /// compaction removed it.
    pub fn key_value_at(
        &self,
        rev: mvcc::Rev,
    ) -> Result<Option<proto::mvccpb::KeyValue>, EtcdError> {
        self.state.shared.key_value_at(rev)
    }

    /// Returns (hash, compacted revision, revision hashed) of the local keyspace's history up
    /// to `revision` (0: current); equal on members that applied the same entries.
    pub async fn hash_kv(&self, revision: i64) -> Result<(u32, i64, i64), EtcdError> {
        let shared = self.state.shared.clone();
        tokio::task::spawn_blocking(move || shared.hash_kv(revision))
            .await
            .map_err(internal)?
    }

    /// Returns a hash of the whole local state (history, revisions, leases).
    pub async fn hash_all(&self) -> Result<u32, EtcdError> {
        let shared = self.state.shared.clone();
        tokio::task::spawn_blocking(move || shared.hash_all())
            .await
            .map_err(internal)?
    }

    /// Returns (revision, bytes) of a consistent copy of the local state in Quorate's snapshot
    /// format.
    pub async fn snapshot_data(&self) -> Result<(i64, Vec<u8>), EtcdError> {
        let shared = self.state.shared.clone();
        tokio::task::spawn_blocking(move || shared.snapshot_data())
            .await
            .map_err(internal)?
    }

    /// Returns the current and compacted revisions of the local keyspace.
    pub fn revisions(&self) -> (i64, i64) {
        let (current, compacted, _) = self.state.shared.positions();
        (current, compacted)
    }

    /// Asks Raft to snapshot now (and compact the log behind it).
    pub async fn trigger_snapshot(&self) -> Result<(), EtcdError> {
        self.raft.trigger().snapshot().await.map_err(internal)
    }

    /// Handles a peer's AppendEntries.
    pub async fn handle_append(
        &self,
        request: pb::AppendEntriesRequest,
    ) -> Result<pb::AppendEntriesResponse, String> {
        crate::peer_messages::append(&self.raft, request).await
    }

    /// Handles a peer's (pre-)vote request.
    pub async fn handle_vote(&self, request: pb::VoteRequest) -> Result<pb::VoteResponse, String> {
        crate::peer_messages::vote(&self.raft, request).await
    }

    /// Handles a whole snapshot sent by the leader.
    pub async fn handle_snapshot(
        &self,
        vote: pb::Vote,
        meta: pb::SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<pb::SnapshotResponse, String> {
        let response = crate::peer_messages::snapshot(&self.raft, vote, meta, data).await?;
        self.snapshots_installed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(response)
    }

    /// Returns how many snapshots this member received from a leader since it started.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Returns true while this member leads.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// Returns the raised alarms of `member` (0: all) and `kind` (0: all) in the local state.
    pub fn alarms(&self, member: u64, kind: i32) -> proto::etcdserverpb::AlarmResponse {
        self.state.shared.alarms(member, kind)
    }

    /// Stops Raft.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "raft shutdown");
        }
    }
}

/// Decides whether a failed call to the leader may be retried: yes when it was not
/// delivered (safe to resend once the leader is known) or when the peer no longer leads;
/// any other answer is the request's final error.
fn retry_after(error: PeerError) -> Result<(), EtcdError> {
    match error {
        PeerError::Unreachable(_) => Ok(()),
        PeerError::Remote(message) => match EtcdError::from_message(&message) {
            EtcdError::NotLeader => Ok(()),
            other => Err(other),
        },
    }
}

fn reply_result(reply: pb::CommandResponse) -> Result<pb::CommandResponse, EtcdError> {
    match &reply.op {
        Some(pb::command_response::Op::Error(message)) => Err(EtcdError::from_message(message)),
        _ => Ok(reply),
    }
}

/// The Raft timings and log retention of one group.
pub(crate) struct RaftTiming {
    pub heartbeat_interval: std::time::Duration,
    pub election_timeout_min: std::time::Duration,
    pub election_timeout_max: std::time::Duration,
    pub snapshot_entries: u64,
    pub logs_kept_after_snapshot: u64,
}

/// The openraft configuration every group of a member runs with (the main group and each
/// range), named `cluster_name`.
pub(crate) fn raft_config(
    cluster_name: String,
    timing: RaftTiming,
) -> Result<Arc<Config>, EtcdError> {
    let config = Config {
        cluster_name,
        heartbeat_interval: timing.heartbeat_interval.as_millis() as u64,
        election_timeout_min: timing.election_timeout_min.as_millis() as u64,
        election_timeout_max: timing.election_timeout_max.as_millis() as u64,
        install_snapshot_timeout: 60_000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(timing.snapshot_entries),
        max_in_snapshot_log_to_keep: timing.logs_kept_after_snapshot,
        purge_batch_size: 256,
        max_payload_entries: base::limits::RAFT_MAX_PAYLOAD_ENTRIES,
        enable_pre_vote: Some(true),
        // A restarted leader must win an election and commit a fresh entry before it serves
        // reads: restoring leadership would let it answer a ReadIndex from the committed index
        // it persisted without fsync, which may be stale (a lost acknowledged write in a read
        // after a whole-cluster crash showed this).
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    Ok(Arc::new(config.validate().map_err(internal)?))
}
