//! `quorate check`: its command line, turned into the tester's options (`tester`), and the
//! verdict turned into the exit code by `main`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use tester::{AnalyzeOptions, CheckModel, RunOptions};
use workload::WorkloadKind;
use workload::nemesis::FaultKind;

use crate::named::named;
use crate::node_cmd::parse_duration;

/// `quorate check`: a run with the options below, or a subcommand.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CheckArgs {
    #[command(subcommand)]
    pub command: Option<CheckCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// The check's subcommands.
#[derive(Subcommand, Debug)]
pub enum CheckCommand {
    /// Recheck a saved history.
    Analyze(AnalyzeArgs),
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// The history file (JSON lines).
    pub file: PathBuf,
    /// The checker to judge it by.
    #[arg(long, value_parser = named!(CheckModel))]
    pub model: CheckModel,
    /// Set model: require only the final read to be complete (for eventually consistent
    /// reads); by default every read must hold what was acknowledged before it began.
    #[arg(long)]
    pub final_read_only: bool,
    /// Linearizability search steps per key before the verdict is unknown.
    #[arg(long, default_value_t = check::Budget::default().steps_max)]
    pub steps_max: u64,
    /// Memoized search configurations per key before the verdict is unknown.
    #[arg(long, default_value_t = check::Budget::default().cache_entries_max)]
    pub cache_entries_max: usize,
    /// The whole check's wall-clock bound; past it the verdict is unknown (exit 2) and names
    /// the keys left unjudged.
    #[arg(long, default_value = "5m", value_parser = crate::node_cmd::parse_duration)]
    pub time_limit: Duration,
}

/// Options of a check run.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The workload.
    #[arg(long, value_parser = named!(WorkloadKind), default_value = "register")]
    pub workload: WorkloadKind,
    /// Fault kinds the nemesis draws from, comma-separated (none for no faults).
    #[arg(long, value_parser = named!(FaultKind), value_delimiter = ',', default_value = "none")]
    pub nemesis: Vec<FaultKind>,
    /// How long the clients run (e.g. 30s, 2m).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub time: Duration,
    /// Members to start.
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// Concurrent clients (writers, for the watch workload).
    #[arg(long, default_value_t = 5)]
    pub clients: u64,
    /// Watchers of the watch workload.
    #[arg(long, default_value_t = 3)]
    pub watchers: u64,
    /// Seed of the clients' choices and the nemesis plan (printed; default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Mean length of a fault window and of the quiet gap between two.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Register operations on one key before the clients move to the next key.
    #[arg(long, default_value_t = 100)]
    pub ops_per_key: u64,
    /// Deadline of one client operation; past it the outcome is unknown.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub op_timeout: Duration,
    /// Directory for the history, the fault windows and the members' logs (default:
    /// quorate-check/<workload>-<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Keep the members' data directories after a valid run too (a run not judged valid
    /// always keeps them, with the members' logs).
    #[arg(long)]
    pub keep_data: bool,
    /// The members' log filter, in `QUORATE_LOG` syntax (`info`, `warn,range_node=debug`):
    /// their logs are kept beside the history.
    #[arg(long, default_value = "warn")]
    pub member_log: String,
    /// Run the members with a planted bug, which the run must find (builds with the `canary`
    /// feature only): stale-read, ack-before-commit, watch-gap, lock-no-wait,
    /// quorum-overwrite, split-stale-read, follower-read-unbounded, merge-loses-right.
    #[cfg(feature = "canary")]
    #[arg(long, value_parser = crate::node_cmd::parse_canary)]
    pub canary: Option<node::Canary>,
}

/// Runs a check or a check subcommand.
pub async fn run(args: CheckArgs, json_out: bool) -> Result<(), tester::CheckError> {
    match args.command {
        Some(CheckCommand::Analyze(args)) => {
            let options = AnalyzeOptions {
                file: args.file,
                model: args.model,
                final_read_only: args.final_read_only,
                budget: check::Budget {
                    steps_max: args.steps_max,
                    cache_entries_max: args.cache_entries_max,
                },
                time_limit: args.time_limit,
            };
            tester::analyze(&options, json_out)
        }
        None => tester::run(run_options(args.run)?, json_out).await,
    }
}

fn run_options(args: RunArgs) -> Result<RunOptions, tester::CheckError> {
    let exe = std::env::current_exe().map_err(tester::CheckError::file(
        "find the quorate executable",
        std::path::Path::new("/proc/self/exe"),
    ))?;
    Ok(RunOptions {
        exe,
        member_args: member_args(&args),
        workload: args.workload,
        nemesis: args.nemesis,
        time: args.time,
        members: args.members,
        clients: args.clients,
        watchers: args.watchers,
        seed: args.seed,
        interval: args.interval,
        ops_per_key: args.ops_per_key,
        op_timeout: args.op_timeout,
        out: args.out,
        keep_data: args.keep_data,
        member_log: args.member_log,
    })
}

/// Extra flags of every member: the canary, when the run asks for one.
fn member_args(args: &RunArgs) -> Vec<String> {
    #[cfg(feature = "canary")]
    if let Some(canary) = args.canary {
        return vec!["--unsafe-canary".to_owned(), canary.name().to_owned()];
    }
    let _ = args;
    Vec::new()
}
