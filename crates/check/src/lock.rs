//! The fenced-lock checker: clients acquire one lock, and while holding it make two fenced
//! writes (`fenced-write`, value `{"hold": H, "token": T, "step": 0|1}`): transactions that
//! commit only while the holder's lock key still exists with creation revision T (the
//! fencing token). Ordered by the revision they committed at, the successful fenced writes
//! must never interleave two holds (mutual exclusion) and their tokens must never go back
//! (a holder that lost the lock cannot write after its successor).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::history::{History, Outcome};
use crate::verdict::{Anomaly, AnomalyKind, Report, Verdict};

/// One committed fenced write.
#[derive(Clone, Debug)]
struct Fenced {
    revision: i64,
    hold: i64,
    token: i64,
    step: i64,
    op: usize,
    process: u64,
}

/// Checks a fenced-lock history.
///
/// Long because it is one pass over the holds in fencing-token order whose checks share the
/// pass's state (the previous holder, its writes, the overlap found); split, each part would
/// take all of it.
pub fn check_lock(history: &History) -> Report {
    let report = |verdict, ops_checked| Report {
        checker: "lock".to_owned(),
        verdict,
        ops_checked,
        parts: 1,
    };
    let mut writes = Vec::new();
    for op in &history.ops {
        match (op.f.as_str(), op.outcome) {
            ("fenced-write", Outcome::Ok) => {
                let field = |name: &str| op.input.get(name).and_then(Value::as_i64);
                let (Some(hold), Some(token), Some(step), Some(revision)) =
                    (field("hold"), field("token"), field("step"), op.revision)
                else {
                    let reason = format!(
                        "fenced-write {} lacks hold, token, step or revision",
                        op.describe()
                    );
                    return report(Verdict::Unknown(reason), writes.len());
                };
                writes.push(Fenced {
                    revision,
                    hold,
                    token,
                    step,
                    op: op.id,
                    process: op.process,
                });
            }
            ("fenced-write" | "acquire" | "release", _) => {}
            (f, _) => {
                let reason = format!("the lock checker has no operation {f:?}");
                return report(Verdict::Unknown(reason), writes.len());
            }
        }
    }
    if writes.is_empty() {
        let reason = "no fenced write succeeded, so mutual exclusion was never tested".to_owned();
        return report(Verdict::Unknown(reason), 0);
    }
    writes.sort_by_key(|w| w.revision);
    // The last step each hold reached, to know whether it is still open.
    let mut last_step: BTreeMap<i64, i64> = BTreeMap::new();
    for write in &writes {
        let step = last_step.entry(write.hold).or_insert(write.step);
        *step = (*step).max(write.step);
    }
    let mut anomalies = Vec::new();
    let mut open: Option<&Fenced> = None;
    let mut highest_token: Option<&Fenced> = None;
    for write in &writes {
        if let Some(first) = open
            && first.hold != write.hold
        {
            anomalies.push(Anomaly {
                kind: AnomalyKind::MutualExclusion,
                key: None,
                ops: vec![first.op, write.op],
                explanation: format!(
                    "hold {} of p{} (token {}) wrote at revision {} and had not finished when \
                     hold {} of p{} (token {}) wrote at revision {}",
                    first.hold,
                    first.process,
                    first.token,
                    first.revision,
                    write.hold,
                    write.process,
                    write.token,
                    write.revision
                ),
            });
        }
        if let Some(highest) = highest_token
            && write.token < highest.token
        {
            anomalies.push(Anomaly {
                kind: AnomalyKind::StaleToken,
                key: None,
                ops: vec![highest.op, write.op],
                explanation: format!(
                    "p{} wrote with token {} at revision {} after p{} had written with the \
                     newer token {} at revision {}",
                    write.process,
                    write.token,
                    write.revision,
                    highest.process,
                    highest.token,
                    highest.revision
                ),
            });
        }
        if highest_token.is_none_or(|h| write.token > h.token) {
            highest_token = Some(write);
        }
        // A hold stays open from its first write until its last step is written; a hold
        // whose second write never committed closes at its first.
        let finished = write.step >= 1 || last_step.get(&write.hold) == Some(&write.step);
        open = if finished {
            None
        } else {
            match open {
                Some(first) if first.hold == write.hold => Some(first),
                _ => Some(write),
            }
        };
    }
    let verdict = if anomalies.is_empty() {
        Verdict::Valid
    } else {
        Verdict::Invalid(anomalies)
    };
    report(verdict, writes.len())
}
