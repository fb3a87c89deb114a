//! Unit tests of the bench's statistics (histogram merge, percentiles, per-second counts)
//! and of the comparison report (medians, grouping, ratios, the plot).

use std::time::Duration;

use super::report::{self, Sample};
use super::stats::Recorder;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Records 1..=n milliseconds, one per 10 ms of the window.
fn check_uniform(n: u64) -> Recorder {
    let mut recorder = Recorder::new();
    for i in 1..=n {
        recorder.record(ms(i), ms(i * 10));
    }
    recorder
}

/// Asserts `actual` is within the histogram's 0.1 % relative precision of `expected`.
fn assert_close(actual: Duration, expected: Duration) {
    let error = actual.as_secs_f64() - expected.as_secs_f64();
    assert!(
        error.abs() <= expected.as_secs_f64() * 0.002 + 1e-6,
        "{actual:?} is not within 0.2 % of {expected:?}"
    );
}

#[test]
fn percentiles_of_a_uniform_run() {
    // Goal: percentiles come out where a sorted list puts them. Method: 1..=1000 ms.
    let recorder = check_uniform(1000);
    let summary = recorder.summary(Duration::from_secs(10));
    assert_eq!(summary.ops, 1000);
    assert_close(summary.p50, ms(500));
    assert_close(summary.p90, ms(900));
    assert_close(summary.p99, ms(990));
    assert_close(summary.p999, ms(999));
    assert_close(summary.max, ms(1000));
    assert_close(summary.mean, Duration::from_micros(500_500));
    assert!(
        (summary.ops_per_sec - 100.0).abs() < 1e-9,
        "{}",
        summary.ops_per_sec
    );
}

#[test]
fn merge_equals_recording_everything_in_one() {
    // Goal: merging per-client histograms loses nothing. Method: split odd and even samples
    // over two recorders, merge, and compare with one recorder that saw all.
    let mut odd = Recorder::new();
    let mut even = Recorder::new();
    let all = check_uniform(1000);
    for i in 1..=1000u64 {
        let target = if i % 2 == 1 { &mut odd } else { &mut even };
        target.record(ms(i), ms(i * 10));
    }
    odd.merge(&even);
    let window = Duration::from_secs(10);
    assert_eq!(odd.summary(window), all.summary(window));
    assert_eq!(odd.per_second(10), all.per_second(10));
}

#[test]
fn merge_keeps_errors_and_the_first_message() {
    let mut a = Recorder::new();
    let mut b = Recorder::new();
    b.record_error(|| "Unavailable: no leader".into());
    b.record_error(|| "never kept".into());
    a.merge(&b);
    assert_eq!(a.summary(Duration::from_secs(1)).errors, 2);
    assert_eq!(a.first_error(), Some("Unavailable: no leader"));
    assert_eq!(a.ops(), 0);
}

#[test]
fn per_second_counts_completions_and_pads_the_window() {
    let mut recorder = Recorder::new();
    recorder.record(ms(1), ms(10));
    recorder.record(ms(1), ms(999));
    recorder.record(ms(1), ms(2500));
    assert_eq!(recorder.per_second(4), vec![2, 0, 1, 0]);
    assert_eq!(recorder.per_second(2), vec![2, 0]);
}

#[test]
fn empty_and_extreme_latencies() {
    // Goal: an empty run reports zeros, and latencies outside the histogram's range are
    // clamped, not refused (a stuck request must not abort the bench).
    let empty = Recorder::new().summary(Duration::from_secs(1));
    assert_eq!(
        (empty.ops, empty.p99, empty.max),
        (0, Duration::ZERO, Duration::ZERO)
    );
    let mut recorder = Recorder::new();
    recorder.record(Duration::from_nanos(10), Duration::ZERO);
    recorder.record(Duration::from_secs(3600), Duration::ZERO);
    assert_eq!(recorder.ops(), 2);
    assert_eq!(recorder.quantile(0.0), Duration::from_micros(1));
    assert_close(recorder.quantile(1.0), super::stats::LATENCY_MAX);
}

fn sample(workload: &str, label: &str, clients: u64, ops: f64, p99: f64) -> Sample {
    Sample {
        workload: workload.into(),
        label: label.into(),
        clients,
        ops_per_sec: ops,
        p99_ms: p99,
        errors: 0,
    }
}

#[test]
fn median_of_odd_and_even_counts() {
    assert_eq!(report::median(&mut [3.0, 1.0, 2.0]), Some(2.0));
    assert_eq!(report::median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    assert_eq!(report::median(&mut []), None);
}

#[test]
fn parse_reads_summary_lines_and_names_a_bad_one() {
    let text = r#"{"workload":"put","label":"etcd","clients":16,"ops_per_sec":1000.5,"p99_ms":9.5,"errors":0,"extra":1}

{"workload":"put","label":"quorate","clients":16,"ops_per_sec":2000,"p99_ms":8,"errors":2}"#;
    let samples = report::parse(text, "runs.jsonl").expect("valid lines");
    assert_eq!(samples.len(), 2);
    assert_eq!(samples[0], sample("put", "etcd", 16, 1000.5, 9.5));
    assert_eq!(samples[1].errors, 2);
    let error = report::parse("{\"workload\":\"put\"}", "bad.jsonl").unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("bad.jsonl:1: no text field \"label\""),
        "{error}"
    );
    let error = report::parse("a\nnot json", "bad.jsonl").unwrap_err();
    assert!(
        error.to_string().starts_with("bad.jsonl:1: not JSON"),
        "{error}"
    );
}

#[test]
fn compare_takes_medians_per_system_and_orders_rows() {
    // Goal: rows are per workload (first-seen order) and clients (ascending), with the
    // median of each system's rounds; ratios are candidate over baseline.
    let samples = vec![
        sample("put", "etcd", 16, 100.0, 10.0),
        sample("put", "quorate", 16, 300.0, 5.0),
        sample("put", "etcd", 16, 120.0, 12.0),
        sample("put", "quorate", 16, 200.0, 6.0),
        sample("put", "etcd", 16, 110.0, 11.0),
        sample("put", "quorate", 16, 250.0, 7.0),
        sample("put", "etcd", 1, 50.0, 2.0),
        sample("get-l", "quorate", 1, 900.0, 1.0),
    ];
    let rows = report::compare(&samples, "etcd", "quorate");
    let keys: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| (r.workload.as_str(), r.clients))
        .collect();
    assert_eq!(keys, vec![("put", 1), ("put", 16), ("get-l", 1)]);
    let put16 = &rows[1];
    let etcd = put16.baseline.expect("etcd ran");
    let ours = put16.candidate.expect("quorate ran");
    assert_eq!(
        (etcd.ops_per_sec, etcd.p99_ms, etcd.rounds),
        (110.0, 11.0, 3)
    );
    assert_eq!((ours.ops_per_sec, ours.p99_ms), (250.0, 6.0));
    assert!(rows[0].candidate.is_none());
    let table = report::table(&rows, "etcd", "quorate");
    assert!(
        table.contains("| put | 16 | 110 | 250 | 2.27 | 11.00 | 6.00 | 0.55 | 3 | 0 |"),
        "{table}"
    );
    assert!(table.contains("| put | 1 | 50 | – | – |"), "{table}");
}

#[test]
fn svg_draws_one_line_per_system_and_panel() {
    let samples = vec![
        sample("put", "etcd", 1, 100.0, 10.0),
        sample("put", "quorate", 1, 300.0, 5.0),
        sample("put", "etcd", 16, 1000.0, 20.0),
        sample("put", "quorate", 16, 3000.0, 15.0),
        sample("get-l", "etcd", 1, 500.0, 1.0),
    ];
    let rows = report::compare(&samples, "etcd", "quorate");
    let svg = report::svg(&rows, "etcd", "quorate");
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    // put: 2 panels × 2 systems; get-l: 2 panels × etcd only.
    assert_eq!(svg.matches("<polyline").count(), 6, "{svg}");
    assert!(svg.contains("put: ops/s") && svg.contains("get-l: p99 ms"));
    assert_eq!(svg.matches("<circle").count(), 10);
}
