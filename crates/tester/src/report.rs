//! The HTML report of a check run (`report.html` beside the history): the verdict with every
//! anomaly, the operation counts, the nemesis plan's windows, and two SVG timelines over the
//! run — operations completed per interval by outcome and the latency of ok operations (p50,
//! p99) — with fault windows shaded and anomalous operations marked. Self-contained: no
//! script, no external file.

use std::fmt::Write as _;

use check::history::Counts;
use check::{History, Outcome, Report, Verdict};

use workload::nemesis::FaultWindow;

/// Intervals the timelines divide the run into.
const BUCKETS: usize = 120;
const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 200.0;
const MARGIN_LEFT: f64 = 56.0;
const MARGIN_BOTTOM: f64 = 24.0;

/// What the report says about the run besides the history.
pub struct RunFacts<'a> {
    pub title: String,
    pub seed: u64,
    pub plan: &'a str,
    pub summary: &'a str,
}

/// Renders the report.
pub fn html(
    facts: &RunFacts,
    report: &Report,
    counts: &Counts,
    history: &History,
    windows: &[FaultWindow],
) -> String {
    let end = history
        .ops
        .iter()
        .map(|op| op.ret.unwrap_or(op.call))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>\
         body{{font-family:sans-serif;margin:24px;max-width:1000px}}\
         table{{border-collapse:collapse}}td,th{{padding:2px 10px;text-align:right}}\
         th{{border-bottom:1px solid #888}}pre{{background:#f4f4f4;padding:8px;white-space:pre-wrap}}\
         .valid{{color:#17803d}}.invalid{{color:#b42318}}.unknown{{color:#b54708}}\
         </style></head><body>",
        escape(&facts.title)
    );
    let _ = write!(
        out,
        "<h1>{}</h1><p>seed {}</p><h2 class=\"{}\">verdict: {}</h2>",
        escape(&facts.title),
        facts.seed,
        report.verdict.name(),
        report.verdict.name()
    );
    match &report.verdict {
        Verdict::Valid => {}
        Verdict::Unknown(reason) => {
            let _ = write!(out, "<pre>{}</pre>", escape(reason));
        }
        Verdict::Invalid(anomalies) => {
            let _ = write!(out, "<h3>{} anomalies</h3>", anomalies.len());
            for anomaly in anomalies {
                let _ = write!(out, "<pre>{}</pre>", escape(&anomaly.to_string()));
            }
        }
    }
    let _ = write!(
        out,
        "<p>checker {}: {} operations checked in {} part(s)</p>",
        escape(&report.checker),
        report.ops_checked,
        report.parts
    );
    out.push_str("<table><tr><th>f</th><th>ok</th><th>fail</th><th>info</th></tr>");
    for (f, [ok, fail, info]) in counts {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{ok}</td><td>{fail}</td><td>{info}</td></tr>",
            escape(f)
        );
    }
    out.push_str("</table>");
    let _ = write!(out, "<pre>{}</pre>", escape(facts.summary));
    let anomalous: Vec<u64> = match &report.verdict {
        Verdict::Invalid(anomalies) => anomalies
            .iter()
            .flat_map(|a| a.ops.iter())
            .filter_map(|&id| history.ops.get(id))
            .map(|op| op.ret.unwrap_or(op.call))
            .collect(),
        _ => Vec::new(),
    };
    out.push_str("<h2>Operations completed per interval</h2>");
    out.push_str(&throughput_svg(history, windows, &anomalous, end));
    out.push_str("<h2>Latency of ok operations</h2>");
    out.push_str(&latency_svg(history, windows, end));
    out.push_str(
        "<h2>Faults</h2><table><tr><th>kind</th><th>members</th><th>from s</th><th>to s</th></tr>",
    );
    for window in windows {
        let _ = write!(
            out,
            "<tr><td>{}</td><td style=\"text-align:left\">{}</td><td>{:.2}</td><td>{:.2}</td></tr>",
            window.kind.as_str(),
            escape(&window.members.join(", ")),
            window.start as f64 / 1e9,
            window.end as f64 / 1e9
        );
    }
    out.push_str("</table>");
    let _ = write!(
        out,
        "<h2>Nemesis plan</h2><pre>{}</pre>",
        escape(facts.plan)
    );
    out.push_str("</body></html>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn bucket_of(time: u64, end: u64) -> usize {
    ((time as f64 / end as f64) * BUCKETS as f64).min(BUCKETS as f64 - 1.0) as usize
}

fn x_of(time: u64, end: u64) -> f64 {
    MARGIN_LEFT + (time as f64 / end as f64) * (WIDTH - MARGIN_LEFT - 8.0)
}

/// The frame of a timeline: fault windows shaded, the time axis, the y label.
fn frame(windows: &[FaultWindow], end: u64, y_label: &str, y_max: f64) -> String {
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{}\" \
         font-size=\"11\">",
        HEIGHT + MARGIN_BOTTOM
    );
    for window in windows {
        let (x0, x1) = (x_of(window.start, end), x_of(window.end, end));
        let _ = write!(
            svg,
            "<rect x=\"{x0:.1}\" y=\"0\" width=\"{:.1}\" height=\"{HEIGHT}\" fill=\"#fde68a\" \
             opacity=\"0.6\"><title>{}</title></rect>",
            (x1 - x0).max(1.0),
            window.kind.as_str()
        );
    }
    let _ = write!(
        svg,
        "<line x1=\"{MARGIN_LEFT}\" y1=\"{HEIGHT}\" x2=\"{WIDTH}\" y2=\"{HEIGHT}\" stroke=\"#444\"/>\
         <line x1=\"{MARGIN_LEFT}\" y1=\"0\" x2=\"{MARGIN_LEFT}\" y2=\"{HEIGHT}\" stroke=\"#444\"/>\
         <text x=\"4\" y=\"12\">{}</text><text x=\"4\" y=\"{:.0}\">{y_max:.0}</text>",
        escape(y_label),
        26.0
    );
    let seconds = end as f64 / 1e9;
    let step = (seconds / 10.0).ceil().max(1.0);
    let mut t = 0.0;
    while t <= seconds {
        let x = x_of((t * 1e9) as u64, end);
        let _ = write!(
            svg,
            "<text x=\"{x:.1}\" y=\"{:.0}\" text-anchor=\"middle\">{t:.0}s</text>",
            HEIGHT + 16.0
        );
        t += step;
    }
    svg
}

fn y_of(value: f64, y_max: f64) -> f64 {
    HEIGHT - (value / y_max.max(1e-9)) * (HEIGHT - 30.0)
}

fn throughput_svg(
    history: &History,
    windows: &[FaultWindow],
    anomalous: &[u64],
    end: u64,
) -> String {
    let mut buckets = vec![[0usize; 3]; BUCKETS];
    for op in &history.ops {
        let slot = match op.outcome {
            Outcome::Ok => 0,
            Outcome::Fail => 1,
            Outcome::Info => 2,
        };
        buckets[bucket_of(op.ret.unwrap_or(op.call), end)][slot] += 1;
    }
    let y_max = buckets
        .iter()
        .map(|b| b.iter().sum::<usize>())
        .max()
        .unwrap_or(1) as f64;
    let mut svg = frame(windows, end, "ops per interval", y_max);
    let width = (WIDTH - MARGIN_LEFT - 8.0) / BUCKETS as f64;
    for (i, counts) in buckets.iter().enumerate() {
        let x = MARGIN_LEFT + i as f64 * width;
        let mut base = 0.0;
        for (slot, color) in [(0, "#16a34a"), (1, "#f97316"), (2, "#dc2626")] {
            let count = counts[slot] as f64;
            if count == 0.0 {
                continue;
            }
            let (top, bottom) = (y_of(base + count, y_max), y_of(base, y_max));
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>",
                (width - 1.0).max(0.5),
                bottom - top
            );
            base += count;
        }
    }
    for &time in anomalous {
        let x = x_of(time, end);
        let _ = write!(
            svg,
            "<line x1=\"{x:.1}\" y1=\"0\" x2=\"{x:.1}\" y2=\"{HEIGHT}\" stroke=\"#7c3aed\" \
             stroke-width=\"1.5\"><title>anomaly</title></line>"
        );
    }
    svg.push_str(
        "<text x=\"700\" y=\"12\" fill=\"#16a34a\">ok</text><text x=\"730\" y=\"12\" \
         fill=\"#f97316\">fail</text><text x=\"765\" y=\"12\" fill=\"#dc2626\">info</text>\
         <text x=\"800\" y=\"12\" fill=\"#7c3aed\">anomaly</text><text x=\"860\" y=\"12\" \
         fill=\"#b45309\">fault</text></svg>",
    );
    svg
}

fn latency_svg(history: &History, windows: &[FaultWindow], end: u64) -> String {
    let mut buckets: Vec<Vec<u64>> = vec![Vec::new(); BUCKETS];
    for op in &history.ops {
        if let (Outcome::Ok, Some(ret)) = (op.outcome, op.ret) {
            buckets[bucket_of(ret, end)].push(ret - op.call);
        }
    }
    let quantile = |values: &mut Vec<u64>, q: f64| -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let at = ((values.len() - 1) as f64 * q).round() as usize;
        Some(values[at] as f64 / 1e6)
    };
    let mut p50 = Vec::with_capacity(BUCKETS);
    let mut p99 = Vec::with_capacity(BUCKETS);
    for values in &mut buckets {
        p50.push(quantile(values, 0.5));
        p99.push(quantile(values, 0.99));
    }
    let y_max = p99.iter().flatten().fold(1.0f64, |m, v| m.max(*v));
    let mut svg = frame(windows, end, "ms", y_max);
    let width = (WIDTH - MARGIN_LEFT - 8.0) / BUCKETS as f64;
    for (series, color) in [(&p50, "#2563eb"), (&p99, "#dc2626")] {
        let points: Vec<String> = series
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.map(|v| {
                    format!(
                        "{:.1},{:.1}",
                        MARGIN_LEFT + (i as f64 + 0.5) * width,
                        y_of(v, y_max)
                    )
                })
            })
            .collect();
        let _ = write!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\"/>",
            points.join(" ")
        );
    }
    svg.push_str(
        "<text x=\"760\" y=\"12\" fill=\"#2563eb\">p50</text><text x=\"800\" y=\"12\" \
         fill=\"#dc2626\">p99</text><text x=\"860\" y=\"12\" fill=\"#b45309\">fault</text></svg>",
    );
    svg
}

#[cfg(test)]
mod tests {
    use check::{Event, EventType};
    use serde_json::{Value, json};

    use super::*;
    use workload::nemesis::FaultKind;

    #[test]
    fn the_report_shows_the_verdict_anomalies_faults_and_both_timelines_escaped() {
        let mut events = Vec::new();
        for p in 0..3u64 {
            let t = p * 1_000_000_000;
            events.push(Event::new(
                p,
                EventType::Invoke,
                "write",
                Some("k"),
                json!(p),
                t,
            ));
            events.push(Event::new(
                p,
                EventType::Ok,
                "write",
                Some("k"),
                Value::Null,
                t + 5_000_000,
            ));
        }
        events.push(Event::new(
            9,
            EventType::Invoke,
            "read",
            Some("k"),
            Value::Null,
            3_000_000_000,
        ));
        events.push(Event::new(
            9,
            EventType::Ok,
            "read",
            Some("k"),
            json!(7),
            3_100_000_000,
        ));
        let history = History::from_events(&events).expect("pairs");
        let report = check::check_linearizable(
            &check::Register { cas: false },
            &history,
            check::Budget::default(),
        );
        let windows = vec![FaultWindow {
            kind: FaultKind::PartitionOne,
            members: vec!["n1 -/-> n2 n3".to_owned()],
            start: 1_000_000_000,
            end: 2_000_000_000,
        }];
        let facts = RunFacts {
            title: "check register <seed>".to_owned(),
            seed: 4,
            plan: "  at 1.0s for 1.0s: partition-one",
            summary: "faults: partition-one ×1",
        };
        let page = html(&facts, &report, &history.counts(), &history, &windows);
        assert!(page.contains("verdict: invalid"), "{page}");
        assert!(page.contains("not-linearizable on key k"));
        assert!(page.contains("check register &lt;seed&gt;"));
        assert!(page.contains("n1 -/-&gt; n2 n3"));
        assert!(!page.contains("<seed>"));
        assert_eq!(page.matches("<svg").count(), 2);
        assert!(page.contains("fill=\"#fde68a\""), "fault window shaded");
        assert!(
            page.contains("<title>anomaly</title>"),
            "anomalous operation marked"
        );
        assert!(page.contains("<polyline"), "latency lines");
    }
}
