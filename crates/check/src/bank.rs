//! The bank checker: an `init` operation opens the accounts (value = `{account: balance}`),
//! clients `transfer` amounts between accounts in multi-key transactions and `read` every
//! balance in one snapshot (result = `{account: balance}`). Every read must show exactly the
//! opened accounts, no negative balance, and the opening total.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::history::{History, Operation, Outcome};
use crate::verdict::{Anomaly, AnomalyKind, Report, Verdict};

/// Checks a bank history.
pub fn check_bank(history: &History) -> Report {
    let report = |verdict, ops_checked| Report {
        checker: "bank".to_owned(),
        verdict,
        ops_checked,
        parts: 1,
    };
    let Some(init) = history
        .ops
        .iter()
        .find(|op| op.f == "init" && op.outcome == Outcome::Ok)
    else {
        let reason = "no successful init, so the opening balances are unknown".to_owned();
        return report(Verdict::Unknown(reason), 0);
    };
    let opening = match balances(&init.input) {
        Ok(opening) => opening,
        Err(reason) => return report(Verdict::Unknown(format!("init: {reason}")), 0),
    };
    let total: i64 = opening.values().sum();
    let mut anomalies = Vec::new();
    let mut reads = 0;
    for op in &history.ops {
        match (op.f.as_str(), op.outcome) {
            ("read", Outcome::Ok) => {
                reads += 1;
                let seen = match balances(&op.output) {
                    Ok(seen) => seen,
                    Err(reason) => {
                        let reason = format!("read {}: {reason}", op.describe());
                        return report(Verdict::Unknown(reason), reads);
                    }
                };
                check_read(op, &opening, total, &seen, &mut anomalies);
            }
            ("read" | "transfer" | "init", _) => {}
            (f, _) => {
                let reason = format!("the bank checker has no operation {f:?}");
                return report(Verdict::Unknown(reason), reads);
            }
        }
    }
    if reads == 0 {
        let reason = "no read succeeded, so nothing can be said of the transfers".to_owned();
        return report(Verdict::Unknown(reason), 0);
    }
    let verdict = if anomalies.is_empty() {
        Verdict::Valid
    } else {
        Verdict::Invalid(anomalies)
    };
    report(verdict, reads)
}

fn check_read(
    op: &Operation,
    opening: &BTreeMap<String, i64>,
    total: i64,
    seen: &BTreeMap<String, i64>,
    anomalies: &mut Vec<Anomaly>,
) {
    let mut push = |kind, explanation: String| {
        anomalies.push(Anomaly {
            kind,
            key: None,
            ops: vec![op.id],
            explanation: format!("read p{} at {}: {explanation}", op.process, op.call),
        })
    };
    if seen.keys().ne(opening.keys()) {
        let missing: Vec<&String> = opening.keys().filter(|k| !seen.contains_key(*k)).collect();
        let extra: Vec<&String> = seen.keys().filter(|k| !opening.contains_key(*k)).collect();
        push(
            AnomalyKind::WrongAccounts,
            format!("accounts missing {missing:?}, accounts never opened {extra:?}"),
        );
    }
    let sum: i64 = seen.values().sum();
    if sum != total {
        push(
            AnomalyKind::TotalNotConserved,
            format!("balances sum to {sum}, the opening total is {total}: {seen:?}"),
        );
    }
    let negative: Vec<(&String, &i64)> = seen.iter().filter(|(_, b)| **b < 0).collect();
    if !negative.is_empty() {
        push(
            AnomalyKind::NegativeBalance,
            format!("negative balances {negative:?}"),
        );
    }
}

fn balances(value: &Value) -> Result<BTreeMap<String, i64>, String> {
    let object = value
        .as_object()
        .ok_or_else(|| format!("{value} is not an object of balances"))?;
    object
        .iter()
        .map(|(account, balance)| {
            balance
                .as_i64()
                .map(|b| (account.clone(), b))
                .ok_or_else(|| format!("balance of {account} is {balance}, not an integer"))
        })
        .collect()
}
