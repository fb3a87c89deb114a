//! The driver of quorum buckets on one member: the `quorate.v1` Buckets and Kv services
//! clients call, the `quorate.replica.v1` Replica service peers call, and the coordinator that
//! turns a client request into replica calls. Decisions (levels, when a round is done, merges,
//! read-repair targets) are the `quorum` crate's; this module owns the sockets, tasks, the
//! clock and fsync (through `storage::ObjectStore`).
//!
//! A put runs on a coordinating replica (this member if it is in the key's preference list,
//! else the first preference-list member that answers): it updates its copy with the client's
//! context and a new dot, stores it durably, then sends the resulting object to the other
//! replicas, which merge it. The reply waits for W durable copies; replication to the rest
//! goes on after it. A read asks all N replicas, answers after R, merges by dotted version
//! vectors, and repairs stale replicas in the background (late answers included).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base::{Clock, Hlc, HlcTimestamp, NodeId};
use consensus::{PeerError, Replica};
use crdt::{Conflicts, Object, VersionVector};
use placement::Ring;
use proto::quorate::raft::v1 as raftpb;
use proto::quorate::replica::v1 as replicapb;
use proto::quorate::replica::v1::replica_client::ReplicaClient;
use proto::quorate::replica::v1::replica_server::{Replica as ReplicaRpc, ReplicaServer};
use proto::quorate::v1 as pb;
use proto::quorate::v1::buckets_server::{Buckets, BucketsServer};
use proto::quorate::v1::kv_server::{Kv, KvServer};
use quorum::{Level, NotEnoughReplicas, ReadRound, WriteRound};
use storage::{Change, ObjectStore, Slot, StorageError};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::GrpcPeers;
use crate::objects::ObjectWriter;

mod gossip;
mod handoff;
mod reap;

pub use handoff::RingService;
pub use membership::Liveness as SwimLiveness;

use base::limits::{
    APPLY_POLL_INTERVAL, BUCKET_NAME_BYTES_MAX, BUCKET_REPLICAS_MAX as REPLICAS_MAX,
    CLOCK_OFFSET_MAX, GOSSIP_SEND_TIMEOUT, HINT_DELIVERY_BATCH, HINT_DELIVERY_INTERVAL,
    QUORUM_KEY_BYTES_MAX as KEY_BYTES_MAX, RING_VNODES_DEFAULT as RING_VNODES,
    SUSPECT_REPLICA_TIMEOUT,
};

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
    /// Hint bytes kept per target member at most.
    hint_bytes_max: u64,
    /// How old a delete must be before its key's entry may be reaped.
    tombstone_grace: Duration,
    /// Above every counter of this member's own dots in any entry it reaped (durable in the
    /// store's meta table): a write to a key this member holds no entry for gets a dot above
    /// it, so it never reuses a dot another replica's tombstone has seen.
    reaped_floor: AtomicU64,
    /// Entries reaped since start.
    reaped: AtomicU64,
    hints: Mutex<HintBook>,
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

/// The refusal of a replica call placed by an older ring epoch than the replica's.
const STALE_EPOCH: &str = "stale ring epoch";

/// Whether a replica's failure is a stale-epoch refusal: the request is placed again.
fn is_stale(why: &str) -> bool {
    why.starts_with(STALE_EPOCH)
}

/// A request attempt that failed; `stale` when a replica refused its ring epoch, so a retry
/// placed by the newer ring may succeed.
struct Failed {
    status: Status,
    stale: bool,
}

impl Failed {
    fn of(shortfall: &NotEnoughReplicas) -> Failed {
        Failed {
            status: unavailable(shortfall),
            stale: shortfall.failures.iter().any(|(_, why)| is_stale(why)),
        }
    }
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

/// What this member holds in hints, and what happened to hints so far.
#[derive(Default)]
struct HintBook {
    bytes: BTreeMap<NodeId, u64>,
    stored: u64,
    delivered: u64,
    dropped: u64,
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

/// How a replica's copy of a write was acknowledged.
enum Ack {
    /// The replica stored it.
    Replica,
    /// A fallback member holds it as a hint for the replica (sloppy quorum).
    Fallback(NodeId),
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

/// A key's place on the ring for one request (see `QuorumNode::place`).
struct Placed {
    def: BucketDef,
    token: u64,
    /// The current ring's N replicas.
    replicas: Vec<NodeId>,
    /// The pending ring's N replicas during a ring change (empty otherwise): writes need W of
    /// them too.
    next: Vec<NodeId>,
    /// Members in neither list, in ring order.
    fallbacks: Vec<NodeId>,
    /// The ring epoch the placement was made at.
    epoch: u64,
}

/// The replica count `level` (else the bucket's `default`) asks for out of `n`; `what` is "r"
/// or "w".
fn required(
    level: Option<&pb::Level>,
    default: Level,
    n: usize,
    what: &'static str,
) -> Result<usize, Status> {
    level_of(level)?
        .unwrap_or(default)
        .required(n, what)
        .map_err(invalid)
}

/// A bucket as the coordinator uses it.
#[derive(Clone, Debug)]
struct BucketDef {
    name: String,
    n: usize,
    r: Level,
    w: Level,
    conflicts: Conflicts,
    sloppy: bool,
}

fn level_of(level: Option<&pb::Level>) -> Result<Option<Level>, Status> {
    let Some(level) = level else {
        return Ok(None);
    };
    match pb::LevelKind::try_from(level.kind) {
        Ok(pb::LevelKind::LevelDefault) => Ok(None),
        Ok(pb::LevelKind::LevelOne) => Ok(Some(Level::One)),
        Ok(pb::LevelKind::LevelQuorum) => Ok(Some(Level::Quorum)),
        Ok(pb::LevelKind::LevelAll) => Ok(Some(Level::All)),
        Ok(pb::LevelKind::LevelCount) => Ok(Some(Level::Count(level.count))),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown level kind {}",
            level.kind
        ))),
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

fn conflicts_of(value: i32) -> Result<Conflicts, Status> {
    match pb::Conflicts::try_from(value) {
        Ok(pb::Conflicts::Unspecified | pb::Conflicts::Siblings) => Ok(Conflicts::Siblings),
        Ok(pb::Conflicts::Lww) => Ok(Conflicts::Lww),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown conflict resolution {value}"
        ))),
    }
}

fn conflicts_to_pb(conflicts: Conflicts) -> i32 {
    match conflicts {
        Conflicts::Siblings => pb::Conflicts::Siblings as i32,
        Conflicts::Lww => pb::Conflicts::Lww as i32,
    }
}

impl BucketDef {
    fn from_pb(bucket: &pb::Bucket) -> Result<BucketDef, Status> {
        let n = bucket.n as usize;
        let def = BucketDef {
            name: bucket.name.clone(),
            n,
            r: level_of(bucket.r.as_ref())?.unwrap_or(Level::Quorum),
            w: level_of(bucket.w.as_ref())?.unwrap_or(Level::Quorum),
            conflicts: conflicts_of(bucket.conflicts)?,
            sloppy: bucket.sloppy,
        };
        def.r.required(n, "r").map_err(invalid)?;
        def.w.required(n, "w").map_err(invalid)?;
        Ok(def)
    }
}

fn invalid(error: impl std::fmt::Display) -> Status {
    Status::invalid_argument(error.to_string())
}

fn internal(error: impl std::fmt::Display) -> Status {
    Status::internal(error.to_string())
}

fn unavailable(error: &NotEnoughReplicas) -> Status {
    Status::unavailable(error.to_string())
}

fn decode(bytes: &[u8]) -> Result<Option<Object>, Status> {
    if bytes.is_empty() {
        return Ok(None);
    }
    crdt::codec::decode_object(bytes)
        .map(Some)
        .map_err(|e| Status::data_loss(format!("quorum object: {e}")))
}

/// Checks a bucket name: 1 to 64 bytes of letters, digits, '.', '_' and '-'.
pub fn validate_bucket_name(name: &str) -> Result<(), Status> {
    if name.is_empty() || name.len() > BUCKET_NAME_BYTES_MAX {
        return Err(Status::invalid_argument(format!(
            "bucket name must be 1 to {BUCKET_NAME_BYTES_MAX} bytes, got {}",
            name.len()
        )));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Status::invalid_argument(format!(
            "bucket name {name:?} contains {bad:?}; use letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

fn storage_status(error: StorageError) -> Status {
    match error {
        StorageError::Corrupt { what, detail } => {
            Status::data_loss(format!("corrupt {what}: {detail}"))
        }
        other => Status::internal(other.to_string()),
    }
}

fn decode_stored(old: Option<&[u8]>) -> Result<Object, String> {
    match old {
        None => Ok(Object::new()),
        Some(bytes) => {
            crdt::codec::decode_object(bytes).map_err(|e| format!("stored quorum object: {e}"))
        }
    }
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
        let bytes = store
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
            hint_bytes_max,
            tombstone_grace,
            reaped_floor: AtomicU64::new(reaped_floor),
            reaped: AtomicU64::new(0),
            hints: Mutex::new(HintBook {
                bytes,
                ..HintBook::default()
            }),
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
        let book = self.hints.lock().expect("hint book poisoned");
        QuorumStats {
            ring_epoch: self.replica.topology_epoch(),
            tombstones_reaped: self.reaped.load(Ordering::Relaxed),
            handoff_sent,
            handoff_received,
            handoff_created,
            handoff_removed,
            hint_bytes: book.bytes.values().sum(),
            hints_stored: book.stored,
            hints_delivered: book.delivered,
            hints_dropped: book.dropped,
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

    /// Delivers held hints every `HINT_DELIVERY_INTERVAL` until `stop` turns true.
    pub async fn deliver_hints(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let mut every = Every::new(HINT_DELIVERY_INTERVAL, stop);
        while every.tick().await {
            let targets: Vec<NodeId> = {
                let book = self.hints.lock().expect("hint book poisoned");
                book.bytes
                    .iter()
                    .filter(|(_, bytes)| **bytes > 0)
                    .map(|(target, _)| *target)
                    .collect()
            };
            for target in targets {
                self.deliver_to(target).await;
            }
        }
    }

    /// One delivery round to `target`: each hint is merged into the target's copy, then
    /// removed here; the round stops at the first failure (the target is still away).
    async fn deliver_to(self: &Arc<Self>, target: NodeId) {
        let node = self.clone();
        let hints = match tokio::task::spawn_blocking(move || {
            node.store.hints_for(target.0, HINT_DELIVERY_BATCH)
        })
        .await
        {
            Ok(Ok(hints)) => hints,
            Ok(Err(error)) => {
                tracing::error!(%error, %target, "quorum: reading hints failed");
                return;
            }
            Err(_) => return,
        };
        let topology = self.replica.topology();
        for hint in hints {
            let conflicts = topology
                .buckets
                .iter()
                .find(|b| b.name == hint.bucket)
                .map(|b| conflicts_of(b.conflicts));
            let object = match crdt::codec::decode_object(&hint.object) {
                Ok(object) => object,
                Err(error) => {
                    tracing::error!(%error, %target, "quorum: a hint does not decode; dropped");
                    self.forget_hint(hint, false).await;
                    continue;
                }
            };
            let Some(Ok(conflicts)) = conflicts else {
                // The bucket was deleted: nothing to hand over.
                self.forget_hint(hint, false).await;
                continue;
            };
            let call = MergeCall {
                bucket: hint.bucket.clone(),
                key: hint.key.clone(),
                object,
                conflicts,
                epoch: 0,
                handoff: false,
            };
            let delivered = self.deliver_hint(target, call).await;
            match delivered {
                Ok(()) => self.forget_hint(hint, true).await,
                Err(why) => {
                    tracing::debug!(%target, %why, "quorum: hint delivery waits");
                    return;
                }
            }
        }
    }

    /// Hands one hint over: to `target` while it still replicates the key (in the current or
    /// the pending ring), else — the ring changed since the hint was taken — to every member
    /// that does, all of which must take it.
    /// The delivery is placed (and fenced) at the ring epoch it was computed at, so it never
    /// lands on a member that has cleaned up after a newer ring; refused, it waits for the next
    /// round.
    async fn deliver_hint(
        self: &Arc<Self>,
        target: NodeId,
        mut call: MergeCall,
    ) -> Result<(), String> {
        let owners = match self.place(&call.bucket, &call.key) {
            Ok(placed) => {
                call.epoch = placed.epoch;
                let mut owners = placed.replicas;
                owners.extend(placed.next);
                owners
            }
            // The bucket or the ring went away: the target is as good as any member.
            Err(_) => vec![target],
        };
        let targets = if owners.contains(&target) {
            vec![target]
        } else {
            owners
        };
        for member in targets {
            self.clone()
                .merge_at(member, call.clone(), self.request_timeout)
                .await?;
        }
        Ok(())
    }

    /// Removes a hint (if unchanged since read) through the writer and accounts for it.
    async fn forget_hint(&self, hint: storage::Hint, delivered: bool) {
        let size = hint.object.len() as u64;
        let target = NodeId(hint.target);
        let change = storage::remove_if_unchanged(hint.object.clone());
        let removed = self.writer.write(hint.slot(), change).await;
        if let Ok(Ok((_, None))) = removed {
            let mut book = self.hints.lock().expect("hint book poisoned");
            let bytes = book.bytes.entry(target).or_insert(0);
            *bytes = bytes.saturating_sub(size);
            if delivered {
                book.delivered += 1;
            } else {
                book.dropped += 1;
            }
        }
    }

    /// Keeps `object` as a hint for `target`, merged with any hint already held for the key.
    /// Returns false (and counts a drop) when the target's hint bound is full: the write is
    /// then left to read repair, and no client write fails because of it.
    async fn store_hint(
        self: &Arc<Self>,
        target: NodeId,
        bucket: String,
        key: Vec<u8>,
        object: Object,
        conflicts: Conflicts,
    ) -> Result<bool, Status> {
        let encoded = crdt::codec::encode_object(&object);
        {
            let mut book = self.hints.lock().expect("hint book poisoned");
            let held = book.bytes.get(&target).copied().unwrap_or(0);
            if held + encoded.len() as u64 > self.hint_bytes_max {
                book.dropped += 1;
                tracing::debug!(%target, held, "quorum: hint bound full; hint dropped");
                return Ok(false);
            }
        }
        let slot = Slot::Hint {
            target: target.0,
            bucket,
            key,
        };
        let change: Change = Box::new(move |old| {
            let mut hint = decode_stored(old)?;
            hint.merge(&object, conflicts);
            Ok(Some(crdt::codec::encode_object(&hint)))
        });
        let (old, new) = self.apply(slot, change).await?;
        let new = new.map_or(0, |bytes| bytes.len() as u64);
        let mut book = self.hints.lock().expect("hint book poisoned");
        let bytes = book.bytes.entry(target).or_insert(0);
        *bytes = (*bytes + new).saturating_sub(old);
        book.stored += 1;
        Ok(true)
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
                .max_decoding_message_size(crate::PEER_MESSAGE_BYTES_MAX),
        )
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

    fn bucket(topology: &raftpb::Topology, name: &str) -> Result<(BucketDef, Ring), Status> {
        let bucket = topology
            .buckets
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| Status::not_found(format!("bucket {name:?} not found")))?;
        if bucket.r#type != pb::BucketType::Quorum as i32 {
            return Err(Status::failed_precondition(format!(
                "bucket {name:?} is not a quorum bucket"
            )));
        }
        let def = BucketDef::from_pb(bucket)?;
        let ring = ring_of(topology)?;
        Ok((def, ring))
    }

    /// Where a request on `key` of `bucket` goes: the bucket, the key's token, its N replicas
    /// (and those of the pending ring during a ring change) and the other members in ring
    /// order (the fallbacks of a sloppy quorum).
    fn place(&self, bucket: &str, key: &[u8]) -> Result<Placed, Status> {
        let topology = self.replica.topology();
        let (def, ring) = Self::bucket(&topology, bucket)?;
        self.check_key(key)?;
        let token = placement::key_token(&def.name, key);
        let mut replicas: Vec<NodeId> = ring.walk(token).collect();
        let mut fallbacks = replicas.split_off(def.n.min(replicas.len()));
        let next = match &topology.pending {
            Some(pending) => {
                let next = ring_from(&pending.next)?.preference_list(token, def.n);
                fallbacks.retain(|m| !next.contains(m));
                next
            }
            None => Vec::new(),
        };
        Ok(Placed {
            def,
            token,
            replicas,
            next,
            fallbacks,
            epoch: topology.epoch,
        })
    }

    /// Admits a replica call placed at ring `epoch`: refused when this member is at a later
    /// epoch. The guard is held until the call's write is durable (see `gate`).
    async fn admit(&self, epoch: u64) -> Result<tokio::sync::RwLockReadGuard<'_, ()>, Status> {
        let guard = self.gate.read().await;
        let mine = self.replica.topology_epoch();
        if epoch != 0 && epoch < mine {
            return Err(Status::failed_precondition(format!(
                "{STALE_EPOCH}: the call was placed at epoch {epoch}, this member is at {mine}"
            )));
        }
        Ok(guard)
    }

    /// After a failed attempt: places the request again (Ok) when a replica refused its stale
    /// ring epoch and this member applied a newer one before `deadline`; else the attempt's
    /// error.
    async fn place_again(
        &self,
        failed: Failed,
        placed: &mut Placed,
        bucket: &str,
        key: &[u8],
        deadline: tokio::time::Instant,
    ) -> Result<(), Status> {
        if failed.stale && self.await_epoch_after(placed.epoch, deadline).await {
            *placed = self.place(bucket, key)?;
            return Ok(());
        }
        Err(failed.status)
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

    fn check_key(&self, key: &[u8]) -> Result<(), Status> {
        if key.is_empty() {
            return Err(Status::invalid_argument("key is empty"));
        }
        if key.len() > KEY_BYTES_MAX {
            return Err(Status::invalid_argument(format!(
                "key of {} bytes exceeds the limit of {KEY_BYTES_MAX} bytes",
                key.len()
            )));
        }
        Ok(())
    }

    fn peer_url(&self, member: NodeId) -> Option<String> {
        let membership = self.replica.membership();
        membership
            .nodes
            .get(&member.0)
            .and_then(|m| m.peer_urls.first().cloned())
    }

    async fn client(
        &self,
        member: NodeId,
    ) -> Result<ReplicaClient<tonic::transport::Channel>, String> {
        let url = self
            .peer_url(member)
            .ok_or_else(|| format!("member {member} has no peer URL"))?;
        let (channel, delay) = self.peers.channel(&url).map_err(|e| match e {
            PeerError::Unreachable(why) | PeerError::Remote(why) => why,
        })?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(ReplicaClient::new(channel)
            .max_decoding_message_size(crate::PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(crate::PEER_MESSAGE_BYTES_MAX))
    }

    // ----- this member as a replica -----

    /// Applies a client write to this member's copy as the coordinating replica.
    async fn coordinate_local(
        self: &Arc<Self>,
        request: replicapb::CoordinateRequest,
        context: VersionVector,
        conflicts: Conflicts,
    ) -> Result<Object, Status> {
        let _admitted = self.admit(request.epoch).await?;
        let (bucket, key, value) = (request.bucket, request.key, request.value);
        let timestamp = self.now();
        let actor = self.me().0;
        let overwrite = self.overwrites();
        let floor = self.reaped_floor.load(Ordering::Acquire);
        let change: Change = Box::new(move |old| {
            let mut object = decode_stored(old)?;
            if old.is_none() && floor > 0 {
                // This member may have reaped the key: its next dot goes above every dot of
                // its own a remaining tombstone could cover.
                object.context.add_dot(&crdt::Dot {
                    actor,
                    counter: floor,
                });
            }
            if overwrite {
                object.siblings.clear();
            }
            object.update(&context, actor, timestamp, value, conflicts);
            Ok(Some(crdt::codec::encode_object(&object)))
        });
        let (_, stored) = self.apply(Slot::Object { bucket, key }, change).await?;
        let bytes =
            stored.ok_or_else(|| Status::internal("the coordinated write stored nothing"))?;
        decode(&bytes)?.ok_or_else(|| Status::internal("the coordinated write stored nothing"))
    }

    /// Merges an object into this member's copy, durably.
    async fn merge_local(self: &Arc<Self>, call: MergeCall) -> Result<(), Status> {
        let _admitted = self.admit(call.epoch).await?;
        let MergeCall {
            bucket,
            key,
            object,
            conflicts,
            handoff,
            ..
        } = call;
        self.observe(&object);
        let overwrite = self.overwrites();
        let change: Change = Box::new(move |old| {
            let mut mine = decode_stored(old)?;
            if overwrite {
                mine = object.clone();
            }
            mine.merge(&object, conflicts);
            Ok(Some(crdt::codec::encode_object(&mine)))
        });
        let (before, _) = self.apply(Slot::Object { bucket, key }, change).await?;
        if handoff {
            self.handoff
                .lock()
                .expect("handoff progress poisoned")
                .received(before == 0);
        }
        Ok(())
    }

    /// Applies one change through the group-committing writer: (stored size before, bytes
    /// after).
    async fn apply(&self, slot: Slot, change: Change) -> Result<(u64, Option<Vec<u8>>), Status> {
        match self.writer.write(slot, change).await {
            Ok(Ok(done)) => Ok(done),
            // The change refused: the stored value does not decode or fails its checksum.
            Ok(Err(refusal)) => Err(Status::data_loss(refusal)),
            Err(error) => Err(Status::internal(format!("quorum object store: {error}"))),
        }
    }

    async fn read_local(
        self: &Arc<Self>,
        bucket: String,
        key: Vec<u8>,
        epoch: u64,
    ) -> Result<Option<Object>, Status> {
        let _admitted = self.admit(epoch).await?;
        let node = self.clone();
        let bytes = tokio::task::spawn_blocking(move || node.store.get(&bucket, &key))
            .await
            .map_err(internal)?
            .map_err(storage_status)?;
        match bytes {
            Some(bytes) => decode(&bytes),
            None => Ok(None),
        }
    }

    // ----- calls to one replica, local or remote -----

    async fn coordinate_at(
        self: &Arc<Self>,
        member: NodeId,
        request: replicapb::CoordinateRequest,
        context: VersionVector,
        conflicts: Conflicts,
        timeout: Duration,
    ) -> Result<Object, String> {
        if member == self.me() {
            return self
                .coordinate_local(request, context, conflicts)
                .await
                .map_err(|s| s.message().to_owned());
        }
        let mut client = self.client(member).await?;
        let mut call = Request::new(request);
        call.set_timeout(timeout);
        let reply = client
            .coordinate(call)
            .await
            .map_err(|s| s.message().to_owned())?;
        let object = decode(&reply.into_inner().object)
            .map_err(|s| s.message().to_owned())?
            .ok_or_else(|| "the coordinator returned no object".to_owned())?;
        self.observe(&object);
        Ok(object)
    }

    /// Merges a copy into `member`'s.
    async fn merge_at(
        self: Arc<Self>,
        member: NodeId,
        call: MergeCall,
        timeout: Duration,
    ) -> Result<(), String> {
        if member == self.me() {
            return self
                .merge_local(call)
                .await
                .map_err(|s| s.message().to_owned());
        }
        let mut client = self.client(member).await?;
        let mut request = Request::new(replicapb::MergeRequest {
            bucket: call.bucket,
            key: call.key,
            object: crdt::codec::encode_object(&call.object),
            conflicts: conflicts_to_pb(call.conflicts),
            epoch: call.epoch,
            handoff: call.handoff,
        });
        request.set_timeout(timeout);
        client
            .merge(request)
            .await
            .map(|_| ())
            .map_err(|s| s.message().to_owned())
    }

    /// Asks `member` to hold `object` as a hint for `target`.
    #[allow(clippy::too_many_arguments)]
    async fn hint_at(
        self: &Arc<Self>,
        member: NodeId,
        target: NodeId,
        bucket: String,
        key: Vec<u8>,
        object: Object,
        conflicts: Conflicts,
        timeout: Duration,
    ) -> Result<bool, String> {
        if member == self.me() {
            return self
                .store_hint(target, bucket, key, object, conflicts)
                .await
                .map_err(|s| s.message().to_owned());
        }
        let mut client = self.client(member).await?;
        let mut call = Request::new(replicapb::HintRequest {
            target: target.0,
            bucket,
            key,
            object: crdt::codec::encode_object(&object),
            conflicts: conflicts_to_pb(conflicts),
        });
        call.set_timeout(timeout);
        client
            .hint(call)
            .await
            .map(|reply| reply.into_inner().stored)
            .map_err(|s| s.message().to_owned())
    }

    /// Replicates a coordinated write to `member`. When it fails: with a sloppy bucket the
    /// next unused fallback on the ring takes it as a hint (an acknowledgement for W);
    /// otherwise, or when no fallback takes it, this member keeps a hint (no acknowledgement).
    /// A stale-epoch refusal is returned as it is: the write is placed again.
    async fn replicate(
        self: Arc<Self>,
        member: NodeId,
        call: MergeCall,
        sloppy: bool,
        fallbacks: Vec<NodeId>,
        used: Arc<Mutex<BTreeSet<NodeId>>>,
        timeout: Duration,
    ) -> Result<Ack, String> {
        // A suspected replica gets a short wait: it is probably down, and its hint (or a
        // fallback) should not wait out the whole request timeout.
        let wait = if self.suspects(member) {
            timeout.min(SUSPECT_REPLICA_TIMEOUT)
        } else {
            timeout
        };
        let why = match self.clone().merge_at(member, call.clone(), wait).await {
            Ok(()) => return Ok(Ack::Replica),
            Err(why) if is_stale(&why) => return Err(why),
            Err(why) => why,
        };
        let MergeCall {
            bucket,
            key,
            object,
            conflicts,
            ..
        } = call;
        if sloppy {
            for fallback in fallbacks {
                if !used.lock().expect("fallback set poisoned").insert(fallback) {
                    continue;
                }
                let held = self
                    .hint_at(
                        fallback,
                        member,
                        bucket.clone(),
                        key.clone(),
                        object.clone(),
                        conflicts,
                        timeout,
                    )
                    .await;
                if let Ok(true) = held {
                    return Ok(Ack::Fallback(fallback));
                }
            }
        }
        if let Err(error) = self
            .store_hint(member, bucket, key, object, conflicts)
            .await
        {
            tracing::warn!(%member, %error, "quorum: keeping a hint failed");
        }
        Err(why)
    }

    async fn read_at(
        self: Arc<Self>,
        member: NodeId,
        bucket: String,
        key: Vec<u8>,
        epoch: u64,
        timeout: Duration,
    ) -> Result<Option<Object>, String> {
        if member == self.me() {
            return self
                .read_local(bucket, key, epoch)
                .await
                .map_err(|s| s.message().to_owned());
        }
        let mut client = self.client(member).await?;
        let mut call = Request::new(replicapb::ReadRequest { bucket, key, epoch });
        call.set_timeout(timeout);
        let reply = client
            .read(call)
            .await
            .map_err(|s| s.message().to_owned())?;
        let object = decode(&reply.into_inner().object).map_err(|s| s.message().to_owned())?;
        if let Some(object) = &object {
            self.observe(object);
        }
        Ok(object)
    }

    // ----- the coordinator -----

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
    ) -> Result<(String, usize), Status> {
        let mut placed = self.place(bucket, &key)?;
        if let Some(value) = &value
            && value.len() > self.value_bytes_max
        {
            return Err(Status::invalid_argument(format!(
                "value of {} bytes exceeds the limit of {} bytes",
                value.len(),
                self.value_bytes_max
            )));
        }
        let w = required(level, placed.def.w, placed.def.n, "w")?;
        let context = if context.is_empty() {
            VersionVector::new()
        } else {
            VersionVector::from_token(context)
                .map_err(|e| Status::invalid_argument(format!("bad context token: {e}")))?
        };
        let deadline = tokio::time::Instant::now() + self.timeout_of(timeout_ms);
        let mut coordinated = None;
        loop {
            let attempt = self
                .write_placed(
                    &placed,
                    &key,
                    &value,
                    w,
                    &context,
                    &mut coordinated,
                    deadline,
                )
                .await;
            match attempt {
                Ok(done) => return Ok(done),
                Err(failed) => {
                    self.place_again(failed, &mut placed, bucket, &key, deadline)
                        .await?
                }
            }
        }
    }

    /// One attempt of a write as `placed`: coordinate it (unless an earlier attempt did),
    /// then send it to every replica of the current ring and the pending one, and wait for W
    /// in each.
    #[allow(clippy::too_many_arguments)]
    async fn write_placed(
        self: &Arc<Self>,
        placed: &Placed,
        key: &[u8],
        value: &Option<Vec<u8>>,
        w: usize,
        context: &VersionVector,
        coordinated: &mut Option<Object>,
        deadline: tokio::time::Instant,
    ) -> Result<(String, usize), Failed> {
        let Placed {
            def,
            replicas,
            next,
            fallbacks,
            epoch,
            ..
        } = placed;
        let mut round = if next.is_empty() {
            WriteRound::new(replicas, w)
        } else {
            WriteRound::joint(&[replicas.as_slice(), next.as_slice()], w)
        };
        let mut targets = replicas.clone();
        targets.extend(next.iter().filter(|m| !replicas.contains(m)));
        let mut coordinator = None;
        if coordinated.is_none() {
            // The coordinating replica: this member when it is one, else the first that
            // answers; suspected members are tried last (a stable sort keeps ring order).
            let mut order = replicas.clone();
            if let Some(at) = order.iter().position(|m| *m == self.me()) {
                order.rotate_left(at);
            }
            order.sort_by_key(|m| self.suspects(*m));
            for member in order {
                let request = replicapb::CoordinateRequest {
                    bucket: def.name.clone(),
                    key: key.to_vec(),
                    value: value.clone(),
                    context: context.to_token(),
                    conflicts: conflicts_to_pb(def.conflicts),
                    epoch: *epoch,
                };
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match self
                    .coordinate_at(member, request, context.clone(), def.conflicts, left)
                    .await
                {
                    Ok(object) => {
                        round.ack(member);
                        coordinator = Some(member);
                        *coordinated = Some(object);
                        break;
                    }
                    Err(why) => round.fail(member, why),
                }
            }
        }
        let Some(object) = coordinated.clone() else {
            // Every replica failed to coordinate, so the round is decided: a shortfall.
            return Err(match round.at_deadline() {
                Err(shortfall) => Failed::of(&shortfall),
                Ok(_) => Failed {
                    status: Status::unavailable("no replica coordinated the write"),
                    stale: false,
                },
            });
        };
        let new_context = object.context.to_token();
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        // Each replica's task sends once, so the channel never fills.
        let (tx, mut rx) = mpsc::channel(targets.len().max(1));
        let used = Arc::new(Mutex::new(BTreeSet::new()));
        let call = MergeCall {
            bucket: def.name.clone(),
            key: key.to_vec(),
            object,
            conflicts: def.conflicts,
            epoch: *epoch,
            handoff: false,
        };
        for member in targets.into_iter().filter(|m| Some(*m) != coordinator) {
            let node = self.clone();
            let tx = tx.clone();
            let (call, fallbacks, used) = (call.clone(), fallbacks.clone(), used.clone());
            let sloppy = def.sloppy;
            tokio::spawn(async move {
                let result = node
                    .replicate(member, call, sloppy, fallbacks, used, timeout)
                    .await;
                let _ = tx.send((member, result)).await;
            });
        }
        drop(tx);
        let decided = loop {
            if let Some(outcome) = round.outcome() {
                break outcome;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((member, Ok(Ack::Replica)))) => round.ack(member),
                Ok(Some((member, Ok(Ack::Fallback(fallback))))) => {
                    tracing::debug!(%member, %fallback, "quorum: sloppy quorum used a fallback");
                    round.ack(member);
                }
                Ok(Some((member, Err(why)))) => round.fail(member, why),
                Ok(None) | Err(_) => break round.at_deadline(),
            }
        };
        decided
            .map(|acked| (new_context, acked))
            .map_err(|shortfall| Failed::of(&shortfall))
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
    ) -> Result<(Object, usize), Status> {
        let mut placed = self.place(bucket, &key)?;
        let r = required(level, placed.def.r, placed.def.n, "r")?;
        let deadline = tokio::time::Instant::now() + self.timeout_of(timeout_ms);
        loop {
            match self
                .read_placed(&placed, &key, r, monotonic, deadline)
                .await
            {
                Ok(done) => return Ok(done),
                Err(failed) => {
                    self.place_again(failed, &mut placed, bucket, &key, deadline)
                        .await?
                }
            }
        }
    }

    /// One attempt of a read from the current ring's replicas as `placed`.
    async fn read_placed(
        self: &Arc<Self>,
        placed: &Placed,
        key: &[u8],
        r: usize,
        monotonic: bool,
        deadline: tokio::time::Instant,
    ) -> Result<(Object, usize), Failed> {
        let Placed {
            def,
            replicas,
            epoch,
            ..
        } = placed;
        let (def, epoch) = (def.clone(), *epoch);
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        // Each replica's task sends once, so the channel never fills.
        let (tx, mut rx) = mpsc::channel(replicas.len().max(1));
        for member in replicas.iter().copied() {
            let node = self.clone();
            let tx = tx.clone();
            let (bucket, key) = (def.name.clone(), key.to_vec());
            tokio::spawn(async move {
                let result = node.read_at(member, bucket, key, epoch, timeout).await;
                let _ = tx.send((member, result)).await;
            });
        }
        drop(tx);
        let mut round = ReadRound::new(replicas, r, def.conflicts);
        let decided = loop {
            if let Some(outcome) = round.outcome() {
                break outcome;
            }
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((member, Ok(copy)))) => round.answer(member, copy),
                Ok(Some((member, Err(why)))) => round.fail(member, why),
                Ok(None) | Err(_) => break round.at_deadline(),
            }
        };
        let answered = decided.map_err(|shortfall| Failed::of(&shortfall))?;
        let merged = round.merged();
        let call = MergeCall {
            bucket: def.name.clone(),
            key: key.to_vec(),
            object: merged.clone(),
            conflicts: def.conflicts,
            epoch,
            handoff: false,
        };
        let repaired = if monotonic {
            self.repair_before_reply(&call, &round, r, deadline)
                .await
                .map_err(|status| Failed {
                    status,
                    stale: false,
                })?
        } else {
            Vec::new()
        };
        // Read repair in the background: late answers are waited for until the deadline, then
        // every replica that answered with less than the merge of all answers gets it.
        let node = self.clone();
        tokio::spawn(async move {
            while let Ok(Some((member, result))) =
                tokio::time::timeout_at(deadline, rx.recv()).await
            {
                match result {
                    Ok(copy) => round.answer(member, copy),
                    Err(why) => round.fail(member, why),
                }
            }
            // Replicas the blocking repair gave this same merge need nothing more.
            let done = round.merged();
            let skip = if done == call.object {
                repaired
            } else {
                Vec::new()
            };
            let call = MergeCall {
                object: done.clone(),
                ..call
            };
            for member in round.stale(&done).into_iter().filter(|m| !skip.contains(m)) {
                node.read_repairs.fetch_add(1, Ordering::Relaxed);
                let result = node.clone().merge_at(member, call.clone(), timeout).await;
                match result {
                    Ok(()) => tracing::debug!(%member, "quorum: read repair"),
                    Err(error) => tracing::debug!(%member, %error, "quorum: read repair failed"),
                }
            }
        });
        Ok((merged, answered))
    }

    /// Blocking read repair: sends the merge (`call`) to every stale replica among those that
    /// answered and waits, so at least `r` replicas hold it before the read replies.
    async fn repair_before_reply(
        self: &Arc<Self>,
        call: &MergeCall,
        round: &ReadRound,
        r: usize,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<NodeId>, Status> {
        let stale = round.stale(&call.object);
        let answered = round.answered();
        let mut holding = answered - stale.len();
        let mut repairs = tokio::task::JoinSet::new();
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        for member in stale {
            let node = self.clone();
            let call = call.clone();
            repairs.spawn(async move {
                node.read_repairs.fetch_add(1, Ordering::Relaxed);
                (member, node.merge_at(member, call, timeout).await)
            });
        }
        let mut failures = Vec::new();
        let mut repaired = Vec::new();
        while let Some(done) = repairs.join_next().await {
            match done {
                Ok((member, Ok(()))) => {
                    holding += 1;
                    repaired.push(member);
                }
                Ok((member, Err(why))) => failures.push(format!("{member}: {why}")),
                Err(error) => failures.push(error.to_string()),
            }
        }
        if holding < r {
            return Err(Status::unavailable(format!(
                "blocking read repair: {holding} replicas hold the value read, {r} required ({})",
                failures.join("; ")
            )));
        }
        Ok(repaired)
    }

    // ----- buckets -----

    async fn create_bucket(&self, bucket: pb::Bucket) -> Result<pb::Bucket, Status> {
        validate_bucket_name(&bucket.name)?;
        let mut bucket = bucket;
        if bucket.r#type == pb::BucketType::Unspecified as i32 {
            bucket.r#type = pb::BucketType::Quorum as i32;
        }
        if bucket.r#type != pb::BucketType::Quorum as i32 {
            return Err(Status::invalid_argument(format!(
                "bucket type {} is not supported; quorum is",
                bucket.r#type
            )));
        }
        if bucket.n == 0 || bucket.n > REPLICAS_MAX {
            return Err(Status::invalid_argument(format!(
                "n={} must be between 1 and {REPLICAS_MAX}",
                bucket.n
            )));
        }
        // A member that just started may not have applied the membership yet: wait for it.
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let voters = loop {
            let voters = voters(&self.replica.membership());
            if !voters.is_empty() {
                break voters;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Status::unavailable(
                    "this member has not learned the cluster's membership yet",
                ));
            }
            tokio::time::sleep(APPLY_POLL_INTERVAL).await;
        };
        let topology = self.replica.topology();
        // The ring's members hold the replicas; before the first bucket the voters will.
        let (holders, what) = match ring_of(&topology) {
            Ok(ring) => (ring.member_count(), "ring members"),
            Err(_) => (voters.len(), "voting members"),
        };
        if bucket.n as usize > holders {
            return Err(Status::failed_precondition(format!(
                "n={} exceeds the {holders} {what}",
                bucket.n
            )));
        }
        if bucket.conflicts == pb::Conflicts::Unspecified as i32 {
            bucket.conflicts = pb::Conflicts::Siblings as i32;
        }
        // Stored with explicit levels, so a definition reads the same everywhere.
        let def = BucketDef::from_pb(&bucket)?;
        bucket.r = Some(level_to_pb(def.r));
        bucket.w = Some(level_to_pb(def.w));
        let ring = Ring::new(&voters, RING_VNODES).map_err(internal)?;
        let change = raftpb::BucketChange {
            change: Some(raftpb::bucket_change::Change::Create(bucket)),
            initial_ring: ring_tokens(&ring),
            vnodes: RING_VNODES,
        };
        let reply = self
            .replica
            .change_bucket(change)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        if !reply.refusal.is_empty() {
            return Err(Status::already_exists(reply.refusal));
        }
        reply
            .bucket
            .ok_or_else(|| Status::internal("bucket change answered without a bucket"))
    }

    async fn delete_bucket(&self, name: String) -> Result<(), Status> {
        let change = raftpb::BucketChange {
            change: Some(raftpb::bucket_change::Change::Delete(name)),
            initial_ring: Vec::new(),
            vnodes: 0,
        };
        let reply = self
            .replica
            .change_bucket(change)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        if !reply.refusal.is_empty() {
            return Err(Status::not_found(reply.refusal));
        }
        Ok(())
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

fn ring_of(topology: &raftpb::Topology) -> Result<Ring, Status> {
    if topology.ring.is_empty() {
        return Err(Status::failed_precondition(
            "the cluster has no token ring yet",
        ));
    }
    ring_from(&topology.ring)
}

/// The ring stored as `tokens`.
fn ring_from(tokens: &[raftpb::RingToken]) -> Result<Ring, Status> {
    let tokens = tokens.iter().map(|t| (t.token, NodeId(t.member))).collect();
    Ring::from_tokens(tokens).map_err(internal)
}

fn siblings_of(object: &Object) -> Vec<pb::Sibling> {
    object
        .live_values()
        .iter()
        .map(|s| pb::Sibling {
            value: s.value.clone().unwrap_or_default(),
            timestamp_micros: s.timestamp.physical,
            timestamp_logical: s.timestamp.logical,
            member: s.dot.actor,
        })
        .collect()
}

/// `quorate.v1.Buckets`.
pub struct BucketsService(Arc<QuorumNode>);

#[tonic::async_trait]
impl Buckets for BucketsService {
    async fn create(
        &self,
        request: Request<pb::CreateBucketRequest>,
    ) -> Result<Response<pb::BucketResponse>, Status> {
        let bucket = request
            .into_inner()
            .bucket
            .ok_or_else(|| Status::invalid_argument("no bucket given"))?;
        let bucket = self.0.create_bucket(bucket).await?;
        Ok(Response::new(pb::BucketResponse {
            bucket: Some(bucket),
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetBucketRequest>,
    ) -> Result<Response<pb::BucketResponse>, Status> {
        let name = request.into_inner().name;
        let bucket = self
            .0
            .replica
            .topology()
            .buckets
            .into_iter()
            .find(|b| b.name == name)
            .ok_or_else(|| Status::not_found(format!("bucket {name:?} not found")))?;
        Ok(Response::new(pb::BucketResponse {
            bucket: Some(bucket),
        }))
    }

    async fn list(
        &self,
        _request: Request<pb::ListBucketsRequest>,
    ) -> Result<Response<pb::ListBucketsResponse>, Status> {
        Ok(Response::new(pb::ListBucketsResponse {
            buckets: self.0.replica.topology().buckets,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteBucketRequest>,
    ) -> Result<Response<pb::DeleteBucketResponse>, Status> {
        self.0.delete_bucket(request.into_inner().name).await?;
        Ok(Response::new(pb::DeleteBucketResponse {}))
    }
}

/// `quorate.v1.Kv`.
pub struct KvService(Arc<QuorumNode>);

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let request = request.into_inner();
        let (object, replied) = self
            .0
            .read(
                &request.bucket,
                request.key,
                request.r.as_ref(),
                request.timeout_ms,
                request.monotonic,
            )
            .await?;
        Ok(Response::new(pb::GetResponse {
            siblings: siblings_of(&object),
            context: object.context.to_token(),
            replied: replied as u32,
        }))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let request = request.into_inner();
        let (context, acked) = self
            .0
            .write(
                &request.bucket,
                request.key,
                Some(request.value),
                request.w.as_ref(),
                &request.context,
                request.timeout_ms,
            )
            .await?;
        Ok(Response::new(pb::PutResponse {
            context,
            acked: acked as u32,
        }))
    }

    async fn locate(
        &self,
        request: Request<pb::LocateRequest>,
    ) -> Result<Response<pb::LocateResponse>, Status> {
        let request = request.into_inner();
        let placed = self.0.place(&request.bucket, &request.key)?;
        let ids = |members: &[NodeId]| members.iter().map(|m| m.0).collect();
        Ok(Response::new(pb::LocateResponse {
            replicas: ids(&placed.replicas),
            fallbacks: ids(&placed.fallbacks),
            token: placed.token,
            next_replicas: ids(&placed.next),
        }))
    }

    async fn liveness(
        &self,
        _request: Request<pb::LivenessRequest>,
    ) -> Result<Response<pb::LivenessResponse>, Status> {
        let peers = self
            .0
            .liveness()
            .into_iter()
            .map(|(member, phi, status)| pb::PeerLiveness {
                member: member.0,
                phi,
                status: status.as_str().to_owned(),
                swim: self
                    .0
                    .swim_view(member)
                    .map_or("unknown", |l| l.as_str())
                    .to_owned(),
            })
            .collect();
        Ok(Response::new(pb::LivenessResponse {
            member: self.0.me().0,
            peers,
            threshold: membership::Config::default().threshold,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let request = request.into_inner();
        let (context, acked) = self
            .0
            .write(
                &request.bucket,
                request.key,
                None,
                request.w.as_ref(),
                &request.context,
                request.timeout_ms,
            )
            .await?;
        Ok(Response::new(pb::DeleteResponse {
            context,
            acked: acked as u32,
        }))
    }
}

/// `quorate.replica.v1.Replica`: what coordinators ask of this member.
pub struct ReplicaService(Arc<QuorumNode>);

#[tonic::async_trait]
impl ReplicaRpc for ReplicaService {
    async fn coordinate(
        &self,
        request: Request<replicapb::CoordinateRequest>,
    ) -> Result<Response<replicapb::CoordinateResponse>, Status> {
        let request = request.into_inner();
        let context = if request.context.is_empty() {
            VersionVector::new()
        } else {
            VersionVector::from_token(&request.context)
                .map_err(|e| Status::invalid_argument(format!("bad context token: {e}")))?
        };
        let conflicts = conflicts_of(request.conflicts)?;
        let object = self.0.coordinate_local(request, context, conflicts).await?;
        Ok(Response::new(replicapb::CoordinateResponse {
            object: crdt::codec::encode_object(&object),
        }))
    }

    async fn merge(
        &self,
        request: Request<replicapb::MergeRequest>,
    ) -> Result<Response<replicapb::MergeResponse>, Status> {
        let request = request.into_inner();
        let object = decode(&request.object)?
            .ok_or_else(|| Status::invalid_argument("merge without an object"))?;
        let call = MergeCall {
            bucket: request.bucket,
            key: request.key,
            object,
            conflicts: conflicts_of(request.conflicts)?,
            epoch: request.epoch,
            handoff: request.handoff,
        };
        self.0.merge_local(call).await?;
        Ok(Response::new(replicapb::MergeResponse {}))
    }

    async fn hint(
        &self,
        request: Request<replicapb::HintRequest>,
    ) -> Result<Response<replicapb::HintResponse>, Status> {
        let request = request.into_inner();
        let object = decode(&request.object)?
            .ok_or_else(|| Status::invalid_argument("hint without an object"))?;
        let conflicts = conflicts_of(request.conflicts)?;
        let stored = self
            .0
            .store_hint(
                NodeId(request.target),
                request.bucket,
                request.key,
                object,
                conflicts,
            )
            .await?;
        Ok(Response::new(replicapb::HintResponse { stored }))
    }

    async fn gossip(
        &self,
        request: Request<replicapb::GossipRequest>,
    ) -> Result<Response<replicapb::GossipResponse>, Status> {
        let request = request.into_inner();
        self.0.gossip_received(NodeId(request.from), request.data);
        Ok(Response::new(replicapb::GossipResponse {}))
    }

    async fn read(
        &self,
        request: Request<replicapb::ReadRequest>,
    ) -> Result<Response<replicapb::ReadResponse>, Status> {
        let request = request.into_inner();
        let object = self
            .0
            .read_local(request.bucket, request.key, request.epoch)
            .await?;
        Ok(Response::new(replicapb::ReadResponse {
            object: object
                .map(|o| crdt::codec::encode_object(&o))
                .unwrap_or_default(),
        }))
    }
}
