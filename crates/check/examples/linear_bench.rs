//! Times the linearizability checker, as an example so the library stays free of clocks and
//! files. With no argument it judges generated histories of a real cas-register (every size
//! and share of indeterminate operations below) and prints a markdown table; with `judge FILE
//! MODEL` (`register`, `cas-register`, `etcd-kv` or `follower-register`) it judges a saved
//! history the way `quorate check analyze` does, under an optional deadline in seconds, and
//! prints the verdict and the time.
//!
//!     cargo run --release -p check --example linear_bench
//!     cargo run --release -p check --example linear_bench -- judge history.jsonl etcd-kv 60

use std::time::{Duration, Instant};

use check::{Budget, Event, EventType, History, Monitor, Register, Report, Verdict};
use serde_json::{Value, json};

/// Operation counts of the generated histories.
const SIZES: &[usize] = &[1_000, 10_000, 50_000];
/// Shares of operations cut off (indeterminate), in percent.
const SHARES: &[u64] = &[0, 5, 30];
/// How far an operation's window reaches either side of its point, in hundredths of the
/// distance between points: 150 makes about three operations overlap, 500 about ten.
const SPREADS: &[u64] = &[150, 500];
/// Operations per key: one key's concurrency and length are what the search pays for.
const OPS_PER_KEY: usize = 1_000;
/// Sizes of the history a whole-cluster kill leaves on one key (issue #37).
const KILLED_WRITES: [u64; 4] = [20, 1_000, 10_000, 50_000];
/// Distinct register values (as in the register workload).
const VALUES: u64 = 5;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("judge") if args.len() >= 3 => {
            let deadline = args.get(3).map(|s| s.parse().expect("deadline in seconds"));
            judge_file(&args[1], &args[2], deadline);
        }
        Some("cell") if args.len() == 4 => {
            let number = |at: usize| args[at].parse().expect("a number");
            header();
            row(number(1) as usize, number(2), number(3));
        }
        None => {
            header();
            for &size in SIZES {
                for &spread in SPREADS {
                    for &share in SHARES {
                        row(size, share, spread);
                    }
                }
            }
            println!();
            println!("| cut-off writes on one key, then a read of nothing | verdict | time |");
            println!("|---:|---|---:|");
            for writes in KILLED_WRITES {
                killed(writes);
            }
        }
        Some("killed") if args.len() == 2 => killed(args[1].parse().expect("a number")),
        _ => panic!(
            "usage: linear_bench [judge FILE MODEL [DEADLINE_SECONDS] | cell SIZE SHARE SPREAD]"
        ),
    }
}

/// A deadline on the wall clock, with progress on standard error.
struct Deadline {
    at: Option<Instant>,
    started: Instant,
}

impl Monitor for Deadline {
    fn should_stop(&mut self) -> bool {
        self.at.is_some_and(|at| Instant::now() >= at)
    }
    fn progress(&mut self, done: usize, total: usize) {
        if done.is_multiple_of(50) || done == total {
            eprintln!("{done}/{total} keys, {:?}", self.started.elapsed());
        }
    }
}

fn judge_file(path: &str, model: &str, deadline_secs: Option<u64>) {
    let text = std::fs::read_to_string(path).expect("read history");
    let events = check::codec::decode_history(&text).expect("decode history");
    let history = History::from_events(&events).expect("pair history");
    let started = Instant::now();
    let mut monitor = Deadline {
        at: deadline_secs.map(|s| started + Duration::from_secs(s)),
        started,
    };
    let budget = Budget::default();
    let linear = |cas: bool, monitor: &mut Deadline| {
        check::check_linearizable_monitored(&Register { cas }, &history, budget, monitor)
    };
    let report: Report = match model {
        "register" => linear(false, &mut monitor),
        "cas-register" => linear(true, &mut monitor),
        "etcd-kv" => {
            let register = linear(true, &mut monitor);
            let revisions = check::revisions::check_revisions(&history);
            Report {
                verdict: Verdict::combine([register.verdict, revisions.verdict]),
                ..register
            }
        }
        "follower-register" => {
            let register = linear(false, &mut monitor);
            let staleness = check::staleness::check_staleness(&history);
            Report {
                verdict: Verdict::combine([register.verdict, staleness.verdict]),
                ..register
            }
        }
        other => panic!("unknown model {other}"),
    };
    let elapsed = started.elapsed();
    println!(
        "{path}: {} operations checked on {} keys; verdict {} in {:.2?}",
        report.ops_checked,
        report.parts,
        report.verdict.name(),
        elapsed
    );
    match &report.verdict {
        Verdict::Valid => {}
        Verdict::Invalid(anomalies) => {
            for anomaly in anomalies.iter().take(5) {
                println!("  {anomaly}");
            }
            println!("  ({} anomalies)", anomalies.len());
        }
        Verdict::Unknown(reason) => println!("  {reason}"),
    }
}

fn header() {
    println!(
        "| operations | keys | overlap | indeterminate | valid history | one read corrupted |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
}

/// Judges one generated history, and a copy whose last read of key `k0` returns a value no
/// operation wrote, and prints their row of the table.
fn row(size: usize, share: u64, spread: u64) {
    let seed = 0x5eed ^ (size as u64) << 16 ^ share << 8 ^ spread;
    let mut events = generate(size, share, spread, seed);
    let timed = |events: &[Event]| {
        let history = History::from_events(events).expect("one process per operation");
        let started = Instant::now();
        let report =
            check::check_linearizable(&Register { cas: true }, &history, Budget::default());
        (report, started.elapsed().as_secs_f64())
    };
    let (valid, valid_time) = timed(&events);
    let last_read = events
        .iter()
        .rposition(|e| {
            e.f == "read" && e.event_type == EventType::Ok && e.key.as_deref() == Some("k0")
        })
        .expect("a read of k0");
    events[last_read].value = json!(99);
    let (corrupted, corrupted_time) = timed(&events);
    if let Verdict::Unknown(r) = &corrupted.verdict {
        eprintln!("{r}");
    }
    println!(
        "| {size} | {} | ~{} | {share}% | {} in {valid_time:.3} s | {} in {corrupted_time:.3} s |",
        valid.parts,
        2 * spread / 100,
        valid.verdict.name(),
        corrupted.verdict.name(),
    );
}

/// Judges `writes` writes on one key, each from its own process and cut off, then one read
/// that finds the key absent, and prints its row.
fn killed(writes: u64) {
    let mut events = Vec::new();
    for p in 1..=writes {
        events.push(Event::new(
            p,
            EventType::Invoke,
            "write",
            Some("x"),
            json!(p),
            p,
        ));
    }
    let (t, read) = (writes + 1, "read");
    events.push(Event::new(
        0,
        EventType::Invoke,
        read,
        Some("x"),
        Value::Null,
        t,
    ));
    events.push(Event::new(
        0,
        EventType::Ok,
        read,
        Some("x"),
        Value::Null,
        t + 1,
    ));
    let history = History::from_events(&events).expect("one process per write");
    let started = Instant::now();
    let report = check::check_linearizable(&Register { cas: true }, &history, Budget::default());
    println!(
        "| {writes} | {} | {:.3} s |",
        report.verdict.name(),
        started.elapsed().as_secs_f64()
    );
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The events of `size` operations on a real register per key: each takes effect at its own
/// point, its window stretched up to `spread` hundredths of a point either side, each
/// from its own process. `share` percent are writes or compare-and-sets cut off: they take
/// effect or not, by a coin, and never complete. Half the rest read, a third write, the
/// others compare-and-set (swapping when they expected the value held).
fn generate(size: usize, share: u64, spread: u64, seed: u64) -> Vec<Event> {
    let mut rng = Rng(seed);
    let mut timed: Vec<(u64, Event)> = Vec::new();
    let keys = size.div_ceil(OPS_PER_KEY);
    let mut values: Vec<Value> = vec![Value::Null; keys];
    for i in 0..size {
        let key_index = i % keys;
        let key = format!("k{key_index}");
        let point = 100 * (i as u64 / keys as u64 + 1);
        let call = point - rng.below(spread).min(point - 1);
        let ret = point + rng.below(spread);
        let value = &mut values[key_index];
        let cut_off = rng.below(100) < share;
        let (f, input, kind, output, error) = match (cut_off, rng.below(6)) {
            (false, 0..3) => ("read", Value::Null, EventType::Ok, value.clone(), None),
            (true, 0..3) | (_, 3 | 4) => {
                let new = json!(rng.below(VALUES));
                if !cut_off || rng.below(2) == 0 {
                    *value = new.clone();
                }
                ("write", new, EventType::Ok, Value::Null, None)
            }
            _ => {
                let expected = if rng.below(2) == 0 {
                    value.clone()
                } else {
                    json!(rng.below(VALUES))
                };
                let new = json!(rng.below(VALUES));
                let swaps = expected == *value;
                if swaps && (!cut_off || rng.below(2) == 0) {
                    *value = new.clone();
                }
                let (kind, error) = if swaps {
                    (EventType::Ok, None)
                } else {
                    (
                        EventType::Fail,
                        Some(check::model::COMPARE_FAILED.to_owned()),
                    )
                };
                ("cas", json!([expected, new]), kind, Value::Null, error)
            }
        };
        let process = i as u64;
        timed.push((
            call,
            Event::new(process, EventType::Invoke, f, Some(&key), input, call),
        ));
        if !cut_off {
            let mut done = Event::new(process, kind, f, Some(&key), output, ret);
            done.error = error;
            timed.push((ret, done));
        }
    }
    timed.sort_by_key(|(t, e)| (*t, e.event_type != EventType::Invoke));
    timed.into_iter().map(|(_, e)| e).collect()
}
