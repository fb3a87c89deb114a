//! The driver of quorum buckets on one member, the thin driver of the `quorum` core: the
//! `quorate.v1` Buckets and Kv services clients call, the `quorate.replica.v1` Replica
//! service peers call, and the driving of the `quorum` coordinators, which turn a client
//! request into replica calls. Every decision (levels, placement, the coordinating replica,
//! when a round is done, hints, merges, read-repair targets, epoch admission) is the `quorum`
//! crate's; this crate owns the sockets, tasks, the clock and fsync (through
//! `storage::ObjectStore`), and must never decide anything a test of `quorum` cannot reach.
//!
//! Parts: `coordinator` drives a request's coordinator; `replica` is this member as a replica
//! and the calls to one replica; `hints` keeps and delivers hints; `services` are the gRPC
//! services; `status` maps the path's errors to gRPC statuses; `handoff`, `reap` and `gossip`
//! are ring changes, tombstone reaping and SWIM.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base::{Clock, Hlc, HlcTimestamp, NodeId};
use consensus::Replica;
use crdt::{Conflicts, Object, VersionVector};
use placement::Ring;
use proto::quorate::raft::v1 as raftpb;
use proto::quorate::replica::v1::replica_server::ReplicaServer;
use proto::quorate::v1 as pb;
use proto::quorate::v1::buckets_server::BucketsServer;
use proto::quorate::v1::kv_server::KvServer;
use quorum::{BucketDef, HintBook, Level, Placer, Plan};
use storage::{ObjectStore, StorageError};

use transport::GrpcPeers;

use crate::objects::ObjectWriter;

mod coordinator;
mod error;
mod gossip;
mod handoff;
mod hints;
mod objects;
mod reap;
mod replica;
mod services;
pub mod status;

pub use error::QuorumError;
pub use handoff::RingService;
pub use membership::Liveness as SwimLiveness;
pub use services::{BucketsService, KvService, ReplicaService};

use base::limits::{APPLY_POLL_INTERVAL, CLOCK_OFFSET_MAX, QUORUM_KEY_BYTES_MAX as KEY_BYTES_MAX};

/// One member's quorum-bucket machinery, shared by its three services.
pub struct QuorumNode {
    replica: Arc<Replica>,
    store: Arc<ObjectStore>,
    writer: ObjectWriter,
    peers: Arc<GrpcPeers>,
    clock: Arc<dyn Clock>,
    hlc: Mutex<Hlc>,
    /// The largest value (and so request) accepted.
    value_bytes_max: usize,
    request_timeout: Duration,
    /// How old a delete must be before its key's entry may be reaped.
    tombstone_grace: Duration,
    /// Above every counter of this member's own dots in any entry it reaped (durable in the
    /// store's meta table): a write to a key this member holds no entry for gets a dot above
    /// it, so it never reuses a dot another replica's tombstone has seen.
    reaped_floor: AtomicU64,
    /// Entries reaped since start.
    reaped: AtomicU64,
    hints: Mutex<HintBook>,
    /// The placer of the topology this member applied last, with the topology version it was
    /// built at (rebuilt only when the topology changes, not per request).
    placement: Mutex<Option<(u64, Arc<Placement>)>>,
    read_repairs: AtomicU64,
    /// Phi-accrual suspicion of every other member, fed by pings.
    detector: Mutex<membership::Detector<NodeId>>,
    /// Replica calls hold it shared from their epoch check until their write is durable; a
    /// ring change's stream or cleanup takes it exclusively once, so it starts only after
    /// every call admitted under an older epoch has finished.
    gate: tokio::sync::RwLock<()>,
    /// This member's part of ring changes (see `handoff`).
    handoff: Mutex<handoff::Progress>,
    /// SWIM gossip's mailbox and view (see `gossip`).
    gossip: gossip::GossipState,
    /// The `quorum-overwrite` canary is planted (tester canary builds only).
    #[cfg(feature = "canary")]
    overwrite: std::sync::atomic::AtomicBool,
}

/// An object on its way to one replica's copy (see `QuorumNode::merge_at`).
#[derive(Clone)]
struct MergeCall {
    bucket: String,
    key: Vec<u8>,
    object: Object,
    conflicts: Conflicts,
    /// The ring epoch the call was placed at (0: unplaced, never refused).
    epoch: u64,
    /// Sent by a ring change's stream.
    handoff: bool,
}

/// Counters of the quorum path, for metrics.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumStats {
    /// Bytes of hints held for other members.
    pub hint_bytes: u64,
    pub hints_stored: u64,
    pub hints_delivered: u64,
    /// Hints not kept because a target's bound was full (left to read repair).
    pub hints_dropped: u64,
    pub read_repairs: u64,
    /// The ring epoch this member has applied.
    pub ring_epoch: u64,
    /// Copies this member's ring-change streams sent, copies it received from others' (and of
    /// those, keys it held no copy of), and objects it dropped as no longer its to replicate.
    pub handoff_sent: u64,
    pub handoff_received: u64,
    pub handoff_created: u64,
    pub handoff_removed: u64,
    /// Deleted keys whose entry was reaped after the grace period.
    pub tombstones_reaped: u64,
}

/// A periodic task's clock: ticks every `period` (late ticks are delayed, not bunched) until
/// `stop` turns true.
struct Every {
    ticker: tokio::time::Interval,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl Every {
    fn new(period: Duration, stop: tokio::sync::watch::Receiver<bool>) -> Every {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Every { ticker, stop }
    }

    /// Waits for the next tick; false once the task should stop.
    async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = self.ticker.tick() => true,
            _ = self.stop.wait_for(|stop| *stop) => false,
        }
    }
}

/// A key's place for one request: its bucket and its plan (see `QuorumNode::place`).
struct Placed {
    def: BucketDef,
    plan: Plan,
}

/// What requests are placed by: the topology as applied and the rings built from it once.
struct Placement {
    topology: raftpb::Topology,
    placer: Placer,
}

impl Placement {
    fn of(topology: raftpb::Topology) -> Result<Placement, QuorumError> {
        let current = if topology.ring.is_empty() {
            None
        } else {
            Some(ring_from(&topology.ring)?)
        };
        let next = match &topology.pending {
            Some(pending) => Some(ring_from(&pending.next)?),
            None => None,
        };
        // Definitions that do not parse place nothing; `bucket` reports why.
        let buckets = topology
            .buckets
            .iter()
            .filter(|b| b.r#type == pb::BucketType::Quorum as i32)
            .filter_map(|b| bucket_def(b).ok());
        let placer = Placer::new(topology.epoch, current, next, buckets);
        Ok(Placement { topology, placer })
    }

    /// The definition of quorum bucket `name`.
    fn bucket(&self, name: &str) -> Result<&BucketDef, QuorumError> {
        let bucket = self
            .topology
            .buckets
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| QuorumError::NoBucket(name.to_owned()))?;
        if bucket.r#type != pb::BucketType::Quorum as i32 {
            return Err(QuorumError::NotQuorumBucket(name.to_owned()));
        }
        // A definition the placer skipped does not parse: say why.
        bucket_def(bucket)?;
        Ok(self.placer.bucket(name)?)
    }
}

/// The replica count `level` (else the bucket's `default`) asks for out of `n`; `what` is "r"
/// or "w".
fn required(
    level: Option<&pb::Level>,
    default: Level,
    n: usize,
    what: &'static str,
) -> Result<usize, QuorumError> {
    Ok(level_of(level)?.unwrap_or(default).required(n, what)?)
}

fn level_of(level: Option<&pb::Level>) -> Result<Option<Level>, QuorumError> {
    let Some(level) = level else {
        return Ok(None);
    };
    match pb::LevelKind::try_from(level.kind) {
        Ok(pb::LevelKind::LevelDefault) => Ok(None),
        Ok(pb::LevelKind::LevelOne) => Ok(Some(Level::One)),
        Ok(pb::LevelKind::LevelQuorum) => Ok(Some(Level::Quorum)),
        Ok(pb::LevelKind::LevelAll) => Ok(Some(Level::All)),
        Ok(pb::LevelKind::LevelCount) => Ok(Some(Level::Count(level.count))),
        Err(_) => Err(QuorumError::UnknownLevelKind(level.kind)),
    }
}

/// The wire form of a level.
pub fn level_to_pb(level: Level) -> pb::Level {
    let (kind, count) = match level {
        Level::One => (pb::LevelKind::LevelOne, 0),
        Level::Quorum => (pb::LevelKind::LevelQuorum, 0),
        Level::All => (pb::LevelKind::LevelAll, 0),
        Level::Count(count) => (pb::LevelKind::LevelCount, count),
    };
    pb::Level {
        kind: kind as i32,
        count,
    }
}

fn conflicts_of(value: i32) -> Result<Conflicts, QuorumError> {
    match pb::Conflicts::try_from(value) {
        Ok(pb::Conflicts::Unspecified | pb::Conflicts::Siblings) => Ok(Conflicts::Siblings),
        Ok(pb::Conflicts::Lww) => Ok(Conflicts::Lww),
        Err(_) => Err(QuorumError::UnknownConflicts(value)),
    }
}

fn conflicts_to_pb(conflicts: Conflicts) -> i32 {
    match conflicts {
        Conflicts::Siblings => pb::Conflicts::Siblings as i32,
        Conflicts::Lww => pb::Conflicts::Lww as i32,
    }
}

/// A stored bucket definition as the coordinators use it.
fn bucket_def(bucket: &pb::Bucket) -> Result<BucketDef, QuorumError> {
    let n = bucket.n as usize;
    let def = BucketDef {
        name: bucket.name.clone(),
        n,
        r: level_of(bucket.r.as_ref())?.unwrap_or(Level::Quorum),
        w: level_of(bucket.w.as_ref())?.unwrap_or(Level::Quorum),
        conflicts: conflicts_of(bucket.conflicts)?,
        sloppy: bucket.sloppy,
    };
    def.r.required(n, "r")?;
    def.w.required(n, "w")?;
    Ok(def)
}

/// A stored copy, decoded inside a write transaction (a refusal aborts the change).
fn decode_stored(bytes: &[u8]) -> Result<Object, String> {
    crdt::codec::decode_object(bytes).map_err(|e| format!("stored quorum object: {e}"))
}

/// The settings of one member's quorum path.
#[derive(Copy, Clone, Debug)]
pub struct QuorumConfig {
    /// The largest value (and so request) accepted.
    pub value_bytes_max: usize,
    /// How long a request waits for replicas unless it says otherwise.
    pub request_timeout: Duration,
    /// Hint bytes kept per unreachable member at most.
    pub hint_bytes_max: u64,
    /// How old a delete must be before its key's entry may be reaped.
    pub tombstone_grace: Duration,
}

impl QuorumNode {
    pub fn new(
        replica: Arc<Replica>,
        store: Arc<ObjectStore>,
        peers: Arc<GrpcPeers>,
        clock: Arc<dyn Clock>,
        config: QuorumConfig,
    ) -> Result<Arc<QuorumNode>, StorageError> {
        let QuorumConfig {
            value_bytes_max,
            request_timeout,
            hint_bytes_max,
            tombstone_grace,
        } = config;
        let reaped_floor = match store.meta(reap::FLOOR)? {
            Some(bytes) => reap::decode_floor(&bytes)?,
            None => 0,
        };
        let bytes: Vec<(NodeId, u64)> = store
            .hint_bytes()?
            .into_iter()
            .map(|(target, bytes)| (NodeId(target), bytes))
            .collect();
        let writer = ObjectWriter::start(store.clone()).map_err(|source| StorageError::File {
            path: "<quorum object writer thread>".into(),
            source,
        })?;
        Ok(Arc::new(QuorumNode {
            replica,
            store,
            writer,
            peers,
            clock,
            hlc: Mutex::new(Hlc::new(CLOCK_OFFSET_MAX)),
            value_bytes_max,
            request_timeout,
            tombstone_grace,
            reaped_floor: AtomicU64::new(reaped_floor),
            reaped: AtomicU64::new(0),
            hints: Mutex::new(HintBook::new(hint_bytes_max, bytes)),
            placement: Mutex::new(None),
            read_repairs: AtomicU64::new(0),
            gate: tokio::sync::RwLock::new(()),
            handoff: Mutex::new(handoff::Progress::default()),
            gossip: gossip::GossipState::new(),
            detector: Mutex::new(
                membership::Detector::new(membership::Config::default())
                    .expect("the default detector configuration is valid"),
            ),
            #[cfg(feature = "canary")]
            overwrite: std::sync::atomic::AtomicBool::new(false),
        }))
    }

    /// Plants a canary of the quorum path (tester canary builds only).
    #[cfg(feature = "canary")]
    pub fn plant(&self, canary: Option<consensus::Canary>) {
        let overwrite = canary == Some(consensus::Canary::QuorumOverwrite);
        self.overwrite.store(overwrite, Ordering::Relaxed);
    }

    /// Whether the quorum-overwrite canary runs.
    fn overwrites(&self) -> bool {
        #[cfg(feature = "canary")]
        {
            self.overwrite.load(Ordering::Relaxed)
        }
        #[cfg(not(feature = "canary"))]
        {
            false
        }
    }

    /// The counters of the quorum path.
    pub fn stats(&self) -> QuorumStats {
        let (handoff_sent, handoff_received, handoff_created, handoff_removed) =
            self.handoff_counts();
        let hints = self.hints.lock().expect("hint book poisoned").stats();
        QuorumStats {
            ring_epoch: self.replica.topology_epoch(),
            tombstones_reaped: self.reaped.load(Ordering::Relaxed),
            handoff_sent,
            handoff_received,
            handoff_created,
            handoff_removed,
            hint_bytes: hints.bytes,
            hints_stored: hints.stored,
            hints_delivered: hints.delivered,
            hints_dropped: hints.dropped,
            read_repairs: self.read_repairs.load(Ordering::Relaxed),
        }
    }

    /// Whether `member` is suspected (never this member itself): its phi is at or above the
    /// threshold, or SWIM has declared it down (a SWIM suspicion alone does not count: the
    /// member may still refute it, and phi already reflects what this member hears).
    fn suspects(&self, member: NodeId) -> bool {
        if member == self.me() {
            return false;
        }
        if self.swim_view(member) == Some(membership::Liveness::Down) {
            return true;
        }
        let now = self.clock.monotonic();
        !self
            .detector
            .lock()
            .expect("detector poisoned")
            .is_available(&member, now)
    }

    /// This member's view of the others: (member, phi, status), by member.
    pub fn liveness(&self) -> Vec<(NodeId, f64, membership::Status)> {
        let now = self.clock.monotonic();
        self.detector.lock().expect("detector poisoned").report(now)
    }

    /// The three gRPC services of this node.
    pub fn services(
        self: &Arc<Self>,
    ) -> (
        BucketsServer<BucketsService>,
        KvServer<KvService>,
        ReplicaServer<ReplicaService>,
    ) {
        (
            BucketsServer::new(BucketsService(self.clone())),
            KvServer::new(KvService(self.clone())).max_decoding_message_size(
                self.value_bytes_max + base::limits::GRPC_OVERHEAD_BYTES,
            ),
            ReplicaServer::new(ReplicaService(self.clone()))
                .max_decoding_message_size(transport::PEER_MESSAGE_BYTES_MAX),
        )
    }

    /// The client services as plain handlers, for a front that serves consensus buckets and
    /// hands the rest to them.
    pub fn client_handlers(self: &Arc<Self>) -> (BucketsService, KvService) {
        (BucketsService(self.clone()), KvService(self.clone()))
    }

    /// The largest client message the Kv service takes.
    pub fn kv_message_bytes_max(&self) -> usize {
        self.value_bytes_max + base::limits::GRPC_OVERHEAD_BYTES
    }

    fn me(&self) -> NodeId {
        NodeId(self.replica.id())
    }

    fn now(&self) -> HlcTimestamp {
        let physical = self.clock.physical_micros();
        self.hlc.lock().expect("hlc lock poisoned").now(physical)
    }

    /// Takes the timestamps of an object from a peer into the hybrid logical clock, so later
    /// local writes order after them (a runaway one is refused and logged).
    fn observe(&self, object: &Object) {
        let Some(latest) = object.siblings.iter().map(|s| s.timestamp).max() else {
            return;
        };
        let physical = self.clock.physical_micros();
        if let Err(error) = self
            .hlc
            .lock()
            .expect("hlc lock poisoned")
            .observe(physical, latest)
        {
            tracing::warn!(%error, "quorum: a peer's timestamp was not taken into the clock");
        }
    }
    /// The placement of the topology this member has applied: built once per topology change.
    fn placement(&self) -> Result<Arc<Placement>, QuorumError> {
        let version = self.replica.topology_version();
        let mut cached = self.placement.lock().expect("placement cache poisoned");
        if let Some((built_at, placement)) = cached.as_ref()
            && *built_at == version
        {
            return Ok(placement.clone());
        }
        let placement = Arc::new(Placement::of(self.replica.topology())?);
        *cached = Some((version, placement.clone()));
        Ok(placement)
    }

    /// Where a request on `key` of `bucket` goes: the bucket, the key's token, its N replicas
    /// (and those of the pending ring during a ring change) and the other members in ring
    /// order (the fallbacks of a sloppy quorum).
    fn place(&self, bucket: &str, key: &[u8]) -> Result<Placed, QuorumError> {
        let placement = self.placement()?;
        let def = placement.bucket(bucket)?.clone();
        self.check_key(key)?;
        let plan = placement.placer.plan(&def, key)?;
        Ok(Placed { def, plan })
    }

    /// Waits until this member has applied a ring epoch after `epoch`; false at `deadline`.
    async fn await_epoch_after(&self, epoch: u64, deadline: tokio::time::Instant) -> bool {
        loop {
            if self.replica.topology_epoch() > epoch {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(APPLY_POLL_INTERVAL).await;
        }
    }

    fn check_key(&self, key: &[u8]) -> Result<(), QuorumError> {
        if key.is_empty() {
            return Err(QuorumError::KeyEmpty);
        }
        if key.len() > KEY_BYTES_MAX {
            return Err(QuorumError::KeyTooLarge { len: key.len() });
        }
        Ok(())
    }

    fn timeout_of(&self, timeout_ms: u32) -> Duration {
        if timeout_ms == 0 {
            self.request_timeout
        } else {
            Duration::from_millis(u64::from(timeout_ms))
        }
    }

    /// A put (a value) or a delete (`None`) through the quorum path. Returns the new context
    /// and the acknowledgements. When a replica refuses the placement's ring epoch, the write
    /// waits for this member to apply the newer ring and is placed again (the coordinated
    /// object is kept: a retry adds no sibling).
    async fn write(
        self: &Arc<Self>,
        bucket: &str,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        level: Option<&pb::Level>,
        context: &str,
        timeout_ms: u32,
    ) -> Result<(String, usize), QuorumError> {
        let placed = self.place(bucket, &key)?;
        if let Some(value) = &value
            && value.len() > self.value_bytes_max
        {
            return Err(QuorumError::ValueTooLarge {
                len: value.len(),
                max: self.value_bytes_max,
            });
        }
        let w = required(level, placed.def.w, placed.def.n, "w")?;
        let context = if context.is_empty() {
            VersionVector::new()
        } else {
            VersionVector::from_token(context)
                .map_err(|e| QuorumError::BadContext(e.to_string()))?
        };
        let deadline = tokio::time::Instant::now() + self.timeout_of(timeout_ms);
        let done = self
            .coordinate_write(placed, key, value, context, w, deadline)
            .await?;
        Ok((done.object.context.to_token(), done.acked))
    }

    /// A read through the quorum path: the merge of R answers (or more, if they came in
    /// together), and the number of replicas that answered. Placed again, like a write, when
    /// a replica refuses the placement's ring epoch.
    async fn read(
        self: &Arc<Self>,
        bucket: &str,
        key: Vec<u8>,
        level: Option<&pb::Level>,
        timeout_ms: u32,
        monotonic: bool,
    ) -> Result<(Object, usize), QuorumError> {
        let placed = self.place(bucket, &key)?;
        let r = required(level, placed.def.r, placed.def.n, "r")?;
        let deadline = tokio::time::Instant::now() + self.timeout_of(timeout_ms);
        let done = self
            .coordinate_read(placed, key, r, monotonic, deadline)
            .await?;
        Ok((done.object, done.answered))
    }
}

/// The ids of the voting members, sorted.
fn voters(membership: &raftpb::Membership) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = membership
        .configs
        .iter()
        .flat_map(|set| set.ids.iter().map(|id| NodeId(*id)))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn ring_tokens(ring: &Ring) -> Vec<raftpb::RingToken> {
    ring.tokens()
        .iter()
        .map(|(token, member)| raftpb::RingToken {
            token: *token,
            member: member.0,
        })
        .collect()
}

fn ring_of(topology: &raftpb::Topology) -> Result<Ring, QuorumError> {
    if topology.ring.is_empty() {
        return Err(QuorumError::NoRing);
    }
    ring_from(&topology.ring)
}

/// The ring stored as `tokens`.
fn ring_from(tokens: &[raftpb::RingToken]) -> Result<Ring, QuorumError> {
    let tokens = tokens.iter().map(|t| (t.token, NodeId(t.member))).collect();
    Ring::from_tokens(tokens).map_err(|e| QuorumError::Internal(format!("stored ring: {e}")))
}
