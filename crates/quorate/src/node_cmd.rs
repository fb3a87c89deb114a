//! `quorate node`: etcd's member flags, each also read from `QUORATE_<FLAG>` and from a TOML
//! config file (`--config-file`), turned into a `node::NodeConfig`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

/// Flags of `quorate node` (names as etcd's).
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// Human-readable name of this member.
    #[arg(long, env = "QUORATE_NAME", default_value = "default")]
    pub name: String,
    /// Directory of this member's data.
    #[arg(long, env = "QUORATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// URLs to serve clients on (comma-separated).
    #[arg(
        long,
        env = "QUORATE_LISTEN_CLIENT_URLS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub listen_client_urls: Vec<String>,
    /// Client URLs this member tells others about.
    #[arg(
        long,
        env = "QUORATE_ADVERTISE_CLIENT_URLS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub advertise_client_urls: Vec<String>,
    /// URLs to serve peers on.
    #[arg(
        long,
        env = "QUORATE_LISTEN_PEER_URLS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2380"
    )]
    pub listen_peer_urls: Vec<String>,
    /// Peer URLs this member tells others about.
    #[arg(
        long,
        env = "QUORATE_INITIAL_ADVERTISE_PEER_URLS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2380"
    )]
    pub initial_advertise_peer_urls: Vec<String>,
    /// Initial members as `name=peer_url,…`.
    #[arg(long, env = "QUORATE_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// `new` to bootstrap a cluster, `existing` to join one.
    #[arg(long, env = "QUORATE_INITIAL_CLUSTER_STATE", default_value = "new")]
    pub initial_cluster_state: String,
    /// Token that makes ids unique to this cluster.
    #[arg(
        long,
        env = "QUORATE_INITIAL_CLUSTER_TOKEN",
        default_value = "quorate-cluster"
    )]
    pub initial_cluster_token: String,
    /// URLs serving /metrics and /health.
    #[arg(
        long,
        env = "QUORATE_LISTEN_METRICS_URLS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2381"
    )]
    pub listen_metrics_urls: Vec<String>,
    /// Largest client request in bytes.
    #[arg(long, env = "QUORATE_MAX_REQUEST_BYTES", default_value_t = base::limits::MAX_REQUEST_BYTES_DEFAULT)]
    pub max_request_bytes: usize,
    /// Largest number of operations in one Txn branch.
    #[arg(long, env = "QUORATE_MAX_TXN_OPS", default_value_t = base::limits::MAX_TXN_OPS_DEFAULT)]
    pub max_txn_ops: usize,
    /// Applied entries between snapshots (the log is compacted behind each).
    #[arg(long, env = "QUORATE_SNAPSHOT_COUNT", default_value_t = base::limits::SNAPSHOT_ENTRIES_DEFAULT)]
    pub snapshot_count: u64,
    /// Entries kept in the log behind each snapshot, so a briefly lagging member catches up
    /// from the log; one further behind is sent a snapshot (etcd's flag of the same name).
    #[arg(long, env = "QUORATE_EXPERIMENTAL_SNAPSHOT_CATCHUP_ENTRIES", default_value_t = base::limits::RAFT_LOGS_KEPT_AFTER_SNAPSHOT)]
    pub experimental_snapshot_catchup_entries: u64,
    /// Raft heartbeat interval in milliseconds.
    #[arg(long, env = "QUORATE_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Raft election timeout in milliseconds.
    #[arg(long, env = "QUORATE_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,
    /// How long a client request waits for consensus, in milliseconds, before it fails with
    /// `request timed out` (or `no leader` when none is known).
    #[arg(long, env = "QUORATE_REQUEST_TIMEOUT", default_value_t = base::limits::REQUEST_TIMEOUT.as_millis() as u64)]
    pub request_timeout: u64,
    /// Interval of progress notifications to idle watchers that ask for them (`10m`, `5s`,
    /// `500ms`); etcd's flag of the same name.
    #[arg(long, env = "QUORATE_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub experimental_watch_progress_notify_interval: Duration,
    /// Interval at which the leader records remaining lease TTLs, so they survive leader
    /// changes and restarts; etcd's flag of the same name.
    #[arg(long, env = "QUORATE_EXPERIMENTAL_LEASE_CHECKPOINT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub experimental_lease_checkpoint_interval: Duration,
    /// Live state bytes above which the member raises the NOSPACE alarm (0: the default,
    /// 2 GiB), as etcd's flag.
    #[arg(long, env = "QUORATE_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: u64,
    /// Bytes of hints (writes held for an unreachable replica of a quorum bucket) this member
    /// keeps per unreachable member; beyond it new hints are dropped and counted, left to
    /// repair by later reads.
    #[arg(long, env = "QUORATE_QUORUM_HINT_BYTES_MAX", default_value_t = base::limits::HINT_BYTES_PER_MEMBER_DEFAULT)]
    pub quorum_hint_bytes_max: u64,
    /// How long a delete's tombstone stays before a member may drop the key's entry (once
    /// every replica holds the delete). A member that is down for longer should not come back
    /// with copies older than the delete; see docs/operations.md.
    #[arg(long, env = "QUORATE_QUORUM_TOMBSTONE_GRACE", default_value = "1h", value_parser = parse_duration)]
    pub quorum_tombstone_grace: Duration,
    /// How long consensus buckets keep versions that a newer write or a delete superseded
    /// (reads at a past timestamp see them until then); older ones are collected.
    #[arg(long, env = "QUORATE_CONSENSUS_VERSION_TTL", default_value = "10m", value_parser = parse_duration)]
    pub consensus_version_ttl: Duration,
    /// Memory (MiB) for the page cache of consensus buckets' data on this member: their
    /// versions live on disk, and a member holds this much of them in memory at most.
    #[arg(long, env = "QUORATE_RANGE_CACHE_MIB", default_value_t = base::limits::RANGE_CACHE_MIB_DEFAULT)]
    pub range_cache_mib: usize,
    /// How long a member may stay unreachable before the replicas of consensus ranges it
    /// holds are re-created on other members (it gets none back until it answers again).
    #[arg(long, env = "QUORATE_DEAD_MEMBER_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub dead_member_timeout: Duration,
    /// TOML file with any of these flags as keys (`data-dir = "…"`); flags and environment win.
    #[arg(long, env = "QUORATE_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Serve the fault-injection API (`quorate fault`) and pass every outgoing peer message
    /// through it. For the tester only: anyone who reaches the client port can partition
    /// this member.
    #[arg(long, env = "QUORATE_UNSAFE_FAULT_INJECTION")]
    pub unsafe_fault_injection: bool,
    /// Run a planted bug (builds with the `canary` feature only; for the tester's canaries).
    #[cfg(feature = "canary")]
    #[arg(long, hide = true, value_parser = parse_canary)]
    pub unsafe_canary: Option<node::Canary>,
}

/// Parses a canary's name.
#[cfg(feature = "canary")]
pub fn parse_canary(name: &str) -> Result<node::Canary, String> {
    node::Canary::parse(name).ok_or_else(|| {
        format!(
            "unknown canary {name:?}; one of {}",
            node::Canary::NAMES.join(", ")
        )
    })
}

/// Reads `--config-file` (or `QUORATE_CONFIG_FILE`) before clap parses, exporting each key as
/// its `QUORATE_*` variable unless the environment already sets it, so the precedence is
/// flag > environment > file > default.
pub fn apply_config_file() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let from_flag = args.iter().enumerate().find_map(|(i, arg)| {
        arg.strip_prefix("--config-file=")
            .map(str::to_string)
            .or_else(|| {
                (arg == "--config-file")
                    .then(|| args.get(i + 1).cloned())
                    .flatten()
            })
    });
    let Some(path) = from_flag.or_else(|| std::env::var("QUORATE_CONFIG_FILE").ok()) else {
        return Ok(());
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read config file {path}"))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parse config file {path}"))?;
    for (key, value) in table {
        let variable = format!("QUORATE_{}", key.replace('-', "_").to_uppercase());
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| item.to_string())
                })
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        if std::env::var_os(&variable).is_none() {
            // SAFETY: called at start-up, before any other thread exists.
            unsafe { std::env::set_var(&variable, value) };
        }
    }
    Ok(())
}

impl NodeArgs {
    /// Returns the member configuration these flags describe.
    pub fn to_config(&self) -> anyhow::Result<node::NodeConfig> {
        let initial_cluster = match &self.initial_cluster {
            Some(text) => parse_initial_cluster(text)?,
            None => vec![(
                self.name.clone(),
                self.initial_advertise_peer_urls[0].clone(),
            )],
        };
        let initial_cluster_new = match self.initial_cluster_state.as_str() {
            "new" => true,
            "existing" => false,
            other => bail!("--initial-cluster-state must be new or existing, not {other:?}"),
        };
        Ok(node::NodeConfig {
            name: self.name.clone(),
            data_dir: self
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.quorate", self.name))),
            listen_client_urls: self.listen_client_urls.clone(),
            advertise_client_urls: self.advertise_client_urls.clone(),
            listen_peer_urls: self.listen_peer_urls.clone(),
            initial_advertise_peer_urls: self.initial_advertise_peer_urls.clone(),
            initial_cluster,
            initial_cluster_new,
            initial_cluster_token: self.initial_cluster_token.clone(),
            listen_metrics_urls: self.listen_metrics_urls.clone(),
            max_request_bytes: self.max_request_bytes,
            max_txn_ops: self.max_txn_ops,
            snapshot_entries: self.snapshot_count,
            snapshot_catchup_entries: self.experimental_snapshot_catchup_entries,
            heartbeat_interval: Duration::from_millis(self.heartbeat_interval),
            election_timeout: Duration::from_millis(self.election_timeout),
            request_timeout: Duration::from_millis(self.request_timeout),
            watch_progress_notify_interval: self.experimental_watch_progress_notify_interval,
            lease_checkpoint_interval: self.experimental_lease_checkpoint_interval,
            quota_backend_bytes: match self.quota_backend_bytes {
                0 => base::limits::QUOTA_BACKEND_BYTES_DEFAULT,
                bytes => bytes,
            },
            unsafe_fault_injection: self.unsafe_fault_injection,
            quorum_hint_bytes_max: self.quorum_hint_bytes_max,
            quorum_tombstone_grace: self.quorum_tombstone_grace,
            consensus_version_ttl: self.consensus_version_ttl,
            range_cache_bytes: self.range_cache_mib << 20,
            dead_member_timeout: self.dead_member_timeout,
            #[cfg(feature = "canary")]
            canary: self.unsafe_canary,
        })
    }
}

/// Parses a duration as etcd writes them: a number with `ms`, `s`, `m` or `h`.
/// Parses `--initial-cluster`: comma-separated `name=peer_url` pairs.
pub fn parse_initial_cluster(text: &str) -> anyhow::Result<Vec<(String, String)>> {
    text.split(',')
        .map(|pair| {
            let (name, url) = pair
                .split_once('=')
                .with_context(|| format!("--initial-cluster entry {pair:?} is not name=url"))?;
            Ok((name.to_string(), url.to_string()))
        })
        .collect()
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit (ms, s, m, h)"))?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} does not start with a number"))?;
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        other => return Err(format!("unknown unit {other:?} in {text:?} (ms, s, m, h)")),
    };
    if duration.is_zero() {
        return Err(format!("{text:?} must be more than zero"));
    }
    Ok(duration)
}

/// Runs a member until SIGTERM or SIGINT.
pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    node::run(config, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
