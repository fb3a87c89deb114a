//! `quorate bench`: its command line, turned into the bench's loads and options (`bench`).

use std::path::PathBuf;
use std::time::Duration;

use bench::{FloorOptions, Load, LoadOptions, QuorumLevel, ReportOptions};
use clap::{Args, Subcommand, ValueEnum};

use crate::named::named;
use crate::node_cmd::parse_duration;

/// The bench's subcommands.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Puts of random keys.
    Put(RunArgs),
    /// Gets of random keys (filled first).
    Get(GetArgs),
    /// Gets and puts of random keys (filled first), by default 90 % reads.
    Mixed(MixedArgs),
    /// Compare-and-put transactions on random keys (filled first): put if the key's
    /// modification revision is the one this client last saw, else read it.
    Txn(RunArgs),
    /// Events per second delivered to W watchers of a prefix while the clients put keys
    /// under it; latency is from the put's start to each delivery.
    Watch(WatchArgs),
    /// Lease churn: each operation grants a lease, puts a key under it and revokes it.
    Lease(RunArgs),
    /// Puts to a quorum bucket (`bench-lww`, n=3, created if missing) at a write level;
    /// Quorate only.
    QuorumPut(QuorumArgs),
    /// Gets from the quorum bucket (filled first at w=all) at a read level; Quorate only.
    QuorumGet(QuorumArgs),
    /// Puts to a consensus bucket (`bench-ranges`, 3 replicas, created if missing) split by
    /// hand into --ranges ranges of equal key shares; Quorate only.
    RangePut(RangePutArgs),
    /// Gets from the consensus bucket `bench-ranges` (split and filled first), linearizable
    /// or follower reads.
    RangeGet(RangeGetArgs),
    /// This machine's floor for one durable write: fdatasync of a small append plus one
    /// loopback round trip.
    Floor(FloorArgs),
    /// Table (medians, ratios) and SVG plot from saved JSON summary lines.
    Report(ReportArgs),
}

/// Options every load workload takes.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Concurrent clients (each one request at a time).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// gRPC connections the clients share, spread over the endpoints in turn.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// How long to measure (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load before measuring, not recorded (0s for none).
    #[arg(long, default_value = "2s", value_parser = parse_duration_or_zero)]
    pub warmup: Duration,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Distinct keys used.
    #[arg(long, default_value_t = 10_000)]
    pub key_space: u64,
    /// Write completions per second of the measured window to this CSV file.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// A label copied into the JSON summary (e.g. the system measured).
    #[arg(long, default_value = "")]
    pub label: String,
    /// A round number copied into the JSON summary (for alternating comparisons).
    #[arg(long, default_value_t = 0)]
    pub round: u32,
    /// Never draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Consistency of a read, as etcdctl spells it.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable (ReadIndex through the leader).
    L,
    /// Serializable (the member's local state).
    S,
}

#[derive(Args, Debug, Clone)]
pub struct GetArgs {
    #[command(flatten)]
    pub run: RunArgs,
    #[arg(long, value_enum, default_value_t = Consistency::L)]
    pub consistency: Consistency,
}

#[derive(Args, Debug, Clone)]
pub struct MixedArgs {
    #[command(flatten)]
    pub run: RunArgs,
    #[arg(long, value_enum, default_value_t = Consistency::L)]
    pub consistency: Consistency,
    /// Fraction of operations that are reads.
    #[arg(long, default_value_t = 0.9)]
    pub read_ratio: f64,
}

#[derive(Args, Debug, Clone)]
pub struct QuorumArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Replicas that must answer each operation.
    #[arg(long, value_parser = named!(QuorumLevel), default_value = "quorum")]
    pub level: QuorumLevel,
}

#[derive(Args, Debug, Clone)]
pub struct RangePutArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Ranges to split the bucket into before measuring.
    #[arg(long, default_value_t = 1)]
    pub ranges: u64,
    /// Send each put to its range's leader by a client-side range cache (else to the
    /// connection's member, which routes it as a gateway).
    #[arg(long)]
    pub routed: bool,
}

/// How `range-get` reads.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeConsistency {
    /// On the range's leader after a ReadIndex round.
    Linearizable,
    /// From the receiving member's own replica, at most 5 s old.
    Follower,
}

#[derive(Args, Debug, Clone)]
pub struct RangeGetArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Ranges to split the bucket into before filling and measuring.
    #[arg(long, default_value_t = 1)]
    pub ranges: u64,
    #[arg(long, value_enum, default_value_t = RangeConsistency::Linearizable)]
    pub consistency: RangeConsistency,
    /// Send each get to its range's leader by a client-side range cache.
    #[arg(long)]
    pub routed: bool,
}

#[derive(Args, Debug, Clone)]
pub struct WatchArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Watchers of the prefix, spread over the connections.
    #[arg(long, default_value_t = 16)]
    pub watchers: usize,
}

#[derive(Args, Debug)]
pub struct FloorArgs {
    /// Samples of each measurement.
    #[arg(long, default_value_t = 500)]
    pub samples: usize,
    /// Directory on the disk to measure (put it where the data dirs live).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Bytes appended before each fdatasync (about one small Raft entry).
    #[arg(long, default_value_t = 512)]
    pub append_size: usize,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Files of JSON summary lines (as `quorate bench …` prints them).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Label of the system compared against.
    #[arg(long, default_value = "etcd")]
    pub baseline: String,
    /// Label of the system measured.
    #[arg(long, default_value = "quorate")]
    pub candidate: String,
    /// Write a plot of throughput and p99 by clients here.
    #[arg(long)]
    pub svg: Option<PathBuf>,
}

fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    if text.trim_end_matches(|c: char| c.is_ascii_alphabetic()) == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

impl From<RunArgs> for LoadOptions {
    fn from(args: RunArgs) -> LoadOptions {
        LoadOptions {
            clients: args.clients,
            conns: args.conns,
            duration: args.duration,
            warmup: args.warmup,
            value_size: args.value_size,
            key_space: args.key_space,
            csv: args.csv,
            label: args.label,
            round: args.round,
            no_progress: args.no_progress,
        }
    }
}

/// Runs one bench subcommand against `endpoints`.
pub async fn run(endpoints: &[String], command: BenchCommand) -> Result<(), bench::BenchError> {
    let (load, args) = match command {
        BenchCommand::Floor(args) => {
            return bench::floor(FloorOptions {
                samples: args.samples,
                dir: args.dir,
                append_size: args.append_size,
            });
        }
        BenchCommand::Report(args) => {
            return bench::report(ReportOptions {
                files: args.files,
                baseline: args.baseline,
                candidate: args.candidate,
                svg: args.svg,
            });
        }
        BenchCommand::Put(args) => (Load::Put, args),
        BenchCommand::Txn(args) => (Load::Txn, args),
        BenchCommand::Lease(args) => (Load::Lease, args),
        BenchCommand::Watch(args) => (
            Load::Watch {
                watchers: args.watchers,
            },
            args.run,
        ),
        BenchCommand::QuorumPut(args) => (Load::QuorumPut(args.level), args.run),
        BenchCommand::QuorumGet(args) => (Load::QuorumGet(args.level), args.run),
        BenchCommand::RangePut(args) => (
            Load::RangePut {
                ranges: args.ranges,
                routed: args.routed,
            },
            args.run,
        ),
        BenchCommand::RangeGet(args) => (
            Load::RangeGet {
                ranges: args.ranges,
                follower: args.consistency == RangeConsistency::Follower,
                routed: args.routed,
            },
            args.run,
        ),
        BenchCommand::Get(args) => (
            Load::Get {
                serializable: args.consistency == Consistency::S,
            },
            args.run,
        ),
        BenchCommand::Mixed(args) => (
            Load::Mixed {
                read_ratio: args.read_ratio,
                serializable: args.consistency == Consistency::S,
            },
            args.run,
        ),
    };
    bench::run(endpoints, load, args.into()).await
}
