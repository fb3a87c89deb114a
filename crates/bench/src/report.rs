//! `quorate bench report`: reads the JSON summary lines of bench runs (several rounds of two
//! systems, told apart by their label), and prints a table of medians with the candidate/
//! baseline ratios, and optionally an SVG plot of throughput and p99 by clients. Pure text in,
//! text out; the plot is a few SVG elements written here rather than a plotting library's
//! font and raster stack.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

use crate::error::BenchError;

/// What `report` reads and compares.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// Files of JSON summary lines (as `quorate bench …` prints them).
    pub files: Vec<PathBuf>,
    /// Label of the system compared against.
    pub baseline: String,
    /// Label of the system measured.
    pub candidate: String,
    /// Write a plot of throughput and p99 by clients here.
    pub svg: Option<PathBuf>,
}

/// One run's summary, the fields the report uses.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub workload: String,
    pub label: String,
    pub clients: u64,
    pub ops_per_sec: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

/// One table row: the medians of both systems for one workload and client count.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub workload: String,
    pub clients: u64,
    pub baseline: Option<Medians>,
    pub candidate: Option<Medians>,
}

/// Medians over the rounds of one system.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Medians {
    pub ops_per_sec: f64,
    pub p99_ms: f64,
    pub rounds: usize,
    pub errors: u64,
}

/// Parses JSON summary lines; blank lines are skipped, anything else that is not a summary
/// is an error naming the line.
pub fn parse(text: &str, source: &str) -> Result<Vec<Sample>, BenchError> {
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = |problem: String| BenchError::Summary {
            at: format!("{source}:{}", number + 1),
            problem,
        };
        let value: Value =
            serde_json::from_str(line).map_err(|error| at(format!("not JSON: {error}")))?;
        let text_field = |name: &str| {
            value[name]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| at(format!("no text field {name:?}")))
        };
        let number_field = |name: &str| {
            value[name]
                .as_f64()
                .ok_or_else(|| at(format!("no number field {name:?}")))
        };
        samples.push(Sample {
            workload: text_field("workload")?,
            label: text_field("label")?,
            clients: number_field("clients")? as u64,
            ops_per_sec: number_field("ops_per_sec")?,
            p99_ms: number_field("p99_ms")?,
            errors: number_field("errors")? as u64,
        });
    }
    Ok(samples)
}

/// The median of `values` (the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    })
}

fn medians(samples: &[&Sample]) -> Option<Medians> {
    let mut ops: Vec<f64> = samples.iter().map(|s| s.ops_per_sec).collect();
    let mut p99: Vec<f64> = samples.iter().map(|s| s.p99_ms).collect();
    Some(Medians {
        ops_per_sec: median(&mut ops)?,
        p99_ms: median(&mut p99)?,
        rounds: samples.len(),
        errors: samples.iter().map(|s| s.errors).sum(),
    })
}

/// Groups samples by workload (in order of first appearance) and clients (ascending).
pub fn compare(samples: &[Sample], baseline: &str, candidate: &str) -> Vec<Row> {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: BTreeMap<(usize, u64), Vec<&Sample>> = BTreeMap::new();
    for sample in samples {
        let position = match order.iter().position(|w| *w == sample.workload) {
            Some(position) => position,
            None => {
                order.push(&sample.workload);
                order.len() - 1
            }
        };
        groups
            .entry((position, sample.clients))
            .or_default()
            .push(sample);
    }
    groups
        .into_iter()
        .map(|((position, clients), group)| {
            let of = |label: &str| {
                let chosen: Vec<&Sample> =
                    group.iter().copied().filter(|s| s.label == label).collect();
                medians(&chosen)
            };
            Row {
                workload: order[position].to_string(),
                clients,
                baseline: of(baseline),
                candidate: of(candidate),
            }
        })
        .collect()
}

fn ratio(candidate: Option<f64>, baseline: Option<f64>) -> String {
    match (candidate, baseline) {
        (Some(c), Some(b)) if b > 0.0 => format!("{:.2}", c / b),
        _ => "–".to_string(),
    }
}

fn cell(value: Option<f64>, digits: usize) -> String {
    value.map_or("–".to_string(), |v| format!("{v:.digits$}"))
}

/// The comparison as a Markdown table.
pub fn table(rows: &[Row], baseline: &str, candidate: &str) -> String {
    let mut out = format!(
        "| workload | clients | {baseline} ops/s | {candidate} ops/s | ops ratio | {baseline} p99 ms | {candidate} p99 ms | p99 ratio | rounds | errors |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for row in rows {
        let b = row.baseline;
        let c = row.candidate;
        let rounds = b.map_or(0, |m| m.rounds).min(c.map_or(0, |m| m.rounds));
        let errors = b.map_or(0, |m| m.errors) + c.map_or(0, |m| m.errors);
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.workload,
            row.clients,
            cell(b.map(|m| m.ops_per_sec), 0),
            cell(c.map(|m| m.ops_per_sec), 0),
            ratio(c.map(|m| m.ops_per_sec), b.map(|m| m.ops_per_sec)),
            cell(b.map(|m| m.p99_ms), 2),
            cell(c.map(|m| m.p99_ms), 2),
            ratio(c.map(|m| m.p99_ms), b.map(|m| m.p99_ms)),
            rounds,
            errors,
        )
        .expect("writing to a String cannot fail");
    }
    out
}

const PANEL_WIDTH: f64 = 380.0;
const PANEL_HEIGHT: f64 = 220.0;
const MARGIN_LEFT: f64 = 70.0;
const MARGIN_TOP: f64 = 30.0;
const PLOT_WIDTH: f64 = 280.0;
const PLOT_HEIGHT: f64 = 150.0;
const BASELINE_COLOUR: &str = "#4e79a7";
const CANDIDATE_COLOUR: &str = "#e15759";

/// The comparison as an SVG: one row of two panels (ops/s and p99 by clients) per workload,
/// one line per system; clients are evenly spaced categories.
pub fn svg(rows: &[Row], baseline: &str, candidate: &str) -> String {
    let mut workloads: Vec<&str> = Vec::new();
    for row in rows {
        if !workloads.contains(&row.workload.as_str()) {
            workloads.push(&row.workload);
        }
    }
    let width = 2.0 * PANEL_WIDTH;
    let height = PANEL_HEIGHT * workloads.len() as f64 + 40.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"13\"><tspan fill=\"{BASELINE_COLOUR}\">■ {}</tspan> \
         <tspan fill=\"{CANDIDATE_COLOUR}\">■ {}</tspan> (medians over rounds)</text>\n",
        escape(baseline),
        escape(candidate)
    );
    for (index, workload) in workloads.iter().enumerate() {
        let chosen: Vec<&Row> = rows.iter().filter(|r| r.workload == *workload).collect();
        let top = 40.0 + index as f64 * PANEL_HEIGHT;
        panel(
            &mut out,
            0.0,
            top,
            &format!("{workload}: ops/s"),
            &chosen,
            |m| m.ops_per_sec,
        );
        panel(
            &mut out,
            PANEL_WIDTH,
            top,
            &format!("{workload}: p99 ms"),
            &chosen,
            |m| m.p99_ms,
        );
    }
    out.push_str("</svg>\n");
    out
}

fn panel(
    out: &mut String,
    left: f64,
    top: f64,
    title: &str,
    rows: &[&Row],
    value: fn(&Medians) -> f64,
) {
    let x0 = left + MARGIN_LEFT;
    let y0 = top + MARGIN_TOP;
    let max = rows
        .iter()
        .flat_map(|r| [r.baseline, r.candidate])
        .flatten()
        .map(|m| value(&m))
        .fold(0.0_f64, f64::max);
    let y_max = if max > 0.0 { max * 1.1 } else { 1.0 };
    let x_of = |i: usize| {
        if rows.len() <= 1 {
            x0 + PLOT_WIDTH / 2.0
        } else {
            x0 + PLOT_WIDTH * i as f64 / (rows.len() - 1) as f64
        }
    };
    let y_of = |v: f64| y0 + PLOT_HEIGHT * (1.0 - v / y_max);
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" font-size=\"12\">{}</text>\n\
         <rect x=\"{x0}\" y=\"{y0}\" width=\"{PLOT_WIDTH}\" height=\"{PLOT_HEIGHT}\" fill=\"none\" stroke=\"#999\"/>",
        x0,
        top + 20.0,
        escape(title)
    );
    for tick in 0..=4 {
        let v = y_max * tick as f64 / 4.0;
        let y = y_of(v);
        let _ = writeln!(
            out,
            "<line x1=\"{x0}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            x0 + PLOT_WIDTH,
            x0 - 6.0,
            y + 4.0,
            short_number(v)
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x_of(i),
            y0 + PLOT_HEIGHT + 16.0,
            row.clients
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">clients</text>",
        x0 + PLOT_WIDTH / 2.0,
        y0 + PLOT_HEIGHT + 32.0
    );
    for (pick, colour) in [(0, BASELINE_COLOUR), (1, CANDIDATE_COLOUR)] {
        let points: Vec<String> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, row)| {
                let m = if pick == 0 {
                    row.baseline
                } else {
                    row.candidate
                }?;
                Some(format!("{:.1},{:.1}", x_of(i), y_of(value(&m))))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
            points.join(" ")
        );
        for point in &points {
            let (x, y) = point.split_once(',').expect("formatted with a comma");
            let _ = writeln!(
                out,
                "<circle cx=\"{x}\" cy=\"{y}\" r=\"3\" fill=\"{colour}\"/>"
            );
        }
    }
}

fn short_number(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `quorate bench report`.
pub fn report(args: ReportOptions) -> Result<(), BenchError> {
    let mut samples = Vec::new();
    for file in &args.files {
        let text = std::fs::read_to_string(file).map_err(BenchError::file("read", file))?;
        samples.extend(parse(&text, &file.display().to_string())?);
    }
    let rows = compare(&samples, &args.baseline, &args.candidate);
    print!("{}", table(&rows, &args.baseline, &args.candidate));
    if let Some(path) = &args.svg {
        std::fs::write(path, svg(&rows, &args.baseline, &args.candidate))
            .map_err(BenchError::file("write", path))?;
    }
    Ok(())
}
