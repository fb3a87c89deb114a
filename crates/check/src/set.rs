//! The set checker: clients add unique elements (`add`, value = the element) and read the
//! whole set (`read`, result = the list of elements); the last read follows the healing of
//! every fault. Nothing acknowledged may be lost, nothing never added (or whose add certainly
//! failed) may appear, nothing may appear twice. Under linearizable reads, every read must
//! also hold every element acknowledged, or seen by another read, before the read began.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{History, Operation, Outcome};
use crate::model::Datum;
use crate::verdict::{Anomaly, AnomalyKind, Report, Verdict};

/// How many elements one anomaly lists.
const LISTED_ELEMENTS_MAX: usize = 12;

/// What a set check demands of the reads before the final one (the final read must always
/// hold every acknowledged add).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Nothing: eventually consistent reads.
    FinalOnly,
    /// Every add acknowledged before the read began: what a quorum read promises when
    /// R + W > N (a read need not hold what another read returned).
    Acknowledged,
    /// Also every element another read returned before it began: linearizable reads.
    Linearizable,
}

/// Checks a set history; `linearizable` adds the real-time checks of every read.
pub fn check_set(history: &History, linearizable: bool) -> Report {
    let reads = if linearizable {
        Reads::Linearizable
    } else {
        Reads::FinalOnly
    };
    check_set_with(history, reads)
}

/// Checks a set history with the demands `reads_check` makes of every read.
///
/// Long because it is one pass over the reads in invocation order with two cursors (the
/// acknowledged adds and the completed reads) kept in step; the anomaly texts are built
/// inline where the pass found them.
pub fn check_set_with(history: &History, reads_check: Reads) -> Report {
    let report = |verdict, ops_checked| Report {
        checker: "set".to_owned(),
        verdict,
        ops_checked,
        parts: 1,
    };
    let mut adds: BTreeMap<Datum, &Operation> = BTreeMap::new();
    let mut reads: Vec<(&Operation, Vec<Datum>)> = Vec::new();
    for op in &history.ops {
        match (op.f.as_str(), op.outcome) {
            ("add", _) => match Datum::from_value(&op.input) {
                Ok(element) => {
                    if let Some(earlier) = adds.insert(element.clone(), op) {
                        let reason = format!(
                            "element {element} is added twice ({} and {}); set workloads add \
                             unique elements",
                            earlier.describe(),
                            op.describe()
                        );
                        return report(Verdict::Unknown(reason), 0);
                    }
                }
                Err(reason) => return report(Verdict::Unknown(reason), 0),
            },
            ("read", Outcome::Ok) => {
                let Some(items) = op.output.as_array() else {
                    let reason = format!("read {} did not return a list", op.describe());
                    return report(Verdict::Unknown(reason), 0);
                };
                let elements: Result<Vec<Datum>, String> =
                    items.iter().map(Datum::from_value).collect();
                match elements {
                    Ok(elements) => reads.push((op, elements)),
                    Err(reason) => return report(Verdict::Unknown(reason), 0),
                }
            }
            ("read", _) => {}
            (f, _) => {
                let reason = format!("the set checker has no operation {f:?}");
                return report(Verdict::Unknown(reason), 0);
            }
        }
    }
    let ops_checked = adds.len() + reads.len();
    let Some(last_call) = reads.iter().map(|(op, _)| op.call).max() else {
        let reason = "no read succeeded, so nothing can be said of the adds".to_owned();
        return report(Verdict::Unknown(reason), ops_checked);
    };

    // Elements a read must hold: acknowledged, or returned by another read, before it
    // began. Reads are visited in order of invocation while two cursors add, in order of
    // completion, the acknowledged adds and the reads that completed before it: linear in
    // the history plus the required set once per read.
    let mut acknowledged: Vec<(u64, &Datum)> = adds
        .iter()
        .filter(|(_, add)| add.outcome == Outcome::Ok)
        .filter_map(|(element, add)| add.ret.map(|ret| (ret, element)))
        .collect();
    acknowledged.sort();
    let mut completed: Vec<usize> = (0..reads.len()).collect();
    completed.sort_by_key(|&i| reads[i].0.ret);
    let mut by_call: Vec<usize> = (0..reads.len()).collect();
    by_call.sort_by_key(|&i| reads[i].0.call);
    // Acknowledged before the read began, and returned by reads that completed before it.
    let mut required: BTreeSet<&Datum> = BTreeSet::new();
    let mut read_before: BTreeSet<&Datum> = BTreeSet::new();
    let (mut next_add, mut next_read) = (0, 0);

    let mut anomalies = Vec::new();
    for &at in &by_call {
        let (read, elements) = &reads[at];
        while next_add < acknowledged.len() && acknowledged[next_add].0 < read.call {
            required.insert(acknowledged[next_add].1);
            next_add += 1;
        }
        while next_read < completed.len()
            && reads[completed[next_read]]
                .0
                .ret
                .is_some_and(|r| r < read.call)
        {
            for element in &reads[completed[next_read]].1 {
                if adds.contains_key(element) {
                    read_before.insert(element);
                }
            }
            next_read += 1;
        }
        let is_final = read.call == last_call;
        let ret = read.ret.expect("an ok read has a completion time");
        let mut seen = BTreeSet::new();
        let mut duplicates = Vec::new();
        let mut unexpected = Vec::new();
        for element in elements {
            if !seen.insert(element) {
                duplicates.push(element.clone());
            }
            match adds.get(element) {
                None => unexpected.push((element.clone(), "never added")),
                Some(add) if add.call > ret => {
                    unexpected.push((element.clone(), "added only after the read returned"))
                }
                Some(add) if add.outcome == Outcome::Fail => {
                    unexpected.push((element.clone(), "its add certainly failed"))
                }
                Some(_) => {}
            }
        }
        if !duplicates.is_empty() {
            anomalies.push(anomaly(
                AnomalyKind::Duplicate,
                read,
                "returns elements more than once",
                duplicates.iter().map(|d| d.to_string()).collect(),
            ));
        }
        if !unexpected.is_empty() {
            anomalies.push(anomaly(
                AnomalyKind::Unexpected,
                read,
                "returns elements it cannot hold",
                unexpected
                    .iter()
                    .map(|(d, why)| format!("{d} ({why})"))
                    .collect(),
            ));
        }
        if reads_check == Reads::FinalOnly && !is_final {
            continue;
        }
        let with_reads = is_final || reads_check == Reads::Linearizable;
        let missing: Vec<String> = required
            .iter()
            .chain(read_before.iter().filter(|_| with_reads))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|element| !seen.contains(*element))
            .map(|element| element.to_string())
            .collect();
        if !missing.is_empty() {
            let (kind, what) = if is_final {
                (
                    AnomalyKind::LostWrite,
                    "(the final read) misses elements acknowledged or read before it",
                )
            } else if reads_check == Reads::Acknowledged {
                (
                    AnomalyKind::StaleRead,
                    "misses elements acknowledged before it began",
                )
            } else {
                (
                    AnomalyKind::StaleRead,
                    "misses elements acknowledged or read before it began",
                )
            };
            anomalies.push(anomaly(kind, read, what, missing));
        }
    }
    let verdict = if anomalies.is_empty() {
        Verdict::Valid
    } else {
        Verdict::Invalid(anomalies)
    };
    report(verdict, ops_checked)
}

fn anomaly(kind: AnomalyKind, read: &Operation, what: &str, elements: Vec<String>) -> Anomaly {
    let count = elements.len();
    let mut listed: Vec<String> = elements.into_iter().take(LISTED_ELEMENTS_MAX).collect();
    if count > LISTED_ELEMENTS_MAX {
        listed.push(format!("… {} more", count - LISTED_ELEMENTS_MAX));
    }
    Anomaly {
        kind,
        key: read.key.clone(),
        ops: vec![read.id],
        explanation: format!(
            "read p{} at [{} .. {}] {what} ({count}): {}",
            read.process,
            read.call,
            read.ret.unwrap_or_default(),
            listed.join(", ")
        ),
    }
}
