//! The tester, `quorate check`: runs a workload (`workload`) against members it starts, under
//! a seeded nemesis, and judges the history (`run`); `analyze` rechecks any saved history
//! (JSON lines, DESIGN §5) with the checkers of the `check` crate and prints the operation
//! counts, the verdict and every anomaly. The outcome is the process's exit code
//! (`CheckError::exit_code`): 0 valid, 1 invalid, 2 unknown (a budget ran out or the history
//! lacks what the checker needs), 3 not checked (unreadable or malformed history, or a run
//! that could not be carried out), so only a valid verdict passes a script. All judging is in
//! the `check` crate; the command line that fills the options below is the binary's.

use std::path::PathBuf;

use check::history::Counts;
use check::{Budget, History, Register, Report, Verdict};
use serde_json::{Value, json};

mod error;
mod join_leave;
mod members;
mod nemesis;
mod range_faults;
mod replica_check;
mod report;
mod run;

pub use error::{CheckError, EXIT_INVALID, EXIT_NOT_CHECKED, EXIT_UNKNOWN};
pub use run::{RunOptions, run};

/// The checkers a history can be judged by.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
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
    /// Follower reads: each returns a state at most its staleness bound old.
    Staleness,
    /// Register for reads and writes, and staleness for follower reads.
    FollowerRegister,
}

impl CheckModel {
    /// Every model, in the order help lists them.
    pub const ALL: &'static [CheckModel] = &[
        CheckModel::Register,
        CheckModel::CasRegister,
        CheckModel::EtcdKv,
        CheckModel::Set,
        CheckModel::Bank,
        CheckModel::Watch,
        CheckModel::Lock,
        CheckModel::QuorumSet,
        CheckModel::Staleness,
        CheckModel::FollowerRegister,
    ];

    /// The model's name, as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckModel::Register => "register",
            CheckModel::CasRegister => "cas-register",
            CheckModel::EtcdKv => "etcd-kv",
            CheckModel::Set => "set",
            CheckModel::Bank => "bank",
            CheckModel::Watch => "watch",
            CheckModel::Lock => "lock",
            CheckModel::QuorumSet => "quorum-set",
            CheckModel::Staleness => "staleness",
            CheckModel::FollowerRegister => "follower-register",
        }
    }

    /// What the model checks, in one line.
    pub fn help(self) -> &'static str {
        match self {
            CheckModel::Register => "linearizable read/write register per key",
            CheckModel::CasRegister => "linearizable read/write/compare-and-set register per key",
            CheckModel::EtcdKv => {
                "cas-register plus etcd's revisions: they follow real time, and writes never share one"
            }
            CheckModel::Set => "unique adds and whole-set reads: nothing lost, invented or twice",
            CheckModel::Bank => "transfers: every read conserves the total, no negative balance",
            CheckModel::Watch => "watchers against the puts: no gap, no duplicate, in order",
            CheckModel::Lock => "fenced writes of lock holders: mutual exclusion, tokens in order",
            CheckModel::QuorumSet => {
                "set for quorum reads: every read holds every add acknowledged before it began"
            }
            CheckModel::Staleness => {
                "follower reads: each returns a state at most its staleness bound old"
            }
            CheckModel::FollowerRegister => {
                "register for reads and writes, staleness for follower reads"
            }
        }
    }
}

/// What `analyze` judges and how.
#[derive(Clone, Debug)]
pub struct AnalyzeOptions {
    /// The history file (JSON lines).
    pub file: PathBuf,
    /// The checker to judge it by.
    pub model: CheckModel,
    /// Set model: require only the final read to be complete (for eventually consistent
    /// reads); otherwise every read must hold what was acknowledged before it began.
    pub final_read_only: bool,
    /// The linearizability search's bounds per key.
    pub budget: Budget,
    /// The whole check's wall-clock bound: past it the verdict is unknown and names the keys
    /// left unjudged.
    pub time_limit: std::time::Duration,
}

/// The wall-clock bound of a check (the `check` crate reads no clock itself), with progress
/// on standard error once a check runs long enough for a person to wonder.
pub struct Deadline {
    start: std::time::Instant,
    at: std::time::Instant,
    shown: Option<std::time::Instant>,
}

/// A check that has run this long shows its progress.
const PROGRESS_AFTER: std::time::Duration = std::time::Duration::from_secs(2);

impl Deadline {
    pub fn after(limit: std::time::Duration) -> Deadline {
        let start = std::time::Instant::now();
        Deadline {
            start,
            at: start + limit,
            shown: None,
        }
    }
}

impl check::Monitor for Deadline {
    fn should_stop(&mut self) -> bool {
        std::time::Instant::now() >= self.at
    }

    fn progress(&mut self, done: usize, total: usize) {
        let now = std::time::Instant::now();
        let due = self
            .shown
            .map_or(now - self.start >= PROGRESS_AFTER, |shown| {
                now - shown >= std::time::Duration::from_secs(1)
            });
        if due || (done == total && self.shown.is_some()) {
            self.shown = Some(now);
            eprintln!(
                "checking: {done} of {total} keys judged ({:.1} s)",
                (now - self.start).as_secs_f64()
            );
        }
    }
}

/// Anomalies the text report prints; the rest are counted.
const ANOMALIES_PRINTED_MAX: usize = 20;

/// Rechecks a saved history and prints the report (JSON when `json_out`).
pub fn analyze(options: &AnalyzeOptions, json_out: bool) -> Result<(), CheckError> {
    let path = &options.file;
    let text = std::fs::read_to_string(path).map_err(CheckError::file("read history", path))?;
    let events = check::codec::decode_history(&text).map_err(|source| CheckError::Decode {
        path: path.clone(),
        source,
    })?;
    let history = History::from_events(&events).map_err(|source| CheckError::Pair {
        what: path.display().to_string(),
        source,
    })?;
    let report = judge(
        &history,
        options.model,
        options.budget,
        !options.final_read_only,
        &mut Deadline::after(options.time_limit),
    );
    if json_out {
        println!("{}", report_json(&report, &history.counts(), events.len()));
    } else {
        print!("{}", report_text(&report, &history.counts(), events.len()));
    }
    verdict_result(&report.verdict)
}

/// Judges a history by one checker; `monitor` bounds the linearizability search in time.
pub fn judge(
    history: &History,
    model: CheckModel,
    budget: Budget,
    linearizable: bool,
    monitor: &mut dyn check::Monitor,
) -> Report {
    let linear = |cas: bool, monitor: &mut dyn check::Monitor| {
        check::check_linearizable_monitored(&Register { cas }, history, budget, monitor)
    };
    match model {
        CheckModel::Register => linear(false, monitor),
        CheckModel::CasRegister => linear(true, monitor),
        CheckModel::EtcdKv => {
            let register = linear(true, monitor);
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
        CheckModel::Staleness => check::staleness::check_staleness(history),
        CheckModel::FollowerRegister => {
            let register = linear(false, monitor);
            let staleness = check::staleness::check_staleness(history);
            Report {
                checker: "follower-register".to_owned(),
                ops_checked: register.ops_checked + staleness.ops_checked,
                parts: register.parts + staleness.parts,
                verdict: Verdict::combine([register.verdict, staleness.verdict]),
            }
        }
    }
}

/// `Ok` for valid; otherwise the error that carries the verdict's exit code.
pub fn verdict_result(verdict: &Verdict) -> Result<(), CheckError> {
    match verdict {
        Verdict::Valid => Ok(()),
        Verdict::Invalid(_) => Err(CheckError::Invalid),
        Verdict::Unknown(_) => Err(CheckError::Unknown),
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
