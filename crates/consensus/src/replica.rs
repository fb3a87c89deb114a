//! [`Replica`]: one member's handle on one consensus group. Services propose writes through it
//! (forwarded to the leader when this member does not lead), read at a chosen consistency, and
//! the transport hands it the Raft messages peers send.

use std::collections::BTreeMap;
use std::io::Cursor;
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
use crate::lessor::{Lessor, SharedLessor, TICK, revoke_command};
use crate::log_store::LogStore;
use crate::network::{AddressBook, NetworkFactory, PeerError, Peers};
use crate::state_machine::StateMachine;
use crate::types::*;

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
    peers: Arc<dyn Peers>,
    id: NodeId,
    request_timeout: Duration,
    /// Serializes membership changes on the leader: openraft refuses a change while another
    /// is uncommitted, so concurrent ones wait here instead.
    membership_changes: Arc<tokio::sync::Mutex<()>>,
    lessor: SharedLessor,
    clock: Arc<dyn base::Clock>,
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
}

fn internal(error: impl std::fmt::Display) -> EtcdError {
    EtcdError::Internal(error.to_string())
}

impl Replica {
    /// Opens the group's storage, starts Raft, and bootstraps a new group when asked.
    pub async fn start(
        options: RaftOptions,
        log: storage::LogStore,
        state: StateStore,
        snapshot: SnapshotFile,
        peers: Arc<dyn Peers>,
    ) -> Result<Replica, EtcdError> {
        let config = Config {
            cluster_name: "quorate".into(),
            heartbeat_interval: options.heartbeat_interval.as_millis() as u64,
            election_timeout_min: options.election_timeout_min.as_millis() as u64,
            election_timeout_max: options.election_timeout_max.as_millis() as u64,
            install_snapshot_timeout: 60_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(options.snapshot_entries),
            max_in_snapshot_log_to_keep: options.logs_kept_after_snapshot,
            purge_batch_size: 256,
            max_payload_entries: base::limits::RAFT_MAX_PAYLOAD_ENTRIES,
            enable_pre_vote: Some(true),
            // A restarted leader must win an election and commit a fresh entry before it
            // serves reads: restoring leadership would let it answer a ReadIndex from the
            // committed index it persisted without fsync, which may be stale (a lost
            // acknowledged write in a read after a whole-cluster crash showed this).
            enable_leader_restore: Some(false),
            ..Default::default()
        };
        let config = Arc::new(config.validate().map_err(internal)?);
        let state_machine = StateMachine::open(state, snapshot).map_err(internal)?;
        let book: AddressBook = Default::default();
        let network = NetworkFactory {
            peers: peers.clone(),
            book: book.clone(),
        };
        let raft = Raft::new(
            options.id,
            config,
            network,
            LogStore::new(log).map_err(internal)?,
            state_machine.clone(),
        )
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

    /// Changes the group's membership through the leader and returns the membership once the
    /// change is committed.
    pub async fn change_members(
        &self,
        change: pb::MemberChange,
    ) -> Result<pb::Membership, EtcdError> {
        self.at_leader(
            || self.change_members_local(change.clone()),
            |url, remaining| {
                let request = pb::MemberChangeRequest {
                    group: 0,
                    change: Some(change.clone()),
                };
                async move {
                    let response = self.peers.change_members(&url, request, remaining).await?;
                    response.membership.ok_or_else(|| {
                        PeerError::Remote("member change answer without membership".into())
                    })
                }
            },
        )
        .await
    }

    /// Applies a membership change on this member, which must lead.
    pub async fn change_members_local(
        &self,
        change: pb::MemberChange,
    ) -> Result<pb::Membership, EtcdError> {
        let changed = tokio::time::timeout(self.request_timeout, async {
            // Checks and change under one lock, so they see the membership they change.
            let _serialized = self.membership_changes.lock().await;
            // A voter that has not acknowledged this leader yet (a fresh leader, a member
            // just restarted) gets one election timeout to do so before it counts as down.
            let patience = Instant::now() + self.election_timeout;
            loop {
                let plan = self.member_change_plan(change.change.clone());
                let (changes, retain) = match plan {
                    Err(EtcdError::Unhealthy | EtcdError::NotEnoughStartedMembers)
                        if Instant::now() < patience =>
                    {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    other => other?,
                };
                match self.raft.change_membership(changes, retain).await {
                    // The previous change (or, on a fresh leader, the initial membership) is
                    // not committed yet: wait for it instead of failing the request.
                    Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                        openraft::errors::ChangeMembershipError::InProgress(_),
                    ))) => tokio::time::sleep(Duration::from_millis(50)).await,
                    other => return Ok(other),
                }
            }
        })
        .await;
        let Ok(changed) = changed else {
            return Err(EtcdError::Timeout);
        };
        let changed: Result<_, EtcdError> = changed;
        let changed = changed?;
        match changed {
            Ok(response) => {
                let membership = response
                    .membership
                    .ok_or_else(|| internal("membership change committed without membership"))?;
                Ok(codec::membership_to_pb(&membership))
            }
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

    /// Checks a membership change against the current membership and returns openraft's
    /// change and whether removed voters stay as learners.
    fn member_change_plan(
        &self,
        change: Option<pb::member_change::Change>,
    ) -> Result<(openraft::ChangeMembers<NodeId, Member>, bool), EtcdError> {
        use pb::member_change::Change;
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched().clone();
        let membership = m.membership_config.membership();
        let known = |id: &NodeId| membership.get_node(id).is_some();
        let voter = |id: &NodeId| membership.voter_ids().any(|v| v == *id);
        // As etcd's strict reconfiguration check: a voter counts as started when it is this
        // leader or acknowledged it within an election timeout.
        let started = |id: &NodeId| {
            *id == self.id
                || m.heartbeat
                    .as_ref()
                    .and_then(|acks| acks.get(id).cloned().flatten())
                    .is_some_and(|ack| openraft::Instant::elapsed(&*ack) < self.election_timeout)
        };
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let quorum = |voters: usize| voters / 2 + 1;
        Ok(match change {
            Some(Change::SetMember(set)) => {
                let member = set
                    .member
                    .as_ref()
                    .ok_or_else(|| internal("set_member without member"))?;
                if !known(&set.id) {
                    return Err(EtcdError::MemberNotFound);
                }
                let nodes = BTreeMap::from([(set.id, codec::member_from_pb(member))]);
                (openraft::ChangeMembers::SetNodes(nodes), true)
            }
            Some(Change::AddMember(add)) => {
                let member = codec::member_from_pb(
                    add.member
                        .as_ref()
                        .ok_or_else(|| internal("add_member without member"))?,
                );
                let taken = membership.nodes().any(|(_, existing)| {
                    existing
                        .peer_urls
                        .iter()
                        .any(|u| member.peer_urls.contains(u))
                });
                if taken || known(&add.id) {
                    return Err(EtcdError::PeerUrlExists);
                }
                if !voters.iter().all(started) {
                    return Err(EtcdError::Unhealthy);
                }
                // The new voter is not started yet: the others must still make a quorum (a
                // single member may take a second, as etcd allows, to rebuild a cluster).
                if !add.learner && voters.len() > 1 && voters.len() < quorum(voters.len() + 1) {
                    return Err(EtcdError::NotEnoughStartedMembers);
                }
                let nodes = BTreeMap::from([(add.id, member)]);
                if add.learner {
                    (openraft::ChangeMembers::AddNodes(nodes), true)
                } else {
                    (openraft::ChangeMembers::AddVoters(nodes), true)
                }
            }
            Some(Change::RemoveMember(id)) => {
                if !known(&id) {
                    return Err(EtcdError::MemberNotFound);
                }
                if voter(&id) {
                    let remaining: Vec<&NodeId> = voters.iter().filter(|v| **v != id).collect();
                    let up = remaining.iter().filter(|v| started(v)).count();
                    if up < quorum(remaining.len()) {
                        return Err(EtcdError::NotEnoughStartedMembers);
                    }
                    let ids = std::collections::BTreeSet::from([id]);
                    (openraft::ChangeMembers::RemoveVoters(ids), false)
                } else {
                    let ids = std::collections::BTreeSet::from([id]);
                    (openraft::ChangeMembers::RemoveNodes(ids), false)
                }
            }
            Some(Change::PromoteMember(id)) => {
                if !known(&id) {
                    return Err(EtcdError::MemberNotFound);
                }
                if voter(&id) {
                    return Err(EtcdError::MemberNotLearner);
                }
                // As etcd: the learner must have 90% of the leader's log.
                let last = m.last_log_index.unwrap_or(0);
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map_or(0, |log_id| log_id.index);
                if matched * 10 < last * 9 {
                    return Err(EtcdError::LearnerNotReady);
                }
                let ids = std::collections::BTreeSet::from([id]);
                (openraft::ChangeMembers::AddVoterIds(ids), true)
            }
            None => return Err(internal("empty member change")),
        })
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
        let request = codec::append_request_from_pb(request).map_err(|e| e.to_string())?;
        let response = self
            .raft
            .append_entries(request)
            .await
            .map_err(|e| e.to_string())?;
        Ok(codec::append_response_to_pb(&response))
    }

    /// Handles a peer's (pre-)vote request.
    pub async fn handle_vote(&self, request: pb::VoteRequest) -> Result<pb::VoteResponse, String> {
        let pre_vote = request.pre_vote;
        let request = codec::vote_request_from_pb(&request).map_err(|e| e.to_string())?;
        let response = if pre_vote {
            self.raft.pre_vote(request).await
        } else {
            self.raft.vote(request).await
        };
        Ok(codec::vote_response_to_pb(
            &response.map_err(|e| e.to_string())?,
        ))
    }

    /// Handles a whole snapshot sent by the leader.
    pub async fn handle_snapshot(
        &self,
        vote: pb::Vote,
        meta: pb::SnapshotMeta,
        data: Vec<u8>,
    ) -> Result<pb::SnapshotResponse, String> {
        let vote = codec::vote_from_pb(&vote).map_err(|e| e.to_string())?;
        let meta = codec::snapshot_meta_from_pb(&meta).map_err(|e| e.to_string())?;
        let snapshot = Snapshot {
            meta,
            snapshot: Cursor::new(data),
        };
        let response = self
            .raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| e.to_string())?;
        self.snapshots_installed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(pb::SnapshotResponse {
            vote: Some(codec::vote_to_pb(&response.vote)),
        })
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

    /// The member's clock as the lessor reads it (skewed when the tester skews it).
    fn clock_now(&self) -> Instant {
        Instant::from_std(self.clock.monotonic())
    }

    /// Drives the lease timers until the replica stops: revokes expired leases and records
    /// checkpoints, both through Raft, while this member leads.
    async fn run_lessor(self) {
        let mut stop = self.stop.subscribe();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            // Leadership first, then the table: the table read is then at least as new as
            // the applied entry that made this member ready.
            let leading = self.leads_with_current_state();
            let leases = self.state.shared.lease_ttls();
            let work = self.lessor.tick(self.clock_now(), leading, &leases);
            for id in work.revokes {
                let replica = self.clone();
                tokio::spawn(async move {
                    match replica.propose_local(revoke_command(id)).await {
                        Ok(_) => tracing::info!(
                            lease = format_args!("{id:x}"),
                            "lease expired and revoked"
                        ),
                        Err(error) => tracing::debug!(%error, "lease revoke not committed"),
                    }
                    replica.lessor.revoke_done(id);
                });
            }
            if let Some(checkpoint) = work.checkpoint {
                let replica = self.clone();
                tokio::spawn(async move {
                    if let Err(error) = replica.propose_local(checkpoint).await {
                        tracing::debug!(%error, "lease checkpoint not committed");
                    }
                });
            }
        }
    }

    /// Returns true when this member leads and has applied an entry of its own term, so every
    /// committed lease change (grants, checkpoints) is in its state. A new leader's lease
    /// timers start only then.
    fn leads_with_current_state(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        m.state == ServerState::Leader
            && m.last_applied
                .is_some_and(|applied| applied.leader_id.term == m.current_term)
    }

    /// Returns the raised alarms of `member` (0: all) and `kind` (0: all) in the local state.
    pub fn alarms(&self, member: u64, kind: i32) -> proto::etcdserverpb::AlarmResponse {
        self.state.shared.alarms(member, kind)
    }

    /// Keeps the address book the network uses in step with the membership's peer URLs.
    async fn follow_addresses(self, book: AddressBook) {
        let mut metrics = self.raft.metrics();
        let mut stop = self.stop.subscribe();
        loop {
            {
                let m = metrics.borrow_watched();
                let urls: std::collections::BTreeMap<NodeId, String> = m
                    .membership_config
                    .membership()
                    .nodes()
                    .filter_map(|(id, member)| Some((*id, member.peer_urls.first()?.clone())))
                    .collect();
                if *book.read().expect("address book poisoned") != urls {
                    *book.write().expect("address book poisoned") = urls;
                }
            }
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Returns the smallest TTL a lease is granted, in seconds.
    pub fn lease_ttl_min(&self) -> i64 {
        self.lease_ttl_min
    }

    /// Returns every lease id in the local state.
    pub fn lease_ids(&self) -> Vec<i64> {
        self.state
            .shared
            .lease_ttls()
            .into_iter()
            .map(|(id, _, _)| id)
            .collect()
    }

    /// Answers a keep-alive or time-to-live call, which only the leader's timers can: here
    /// when this member leads, otherwise at the leader.
    pub async fn lease_call(
        &self,
        call: pb::lease_call_request::Call,
    ) -> Result<pb::lease_call_response::Reply, EtcdError> {
        self.at_leader(
            || self.lease_call_local(call),
            |url, remaining| {
                let request = pb::LeaseCallRequest {
                    group: 0,
                    call: Some(call),
                };
                async move {
                    let response = self.peers.lease_call(&url, request, remaining).await?;
                    response
                        .reply
                        .ok_or_else(|| PeerError::Remote("lease call answer without reply".into()))
                }
            },
        )
        .await
    }

    /// Answers a lease call on this member, which must lead.
    pub async fn lease_call_local(
        &self,
        call: pb::lease_call_request::Call,
    ) -> Result<pb::lease_call_response::Reply, EtcdError> {
        use pb::lease_call_request::Call;
        use pb::lease_call_response::Reply;
        use proto::etcdserverpb::{LeaseKeepAliveResponse, LeaseTimeToLiveResponse};
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        let now = self.clock_now();
        match call {
            Call::KeepAlive(request) => {
                let Some(lease) = self.state.shared.lease(request.id) else {
                    // etcd answers an unknown lease with TTL 0.
                    return Ok(Reply::KeepAlive(LeaseKeepAliveResponse {
                        header: None,
                        id: request.id,
                        ttl: 0,
                    }));
                };
                let ttl = match self.lessor.renew(now, lease.id, lease.ttl) {
                    Err(EtcdError::LeaseNotFound) => 0,
                    other => other?,
                };
                if ttl > 0 && lease.remaining != 0 {
                    // The checkpoint is stale now: a next leader must start from the full TTL.
                    let replica = self.clone();
                    let clear = pb::Command {
                        op: Some(pb::command::Op::LeaseCheckpoint(
                            proto::etcdserverpb::LeaseCheckpointRequest {
                                checkpoints: vec![proto::etcdserverpb::LeaseCheckpoint {
                                    id: lease.id,
                                    remaining_ttl: 0,
                                }],
                            },
                        )),
                    };
                    tokio::spawn(async move {
                        let _ = replica.propose_local(clear).await;
                    });
                }
                Ok(Reply::KeepAlive(LeaseKeepAliveResponse {
                    header: None,
                    id: request.id,
                    ttl,
                }))
            }
            Call::TimeToLive(request) => {
                // Linearizable: a revoke or expiry committed before the call is seen (the
                // leader may apply a little after its followers).
                let index = self.read_index().await?;
                let remaining = self.request_timeout;
                self.raft
                    .wait(Some(remaining))
                    .applied_index_at_least(Some(index), "time-to-live read index applied")
                    .await
                    .map_err(|_| EtcdError::Timeout)?;
                let now = self.clock_now();
                let Some(lease) = self.state.shared.lease(request.id) else {
                    return Ok(Reply::TimeToLive(LeaseTimeToLiveResponse {
                        header: None,
                        id: request.id,
                        ttl: -1,
                        granted_ttl: 0,
                        keys: Vec::new(),
                    }));
                };
                let remaining = self.lessor.remaining(now, lease.id)?.unwrap_or(lease.ttl);
                let keys = if request.keys {
                    lease.keys.into_iter().collect()
                } else {
                    Vec::new()
                };
                Ok(Reply::TimeToLive(LeaseTimeToLiveResponse {
                    header: None,
                    id: request.id,
                    ttl: remaining,
                    granted_ttl: lease.ttl,
                    keys,
                }))
            }
        }
    }

    /// Returns true when this member is a learner of the group.
    pub fn is_learner(&self) -> bool {
        let metrics = self.raft.metrics();
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        membership.get_node(&self.id).is_some() && !membership.voter_ids().any(|v| v == self.id)
    }

    /// Hands leadership to voter `to` (etcd's MoveLeader) and waits until it leads. Only the
    /// leader can; a learner or unknown member is a bad transferee.
    pub async fn move_leader(&self, to: NodeId) -> Result<(), EtcdError> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        let is_voter = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow_watched();
            m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v == to)
        };
        if !is_voter {
            return Err(EtcdError::BadLeaderTransferee);
        }
        if to == self.id {
            return Ok(());
        }
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|_| EtcdError::Stopped)?;
        self.raft
            .wait(Some(self.request_timeout))
            .metrics(|m| m.current_leader == Some(to), "leader transferred")
            .await
            .map(|_| ())
            .map_err(|_| EtcdError::LeaderTransferTimeout)
    }

    /// Handles the leader's request to let another member take over.
    pub async fn handle_transfer_leader(
        &self,
        request: pb::TransferLeaderRequest,
    ) -> Result<pb::TransferLeaderResponse, String> {
        let vote = request
            .from_leader
            .as_ref()
            .ok_or("transfer leader request without vote")?;
        let vote = codec::vote_from_pb(vote).map_err(|e| e.to_string())?;
        let last_log_id =
            codec::opt_log_id_from_pb(&request.last_log_id).map_err(|e| e.to_string())?;
        let request = openraft::raft::TransferLeaderRequest::new(vote, request.to, last_log_id);
        let answer = self
            .raft
            .handle_transfer_leader(request)
            .await
            .map_err(|e| e.to_string())?;
        Ok(pb::TransferLeaderResponse {
            refused: answer.err().map(|e| e.to_string()).unwrap_or_default(),
        })
    }

    /// Resolves once this member learns it was removed from the group, with the evidence.
    pub async fn removed(&self) -> String {
        let mut removed = self.removed.subscribe();
        match removed.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            // The sender lives as long as the replica; never resolve without evidence.
            Err(_) => std::future::pending().await,
        }
    }

    /// Returns the members committed membership changes removed.
    pub fn removed_members(&self) -> Vec<NodeId> {
        self.state.shared.removed_members().into_iter().collect()
    }

    /// Watches for this member's removal: every member records the ids committed membership
    /// changes removed. A removed member may never apply the change that removed it (the
    /// leader stops replicating to it as soon as it appends that entry), so besides its own
    /// record it asks one peer per check (ids are never reused, so a peer's record is proof).
    async fn watch_removal(self) {
        let mut stop = self.stop.subscribe();
        let mut ticker = tokio::time::interval(base::limits::REMOVAL_CHECK_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_peer = 0usize;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
            if self.state.shared.removed_members().contains(&self.id) {
                self.declare_removed("this member applied the change that removed it".into());
                return;
            }
            if self.is_leader() {
                continue;
            }
            let urls: Vec<(NodeId, String)> = self
                .membership()
                .nodes
                .iter()
                .filter(|(id, _)| **id != self.id)
                .filter_map(|(id, member)| Some((*id, member.peer_urls.first()?.clone())))
                .collect();
            if urls.is_empty() {
                continue;
            }
            let (peer, url) = &urls[next_peer % urls.len()];
            next_peer = next_peer.wrapping_add(1);
            let Ok(answer) = self
                .peers
                .members(url, base::limits::REMOVAL_CHECK_INTERVAL)
                .await
            else {
                continue;
            };
            let same_cluster = self.cluster_id == 0 || answer.cluster_id == self.cluster_id;
            if same_cluster && answer.removed.contains(&self.id) {
                self.declare_removed(format!(
                    "member {peer:x} applied the change that removed this member"
                ));
                return;
            }
        }
    }

    fn declare_removed(&self, reason: String) {
        tracing::error!(%reason, "this member was removed from the cluster");
        self.removed.send_replace(Some(reason));
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
