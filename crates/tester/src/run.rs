//! `quorate check --workload W --nemesis N`: starts its own members on loopback, runs the
//! workload's clients for the given time while the nemesis follows its seeded plan, heals
//! everything, waits for the members to serve, performs the final reads, stops the members,
//! writes the history (`history.jsonl`) and the fault windows (`faults.jsonl`), judges the
//! history, prints a summary (operations by outcome, faults by kind, availability inside and
//! outside fault windows, latency, verdict) and writes it with timelines to `report.html`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use check::{Budget, EventType, History, Outcome};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;
use workload::nemesis::{self, FaultKind, FaultWindow};
use workload::{Client, Recorder, Shared, WorkloadKind};

use crate::error::CheckError;
use crate::members::{Launch, Members};
use crate::{CheckModel, judge, report_text, verdict_result};

/// Options of a check run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The `quorate` executable the members run.
    pub exe: PathBuf,
    /// The workload.
    pub workload: WorkloadKind,
    /// Fault kinds the nemesis draws from (none for no faults).
    pub nemesis: Vec<FaultKind>,
    /// How long the clients run.
    pub time: Duration,
    /// Members to start.
    pub members: usize,
    /// Concurrent clients (writers, for the watch workload).
    pub clients: u64,
    /// Watchers of the watch workload.
    pub watchers: u64,
    /// Seed of the clients' choices and the nemesis plan (printed; default: from the clock).
    pub seed: Option<u64>,
    /// Mean length of a fault window and of the quiet gap between two.
    pub interval: Duration,
    /// Register operations on one key before the clients move to the next key.
    pub ops_per_key: u64,
    /// Deadline of one client operation; past it the outcome is unknown.
    pub op_timeout: Duration,
    /// Directory for the history, the fault windows and the members' logs (default:
    /// quorate-check/<workload>-<seed>).
    pub out: Option<PathBuf>,
    /// Keep the members' data directories after a valid run too (others always keep them).
    pub keep_data: bool,
    /// Extra `quorate node` flags for every member (a planted bug, for canaries).
    pub member_args: Vec<String>,
    /// The members' log filter (`QUORATE_LOG` syntax).
    pub member_log: String,
}

/// How long members get to elect a leader and serve after a start or a heal.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Process numbers of watchers start here, apart from the clients'.
const WATCHER_PROCESS_BASE: u64 = 1000;
/// How long judging a run's history may take; past it the verdict is unknown.
const CHECK_TIME_LIMIT: Duration = Duration::from_secs(120);
/// How long the final reads may take after healing.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a check and returns the verdict as the exit status.
pub async fn run(args: RunOptions, json_out: bool) -> Result<(), CheckError> {
    if args.members == 0 || args.clients == 0 {
        return Err(CheckError::Options(
            "--members and --clients must be at least 1",
        ));
    }
    if args.nemesis.iter().any(|k| k.is_range()) && !args.workload.on_ranges() {
        return Err(CheckError::Options(
            "the split, merge, move-range and drain nemeses need a range workload (range-register, range-set)",
        ));
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64 % 1_000_000_000)
    });
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from("quorate-check").join(format!("{}-{seed}", args.workload.as_str()))
    });
    std::fs::create_dir_all(&out).map_err(CheckError::file("create", &out))?;
    let plan = nemesis::plan(&args.nemesis, seed, args.time, args.interval);
    let plan_text = nemesis::describe(&plan);
    let title = format!(
        "check {} with {} members, {} clients, {:?}",
        args.workload.as_str(),
        args.members,
        args.clients,
        args.time
    );
    eprintln!("{title}, seed {seed}; nemesis plan:\n{plan_text}");

    let data = out.join("data");
    if data.exists() {
        std::fs::remove_dir_all(&data).map_err(CheckError::file("wipe", &data))?;
    }
    if !args.member_args.is_empty() {
        eprintln!(
            "members run with {}: a planted bug, this run should be judged invalid",
            args.member_args.join(" ")
        );
    }
    let launch = Launch {
        exe: args.exe.clone(),
        extra_args: args.member_args.clone(),
        log_filter: args.member_log.clone(),
    };
    let members = Members::start(launch, args.members, &data)?;
    let endpoints = members.endpoints();
    let members = Arc::new(Mutex::new(members));
    let outcome = drive(&args, seed, plan, members.clone(), endpoints).await;
    members.lock().await.stop().await;
    let (events, windows, replicas) = outcome?;

    let history_path = save(&out, &events, &windows)?;

    let history = History::from_events(&events).map_err(|source| CheckError::Pair {
        what: "the recorded history".to_owned(),
        source,
    })?;
    let report = judge_run(&history, args.workload, replicas);
    // The members' files and logs stay for a run not judged valid: they are the evidence.
    if !args.keep_data && report.verdict.is_valid() {
        let _ = std::fs::remove_dir_all(&data);
    }
    let summary = Summary::of(&history, &windows);
    let report_path = out.join("report.html");
    let facts = crate::report::RunFacts {
        title,
        seed,
        plan: &plan_text,
        summary: &summary.text(&windows),
    };
    let page = crate::report::html(&facts, &report, &history.counts(), &history, &windows);
    write_file(&report_path, page)?;
    if json_out {
        let mut value = crate::report_json(&report, &history.counts(), events.len());
        value["seed"] = json!(seed);
        value["workload"] = json!(args.workload.as_str());
        value["faults"] = Value::Array(windows.iter().map(FaultWindow::to_json).collect());
        value["availability"] = summary.json();
        value["history"] = json!(history_path.display().to_string());
        value["report"] = json!(report_path.display().to_string());
        println!("{value}");
    } else {
        print!("{}", report_text(&report, &history.counts(), events.len()));
        print!("{}", summary.text(&windows));
        println!(
            "seed {seed}; history {}; report {}",
            history_path.display(),
            report_path.display()
        );
    }
    verdict_result(&report.verdict)
}

/// Judges a run's history (every read in real time; what a read must hold is the model's to
/// say), within `CHECK_TIME_LIMIT`, with the replica check's verdict of a range run.
fn judge_run(
    history: &History,
    workload: WorkloadKind,
    replicas: Option<check::Verdict>,
) -> check::Report {
    let mut report = judge(
        history,
        model_of(workload),
        Budget::default(),
        true,
        &mut crate::Deadline::after(CHECK_TIME_LIMIT),
    );
    if let Some(replicas) = replicas {
        report.verdict = check::Verdict::combine([report.verdict, replicas]);
    }
    report
}

/// The checker of a workload's histories.
fn model_of(workload: WorkloadKind) -> CheckModel {
    match workload {
        WorkloadKind::Register => CheckModel::EtcdKv,
        WorkloadKind::Set => CheckModel::Set,
        WorkloadKind::Bank => CheckModel::Bank,
        WorkloadKind::Watch => CheckModel::Watch,
        WorkloadKind::Lock => CheckModel::Lock,
        WorkloadKind::QuorumSet => CheckModel::QuorumSet,
        WorkloadKind::RangeRegister => CheckModel::FollowerRegister,
        WorkloadKind::RangeSet => CheckModel::Set,
    }
}

/// Writes the history (`history.jsonl`) and the fault windows (`faults.jsonl`) under `out`;
/// returns the history's path.
fn save(
    out: &Path,
    events: &[check::Event],
    windows: &[FaultWindow],
) -> Result<PathBuf, CheckError> {
    let history_path = out.join("history.jsonl");
    let mut text = String::new();
    for event in events {
        text.push_str(&check::codec::encode_event(event));
        text.push('\n');
    }
    write_file(&history_path, text)?;
    let faults: String = windows
        .iter()
        .map(|w| format!("{}\n", w.to_json()))
        .collect();
    write_file(&out.join("faults.jsonl"), faults)?;
    Ok(history_path)
}

/// Writes one of the run's files.
fn write_file(path: &Path, text: String) -> Result<(), CheckError> {
    std::fs::write(path, text).map_err(CheckError::file("write", path))
}

/// What a run leaves to judge: the events, the fault windows and, for a range workload, the
/// replica consistency check's verdict.
type Driven = (Vec<check::Event>, Vec<FaultWindow>, Option<check::Verdict>);

/// Waits for the members, runs the clients and the nemesis, heals (and, for a range workload,
/// restarts every member), reads finally and checks the replicas of a range workload.
async fn drive(
    args: &RunOptions,
    seed: u64,
    plan: Vec<nemesis::PlannedFault>,
    members: Arc<Mutex<Members>>,
    endpoints: Vec<String>,
) -> Result<Driven, CheckError> {
    members
        .lock()
        .await
        .wait_ready(READY_TIMEOUT, "start the members")
        .await?;
    let start = Instant::now();
    let recorder = Arc::new(Recorder::new(start));
    let shared = Arc::new(Shared::new(
        args.workload,
        endpoints,
        recorder.clone(),
        args.op_timeout,
        args.ops_per_key,
    ));
    prepare(args, &shared, seed).await?;
    let deadline = Instant::now() + args.time;
    let progress = progress_bar(args.time, recorder.clone());
    let clients: Vec<_> = (0..args.clients)
        .map(|p| {
            let client = Client::new(p, shared.clone(), seed.wrapping_add(p + 1));
            tokio::spawn(client.run(deadline))
        })
        .collect();
    // Watchers (watch workload) follow until told the last revision to reach.
    let (until_tx, until_rx) = tokio::sync::watch::channel(None);
    let watch_deadline = deadline + Duration::from_secs(120);
    let watchers: Vec<_> = if args.workload == WorkloadKind::Watch {
        (0..args.watchers)
            .map(|w| {
                let process = WATCHER_PROCESS_BASE + w;
                let watcher = Client::new(process, shared.clone(), seed.wrapping_add(process));
                tokio::spawn(watcher.watch(until_rx.clone(), watch_deadline))
            })
            .collect()
    } else {
        Vec::new()
    };
    let nemesis = tokio::spawn(crate::nemesis::execute(plan, members.clone(), start));
    for client in clients {
        client.await?;
    }
    let windows = nemesis.await??;
    progress.abort();
    eprintln!("\rhealing and reading finally…");
    {
        let mut guard = members.lock().await;
        guard.heal()?;
        guard.heal_network().await;
        guard
            .wait_ready(READY_TIMEOUT, "members after healing")
            .await?;
        if args.workload.on_ranges() {
            crate::replica_check::restart_all(&mut guard, READY_TIMEOUT).await?;
        }
    }
    let mut reader = Client::new(args.clients + 1, shared.clone(), seed);
    if !reader
        .final_reads(Instant::now() + FINAL_READ_TIMEOUT)
        .await
    {
        eprintln!("the final reads did not all succeed within {FINAL_READ_TIMEOUT:?}");
    }
    if !watchers.is_empty() {
        let last = recorder
            .events()
            .iter()
            .rev()
            .find(|e| e.f == "read" && e.event_type == EventType::Ok)
            .and_then(|e| e.revision);
        // Without a final revision the watchers stop at once; the checker says unknown.
        until_tx.send_replace(Some(last.unwrap_or(0)));
        let catch_up = Instant::now() + FINAL_READ_TIMEOUT;
        for watcher in watchers {
            let remaining = catch_up.saturating_duration_since(Instant::now());
            if tokio::time::timeout(remaining, watcher).await.is_err() {
                eprintln!("a watcher did not catch up within {FINAL_READ_TIMEOUT:?}");
            }
        }
    }
    let replicas = if args.workload.on_ranges() {
        Some(crate::replica_check::check_replicas(&shared.endpoints).await)
    } else {
        None
    };
    Ok((recorder.events(), windows, replicas))
}

/// What a workload needs before its clients start: its bucket, or the bank's accounts.
async fn prepare(args: &RunOptions, shared: &Arc<Shared>, seed: u64) -> Result<(), CheckError> {
    if args.workload == WorkloadKind::QuorumSet {
        let creator = Client::new(args.clients, shared.clone(), seed);
        workload::create_bucket(&creator, Instant::now() + READY_TIMEOUT)
            .await
            .map_err(|source| CheckError::Client {
                what: "create the workload's bucket",
                source,
            })?;
    }
    if args.workload.on_ranges() {
        let creator = Client::new(args.clients, shared.clone(), seed);
        workload::ranges::create_bucket(&creator, Instant::now() + READY_TIMEOUT)
            .await
            .map_err(|source| CheckError::Client {
                what: "create the workload's consensus bucket",
                source,
            })?;
    }
    if args.workload == WorkloadKind::Bank {
        let mut opener = Client::new(args.clients, shared.clone(), seed);
        if opener.bank_init().await != EventType::Ok {
            return Err(CheckError::BankNotOpened);
        }
    }
    Ok(())
}

/// A one-line progress display on a terminal: elapsed time and operations so far.
fn progress_bar(time: Duration, recorder: Arc<Recorder>) -> tokio::task::JoinHandle<()> {
    use std::io::IsTerminal;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::with_draw_target(
            Some(time.as_millis() as u64),
            indicatif::ProgressDrawTarget::stderr(),
        )
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("check [{bar:30}] {elapsed}/{duration} {msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    let start = Instant::now();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            bar.set_position(start.elapsed().as_millis() as u64);
            bar.set_message(format!("{} events", recorder.events_len()));
        }
    })
}

/// Availability and latency, inside and outside fault windows. An operation counts as
/// answered when the database gave a definite reply: ok, or a compare that failed.
struct Summary {
    /// [answered, not answered] of operations invoked inside a fault window, and outside.
    during: [usize; 2],
    outside: [usize; 2],
    /// Latencies of ok operations, in nanoseconds, sorted.
    latencies: Vec<u64>,
}

impl Summary {
    fn of(history: &History, windows: &[FaultWindow]) -> Summary {
        let mut during = [0; 2];
        let mut outside = [0; 2];
        let mut latencies = Vec::new();
        for op in &history.ops {
            let answered = op.outcome == Outcome::Ok
                || (op.outcome == Outcome::Fail
                    && op.error.as_deref() == Some(check::model::COMPARE_FAILED));
            let slot = if answered { 0 } else { 1 };
            let inside = windows
                .iter()
                .any(|w| op.call >= w.start && op.call <= w.end);
            if inside {
                during[slot] += 1;
            } else {
                outside[slot] += 1;
            }
            // A watcher's response is recorded at its arrival: it has no latency of its own.
            if let (Outcome::Ok, Some(ret)) = (op.outcome, op.ret)
                && op.f != "watch-events"
            {
                latencies.push(ret - op.call);
            }
        }
        latencies.sort_unstable();
        Summary {
            during,
            outside,
            latencies,
        }
    }

    fn percentile_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let at = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[at] as f64 / 1e6
    }

    fn ratio(counts: [usize; 2]) -> Option<f64> {
        let total: usize = counts.iter().sum();
        (total > 0).then(|| counts[0] as f64 / total as f64)
    }

    fn json(&self) -> Value {
        json!({
            "answered_during_faults": Summary::ratio(self.during),
            "answered_outside_faults": Summary::ratio(self.outside),
            "latency_p50_ms": self.percentile_ms(0.5),
            "latency_p99_ms": self.percentile_ms(0.99),
        })
    }

    fn text(&self, windows: &[FaultWindow]) -> String {
        let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
        for window in windows {
            *by_kind.entry(window.kind.as_str()).or_default() += 1;
        }
        let faults = if by_kind.is_empty() {
            "none".to_owned()
        } else {
            by_kind
                .iter()
                .map(|(kind, n)| format!("{kind} ×{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let pct = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{:.1}%", r * 100.0));
        format!(
            "faults: {faults}\nanswered operations: {} during faults, {} outside\nlatency of \
             ok operations: p50 {:.2} ms, p99 {:.2} ms\n",
            pct(Summary::ratio(self.during)),
            pct(Summary::ratio(self.outside)),
            self.percentile_ms(0.5),
            self.percentile_ms(0.99),
        )
    }
}
