//! `quorate check`: runs a workload against members it starts, under a seeded nemesis, and
//! judges the history (`run`); `quorate check analyze FILE --model M` rechecks any saved
//! history (JSON lines, DESIGN §5) with the checkers of the `check` crate and prints the
//! operation counts, the verdict and every anomaly. The exit code is the verdict: 0 valid,
//! 1 invalid, 2 unknown (a budget ran out or the history lacks what the checker needs), 3 not
//! checked (unreadable or malformed history), so only a valid verdict passes a script. It reads the file and prints; all judging is in
//! the `check` crate.

use std::fmt;
use std::path::PathBuf;

use anyhow::Context;
use check::history::Counts;
use check::{Budget, History, Register, Report, Verdict};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

mod members;
mod nemesis;
mod quorum_set;
mod report;
mod run;
mod watch_workload;
mod workload;

/// `quorate check`: a run with the options below, or a subcommand.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CheckArgs {
    #[command(subcommand)]
    pub command: Option<CheckCommand>,
    #[command(flatten)]
    pub run: run::RunArgs,
}

/// The check's subcommands.
#[derive(Subcommand, Debug)]
pub enum CheckCommand {
    /// Recheck a saved history.
    Analyze(AnalyzeArgs),
}

/// The checkers a history can be judged by.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CheckModel {
    /// Linearizable read/write register per key.
    Register,
    /// Linearizable read/write/compare-and-set register per key.
    CasRegister,
    /// cas-register plus etcd's revisions: they follow real time, and writes never share one.
    EtcdKv,
    /// Unique adds and whole-set reads: nothing lost, nothing invented, nothing twice.
    Set,
    /// Transfers between accounts: every read conserves the total, no negative balance.
    Bank,
    /// Watchers against the puts they watch: no gap, no duplicate, in order, right values.
    Watch,
    /// Fenced writes of lock holders: mutual exclusion, tokens never going back.
    Lock,
    /// The set model for quorum reads (R+W>N): every read holds every add acknowledged before
    /// it began, not necessarily what another read returned.
    QuorumSet,
}

#[derive(Args, Debug)]
pub struct AnalyzeArgs {
    /// The history file (JSON lines).
    pub file: PathBuf,
    /// The checker to judge it by.
    #[arg(long, value_enum)]
    pub model: CheckModel,
    /// Set model: require only the final read to be complete (for eventually consistent
    /// reads); by default every read must hold what was acknowledged before it began.
    #[arg(long)]
    pub final_read_only: bool,
    /// Linearizability search steps per key before the verdict is unknown.
    #[arg(long, default_value_t = Budget::default().steps_max)]
    pub steps_max: u64,
    /// Memoized search configurations per key before the verdict is unknown.
    #[arg(long, default_value_t = Budget::default().cache_entries_max)]
    pub cache_entries_max: usize,
}

/// A verdict other than valid, carried to `main` as the process's exit code.
#[derive(Debug)]
pub struct VerdictExit {
    pub code: u8,
    pub message: String,
}

impl fmt::Display for VerdictExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Anomalies the text report prints; the rest are counted.
const ANOMALIES_PRINTED_MAX: usize = 20;

/// The exit code of a history that could not be checked at all.
const NOT_CHECKED: u8 = 3;

impl std::error::Error for VerdictExit {}

/// Runs a check or a check subcommand.
pub async fn run(args: CheckArgs, json_out: bool) -> anyhow::Result<()> {
    let result = match args.command {
        Some(CheckCommand::Analyze(args)) => analyze(&args, json_out),
        None => run::run(args.run, json_out).await,
    };
    result.map_err(|error| {
        if error.is::<VerdictExit>() {
            return error;
        }
        VerdictExit {
            code: NOT_CHECKED,
            message: format!("Error: {error:#}"),
        }
        .into()
    })
}

fn analyze(args: &AnalyzeArgs, json_out: bool) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("read history {}", args.file.display()))?;
    let events = check::codec::decode_history(&text)
        .with_context(|| format!("decode history {}", args.file.display()))?;
    let history = History::from_events(&events)
        .with_context(|| format!("pair operations of {}", args.file.display()))?;
    let budget = Budget {
        steps_max: args.steps_max,
        cache_entries_max: args.cache_entries_max,
    };
    let report = judge(&history, args.model, budget, !args.final_read_only);
    if json_out {
        println!("{}", report_json(&report, &history.counts(), events.len()));
    } else {
        print!("{}", report_text(&report, &history.counts(), events.len()));
    }
    verdict_result(&report.verdict)
}

/// Judges a history by one checker.
pub fn judge(history: &History, model: CheckModel, budget: Budget, linearizable: bool) -> Report {
    match model {
        CheckModel::Register => {
            check::check_linearizable(&Register { cas: false }, history, budget)
        }
        CheckModel::CasRegister => {
            check::check_linearizable(&Register { cas: true }, history, budget)
        }
        CheckModel::EtcdKv => {
            let register = check::check_linearizable(&Register { cas: true }, history, budget);
            let revisions = check::revisions::check_revisions(history);
            Report {
                checker: "etcd-kv".to_owned(),
                ops_checked: register.ops_checked,
                parts: register.parts + revisions.parts,
                verdict: Verdict::combine([register.verdict, revisions.verdict]),
            }
        }
        CheckModel::Set => check::set::check_set(history, linearizable),
        CheckModel::QuorumSet => {
            check::set::check_set_with(history, check::set::Reads::Acknowledged)
        }
        CheckModel::Bank => check::bank::check_bank(history),
        CheckModel::Watch => check::watch::check_watch(history),
        CheckModel::Lock => check::lock::check_lock(history),
    }
}

/// `Ok` for valid; otherwise the exit code of the verdict.
pub fn verdict_result(verdict: &Verdict) -> anyhow::Result<()> {
    match verdict {
        Verdict::Valid => Ok(()),
        Verdict::Invalid(_) => Err(VerdictExit {
            code: 1,
            message: "the history is invalid".to_owned(),
        }
        .into()),
        Verdict::Unknown(_) => Err(VerdictExit {
            code: 2,
            message: "the history could not be judged: unknown".to_owned(),
        }
        .into()),
    }
}

/// The report as text: counts by operation, verdict, anomalies.
pub fn report_text(report: &Report, counts: &Counts, events: usize) -> String {
    let mut out = format!(
        "{events} events, {} operations\n",
        counts
            .values()
            .map(|c| c.iter().sum::<usize>())
            .sum::<usize>()
    );
    out.push_str(&format!(
        "{:<12} {:>8} {:>8} {:>8}\n",
        "f", "ok", "fail", "info"
    ));
    for (f, [ok, fail, info]) in counts {
        out.push_str(&format!("{f:<12} {ok:>8} {fail:>8} {info:>8}\n"));
    }
    out.push_str(&format!(
        "checker {}: {} operations checked in {} part(s)\n",
        report.checker, report.ops_checked, report.parts
    ));
    match &report.verdict {
        Verdict::Valid => out.push_str("verdict: valid\n"),
        Verdict::Unknown(reason) => out.push_str(&format!("verdict: unknown: {reason}\n")),
        Verdict::Invalid(anomalies) => {
            out.push_str(&format!(
                "verdict: invalid ({} anomalies)\n",
                anomalies.len()
            ));
            for anomaly in anomalies.iter().take(ANOMALIES_PRINTED_MAX) {
                out.push_str(&format!("  {anomaly}\n"));
            }
            if anomalies.len() > ANOMALIES_PRINTED_MAX {
                out.push_str(&format!(
                    "  … {} more (every one is in -w json and in a run's report.html)\n",
                    anomalies.len() - ANOMALIES_PRINTED_MAX
                ));
            }
        }
    }
    out
}

/// The report as one JSON object.
pub fn report_json(report: &Report, counts: &Counts, events: usize) -> Value {
    let anomalies: Vec<Value> = match &report.verdict {
        Verdict::Invalid(anomalies) => anomalies
            .iter()
            .map(|a| {
                json!({
                    "kind": a.kind.as_str(),
                    "key": a.key,
                    "ops": a.ops,
                    "explanation": a.explanation,
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    let reason = match &report.verdict {
        Verdict::Unknown(reason) => Some(reason.clone()),
        _ => None,
    };
    let counts: serde_json::Map<String, Value> = counts
        .iter()
        .map(|(f, [ok, fail, info])| (f.clone(), json!({"ok": ok, "fail": fail, "info": info})))
        .collect();
    json!({
        "checker": report.checker,
        "verdict": report.verdict.name(),
        "reason": reason,
        "events": events,
        "ops_checked": report.ops_checked,
        "parts": report.parts,
        "counts": counts,
        "anomalies": anomalies,
    })
}
