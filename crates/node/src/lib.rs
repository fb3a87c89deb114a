//! Wires one member: opens its storage, starts its consensus replica, serves the etcd API on
//! the client URLs, the Raft service on the peer URLs, and `/metrics` and `/health` on the
//! metrics URLs, until asked to stop. It makes no protocol decisions and reads no CLI or
//! environment (the binary hands it a [`NodeConfig`]).

mod metrics;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base::{ClusterId, NodeId};
use consensus::{Member, Peers, RaftOptions, Replica};
use etcd_api::{
    ClusterService, Context, ElectionService, KvService, LearnerGates, LeaseService, LockService,
    MaintenanceService, WatchService,
};
use proto::quorate::raft::v1 as pb;
use proto::quorate::v1::buckets_server::BucketsServer;
use proto::quorate::v1::kv_server::KvServer;
use proto::quorate::v1::ranges_server::RangesServer;
use quorum_node::QuorumNode;
use range_node::{BucketsFront, KvFront, RangeNode, RangesService};
use storage::{LogStore, ObjectStore, SnapshotFile, StateStore};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use transport::{FaultService, FaultTable, GrpcPeers, HostClock, RaftService};

/// The version reported by Status: the etcd API version we are compatible with.
pub const ETCD_API_VERSION: &str = "3.5.0";

/// Everything one member needs, already parsed.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<String>,
    pub advertise_client_urls: Vec<String>,
    pub listen_peer_urls: Vec<String>,
    pub initial_advertise_peer_urls: Vec<String>,
    /// `name=peer_url` pairs of the initial members.
    pub initial_cluster: Vec<(String, String)>,
    /// True for `--initial-cluster-state new`.
    pub initial_cluster_new: bool,
    pub initial_cluster_token: String,
    pub listen_metrics_urls: Vec<String>,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub snapshot_entries: u64,
    /// Entries kept in the log behind each snapshot.
    pub snapshot_catchup_entries: u64,
    pub heartbeat_interval: Duration,
    pub election_timeout: Duration,
    /// How long a client request waits for consensus before `request timed out`.
    pub request_timeout: Duration,
    /// How often idle watchers that asked for it get a progress notification.
    pub watch_progress_notify_interval: Duration,
    /// How often the leader records remaining lease TTLs through Raft.
    pub lease_checkpoint_interval: Duration,
    /// Live state bytes above which this member raises the NOSPACE alarm.
    pub quota_backend_bytes: u64,
    /// Serve the fault-injection API and pass every outgoing peer message through its
    /// table (`--unsafe-fault-injection`, for the tester).
    pub unsafe_fault_injection: bool,
    /// Hint bytes kept per unreachable member of a quorum bucket's preference list.
    pub quorum_hint_bytes_max: u64,
    /// How long a quorum bucket's tombstone stays before its entry may be reaped.
    pub quorum_tombstone_grace: Duration,
    /// How long consensus buckets keep superseded versions.
    pub consensus_version_ttl: Duration,
    /// The page cache of the member's range data (`--range-cache-mib`).
    pub range_cache_bytes: usize,
    /// Unreachable this long, a member's consensus-range replicas are re-created elsewhere.
    pub dead_member_timeout: Duration,
    /// A planted bug to run (tester canaries only).
    #[cfg(feature = "canary")]
    pub canary: Option<consensus::Canary>,
}

/// Why a member could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("create data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("open storage: {0}")]
    Storage(#[from] storage::StorageError),
    #[error("start consensus: {0}")]
    Consensus(base::EtcdError),
    #[error("open the raft log or range files: {0}")]
    Io(std::io::Error),
    #[error("listen on {url}: {source}")]
    Listen { url: String, source: std::io::Error },
    #[error("serve: {0}")]
    Serve(String),
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// This member was removed from its cluster (now, or before: the data dir remembers).
    #[error(
        "the member has been permanently removed from the cluster ({0}); to rejoin, remove its \
         data dir, add it again (member add) and start it with --initial-cluster-state existing"
    )]
    Removed(String),
}

/// Returns the socket address of a `http://host:port` URL.
pub fn url_to_addr(url: &str) -> Result<SocketAddr, NodeError> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let host_port = rest.split('/').next().unwrap_or(rest);
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port
        .parse()
        .map_err(|e| NodeError::Config(format!("url {url}: {e}")))
}

/// Returns the member ids and members `name=peer_url` pairs describe (ids derived from the
/// names and the token, as every member derives them; client URLs not known yet).
fn members_named(initial_cluster: &[(String, String)], token: &str) -> BTreeMap<u64, Member> {
    initial_cluster
        .iter()
        .map(|(name, peer_url)| {
            let member = Member {
                name: name.clone(),
                peer_urls: vec![peer_url.clone()],
                client_urls: Vec::new(),
            };
            (NodeId::from_name(name, token).0, member)
        })
        .collect()
}

/// Returns the id of the cluster `members` start with `token`.
fn cluster_of(members: &BTreeMap<u64, Member>, token: &str) -> ClusterId {
    let ids: Vec<NodeId> = members.keys().map(|id| NodeId(*id)).collect();
    ClusterId::from_members(&ids, token)
}

impl NodeConfig {
    /// Returns the member ids and members of the initial cluster.
    pub fn initial_members(&self) -> BTreeMap<u64, Member> {
        let mut members = members_named(&self.initial_cluster, &self.initial_cluster_token);
        let own = NodeId::from_name(&self.name, &self.initial_cluster_token).0;
        if let Some(member) = members.get_mut(&own) {
            member.client_urls = self.advertise_client_urls.clone();
        }
        members
    }

    fn validate(&self) -> Result<(), NodeError> {
        if !self
            .initial_cluster
            .iter()
            .any(|(name, _)| *name == self.name)
        {
            return Err(NodeError::Config(format!(
                "--initial-cluster does not name this member ({})",
                self.name
            )));
        }
        if self.listen_client_urls.is_empty() || self.listen_peer_urls.is_empty() {
            return Err(NodeError::Config(
                "client and peer listen URLs are required".into(),
            ));
        }
        Ok(())
    }
}

/// Runs a member until `shutdown` completes; returns after every server has stopped.
///
/// Long because it is the member's wiring in start-up order (storage, replica, quorum path,
/// listeners, background tasks, shutdown), read top to bottom.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| NodeError::DataDir {
        path: config.data_dir.display().to_string(),
        source,
    })?;
    let removed_marker = SnapshotFile::new(&config.data_dir.join("removed"));
    if let Some(reason) = removed_marker.load()? {
        return Err(NodeError::Removed(
            String::from_utf8_lossy(&reason).into_owned(),
        ));
    }
    let members = config.initial_members();
    let faults = config
        .unsafe_fault_injection
        .then(|| Arc::new(FaultTable::new()));
    if faults.is_some() {
        tracing::warn!("fault injection is enabled (--unsafe-fault-injection): for tests only");
    }
    let peers = Arc::new(match &faults {
        Some(table) => GrpcPeers::with_faults(table.clone()),
        None => GrpcPeers::new(),
    });
    let (id, cluster_id) = identity(&config, &peers).await?;

    let log_file = LogStore::open(&config.data_dir.join("raft-log.redb"))?;
    // One writer for every group's log: the main group and each range's.
    let writer = consensus::LogWriter::start(log_file).map_err(NodeError::Io)?;
    let log = writer
        .open_group(consensus::MAIN_GROUP)
        .map_err(NodeError::Io)?;
    let state = StateStore::open(&config.data_dir.join("state.redb"))?;
    let snapshot = SnapshotFile::new(&config.data_dir.join("snapshot"));
    let objects = Arc::new(ObjectStore::open(&config.data_dir.join("quorum.redb"))?);
    let clock = Arc::new(HostClock::new());
    let mut options = RaftOptions::new(id.0, members, config.initial_cluster_new, clock.clone());
    options.snapshot_entries = config.snapshot_entries;
    options.logs_kept_after_snapshot = config.snapshot_catchup_entries;
    options.heartbeat_interval = config.heartbeat_interval;
    options.election_timeout_min = config.election_timeout;
    options.election_timeout_max = config.election_timeout * 2;
    options.request_timeout = config.request_timeout;
    options.lease_checkpoint_interval = config.lease_checkpoint_interval;
    #[cfg(feature = "canary")]
    {
        options.canary = config.canary;
    }
    options.cluster_id = cluster_id.0;
    // Peers must be served before Raft starts, so bind first.
    let peer_listeners = bind_all(&config.listen_peer_urls).await?;
    let client_listeners = bind_all(&config.listen_client_urls).await?;
    let metrics_listeners = bind_all(&config.listen_metrics_urls).await?;

    let replica = Arc::new(
        Replica::start(options, log, state, snapshot, peers.clone())
            .await
            .map_err(NodeError::Consensus)?,
    );
    tracing::info!(member = %id, cluster = %cluster_id, name = %config.name, "member started");

    let (stop_tx, stop_rx) = watch::channel(false);
    let context = Context {
        replica: replica.clone(),
        cluster_id: cluster_id.0,
        member_id: id.0,
        max_request_bytes: config.max_request_bytes,
        max_txn_ops: config.max_txn_ops,
        version: ETCD_API_VERSION,
    };
    let quorum = QuorumNode::new(
        replica.clone(),
        objects,
        peers.clone(),
        clock.clone(),
        quorum_node::QuorumConfig {
            value_bytes_max: config.max_request_bytes,
            request_timeout: config.request_timeout,
            hint_bytes_max: config.quorum_hint_bytes_max,
            tombstone_grace: config.quorum_tombstone_grace,
        },
    )?;
    #[cfg(feature = "canary")]
    quorum.plant(config.canary);
    let ranges = RangeNode::new(
        replica.clone(),
        writer,
        peers.clone(),
        range_node::RangeConfig {
            dir: config.data_dir.join("ranges"),
            request_timeout: config.request_timeout,
            heartbeat_interval: config.heartbeat_interval,
            election_timeout_min: config.election_timeout,
            election_timeout_max: config.election_timeout * 2,
            value_bytes_max: config.max_request_bytes,
            version_ttl: config.consensus_version_ttl,
            cache_bytes: config.range_cache_bytes,
            dead_member_timeout: config.dead_member_timeout,
        },
    )
    .map_err(NodeError::Io)?;
    ranges.start();
    let mut tasks = tokio::task::JoinSet::new();
    for listener in peer_listeners {
        let (_, _, replica_service) = quorum.services();
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .http2_max_pending_accept_reset_streams(Some(
                base::limits::PEER_PENDING_RESET_STREAMS_MAX,
            ))
            .add_service(RaftService::server(
                replica.clone(),
                ranges.groups(),
                cluster_id.0,
            ))
            .add_service(replica_service);
        spawn_grpc(&mut tasks, listener, router, stop_rx.clone());
    }
    for listener in client_listeners {
        let gate = LearnerGates::new(replica.clone());
        let (quorum_buckets, quorum_kv) = quorum.client_handlers();
        let buckets_service = BucketsServer::new(BucketsFront::new(quorum_buckets, ranges.clone()));
        let kv_service = KvServer::new(KvFront::new(quorum_kv, ranges.clone()))
            .max_decoding_message_size(quorum.kv_message_bytes_max());
        let ranges_service = RangesServer::new(RangesService(ranges.clone()));
        let ring_service = quorum.ring_service();
        let fault_service = faults
            .as_ref()
            .map(|table| FaultService::server(table.clone(), clock.clone(), replica.clone()));
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(gate.wrap(KvService::server(context.clone())))
            .add_service(gate.wrap(WatchService::server(
                context.clone(),
                config.watch_progress_notify_interval,
            )))
            .add_service(gate.wrap(LeaseService::server(context.clone())))
            .add_service(gate.wrap(LockService::server(context.clone())))
            .add_service(gate.wrap(ElectionService::server(context.clone())))
            .add_service(gate.wrap(MaintenanceService::server(context.clone())))
            .add_service(gate.wrap(ClusterService::server(context.clone())))
            .add_service(buckets_service)
            .add_service(ring_service)
            .add_service(kv_service)
            .add_service(ranges_service)
            .add_optional_service(fault_service);
        spawn_grpc(&mut tasks, listener, router, stop_rx.clone());
    }
    for listener in metrics_listeners {
        let app = metrics::router(replica.clone(), quorum.clone(), ranges.clone());
        let stop = stopped(stop_rx.clone());
        tasks.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
                .map_err(|e| e.to_string())
        });
    }

    let attributes = Member {
        name: config.name.clone(),
        peer_urls: config.initial_advertise_peer_urls.clone(),
        client_urls: config.advertise_client_urls.clone(),
    };
    tasks.spawn(publish(replica.clone(), attributes, stop_rx.clone()));
    // The quorum path's background tasks: hint delivery, SWIM gossip, tombstone reaping and
    // this member's part in ring changes; each runs until the stop signal.
    let background: [futures::future::BoxFuture<'static, ()>; 4] = [
        Box::pin(quorum.clone().deliver_hints(stop_rx.clone())),
        Box::pin(quorum.clone().watch_liveness(stop_rx.clone())),
        Box::pin(quorum.clone().reap_tombstones(stop_rx.clone())),
        Box::pin(quorum.clone().run_ring_changes(stop_rx.clone())),
    ];
    for task in background {
        tasks.spawn(async move {
            task.await;
            Ok(())
        });
    }
    tasks.spawn(watch_quota(
        replica.clone(),
        config.quota_backend_bytes,
        stop_rx.clone(),
    ));

    // A removed member stops by itself (as etcd's does) instead of lingering with stale data,
    // and remembers it so a restart does not bring it back.
    let removed = tokio::select! {
        _ = shutdown => None,
        reason = replica.removed() => Some(reason),
    };
    if let Some(reason) = &removed {
        removed_marker.save(reason.as_bytes())?;
    }
    tracing::info!("stopping member");
    let _ = stop_tx.send(true);
    let mut result = Ok(());
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(error)) => result = Err(NodeError::Serve(error)),
            Err(error) => result = Err(NodeError::Serve(error.to_string())),
        }
    }
    ranges.shutdown().await;
    replica.shutdown().await;
    match removed {
        Some(reason) => Err(NodeError::Removed(reason)),
        None => result,
    }
}

#[cfg(feature = "canary")]
pub use consensus::Canary;
pub use consensus::SnapshotSummary;

/// Bytes of the SHA-256 that ends a snapshot stream (and a saved snapshot file).
const SNAPSHOT_DIGEST_BYTES: usize = 32;

/// Checks the SHA-256 that ends a saved snapshot and returns the snapshot without it.
pub fn verify_snapshot(file: &[u8]) -> Result<&[u8], NodeError> {
    use sha2::Digest;
    let Some(split) = file.len().checked_sub(SNAPSHOT_DIGEST_BYTES) else {
        return Err(NodeError::Snapshot(format!(
            "{} bytes is too short to be a snapshot",
            file.len()
        )));
    };
    let (body, digest) = file.split_at(split);
    if sha2::Sha256::digest(body).as_slice() != digest {
        return Err(NodeError::Snapshot(
            "SHA-256 mismatch: the file is truncated or damaged".into(),
        ));
    }
    Ok(body)
}

/// Summarizes a snapshot (already verified by [`verify_snapshot`]).
pub fn inspect_snapshot(body: &[u8]) -> Result<SnapshotSummary, NodeError> {
    consensus::inspect(body).map_err(|e| NodeError::Snapshot(e.to_string()))
}

/// Builds the data dir of one member of a new cluster from a snapshot (`quorate snapshot
/// restore`, as etcd's): each member of the new cluster is restored from the same snapshot with
/// the same `initial_cluster` and token, then started as usual (the flags that describe the
/// initial cluster are then ignored: the data dir knows). Refuses a data dir that holds anything.
pub fn restore(
    name: &str,
    data_dir: &std::path::Path,
    initial_cluster: &[(String, String)],
    initial_cluster_token: &str,
    snapshot: &[u8],
) -> Result<consensus::SnapshotSummary, NodeError> {
    if !initial_cluster.iter().any(|(n, _)| n == name) {
        return Err(NodeError::Config(format!(
            "--initial-cluster does not name this member ({name})"
        )));
    }
    let occupied = std::fs::read_dir(data_dir).is_ok_and(|mut entries| entries.next().is_some());
    if occupied {
        return Err(NodeError::Config(format!(
            "data dir {} is not empty; restore needs a new one",
            data_dir.display()
        )));
    }
    std::fs::create_dir_all(data_dir).map_err(|source| NodeError::DataDir {
        path: data_dir.display().to_string(),
        source,
    })?;
    let members = members_named(initial_cluster, initial_cluster_token);
    let cluster = cluster_of(&members, initial_cluster_token);
    let log = LogStore::open(&data_dir.join("raft-log.redb"))?;
    let state = StateStore::open(&data_dir.join("state.redb"))?;
    let snapshot_file = SnapshotFile::new(&data_dir.join("snapshot"));
    let summary = consensus::restore_member(log, state, snapshot_file, snapshot, members)
        .map_err(NodeError::Consensus)?;
    save_identity(
        data_dir,
        NodeId::from_name(name, initial_cluster_token),
        cluster,
    )?;
    Ok(summary)
}

fn save_identity(
    data_dir: &std::path::Path,
    id: NodeId,
    cluster: ClusterId,
) -> Result<(), NodeError> {
    let mut bytes = id.0.to_be_bytes().to_vec();
    bytes.extend_from_slice(&cluster.0.to_be_bytes());
    SnapshotFile::new(&data_dir.join("member")).save(&bytes)?;
    Ok(())
}

/// Returns this member's id and its cluster's id: remembered in the data dir (`member`, an
/// atomically replaced, checksummed file) once known. A member of a new cluster derives both
/// from its name, the initial members and the token (as etcd does); a member joining an
/// existing cluster (`--initial-cluster-state existing`) asks the members listed in
/// `--initial-cluster` for the membership and finds itself by its peer URL, which MemberAdd
/// recorded.
async fn identity(
    config: &NodeConfig,
    peers: &GrpcPeers,
) -> Result<(NodeId, ClusterId), NodeError> {
    let file = SnapshotFile::new(&config.data_dir.join("member"));
    if let Some(bytes) = file.load()? {
        let pair: Option<[u8; 16]> = bytes.as_slice().try_into().ok();
        let pair = pair.ok_or_else(|| NodeError::Config("member file: bad length".into()))?;
        let id = u64::from_be_bytes(pair[..8].try_into().expect("8 bytes"));
        let cluster = u64::from_be_bytes(pair[8..].try_into().expect("8 bytes"));
        return Ok((NodeId(id), ClusterId(cluster)));
    }
    let (id, cluster_id) = if config.initial_cluster_new {
        let id = NodeId::from_name(&config.name, &config.initial_cluster_token);
        let cluster = cluster_of(&config.initial_members(), &config.initial_cluster_token);
        (id, cluster)
    } else {
        discover_identity(config, peers).await?
    };
    save_identity(&config.data_dir, id, cluster_id)?;
    Ok((id, cluster_id))
}

/// Asks the other members for the membership until one lists this member's peer URL.
async fn discover_identity(
    config: &NodeConfig,
    peers: &GrpcPeers,
) -> Result<(NodeId, ClusterId), NodeError> {
    let own = config
        .initial_advertise_peer_urls
        .first()
        .ok_or_else(|| NodeError::Config("--initial-advertise-peer-urls is empty".into()))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        for (name, url) in &config.initial_cluster {
            if *name == config.name {
                continue;
            }
            let Ok(response) = peers.members(url, Duration::from_secs(2)).await else {
                continue;
            };
            let nodes = response.membership.map(|m| m.nodes).unwrap_or_default();
            if let Some((id, _)) = nodes.iter().find(|(_, m)| m.peer_urls.contains(own)) {
                return Ok((NodeId(*id), ClusterId(response.cluster_id)));
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(NodeError::Config(format!(
                "no member of --initial-cluster lists peer URL {own}; add this member first \
                 (MemberAdd) or start it with --initial-cluster-state new"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Records this member's name and client URLs in the group's membership (etcd's "publish"),
/// so every member's MemberList shows where to reach it. Retries with backoff until the
/// membership holds them or the member stops.
async fn publish(
    replica: Arc<Replica>,
    wanted: Member,
    stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let mut backoff = Duration::from_millis(100);
    loop {
        // Until this member has caught up with the leader, its membership may be the one it
        // bootstrapped with and not the group's.
        let caught_up = tokio::select! {
            result = replica.linearizable_barrier() => result.is_ok(),
            _ = stopped(stop.clone()) => return Ok(()),
        };
        let current = replica.status().members.get(&replica.id()).cloned();
        if let Some(current) = current.filter(|_| caught_up) {
            if current.name == wanted.name && current.client_urls == wanted.client_urls {
                return Ok(());
            }
            // Peer URLs are the membership's business (MemberUpdate); keep them.
            let member = Member {
                peer_urls: current.peer_urls,
                ..wanted.clone()
            };
            let change = pb::MemberChange {
                change: Some(pb::member_change::Change::SetMember(pb::SetMember {
                    id: replica.id(),
                    member: Some(consensus::codec::member_to_pb(&member)),
                })),
            };
            tokio::select! {
                result = replica.change_members(change) => match result {
                    Ok(_) => {
                        tracing::info!(client_urls = ?member.client_urls, "published member attributes");
                        return Ok(());
                    }
                    Err(error) => tracing::debug!(%error, "publish member attributes; will retry"),
                },
                _ = stopped(stop.clone()) => return Ok(()),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(stop.clone()) => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Raises the NOSPACE alarm through Raft when this member's live state bytes exceed the quota
/// (checked every `QUOTA_CHECK_INTERVAL`, so a burst may pass the quota by what it writes
/// meanwhile). While it is raised, every member refuses writes that add data; an operator
/// compacts (deletes first if needed) and disarms it, as with etcd.
async fn watch_quota(
    replica: Arc<Replica>,
    quota: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    use proto::etcdserverpb::alarm_request::AlarmAction;
    use proto::etcdserverpb::{AlarmRequest, AlarmType};
    let mut ticker = tokio::time::interval(base::limits::QUOTA_CHECK_INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        }
        let in_use = replica.status().db_size_in_use;
        let raised = !replica
            .alarms(replica.id(), AlarmType::Nospace as i32)
            .alarms
            .is_empty();
        if in_use <= quota || raised {
            continue;
        }
        tracing::warn!(
            in_use,
            quota,
            "backend quota exceeded; raising the NOSPACE alarm"
        );
        let command = pb::Command {
            op: Some(pb::command::Op::Alarm(AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: replica.id(),
                alarm: AlarmType::Nospace as i32,
            })),
        };
        if let Err(error) = replica.propose(command).await {
            tracing::warn!(%error, "raise the NOSPACE alarm; will retry");
        }
    }
}

async fn bind_all(urls: &[String]) -> Result<Vec<TcpListener>, NodeError> {
    let mut out = Vec::new();
    for url in urls {
        let addr = url_to_addr(url)?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| NodeError::Listen {
                url: url.clone(),
                source,
            })?;
        out.push(listener);
    }
    Ok(out)
}

/// Serves `router` on `listener` until `stop` turns true.
fn spawn_grpc(
    tasks: &mut tokio::task::JoinSet<Result<(), String>>,
    listener: TcpListener,
    router: tonic::transport::server::Router,
    stop: watch::Receiver<bool>,
) {
    // tonic applies `tcp_nodelay` only to listeners it binds itself; on accepted streams it
    // must be set here, or small responses wait for Nagle and the peer's delayed ACK (~40 ms).
    let incoming = TcpListenerStream::new(listener).map(|accepted| {
        accepted.and_then(|stream| {
            stream.set_nodelay(true)?;
            Ok(stream)
        })
    });
    tasks.spawn(async move {
        router
            .serve_with_incoming_shutdown(incoming, stopped(stop))
            .await
            .map_err(|e| e.to_string())
    });
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
