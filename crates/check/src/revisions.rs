//! The revision checker, the etcd part of the `etcd-kv` model: every answered operation
//! carries the store revision of its reply header. Revisions must follow real time (an
//! operation invoked after another completed never answers from an older revision), and two
//! writes never share a revision (each write transaction creates exactly one).

use std::collections::BTreeMap;

use crate::history::{History, Operation, Outcome};
use crate::model::COMPARE_FAILED;
use crate::verdict::{Anomaly, AnomalyKind, Report, Verdict};

/// How many anomalies of one class are reported; the rest are counted.
const REPORTED_PER_CLASS_MAX: usize = 20;

/// Whether `op` created a revision of its own.
fn is_write(op: &Operation) -> bool {
    op.outcome == Outcome::Ok && matches!(op.f.as_str(), "write" | "cas" | "put")
}

/// Checks the revisions of a history's answered operations.
pub fn check_revisions(history: &History) -> Report {
    // Answered: ok, or a comparison that was evaluated and false.
    let answered: Vec<(&Operation, u64, i64)> = history
        .ops
        .iter()
        .filter(|op| {
            op.outcome == Outcome::Ok
                || (op.outcome == Outcome::Fail && op.error.as_deref() == Some(COMPARE_FAILED))
        })
        .filter_map(|op| Some((op, op.ret?, op.revision?)))
        .collect();
    let mut anomalies = Vec::new();

    // Real time: sweep operations by invocation; `latest` is the highest revision among those
    // that completed before the current one was invoked.
    let mut by_return: Vec<usize> = (0..answered.len()).collect();
    by_return.sort_by_key(|&i| answered[i].1);
    let mut by_call: Vec<usize> = (0..answered.len()).collect();
    by_call.sort_by_key(|&i| answered[i].0.call);
    let mut latest: Option<usize> = None;
    let mut next_done = 0;
    let mut order_violations = 0;
    for &at in &by_call {
        let (op, _, revision) = answered[at];
        while next_done < by_return.len() && answered[by_return[next_done]].1 < op.call {
            let done = by_return[next_done];
            if latest.is_none_or(|l| answered[done].2 > answered[l].2) {
                latest = Some(done);
            }
            next_done += 1;
        }
        if let Some(before) = latest
            && revision < answered[before].2
        {
            order_violations += 1;
            if order_violations <= REPORTED_PER_CLASS_MAX {
                let earlier = answered[before].0;
                anomalies.push(Anomaly {
                    kind: AnomalyKind::RevisionOrder,
                    key: op.key.clone(),
                    ops: vec![earlier.id, op.id],
                    explanation: format!(
                        "{} answered from revision {revision}, though it began after {} had \
                         answered from revision {}",
                        op.describe(),
                        earlier.describe(),
                        answered[before].2
                    ),
                });
            }
        }
    }

    let mut writes: BTreeMap<i64, &Operation> = BTreeMap::new();
    let mut duplicate_writes = 0;
    for &(op, _, revision) in &answered {
        if !is_write(op) {
            continue;
        }
        if let Some(other) = writes.insert(revision, op) {
            duplicate_writes += 1;
            if duplicate_writes <= REPORTED_PER_CLASS_MAX {
                anomalies.push(Anomaly {
                    kind: AnomalyKind::DuplicateRevision,
                    key: op.key.clone(),
                    ops: vec![other.id, op.id],
                    explanation: format!(
                        "{} and {} both created revision {revision}",
                        other.describe(),
                        op.describe()
                    ),
                });
            }
        }
    }
    let verdict = if anomalies.is_empty() {
        Verdict::Valid
    } else {
        Verdict::Invalid(anomalies)
    };
    Report {
        checker: "revisions".to_owned(),
        verdict,
        ops_checked: answered.len(),
        parts: 1,
    }
}
