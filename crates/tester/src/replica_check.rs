//! The end of every range run: the whole cluster is killed and started again before the final
//! reads (so a replica that restarts from the wrong state cannot hide behind members that stayed
//! up), and after them every range's replicas are compared by `quorate range check`'s
//! consistency check. A replica that diverges makes the run invalid; a check that could not
//! finish makes a valid run unknown.

use std::time::Duration;

use check::{Anomaly, AnomalyKind, Verdict};
use proto::quorate::v1 as pb;
use proto::quorate::v1::ranges_client::RangesClient;
use tokio::time::Instant;
use workload::ranges::BUCKET;

use crate::error::CheckError;
use crate::members::Members;

/// How long the consistency check may take to reach every replica of every range.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Between two tries of a check that could not reach every replica.
const CHECK_RETRY: Duration = Duration::from_millis(500);

/// SIGKILLs every member, starts them all again and waits until they serve.
pub async fn restart_all(members: &mut Members, ready: Duration) -> Result<(), CheckError> {
    eprintln!("restarting every member before the final reads…");
    for i in 0..members.len() {
        members.kill(i).await?;
    }
    for i in 0..members.len() {
        members.restart(i)?;
    }
    members
        .wait_ready(ready, "members after the whole-cluster restart")
        .await
}

/// Runs the consistency check on the workload's bucket through any member until every range
/// was checked (or a replica diverged, or the time ran out); the verdict it gives the run.
pub async fn check_replicas(endpoints: &[String]) -> Verdict {
    let deadline = Instant::now() + CHECK_TIMEOUT;
    let mut last = String::from("no member answered");
    let mut turn = 0;
    while Instant::now() < deadline {
        let endpoint = &endpoints[turn % endpoints.len()];
        turn += 1;
        match check_once(endpoint).await {
            Ok(checks) => {
                let divergent: Vec<Anomaly> = checks.iter().filter_map(divergence).collect();
                if !divergent.is_empty() {
                    return Verdict::Invalid(divergent);
                }
                let unchecked: Vec<String> = checks
                    .iter()
                    .filter(|c| !c.consistent)
                    .map(|c| format!("range {}: {}", c.id, why_unchecked(c)))
                    .collect();
                if unchecked.is_empty() {
                    eprintln!("replica check: {} ranges consistent", checks.len());
                    return Verdict::Valid;
                }
                last = unchecked.join("; ");
            }
            Err(status) => last = format!("{}: {}", endpoint, status.message()),
        }
        tokio::time::sleep(CHECK_RETRY).await;
    }
    Verdict::Unknown(format!(
        "the replica consistency check did not finish within {CHECK_TIMEOUT:?}: {last}"
    ))
}

async fn check_once(endpoint: &str) -> Result<Vec<pb::RangeCheck>, tonic::Status> {
    let channel = client::channels::connect(endpoint, CHECK_TIMEOUT, Some(CHECK_TIMEOUT))
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let request = pb::CheckRangesRequest {
        bucket: BUCKET.to_owned(),
    };
    Ok(RangesClient::new(channel)
        .check(request)
        .await?
        .into_inner()
        .ranges)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The anomaly of a range whose replicas diverge, with every replica's checksum.
fn divergence(check: &pb::RangeCheck) -> Option<Anomaly> {
    let divergent: Vec<String> = check
        .replicas
        .iter()
        .filter(|r| r.divergent)
        .map(|r| format!("{:x}", r.member))
        .collect();
    if divergent.is_empty() {
        return None;
    }
    let figures: Vec<String> = check
        .replicas
        .iter()
        .map(|r| format!("{:x}={}", r.member, hex(&r.sha256)))
        .collect();
    Some(Anomaly {
        kind: AnomalyKind::ReplicaDivergence,
        key: None,
        ops: Vec::new(),
        explanation: format!(
            "range {} [{}, {}): replicas {} hold another state than the others at log index {} \
             (checksums {})",
            check.id,
            String::from_utf8_lossy(&check.start),
            check
                .end
                .as_deref()
                .map_or("end".into(), String::from_utf8_lossy),
            divergent.join(", "),
            check.index,
            figures.join(" ")
        ),
    })
}

fn why_unchecked(check: &pb::RangeCheck) -> String {
    if !check.error.is_empty() {
        return check.error.clone();
    }
    check
        .replicas
        .iter()
        .filter(|r| !r.error.is_empty())
        .map(|r| format!("{:x} {}", r.member, r.error))
        .collect::<Vec<_>>()
        .join(", ")
}
