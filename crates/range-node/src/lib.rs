//! The driver of consensus buckets on one member: it runs a Raft group (`consensus::RangeGroup`)
//! for every range the metadata places on this member (`groups`), carries splits the metadata
//! committed into the ranges' own groups and proposes splits by size and load (`splits`),
//! carries out merges of neighbours, aligning their replicas first (`merges`), moves replicas and
//! leaders as the rebalancer plans on the member leading the metadata (`rebalance`),
//! routes each client request to the leader of the key's range by a routing cache that the
//! replicas' typed refusals correct (`gateway`), and serves `quorate.v1` for consensus buckets
//! in front of the quorum path's services (`services`). The rules — descriptors, splits,
//! routing, sessions — are the `ranges` and `topology` crates'; this crate makes no protocol
//! decision and never touches files itself (the range files are `consensus`'s).

mod consistency;
mod error;
mod gateway;
mod groups;
mod liveness;
mod merges;
mod rebalance;
mod services;
mod splits;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base::Hlc;
use consensus::{LogWriter, Peers, RangeFiles, RangeGroups, Replica};
use proto::quorate::raft::v1 as raftpb;
use proto::quorate::v1 as pb;
use ranges::RangeCache;

pub use error::RangeNodeError;
pub use services::{BucketsFront, KvFront, RangesService};

/// How the consensus buckets of a member run.
#[derive(Debug, Clone)]
pub struct RangeConfig {
    /// Where the member's range data goes.
    pub dir: PathBuf,
    /// The page cache of the range data.
    pub cache_bytes: usize,
    pub request_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// The largest value a write may carry.
    pub value_bytes_max: usize,
    /// How long superseded versions are kept (`--consensus-version-ttl`).
    pub version_ttl: Duration,
    /// Unreachable this long, a member's replicas are re-created elsewhere
    /// (`--dead-member-timeout`).
    pub dead_member_timeout: Duration,
}

/// The consensus-bucket side of one member.
pub struct RangeNode {
    replica: Arc<Replica>,
    writer: LogWriter,
    files: RangeFiles,
    groups: RangeGroups,
    peers: Arc<dyn Peers>,
    hlc: Arc<Mutex<Hlc>>,
    config: RangeConfig,
    /// The routing cache of each bucket this member has routed requests for.
    caches: Mutex<HashMap<String, RangeCache>>,
    /// What this member keeps of each range it leads, between passes.
    led: Mutex<HashMap<u64, LedRange>>,
    /// When this member's range node started: the origin of the watches' time.
    started: tokio::time::Instant,
    /// Ranges this member's replica is to leave whose committed Raft membership another
    /// replica reported without this member (`ranges::lifecycle::removal_seen`).
    removals: Arc<Mutex<std::collections::HashSet<u64>>>,
    stop: tokio::sync::watch::Sender<bool>,
    /// Which members answer probes: a quiesced range sleeps only while its leader's does.
    liveness: liveness::Liveness,
    /// Steps this member's rebalancer carried out since start (`stats`).
    moves: rebalance::Moves,
    /// Follower reads served here and handed to leaders since start (`stats`).
    follower_reads: gateway::FollowerReads,
    /// Replicas the consistency checks run from this member found divergent (`stats`).
    checksum_mismatches: std::sync::atomic::AtomicU64,
}

/// What the leader of one range keeps between passes; dropped while it holds nothing.
#[derive(Clone, Copy, Debug, Default)]
struct LedRange {
    /// How long a follower has been stuck behind the log.
    stuck: ranges::StuckWatch,
    /// How long the range has been frozen for a merge.
    freeze: ranges::FreezeWatch,
}

impl LedRange {
    fn idle(&self) -> bool {
        !self.stuck.counting() && !self.freeze.timing()
    }
}

/// What `/metrics` shows of the consensus-bucket side of a member.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RangeStats {
    /// Range replicas this member runs, those it leads, and those quiesced (asleep).
    pub replicas: u64,
    pub leaders: u64,
    pub quiesced: u64,
    /// Ranges of the cluster with a learner in flight (as the metadata here has them).
    pub learners: u64,
    /// Whether this member is marked as draining.
    pub draining: bool,
    /// Replica changes this member's rebalancer committed, and leaderships it had handed
    /// over, since start (non-zero on members that led the metadata).
    pub replica_changes: u64,
    pub leader_transfers: u64,
    /// Follower reads this member served from its own replicas, and those it handed to the
    /// range's leader, since start.
    pub follower_reads_local: u64,
    pub follower_reads_on_leader: u64,
    /// Divergent replicas the consistency checks run from this member found since start.
    pub checksum_mismatches: u64,
}

impl RangeNode {
    /// Runs `f` on what this member keeps of the range `id` it leads.
    fn with_led<T>(&self, id: u64, f: impl FnOnce(&mut LedRange) -> T) -> T {
        let mut led = self.led.lock().expect("led ranges poisoned");
        let record = led.entry(id).or_default();
        let out = f(record);
        if record.idle() {
            led.remove(&id);
        }
        out
    }

    /// Stops timing a freeze of the range `id` (its merge committed or was released); no
    /// record is made for a range that has none, so an unfrozen range costs one lookup.
    fn forget_freeze(&self, id: u64) {
        let mut led = self.led.lock().expect("led ranges poisoned");
        if let Some(record) = led.get_mut(&id) {
            record.freeze = ranges::FreezeWatch::default();
            if record.idle() {
                led.remove(&id);
            }
        }
    }

    /// The consensus-bucket side of the member `replica` runs, its groups' logs on `writer`.
    /// Call `start` to run its groups.
    pub fn new(
        replica: Arc<Replica>,
        writer: LogWriter,
        peers: Arc<dyn Peers>,
        config: RangeConfig,
    ) -> std::io::Result<Arc<RangeNode>> {
        Ok(Arc::new(RangeNode {
            replica,
            writer,
            files: RangeFiles::new(config.dir.clone(), config.cache_bytes)?,
            groups: RangeGroups::new(),
            peers,
            hlc: Arc::new(Mutex::new(Hlc::new(base::limits::CLOCK_OFFSET_MAX))),
            caches: Mutex::new(HashMap::new()),
            led: Mutex::new(HashMap::new()),
            started: tokio::time::Instant::now(),
            removals: Arc::new(Mutex::new(std::collections::HashSet::new())),
            stop: tokio::sync::watch::Sender::new(false),
            liveness: liveness::Liveness::new(config.election_timeout_max),
            moves: rebalance::Moves::default(),
            follower_reads: gateway::FollowerReads::default(),
            checksum_mismatches: Default::default(),
            config,
        }))
    }

    /// The member's range replicas and the rebalancer's progress, for `/metrics`.
    pub fn stats(&self) -> RangeStats {
        let groups = self.groups.all();
        let topology = self.replica.topology();
        RangeStats {
            replicas: groups.len() as u64,
            leaders: groups.iter().filter(|g| g.is_leader()).count() as u64,
            quiesced: groups.iter().filter(|g| g.is_quiesced()).count() as u64,
            learners: topology
                .ranges
                .iter()
                .filter(|r| r.replicas.iter().any(|x| x.learner))
                .count() as u64,
            draining: topology.draining.contains(&self.me()),
            replica_changes: self.moves.replica_changes.load(Ordering::Relaxed),
            leader_transfers: self.moves.leader_transfers.load(Ordering::Relaxed),
            follower_reads_local: self.follower_reads.local.load(Ordering::Relaxed),
            follower_reads_on_leader: self.follower_reads.on_leader.load(Ordering::Relaxed),
            checksum_mismatches: self.checksum_mismatches.load(Ordering::Relaxed),
        }
    }

    /// The range groups this member runs (the transport hands them peers' messages).
    pub fn groups(&self) -> RangeGroups {
        self.groups.clone()
    }

    /// Starts following the metadata: groups for this member's ranges, splits.
    pub fn start(self: &Arc<Self>) {
        tokio::spawn(self.clone().reconcile_loop());
        tokio::spawn(self.clone().quiesce_loop());
        tokio::spawn(self.clone().liveness_loop());
        tokio::spawn(self.clone().rebalance_loop());
    }

    /// Stops every range group.
    pub async fn shutdown(&self) {
        self.stop.send_replace(true);
        for id in self.groups.ids() {
            if let Some(group) = self.groups.remove(id) {
                group.shutdown().await;
            }
        }
    }

    /// Ticks every group's quiescence (`ranges::quiesce`) once per heartbeat interval, so
    /// idle ranges stop heartbeating and their followers' election timers stop.
    async fn quiesce_loop(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            let me = self.me();
            let live = |member| member == me || self.liveness.live(member);
            self.groups.each(|group| group.quiesce_tick(&live));
            tokio::select! {
                _ = tokio::time::sleep(self.config.heartbeat_interval) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    fn me(&self) -> u64 {
        self.replica.id()
    }

    /// The peer URL of member `id`, as the main group's membership has it.
    fn peer_url(&self, id: u64) -> Option<String> {
        self.replica
            .status()
            .members
            .get(&id)
            .and_then(|m| m.peer_urls.first().cloned())
    }

    /// The definition of `bucket`, if it is a consensus bucket (`Ok(None)`: a quorum bucket).
    /// A bucket this member's metadata does not hold is looked for again after a
    /// linearizable barrier on the metadata: one just created through another member is
    /// found, not refused as missing.
    async fn consensus_bucket(&self, bucket: &str) -> Result<Option<pb::Bucket>, RangeNodeError> {
        let find = || {
            self.replica
                .topology()
                .buckets
                .into_iter()
                .find(|b| b.name == bucket)
        };
        let found = match find() {
            Some(found) => Some(found),
            None => {
                self.replica.linearizable_barrier().await?;
                find()
            }
        };
        match found {
            None => Err(RangeNodeError::NoBucket(bucket.to_owned())),
            Some(b) if b.r#type == pb::BucketType::Consensus as i32 => Ok(Some(b)),
            Some(_) => Ok(None),
        }
    }

    /// The ranges of `bucket` in the applied metadata, in key order.
    fn metadata_ranges(&self, bucket: &str) -> Vec<raftpb::RangeDescriptor> {
        self.replica
            .topology()
            .ranges
            .into_iter()
            .filter(|r| r.bucket == bucket)
            .collect()
    }
}
