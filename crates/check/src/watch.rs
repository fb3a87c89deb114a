//! The watch checker: writers `put` unique values under a prefix (the completion carries the
//! revision the put created), watchers open a watch on the prefix (`watch-open`, value
//! `{"from": R}`) and record each response they receive (`watch-events`, result
//! `[[revision, key, value], …]`), re-opening from the next revision after any failure; a
//! final `read` after healing carries the last revision. Every watcher must deliver every
//! revision that exists from its first start to that last revision, in order, once, each
//! revision's events in one response, with the key and value that were written.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::history::{History, Operation, Outcome};
use crate::verdict::{Anomaly, AnomalyKind, Report, Verdict};

/// How many revisions one anomaly lists.
const LISTED_REVISIONS_MAX: usize = 12;

/// One delivered event.
#[derive(Clone, Debug, PartialEq)]
struct Delivered {
    revision: i64,
    key: String,
    value: Value,
    /// Which response of the watcher carried it.
    response: usize,
    op: usize,
}

/// Checks a watch history.
///
/// Long because it is one pass comparing every watcher's events with the one history of
/// writes, each check needing the same cursor per watcher.
pub fn check_watch(history: &History) -> Report {
    let report = |verdict, ops_checked| Report {
        checker: "watch".to_owned(),
        verdict,
        ops_checked,
        parts: 1,
    };
    let mut written: BTreeMap<i64, (String, Value)> = BTreeMap::new();
    let mut starts: BTreeMap<u64, i64> = BTreeMap::new();
    let mut delivered: BTreeMap<u64, Vec<Delivered>> = BTreeMap::new();
    let mut last_read: Option<&Operation> = None;
    let mut ops_checked = 0;
    for op in &history.ops {
        match (op.f.as_str(), op.outcome) {
            ("put", Outcome::Ok) => {
                let (Some(revision), Some(key)) = (op.revision, op.key.clone()) else {
                    let reason = format!("put {} lacks its key or revision", op.describe());
                    return report(Verdict::Unknown(reason), ops_checked);
                };
                written.insert(revision, (key, op.input.clone()));
                ops_checked += 1;
            }
            ("put", _) => {}
            ("watch-open", Outcome::Ok) => {
                let Some(from) = op.input.get("from").and_then(Value::as_i64) else {
                    let reason = format!("watch-open {} lacks {{\"from\": R}}", op.describe());
                    return report(Verdict::Unknown(reason), ops_checked);
                };
                starts.entry(op.process).or_insert(from);
            }
            ("watch-open", _) => {}
            ("watch-events", Outcome::Ok) => {
                let events = match parse_events(&op.output) {
                    Ok(events) => events,
                    Err(reason) => {
                        let reason = format!("watch-events {}: {reason}", op.describe());
                        return report(Verdict::Unknown(reason), ops_checked);
                    }
                };
                let list = delivered.entry(op.process).or_default();
                let response = op.id;
                for (revision, key, value) in events {
                    list.push(Delivered {
                        revision,
                        key,
                        value,
                        response,
                        op: op.id,
                    });
                }
                ops_checked += 1;
            }
            ("watch-events", _) => {}
            ("read", Outcome::Ok) => {
                if last_read.is_none_or(|r| r.call < op.call) {
                    last_read = Some(op);
                }
            }
            ("read", _) => {}
            (f, _) => {
                let reason = format!("the watch checker has no operation {f:?}");
                return report(Verdict::Unknown(reason), ops_checked);
            }
        }
    }
    let Some(last_revision) = last_read.and_then(|r| r.revision) else {
        let reason = "no final read with a revision, so the watchers' end is unknown".to_owned();
        return report(Verdict::Unknown(reason), ops_checked);
    };
    if starts.is_empty() {
        let reason = "no watcher opened a watch".to_owned();
        return report(Verdict::Unknown(reason), ops_checked);
    }

    let mut anomalies = Vec::new();
    // What each revision holds, from the writers and from every watcher; watchers must agree
    // with the writers and with each other.
    let mut holds: BTreeMap<i64, BTreeSet<(String, String)>> = BTreeMap::new();
    for (revision, (key, value)) in &written {
        holds
            .entry(*revision)
            .or_default()
            .insert((key.clone(), value.to_string()));
    }
    for (process, events) in &delivered {
        for event in events {
            let shown = (event.key.clone(), event.value.to_string());
            if let Some((key, value)) = written.get(&event.revision)
                && (key != &event.key || value != &event.value)
            {
                anomalies.push(Anomaly {
                    kind: AnomalyKind::Unexpected,
                    key: Some(event.key.clone()),
                    ops: vec![event.op],
                    explanation: format!(
                        "watcher p{process} got {}={} at revision {}, which wrote {key}={value}",
                        event.key, event.value, event.revision
                    ),
                });
            }
            holds.entry(event.revision).or_default().insert(shown);
        }
    }

    for (process, &start) in &starts {
        let events = delivered.get(process).map(Vec::as_slice).unwrap_or(&[]);
        let mut seen: BTreeSet<(i64, &str)> = BTreeSet::new();
        let mut response_of: BTreeMap<i64, usize> = BTreeMap::new();
        let mut previous = start - 1;
        let mut duplicates = Vec::new();
        let mut reordered = Vec::new();
        let mut split = Vec::new();
        let mut delivered_revisions = BTreeSet::new();
        for event in events {
            if !seen.insert((event.revision, event.key.as_str())) {
                duplicates.push(event.revision);
                continue;
            }
            if event.revision < previous {
                reordered.push(event.revision);
            }
            if let Some(first) = response_of.insert(event.revision, event.response)
                && first != event.response
            {
                split.push(event.revision);
            }
            delivered_revisions.insert(event.revision);
            previous = previous.max(event.revision);
        }
        // A gap: a revision that exists between the watcher's start and the end, never
        // delivered to it.
        let missing: Vec<i64> = if last_revision >= start {
            holds
                .range(start..=last_revision)
                .map(|(r, _)| *r)
                .filter(|r| !delivered_revisions.contains(r))
                .collect()
        } else {
            Vec::new()
        };
        let mut push = |kind, revisions: &[i64], what: &str| {
            if revisions.is_empty() {
                return;
            }
            anomalies.push(Anomaly {
                kind,
                key: None,
                ops: Vec::new(),
                explanation: format!(
                    "watcher p{process} (from revision {start}) {what} ({}): {}",
                    revisions.len(),
                    list(revisions)
                ),
            });
        };
        push(
            AnomalyKind::Gap,
            &missing,
            &format!("never delivered revisions up to {last_revision}"),
        );
        push(
            AnomalyKind::Duplicate,
            &duplicates,
            "delivered revisions twice",
        );
        push(
            AnomalyKind::Reordered,
            &reordered,
            "delivered revisions after later ones",
        );
        push(
            AnomalyKind::SplitRevision,
            &split,
            "split a revision's events over responses",
        );
    }
    let verdict = if anomalies.is_empty() {
        Verdict::Valid
    } else {
        Verdict::Invalid(anomalies)
    };
    report(verdict, ops_checked)
}

fn list(revisions: &[i64]) -> String {
    let mut shown: Vec<String> = revisions
        .iter()
        .take(LISTED_REVISIONS_MAX)
        .map(i64::to_string)
        .collect();
    if revisions.len() > LISTED_REVISIONS_MAX {
        shown.push(format!("… {} more", revisions.len() - LISTED_REVISIONS_MAX));
    }
    shown.join(", ")
}

/// Reads `[[revision, key, value], …]`.
fn parse_events(value: &Value) -> Result<Vec<(i64, String, Value)>, String> {
    let items = value
        .as_array()
        .ok_or_else(|| format!("{value} is not a list of events"))?;
    items
        .iter()
        .map(|item| {
            let parts = item.as_array().filter(|p| p.len() == 3);
            match parts.map(|p| (p[0].as_i64(), p[1].as_str(), &p[2])) {
                Some((Some(revision), Some(key), value)) => {
                    Ok((revision, key.to_owned(), value.clone()))
                }
                _ => Err(format!("{item} is not [revision, key, value]")),
            }
        })
        .collect()
}
