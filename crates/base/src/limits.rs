//! Every bound Quorate enforces, each with the reason it exists. Configurable bounds have
//! their default here; the binary may override them from flags.

/// Default largest client request in bytes (etcd's `--max-request-bytes` default, 1.5 MiB).
/// Larger requests would stall replication of everything queued behind them.
pub const MAX_REQUEST_BYTES_DEFAULT: usize = 1536 * 1024;

/// Extra room gRPC gets above `max-request-bytes` for framing, so an over-large request is
/// refused by our precise check rather than by the transport's generic one (etcd does the same).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Default largest number of operations in one branch of a Txn (etcd's `--max-txn-ops`).
/// Bounds the work one Raft entry can ask of every member's apply loop.
pub const MAX_TXN_OPS_DEFAULT: usize = 128;

/// The shortest deadline of a Raft append or vote RPC between members (openraft's own is its
/// heartbeat interval): room for a follower's fsync on a busy machine.
pub const RAFT_RPC_TIMEOUT_MIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Streams a peer may reset before the server has accepted them, per connection, before the
/// server closes the connection. h2's default (20) guards a public port against rapid-reset
/// floods; on the peer port only members connect, and openraft cancels every heartbeat that
/// outlives its heartbeat interval, so a loaded member resets streams by the dozen and the
/// default closed the connection that replication and hand-off streams were sharing.
pub const PEER_PENDING_RESET_STREAMS_MAX: usize = 4096;

/// Largest number of Raft entries sent in one AppendEntries message; bounds peer message size
/// together with `MAX_REQUEST_BYTES_DEFAULT`.
pub const RAFT_MAX_PAYLOAD_ENTRIES: u64 = 256;

/// Recent Raft log entries kept in memory (beyond those not yet durable), so replication and
/// apply read them without touching disk; bounded by count and by bytes.
pub const RAFT_LOG_CACHE_ENTRIES_MAX: usize = 8192;
/// See [`RAFT_LOG_CACHE_ENTRIES_MAX`].
pub const RAFT_LOG_CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// The same bounds for each range group's log: a member runs many, and what the cache of
/// each holds adds up (64 ranges at the main group's 64 MiB were 4 GiB); a follower further
/// behind than this is sent entries read from the file.
pub const RANGE_LOG_CACHE_ENTRIES_MAX: usize = 1024;
/// See [`RANGE_LOG_CACHE_ENTRIES_MAX`].
pub const RANGE_LOG_CACHE_BYTES_MAX: usize = 2 * 1024 * 1024;
/// The default page cache of a member's range data (`--range-cache-mib`): what its memory
/// holds of consensus buckets' versions, whatever the data's size.
pub const RANGE_CACHE_MIB_DEFAULT: usize = 256;

/// Log writes (appends, votes, truncations) queued for the log writer thread; a full queue
/// makes Raft wait instead of growing memory.
pub const RAFT_LOG_WRITE_QUEUE_MAX: usize = 1024;

/// Most entries one group commit of the log writer takes, so one fsync's batch stays bounded.
pub const RAFT_LOG_GROUP_COMMIT_ENTRIES_MAX: usize = 4096;

/// Raft log entries kept behind a snapshot so a briefly lagging follower catches up from the
/// log instead of receiving a whole snapshot.
pub const RAFT_LOGS_KEPT_AFTER_SNAPSHOT: u64 = 1000;

/// Default number of applied entries after which a member snapshots its state machine and
/// compacts its Raft log (etcd's `--snapshot-count` is 100 000; ours is smaller because our
/// snapshot is a consistent copy of live data, not a full rewrite).
pub const SNAPSHOT_ENTRIES_DEFAULT: u64 = 10_000;

/// Largest number of writes waiting for a leader at one member; beyond it, clients get
/// `too many requests` instead of unbounded memory growth.
pub const PROPOSALS_IN_FLIGHT_MAX: usize = 4096;

/// How long a client request waits for consensus before it is answered `request timed out`
/// (its outcome then is unknown: it may still commit).
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(7);

/// Events of recent revisions kept in memory for watchers that are in sync; a watcher behind
/// them replays history from the keyspace instead. Bounds the feed's memory by count.
pub const WATCH_FEED_EVENTS_MAX: usize = 65_536;

/// Bytes of keys and values the in-memory watch feed may hold (bounds it by size).
pub const WATCH_FEED_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Events read for one watcher in one step (a revision's events are never split, so a step may
/// exceed it by one revision); bounds the work one lagging watcher takes from others.
pub const WATCH_BATCH_EVENTS_MAX: usize = 1000;

/// Responses queued for one Watch stream's client before its sender waits; a slow client
/// then holds up only its own stream.
pub const WATCH_STREAM_BUFFER: usize = 16;

/// Watchers one Watch stream may hold; beyond it a create is refused.
pub const WATCHES_PER_STREAM_MAX: usize = 10_000;

/// Default interval of progress notifications to idle watchers that asked for them (etcd's).
pub const WATCH_PROGRESS_NOTIFY_INTERVAL_DEFAULT: std::time::Duration =
    std::time::Duration::from_secs(600);

/// Default interval at which the leader records remaining lease TTLs through Raft (etcd's
/// checkpoint interval), so a new leader or a restarted cluster resumes from them.
pub const LEASE_CHECKPOINT_INTERVAL_DEFAULT: std::time::Duration =
    std::time::Duration::from_secs(300);

/// Default backend quota (etcd's `--quota-backend-bytes` default, 2 GiB): live bytes in the
/// state file above which a member raises the NOSPACE alarm and writes that add data stop.
pub const QUOTA_BACKEND_BYTES_DEFAULT: u64 = 2 * 1024 * 1024 * 1024;

/// How often a member compares its live bytes with the quota.
pub const QUOTA_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

const _: () = assert!(MAX_TXN_OPS_DEFAULT > 0);
// A feed smaller than one batch would send every watcher to storage.
const _: () = assert!(WATCH_BATCH_EVENTS_MAX < WATCH_FEED_EVENTS_MAX);
const _: () = assert!(GRPC_OVERHEAD_BYTES < MAX_REQUEST_BYTES_DEFAULT);

/// How often a member checks whether it was removed from its group (and asks one peer).
pub const REMOVAL_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Most vnodes one member may hold. Beyond a few hundred, balance barely improves (the spread
/// shrinks with the square root of the count) while rings, range lists and the per-range Merkle
/// trees of anti-entropy grow linearly.
pub const VNODES_PER_MEMBER_MAX: u32 = 4096;

/// Virtual nodes per member of the token ring a cluster installs with its first quorum bucket:
/// max/mean replica load about 1.05 at 256 and 1.15-1.3 at 64 (docs/benchmarks.md); 64 keeps
/// the ring small while membership is small.
pub const RING_VNODES_DEFAULT: u32 = 64;

/// The largest counter a client's context may claim; larger claims are lowered to it. Contexts
/// reach us as client-held tokens, so a forged one could otherwise push a counter to
/// `u64::MAX` and make the next write reuse a dot. Honest counters stay far below: one write
/// per nanosecond to one key takes 146 years to get here.
pub const CLAIMED_COUNTER_MAX: u64 = 1 << 62;

/// The largest key of a quorum bucket (keys travel in every replica message and hint).
pub const QUORUM_KEY_BYTES_MAX: usize = 4 * 1024;

/// The longest bucket name (names are stored with every object key).
pub const BUCKET_NAME_BYTES_MAX: usize = 64;

/// The largest replication factor N of a bucket: each write fans out to N members.
pub const BUCKET_REPLICAS_MAX: u32 = 7;

/// How far ahead of a member's clock a peer's hybrid-logical-clock timestamp may be before the
/// member refuses to take it in (so one runaway clock cannot drag every timestamp forward).
pub const CLOCK_OFFSET_MAX: std::time::Duration = std::time::Duration::from_millis(500);

const _: () = assert!(RING_VNODES_DEFAULT <= VNODES_PER_MEMBER_MAX);

/// Default bytes of hints one member keeps for one unreachable member: enough for minutes of
/// writes to a small member, small enough that hints never crowd out data.
pub const HINT_BYTES_PER_MEMBER_DEFAULT: u64 = 64 * 1024 * 1024;

/// How often a member tries to deliver the hints it holds.
pub const HINT_DELIVERY_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// Hints sent to one member in one delivery round, at most.
pub const HINT_DELIVERY_BATCH: usize = 256;

/// Heartbeat intervals the phi-accrual failure detector keeps per peer by default (Akka's and
/// Cassandra's 1000): enough to estimate the mean and spread of the network's jitter, 8 KB a
/// peer.
pub const PHI_WINDOW_DEFAULT: usize = 1000;

/// Most heartbeat intervals a phi-accrual window may keep: its memory grows with it, and its
/// exact integer sums of squares must fit in a `u128`.
pub const PHI_WINDOW_MAX: usize = 10_000;

/// Longest heartbeat interval the phi-accrual detector records; a longer gap (a peer back from
/// a long partition) is recorded as this, so one outage does not dominate the window's mean.
pub const PHI_INTERVAL_MAX: std::time::Duration = std::time::Duration::from_secs(3600);

/// Largest suspicion level the phi-accrual detector reports (a chance of 1e-1000 that the peer
/// is alive): phi stays finite so it compares, sorts and renders in JSON, which has no infinity.
pub const PHI_MAX: f64 = 1000.0;

const _: () = assert!(PHI_WINDOW_DEFAULT <= PHI_WINDOW_MAX);
// The phi-accrual variance is computed exactly as `n * sum of squares - sum^2` of a full window
// of intervals in nanoseconds, which must fit in a u128.
const _: () = assert!(
    PHI_INTERVAL_MAX.as_nanos() * PHI_INTERVAL_MAX.as_nanos()
        <= u128::MAX / (PHI_WINDOW_MAX as u128 * PHI_WINDOW_MAX as u128)
);

/// How long a SWIM gossip message waits for its peer to take it.
pub const GOSSIP_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(1000);

/// How long a coordinator waits for a replica its detector suspects before it treats the
/// replica as failed (hint, fallback): short, since the replica is probably down.
pub const SUSPECT_REPLICA_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(200);

/// How often a member looks for a ring change to stream for, or a finished one to clean up
/// after.
pub const RING_CHANGE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

/// Objects a ring change's stream reads and sends per page (one read transaction, and at most
/// this many copies in flight times N).
pub const HANDOFF_PAGE_OBJECTS: usize = 256;

/// How often a request waiting for its member to apply something (the newer ring a replica
/// refused a stale epoch for, the membership just after start) looks again.
pub const APPLY_POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(10);

/// The largest key of a consensus bucket (a key travels in every Raft entry and routing
/// decision; ranges split between keys, so a key must stay far below a range's size).
pub const CONSENSUS_KEY_BYTES_MAX: usize = 4 * 1024;

/// A consensus bucket's default range size: a range splits once its versions pass it
/// (CockroachDB's and TiKV's order of magnitude: big enough that metadata stays small, small
/// enough to move in seconds).
pub const RANGE_MAX_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// The smallest range size a bucket may ask for: below it splits would chase single keys.
pub const RANGE_MAX_BYTES_MIN: u64 = 64 * 1024;

/// Keys one scan request returns at most (the client pages on with the resume key).
pub const SCAN_KEYS_MAX: u32 = 10_000;

/// Bytes of keys and values one scan page of a consensus bucket holds at most (at least one
/// entry, whatever its size): a page of large values stays well under the 4 MiB a gRPC client
/// decodes by default.
pub const SCAN_BYTES_MAX: u64 = 2 * 1024 * 1024;

/// Sends and metadata lookups one request makes at most while it follows splits, moves and
/// leader changes; the request deadline bounds it too. Each refusal teaches the routing
/// cache, so few are needed unless a range is between leaders, when the gateway asks again
/// every few tens of milliseconds until one is elected.
pub const RANGE_ROUTE_ATTEMPTS: u32 = 512;

/// How often a member compares the ranges the metadata gives it with the groups it runs, and
/// checks its ranges for splits the metadata committed but their groups have not applied.
pub const RANGE_RECONCILE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);

/// The largest frozen right range a merge carries in its Raft entry (encoded): the entry
/// travels in one AppendEntries message, well inside the peer message limit.
pub const RANGE_MERGE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// How long a range may stay frozen for a merge that neither committed nor was given up (its
/// driver died between the freeze and the metadata commit) before its leader releases it.
pub const RANGE_FREEZE_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// Reconcile passes between a range leader's looks for versions to collect (with 100 ms passes:
/// a minute; ranges are spread over the passes by id).
pub const RANGE_GC_PASSES: u64 = 600;

/// How often the member leading the metadata plans replica and leader moves of consensus
/// ranges (at most `ranges::STEPS_MAX_DEFAULT` steps a round).
pub const RANGE_REBALANCE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Reconcile passes between two closed timestamps of a busy range's leader (with 100 ms
/// passes: follower reads lag the leader by about 200 ms plus replication).
pub const RANGE_CLOSE_PASSES: u64 = 2;

/// The staleness a follower read of a consensus bucket allows when the request names none.
pub const FOLLOWER_READ_STALENESS_DEFAULT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long `quorate range move` waits for its learner to catch up and the move to finish (a
/// range at `--range-max-bytes` of 64 MiB moves in seconds; one at the size limit of a busy
/// member may take longer, and then the rebalancer finishes the move).
pub const RANGE_MOVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Ranges whose replicas `range list` asks at once.
pub const RANGE_STATUS_CONCURRENCY: usize = 16;

/// Reconcile passes per load window of a range's split-by-load decision (with 100 ms passes:
/// 1 s windows).
pub const RANGE_LOAD_WINDOW_PASSES: u64 = 10;

/// Reconcile passes a follower may match nothing of its leader's log before the leader sends it
/// a snapshot (a follower just started matches within a few heartbeats).
pub const RANGE_STUCK_FOLLOWER_PASSES: u32 = 20;

/// Reconcile passes a learner (a replica just added by a move) may match nothing before its
/// leader sends it a snapshot: it has no state its log could start from, so only the first
/// append's answer is waited for.
pub const RANGE_STUCK_LEARNER_PASSES: u32 = 3;

/// Applied entries between two snapshots of a range's group (a snapshot syncs the range data
/// and lets the log be purged behind it; a follower behind the purge point needs the whole
/// range sent).
pub const RANGE_SNAPSHOT_ENTRIES: u64 = 20_000;
/// At most this long between two synced commits of a member's range data while ranges apply
/// writes: what a restart replays from the ranges' logs is bounded by it, not by the data.
pub const RANGE_DATA_SYNC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

const _: () = assert!(RANGE_MAX_BYTES_MIN <= RANGE_MAX_BYTES_DEFAULT);
const _: () = assert!(CONSENSUS_KEY_BYTES_MAX as u64 * 4 <= RANGE_MAX_BYTES_MIN);
