//! The bench, `quorate bench`: a load generator over the etcd v3 API (so one run works unchanged
//! against etcd and Quorate) and over quorum buckets (`quorate.v1`), the floor of this machine, and the report that compares runs. Each run
//! prints one JSON summary line on stdout (HDR-histogram percentiles, ops/s, errors) and can
//! write its per-second throughput as CSV; a progress bar goes to stderr when it is a
//! terminal. It never starts or stops members: `scripts/bench-vs-etcd.sh` does.

mod error;
mod floor;
mod report;
mod stats;
#[cfg(test)]
mod tests;
mod workload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest, watch_request};
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tonic::transport::Channel;

pub use error::BenchError;
pub use floor::{FloorOptions, floor};
pub use report::{ReportOptions, report};
use stats::Recorder;
pub use workload::QuorumLevel;
use workload::{Kind, Worker};

/// The load a run generates.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// Puts of random keys.
    Put,
    /// Gets of random keys (filled first), linearizable or serializable.
    Get { serializable: bool },
    /// Gets and puts of random keys (filled first), `read_ratio` of them reads.
    Mixed { read_ratio: f64, serializable: bool },
    /// Compare-and-put transactions on random keys (filled first): put if the key's
    /// modification revision is the one this client last saw, else read it.
    Txn,
    /// Events per second delivered to `watchers` watchers of a prefix while the clients put
    /// keys under it; latency is from the put's start to each delivery.
    Watch { watchers: usize },
    /// Lease churn: each operation grants a lease, puts a key under it and revokes it.
    Lease,
    /// Puts to a quorum bucket (`bench-lww`, n=3, created if missing) at a write level.
    QuorumPut(QuorumLevel),
    /// Gets from the quorum bucket (filled first at w=all) at a read level.
    QuorumGet(QuorumLevel),
    /// Puts to the consensus bench bucket (`bench-ranges`), split into `ranges` first; with
    /// `routed`, each sent to its range's leader by a client-side range cache.
    RangePut { ranges: u64, routed: bool },
    /// Gets from the consensus bench bucket (split into `ranges` and filled first),
    /// linearizable or follower reads, routed or not.
    RangeGet {
        ranges: u64,
        follower: bool,
        routed: bool,
    },
}

/// Options every load takes.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Concurrent clients (each one request at a time).
    pub clients: usize,
    /// gRPC connections the clients share, spread over the endpoints in turn.
    pub conns: usize,
    /// How long to measure.
    pub duration: Duration,
    /// Load before measuring, not recorded (zero for none).
    pub warmup: Duration,
    /// Value size in bytes.
    pub value_size: usize,
    /// Distinct keys used.
    pub key_space: u64,
    /// Write completions per second of the measured window to this CSV file.
    pub csv: Option<PathBuf>,
    /// A label copied into the JSON summary (e.g. the system measured).
    pub label: String,
    /// A round number copied into the JSON summary (for alternating comparisons).
    pub round: u32,
    /// Never draw the progress bar.
    pub no_progress: bool,
}

/// Runs one load against `endpoints` and prints its JSON summary line.
pub async fn run(endpoints: &[String], load: Load, args: LoadOptions) -> Result<(), BenchError> {
    let (name, kind) = match load {
        Load::Watch { watchers } => return watch(endpoints, args, watchers).await,
        Load::Put => ("put", Kind::Put),
        Load::Txn => ("txn", Kind::Txn),
        Load::Lease => ("lease", Kind::Lease),
        Load::QuorumPut(level) => (quorum_name("quorum-put", level), Kind::QuorumPut(level)),
        Load::QuorumGet(level) => (quorum_name("quorum-get", level), Kind::QuorumGet(level)),
        Load::RangePut { routed, .. } => (
            if routed {
                "range-put-routed"
            } else {
                "range-put"
            },
            Kind::RangePut,
        ),
        Load::RangeGet {
            follower, routed, ..
        } => (
            match (follower, routed) {
                (false, false) => "range-get-l",
                (false, true) => "range-get-l-routed",
                (true, false) => "range-get-follower",
                (true, true) => "range-get-follower-routed",
            },
            Kind::RangeGet { follower },
        ),
        Load::Get { serializable } => (get_name(serializable), Kind::Get { serializable }),
        Load::Mixed {
            read_ratio,
            serializable,
        } => {
            if !(0.0..=1.0).contains(&read_ratio) {
                return Err(BenchError::Options(format!(
                    "--read-ratio must be between 0 and 1, not {read_ratio}"
                )));
            }
            (
                "mixed",
                Kind::Mixed {
                    read_ratio,
                    serializable,
                },
            )
        }
    };
    let channels = client::channels::pool(endpoints, args.conns).await?;
    if kind.is_quorum() {
        prepare_quorum(&channels, &args, matches!(kind, Kind::QuorumGet(_))).await?;
    }
    if let Load::RangePut { ranges, .. } | Load::RangeGet { ranges, .. } = load {
        let deadline = Instant::now() + QUORUM_BUCKET_WAIT + RANGE_SPLIT_WAIT * ranges as u32;
        let made = workload::range_bucket(&channels, ranges, args.key_space.max(1), deadline)
            .await
            .map_err(|source| BenchError::Client {
                what: "split the range bench bucket",
                source,
            })?;
        eprintln!("{} has {made} ranges", workload::RANGE_BUCKET);
        if matches!(load, Load::RangeGet { .. }) {
            fill_bucket(&channels, &args, workload::RANGE_BUCKET).await?;
        }
    }
    let router = match load {
        Load::RangePut { routed: true, .. } | Load::RangeGet { routed: true, .. } => {
            let direct = client::channels::pool(endpoints, endpoints.len()).await?;
            let router = client::ranges::RangeRouter::new(endpoints, direct)
                .await
                .map_err(|source| BenchError::Client {
                    what: "learn the members for routing",
                    source,
                })?;
            Some(std::sync::Arc::new(router))
        }
        _ => None,
    };
    let seen = if kind.needs_fill() {
        fill(&channels, &args).await?
    } else {
        HashMap::new()
    };
    let window = Window::new(&args);
    let progress = Progress::start(&args, name);
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..args.clients.max(1) {
        let mut worker = Worker::new(
            channels[client % channels.len()].clone(),
            client as u64 + 1,
            args.key_space,
            args.value_size,
            if kind == Kind::Txn {
                seen.clone()
            } else {
                HashMap::new()
            },
        );
        if let Some(router) = &router {
            worker = worker.with_router(router.clone());
        }
        let done = progress.done.clone();
        tasks.spawn(async move {
            let mut recorder = Recorder::new();
            let mut conflicts = 0u64;
            while Instant::now() < window.end {
                let began = Instant::now();
                let result = worker.run(kind).await;
                let finished = Instant::now();
                done.fetch_add(1, Ordering::Relaxed);
                if began < window.measure_from || finished > window.end {
                    continue;
                }
                match result {
                    Ok(outcome) => {
                        conflicts += u64::from(outcome.conflict);
                        recorder.record(finished - began, finished - window.measure_from);
                    }
                    Err(status) => recorder.record_error(|| describe(&status)),
                }
            }
            (recorder, conflicts)
        });
    }
    let mut total = Recorder::new();
    let mut conflicts = 0;
    while let Some(joined) = tasks.join_next().await {
        let (recorder, part) = joined?;
        total.merge(&recorder);
        conflicts += part;
    }
    progress.finish(&total, args.duration);
    let mut summary = summary_json(name, endpoints, &args, &total);
    if kind == Kind::Txn {
        summary["txn_conflicts"] = json!(conflicts);
    }
    if let Kind::Mixed { read_ratio, .. } = kind {
        summary["read_ratio"] = json!(read_ratio);
    }
    write_csv(&args, &total)?;
    println!("{summary}");
    Ok(())
}

fn quorum_name(workload: &str, level: QuorumLevel) -> &'static str {
    match (workload, level) {
        ("quorum-put", QuorumLevel::One) => "quorum-put-one",
        ("quorum-put", QuorumLevel::Quorum) => "quorum-put-quorum",
        ("quorum-put", QuorumLevel::All) => "quorum-put-all",
        (_, QuorumLevel::One) => "quorum-get-one",
        (_, QuorumLevel::Quorum) => "quorum-get-quorum",
        (_, QuorumLevel::All) => "quorum-get-all",
    }
}

/// Creates the quorum bench bucket (waiting for the cluster to accept it), and for gets writes
/// the key space once, one filler per connection.
async fn prepare_quorum(
    channels: &[Channel],
    args: &LoadOptions,
    fill: bool,
) -> Result<(), BenchError> {
    let deadline = Instant::now() + QUORUM_BUCKET_WAIT;
    workload::quorum_bucket(channels, deadline)
        .await
        .map_err(|source| BenchError::Client {
            what: "create the bench bucket",
            source,
        })?;
    if !fill {
        return Ok(());
    }
    fill_bucket(channels, args, workload::QUORUM_BUCKET).await
}

/// Writes the key space of `bucket` once through the quorum API, eight fillers per connection.
async fn fill_bucket(
    channels: &[Channel],
    args: &LoadOptions,
    bucket: &'static str,
) -> Result<(), BenchError> {
    let key_space = args.key_space.max(1);
    let fillers = (channels.len() * 8) as u64;
    let share = key_space.div_ceil(fillers);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..fillers {
        let first = i * share;
        let end = (first + share).min(key_space);
        let channel = channels[i as usize % channels.len()].clone();
        tasks.spawn(workload::bucket_fill(
            channel,
            bucket,
            first,
            end,
            args.value_size,
        ));
    }
    while let Some(filled) = tasks.join_next().await {
        filled?.map_err(BenchError::rpc("fill the bucket"))?;
    }
    Ok(())
}

fn get_name(serializable: bool) -> &'static str {
    if serializable { "get-s" } else { "get-l" }
}

/// How long the range bench may take per split it makes before measuring.
const RANGE_SPLIT_WAIT: Duration = Duration::from_secs(2);

/// How long a quorum run waits for the cluster to take its bucket.
const QUORUM_BUCKET_WAIT: Duration = Duration::from_secs(30);

fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// When a run starts measuring and when it stops.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

impl Window {
    fn new(args: &LoadOptions) -> Window {
        let start = Instant::now();
        let measure_from = start + args.warmup;
        Window {
            start,
            measure_from,
            end: measure_from + args.duration,
        }
    }
}

/// Fills the key space before a read workload, one filler per connection; returns each
/// key's modification revision.
async fn fill(channels: &[Channel], args: &LoadOptions) -> Result<HashMap<u64, i64>, BenchError> {
    let mut revisions = HashMap::new();
    let key_space = args.key_space.max(1);
    let share = key_space.div_ceil(channels.len() as u64);
    let mut fillers = tokio::task::JoinSet::new();
    for (i, channel) in channels.iter().enumerate() {
        let first = i as u64 * share;
        let end = (first + share).min(key_space);
        fillers.spawn(workload::fill(channel.clone(), first, end, args.value_size));
    }
    while let Some(filled) = fillers.join_next().await {
        revisions.extend(filled?.map_err(BenchError::rpc("fill the key space"))?);
    }
    Ok(revisions)
}

/// The progress bar (drawn only on a terminal) and the count of operations it shows.
struct Progress {
    done: Arc<AtomicU64>,
    bar: indicatif::ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(args: &LoadOptions, name: &str) -> Progress {
        let total = args.warmup + args.duration;
        let bar = if args.no_progress {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::with_draw_target(
                Some(total.as_millis() as u64),
                indicatif::ProgressDrawTarget::stderr(),
            )
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {elapsed}/{duration} {msg}",
            )
            .expect("the template is valid")
            .progress_chars("=> "),
        );
        bar.set_prefix(format!("bench {name}"));
        let done = Arc::new(AtomicU64::new(0));
        let ticker = {
            let bar = bar.clone();
            let done = done.clone();
            let start = Instant::now();
            let warmup = args.warmup;
            tokio::spawn(async move {
                let mut last = (Instant::now(), 0u64);
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let now = Instant::now();
                    let count = done.load(Ordering::Relaxed);
                    let rate = (count - last.1) as f64 / (now - last.0).as_secs_f64();
                    last = (now, count);
                    let phase = if now - start < warmup {
                        "warm-up"
                    } else {
                        "measuring"
                    };
                    bar.set_position((now - start).as_millis() as u64);
                    bar.set_message(format!("{phase} {rate:.0} ops/s"));
                }
            })
        };
        Progress { done, bar, ticker }
    }

    fn finish(self, total: &Recorder, window: Duration) {
        self.ticker.abort();
        let summary = total.summary(window);
        self.bar.finish_with_message(format!(
            "{:.0} ops/s, p99 {:.2} ms, {} errors",
            summary.ops_per_sec,
            ms(summary.p99),
            summary.errors
        ));
    }
}

fn ms(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// The JSON summary line of a run.
fn summary_json(name: &str, endpoints: &[String], args: &LoadOptions, total: &Recorder) -> Value {
    let summary = total.summary(args.duration);
    let mut line = json!({
        "workload": name, "label": args.label, "round": args.round,
        "endpoints": endpoints.len().max(1), "clients": args.clients.max(1), "conns": args.conns.max(1),
        "duration_s": args.duration.as_secs_f64(), "warmup_s": args.warmup.as_secs_f64(),
        "value_size": args.value_size, "key_space": args.key_space,
        "ops": summary.ops, "errors": summary.errors,
        "ops_per_sec": (summary.ops_per_sec * 10.0).round() / 10.0,
        "mean_ms": ms(summary.mean), "p50_ms": ms(summary.p50), "p90_ms": ms(summary.p90),
        "p99_ms": ms(summary.p99), "p999_ms": ms(summary.p999), "max_ms": ms(summary.max),
    });
    if let Some(error) = total.first_error() {
        line["first_error"] = json!(error);
    }
    line
}

fn write_csv(args: &LoadOptions, total: &Recorder) -> Result<(), BenchError> {
    let Some(path) = &args.csv else {
        return Ok(());
    };
    let seconds = args.duration.as_secs_f64().ceil() as usize;
    let mut text = String::from("second,ops\n");
    for (second, count) in total.per_second(seconds).iter().enumerate() {
        text.push_str(&format!("{second},{count}\n"));
    }
    std::fs::write(path, text).map_err(BenchError::file("write", path))
}

/// Prefix the watch workload writes under and watches.
const WATCH_PREFIX: &str = "bench/watch/";

/// Longest a watcher waits, after the writers stop, for the events of their last puts.
const WATCH_DRAIN: Duration = Duration::from_secs(5);

/// `quorate bench watch`: W watchers of one prefix, the clients putting keys under it. Each
/// value starts with the microseconds since the run started at which its put began, so a
/// watcher measures delivery latency; `events` counts deliveries of puts begun in the window
/// and `events_expected` is the acknowledged such puts times the watchers (equal unless an
/// event was lost; a put that failed but was applied anyway can make `events` larger).
async fn watch(endpoints: &[String], run: LoadOptions, watchers: usize) -> Result<(), BenchError> {
    let channels = client::channels::pool(endpoints, run.conns).await?;
    let mut streams = Vec::new();
    for i in 0..watchers.max(1) {
        streams.push(open_watch(channels[i % channels.len()].clone()).await?);
    }
    let window = Window::new(&run);
    let (last_tx, last_rx) = tokio::sync::watch::channel(None::<i64>);
    let mut listening = tokio::task::JoinSet::new();
    for events in streams {
        listening.spawn(watcher(events, last_rx.clone(), window));
    }
    let progress = Progress::start(&run, "watch");
    let mut writers = tokio::task::JoinSet::new();
    for client in 0..run.clients.max(1) {
        let mut kv = KvClient::new(channels[client % channels.len()].clone());
        let done = progress.done.clone();
        let value_size = run.value_size;
        let key_space = run.key_space.max(1);
        writers.spawn(async move {
            let mut recorder = Recorder::new();
            let mut last_revision = 0;
            let mut n = client as u64;
            while Instant::now() < window.end {
                let began = Instant::now();
                let key = format!("{WATCH_PREFIX}{:08}", n % key_space).into_bytes();
                n = n.wrapping_add(7919);
                let request = PutRequest {
                    key,
                    value: stamped_value(began - window.start, value_size),
                    ..Default::default()
                };
                let result = kv.put(request).await;
                let finished = Instant::now();
                done.fetch_add(1, Ordering::Relaxed);
                match result {
                    Ok(response) => {
                        let revision = response.into_inner().header.map_or(0, |h| h.revision);
                        last_revision = last_revision.max(revision);
                        if began >= window.measure_from {
                            recorder.record(finished - began, began - window.measure_from);
                        }
                    }
                    Err(status) => recorder.record_error(|| describe(&status)),
                }
            }
            (recorder, last_revision)
        });
    }
    let mut puts = Recorder::new();
    let mut last_revision = 0;
    while let Some(joined) = writers.join_next().await {
        let (recorder, revision) = joined?;
        puts.merge(&recorder);
        last_revision = last_revision.max(revision);
    }
    let _ = last_tx.send(Some(last_revision));
    let mut delivered = Recorder::new();
    while let Some(joined) = listening.join_next().await {
        delivered.merge(&joined?);
    }
    progress.finish(&delivered, run.duration);
    let mut summary = summary_json("watch", endpoints, &run, &delivered);
    let put_summary = puts.summary(run.duration);
    summary["watchers"] = json!(watchers.max(1));
    summary["puts"] = json!(put_summary.ops);
    summary["put_errors"] = json!(put_summary.errors);
    summary["put_p99_ms"] = json!(ms(put_summary.p99));
    summary["events"] = json!(delivered.ops());
    summary["events_expected"] = json!(put_summary.ops * watchers.max(1) as u64);
    if let (None, Some(error)) = (delivered.first_error(), puts.first_error()) {
        summary["first_error"] = json!(error);
    }
    write_csv(&run, &delivered)?;
    println!("{summary}");
    Ok(())
}

/// One watcher: records the delivery latency of every event whose put began in the window,
/// until it has seen the writers' last revision or the drain deadline passes.
async fn watcher(
    mut events: tonic::Streaming<proto::etcdserverpb::WatchResponse>,
    mut last_rx: tokio::sync::watch::Receiver<Option<i64>>,
    window: Window,
) -> Recorder {
    let mut recorder = Recorder::new();
    let measure_from = window.measure_from - window.start;
    let measure_end = window.end - window.start;
    let drain_deadline = tokio::time::Instant::from_std(window.end + WATCH_DRAIN);
    let mut seen_revision = 0;
    let mut writers_done = false;
    loop {
        if let Some(last) = *last_rx.borrow()
            && seen_revision >= last
        {
            break;
        }
        tokio::select! {
            next = events.next() => match next {
                None => {
                    recorder.record_error(|| "the watch stream ended".to_string());
                    break;
                }
                Some(Err(status)) => {
                    recorder.record_error(|| describe(&status));
                    break;
                }
                Some(Ok(response)) => {
                    let delivered = window.start.elapsed();
                    if let Some(header) = &response.header {
                        seen_revision = seen_revision.max(header.revision);
                    }
                    for event in &response.events {
                        let Some(kv) = &event.kv else { continue };
                        seen_revision = seen_revision.max(kv.mod_revision);
                        let Some(began) = stamp(&kv.value) else { continue };
                        if began >= measure_from && began < measure_end {
                            recorder.record(delivered.saturating_sub(began), began - measure_from);
                        }
                    }
                }
            },
            changed = last_rx.changed(), if !writers_done => {
                writers_done = changed.is_err();
            }
            _ = tokio::time::sleep_until(drain_deadline) => {
                recorder.record_error(|| format!(
                    "watcher saw revision {seen_revision} but not the writers' last within {WATCH_DRAIN:?}"
                ));
                break;
            }
        }
    }
    recorder
}

/// Opens a watch of the bench's watch prefix and waits until it is created.
async fn open_watch(
    channel: Channel,
) -> Result<tonic::Streaming<proto::etcdserverpb::WatchResponse>, BenchError> {
    let create = WatchCreateRequest {
        key: WATCH_PREFIX.as_bytes().to_vec(),
        range_end: base::keys::prefix_end(WATCH_PREFIX.as_bytes()),
        ..Default::default()
    };
    let request = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
    };
    let requests = tokio_stream::iter([request]).chain(tokio_stream::pending());
    let mut events = WatchClient::new(channel)
        .watch(requests)
        .await
        .map_err(BenchError::rpc("open a watch"))?
        .into_inner();
    match events.next().await {
        Some(Ok(response)) if response.created => Ok(events),
        Some(Ok(_)) => Err(BenchError::Watch(
            "the first response did not confirm its creation",
        )),
        Some(Err(status)) => Err(BenchError::rpc("open a watch")(status)),
        None => Err(BenchError::Watch("the stream ended before it was created")),
    }
}

/// The start time stamped at the front of a watch workload value.
fn stamp(value: &[u8]) -> Option<Duration> {
    let bytes: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(Duration::from_micros(u64::from_be_bytes(bytes)))
}

/// A watch workload value of `size` bytes (at least 8) stamped with `began`.
fn stamped_value(began: Duration, size: usize) -> Vec<u8> {
    let mut value = (began.as_micros() as u64).to_be_bytes().to_vec();
    value.resize(size.max(8), b'v');
    value
}
