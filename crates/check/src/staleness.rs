//! The bounded-staleness checker, for follower reads: a read allowed to be `staleness_ms` old
//! (its input `{"staleness_ms": S}`, recorded as `follower-read`) must return the register's
//! value at some instant between `S` before its invocation and its completion. Judged per key
//! against the key's writes, soundly (it never flags a history some linearization explains):
//!
//! - A write `w` is **certainly overwritten by** time `t` when another write that did take
//!   effect (acknowledged) began after `w` completed and completed before `t`: every
//!   linearization places that write after `w` and before `t`, so from `t` on the register no
//!   longer holds what `w` wrote.
//! - A follower read returning `v` is explained by a write of `v` that may have taken effect
//!   (acknowledged or unknown) which began before the read completed and is not certainly
//!   overwritten by `S` before the read began; or, for "absent", by no acknowledged write of
//!   the key having completed by then.
//!
//! Anything else is a `stale-read`: the read returned a state older than its bound allows (or
//! a value never written: `unexpected-value`). Clock faults void the bound (it is measured on
//! the serving member's clock), so runs judged by it should not skew clocks.

use crate::history::{History, Operation, Outcome};
use crate::model::Datum;
use crate::verdict::{Anomaly, AnomalyKind, Report, Verdict};

/// The operation name of a follower read.
pub const FOLLOWER_READ: &str = "follower-read";

/// A write of the key, as the check needs it.
struct Write<'a> {
    op: &'a Operation,
    value: Datum,
}

/// Checks every follower read of the history; see the module documentation.
pub fn check_staleness(history: &History) -> Report {
    let mut anomalies = Vec::new();
    let mut checked = 0;
    let mut parts = 0;
    for (key, ops) in history.by_key() {
        let mut writes: Vec<Write> = Vec::new();
        for op in &ops {
            if op.f == "write" && op.outcome != Outcome::Fail {
                match Datum::from_value(&op.input) {
                    Ok(value) => writes.push(Write { op, value }),
                    Err(reason) => return unknown(reason),
                }
            }
        }
        let reads: Vec<&&Operation> = ops
            .iter()
            .filter(|op| op.f == FOLLOWER_READ && op.outcome == Outcome::Ok)
            .collect();
        if reads.is_empty() {
            continue;
        }
        parts += 1;
        // Completion times of the acknowledged writes, sorted, with the latest invocation
        // among the writes completing by each: what "certainly overwritten by" asks.
        let mut acked: Vec<(u64, u64)> = writes
            .iter()
            .filter(|w| w.op.outcome == Outcome::Ok)
            .filter_map(|w| w.op.ret.map(|ret| (ret, w.op.call)))
            .collect();
        acked.sort_unstable();
        for read in reads {
            checked += 1;
            let Some(bound) = read.input.get("staleness_ms").and_then(|v| v.as_u64()) else {
                return unknown(format!(
                    "{} has no staleness_ms in its input",
                    read.describe()
                ));
            };
            let seen = match Datum::from_value(&read.output) {
                Ok(seen) => seen,
                Err(reason) => return unknown(reason),
            };
            let oldest = read.call.saturating_sub(bound * 1_000_000);
            let read_end = read.ret.unwrap_or(u64::MAX);
            let overwritten = |w: &Operation| {
                let Some(done) = w.ret else { return false };
                // An acknowledged write other than `w` that began after `w` completed and
                // completed before `oldest`.
                acked
                    .iter()
                    .take_while(|(ret, _)| *ret < oldest)
                    .any(|&(_, call)| call > done)
            };
            let explained = if seen == Datum::Nil {
                acked.first().is_none_or(|(ret, _)| *ret >= oldest)
            } else {
                writes
                    .iter()
                    .filter(|w| w.value == seen && w.op.call < read_end)
                    .any(|w| !overwritten(w.op))
            };
            if explained {
                continue;
            }
            let ever_written = seen == Datum::Nil || writes.iter().any(|w| w.value == seen);
            let (kind, why) = if ever_written {
                (
                    AnomalyKind::StaleRead,
                    format!(
                        "{} returned {seen}, which every write of it that may have taken effect \
                         had been overwritten by more than {bound} ms before the read began",
                        read.describe()
                    ),
                )
            } else {
                (
                    AnomalyKind::Unexpected,
                    format!("{} returned {seen}, which no write wrote", read.describe()),
                )
            };
            anomalies.push(Anomaly {
                kind,
                key: key.clone(),
                ops: vec![read.id],
                explanation: why,
            });
        }
    }
    let verdict = if anomalies.is_empty() {
        Verdict::Valid
    } else {
        Verdict::Invalid(anomalies)
    };
    Report {
        checker: "staleness".to_owned(),
        verdict,
        ops_checked: checked,
        parts,
    }
}

fn unknown(reason: String) -> Report {
    Report {
        checker: "staleness".to_owned(),
        verdict: Verdict::Unknown(reason),
        ops_checked: 0,
        parts: 0,
    }
}
