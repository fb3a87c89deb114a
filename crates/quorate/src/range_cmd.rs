//! `quorate range`: the ranges of consensus buckets — list them with their replicas, leader,
//! size and load, split or merge them and move a replica by hand; and `quorate member drain`, which moves
//! them off a member.

use std::time::Duration;

use clap::Subcommand;
use proto::quorate::v1 as pb;
use proto::quorate::v1::ranges_client::RangesClient;
use serde_json::{Value, json};

use crate::quorum_cmd::{hex, status_error};

/// The range subcommands.
#[derive(Subcommand, Debug)]
pub enum RangeCommand {
    /// Every range of a consensus bucket, in key order.
    List { bucket: String },
    /// Split the range holding KEY at KEY; returns once both halves serve.
    Split { bucket: String, key: String },
    /// Merge the range holding KEY with its right neighbour.
    Merge { bucket: String, key: String },
    /// Move the replica of the range holding KEY from one member to another (hexadecimal
    /// ids): a learner on the destination catches up and votes, then the source's replica is
    /// removed. Returns once done (within a minute; past it the rebalancer finishes the move).
    Move {
        bucket: String,
        key: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
    /// Check that every range's replicas hold the same state: each range's leader proposes a
    /// checksum entry and every replica's checksum of its state at that entry is compared.
    /// Fails when a replica diverges, or when a range could not be checked (no leader, a
    /// replica that did not answer in time).
    Check { bucket: String },
}

fn check_json(check: &pb::RangeCheck) -> Value {
    let replicas: Vec<Value> = check
        .replicas
        .iter()
        .map(|r| {
            json!({
                "member": format!("{:x}", r.member),
                "sha256": hex_bytes(&r.sha256),
                "divergent": r.divergent,
                "removed": r.removed,
                "error": (!r.error.is_empty()).then_some(&r.error),
            })
        })
        .collect();
    json!({
        "id": check.id,
        "start": text(&check.start),
        "end": check.end.as_deref().map(text),
        "index": check.index,
        "consistent": check.consistent,
        "replicas": replicas,
        "error": (!check.error.is_empty()).then_some(&check.error),
    })
}

fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Prints the checks and fails when a replica diverges or a range was not fully checked.
fn report_checks(bucket: &str, checks: &[pb::RangeCheck], json_out: bool) -> anyhow::Result<()> {
    if json_out {
        let all: Vec<Value> = checks.iter().map(check_json).collect();
        println!("{}", Value::Array(all));
    } else {
        println!("ID\tSTART\tEND\tINDEX\tRESULT");
        for check in checks {
            let result = if check.consistent {
                format!("consistent ({} replicas)", check.replicas.len())
            } else if !check.error.is_empty() {
                format!("not checked: {}", check.error)
            } else {
                let parts: Vec<String> = check
                    .replicas
                    .iter()
                    .map(|r| {
                        let sum = hex_bytes(&r.sha256);
                        let short = sum.get(..12).unwrap_or(&sum);
                        match (r.divergent, r.error.is_empty()) {
                            (true, _) if r.removed => {
                                format!("{:x}={short} DIVERGENT (removed, to be rebuilt)", r.member)
                            }
                            (true, _) => format!("{:x}={short} DIVERGENT", r.member),
                            (false, true) => format!("{:x}={short}", r.member),
                            (false, false) => format!("{:x}: {}", r.member, r.error),
                        }
                    })
                    .collect();
                parts.join(", ")
            };
            let end = check.end.as_deref().map_or("(end)".to_owned(), text);
            println!(
                "{}\t{}\t{end}\t{}\t{result}",
                check.id,
                text(&check.start),
                check.index
            );
        }
    }
    let divergent: Vec<u64> = checks
        .iter()
        .filter(|c| c.replicas.iter().any(|r| r.divergent))
        .map(|c| c.id)
        .collect();
    if !divergent.is_empty() {
        anyhow::bail!("replicas of bucket {bucket:?} diverge in ranges {divergent:?}");
    }
    let unchecked = checks.iter().filter(|c| !c.consistent).count();
    if unchecked > 0 {
        anyhow::bail!(
            "{unchecked} of {} ranges of {bucket:?} could not be checked completely; try again",
            checks.len()
        );
    }
    Ok(())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn range_json(range: &pb::RangeInfo) -> Value {
    json!({
        "id": range.id,
        "start": text(&range.start),
        "end": range.end.as_deref().map(text),
        "replicas": hex(&range.replicas),
        "learners": hex(&range.learners),
        "leader": (range.leader != 0).then(|| format!("{:x}", range.leader)),
        "bytes": range.bytes,
        "generation": range.generation,
        "load": range.load,
    })
}

fn print_ranges(ranges: &[pb::RangeInfo], json_out: bool) {
    if json_out {
        let all: Vec<Value> = ranges.iter().map(range_json).collect();
        println!("{}", Value::Array(all));
        return;
    }
    println!("ID\tSTART\tEND\tREPLICAS\tLEADER\tBYTES\tLOAD");
    for range in ranges {
        let end = range.end.as_deref().map_or("(end)".to_owned(), text);
        let start = if range.start.is_empty() {
            "(start)".to_owned()
        } else {
            text(&range.start)
        };
        let leader = if range.leader == 0 {
            "-".to_owned()
        } else {
            format!("{:x}", range.leader)
        };
        println!(
            "{}\t{start}\t{end}\t{}\t{leader}\t{}\t{:.1}",
            range.id,
            hex(&range.replicas).join(","),
            range.bytes,
            range.load
        );
    }
}

/// Runs a range subcommand.
pub async fn run(
    endpoints: &[String],
    command: RangeCommand,
    timeout: Duration,
    json_out: bool,
) -> anyhow::Result<()> {
    // A move waits for a learner to catch up: it gets the server's time for that and more.
    let timeout = match command {
        RangeCommand::Move { .. } => {
            timeout.max(base::limits::RANGE_MOVE_TIMEOUT + Duration::from_secs(5))
        }
        _ => timeout,
    };
    let channel = client::Client::connect(endpoints, timeout).await?.channel();
    let mut ranges = RangesClient::new(channel);
    let listed = match command {
        RangeCommand::Check { bucket } => {
            let checks = ranges
                .check(pb::CheckRangesRequest {
                    bucket: bucket.clone(),
                })
                .await
                .map_err(status_error)?
                .into_inner()
                .ranges;
            return report_checks(&bucket, &checks, json_out);
        }
        RangeCommand::List { bucket } => {
            ranges
                .list(pb::ListRangesRequest { bucket })
                .await
                .map_err(status_error)?
                .into_inner()
                .ranges
        }
        RangeCommand::Split { bucket, key } => {
            let request = pb::SplitRangeRequest {
                bucket,
                key: key.into_bytes(),
            };
            ranges
                .split(request)
                .await
                .map_err(status_error)?
                .into_inner()
                .ranges
        }
        RangeCommand::Merge { bucket, key } => {
            let request = pb::MergeRangeRequest {
                bucket,
                key: key.into_bytes(),
            };
            ranges
                .merge(request)
                .await
                .map_err(status_error)?
                .into_inner()
                .ranges
        }
        RangeCommand::Move {
            bucket,
            key,
            from,
            to,
        } => {
            let request = pb::MoveRangeRequest {
                bucket,
                key: key.into_bytes(),
                from: crate::cli::member_id(&from)?,
                to: crate::cli::member_id(&to)?,
            };
            ranges
                .r#move(request)
                .await
                .map_err(status_error)?
                .into_inner()
                .ranges
        }
    };
    print_ranges(&listed, json_out);
    Ok(())
}

/// `quorate member drain`: marks the member as draining (or not, with `undo`) and prints what
/// is left on it; with `wait`, asks again every second until nothing is.
pub async fn drain(
    endpoints: &[String],
    member: u64,
    undo: bool,
    wait: bool,
    timeout: Duration,
    json_out: bool,
) -> anyhow::Result<()> {
    let channel = client::Client::connect(endpoints, timeout).await?.channel();
    let mut ranges = RangesClient::new(channel);
    loop {
        let left = ranges
            .drain(pb::DrainMemberRequest { member, undo })
            .await
            .map_err(status_error)?
            .into_inner();
        if json_out {
            println!(
                "{}",
                json!({"member": format!("{member:x}"), "draining": left.draining,
                    "replicas_left": left.replicas_left, "leaders_left": left.leaders_left})
            );
        } else {
            println!(
                "member {member:x} {}: {} range replicas and {} leaderships left on it",
                if left.draining {
                    "draining"
                } else {
                    "not draining"
                },
                left.replicas_left,
                left.leaders_left
            );
        }
        let done = left.replicas_left == 0 && left.leaders_left == 0;
        if !wait || undo || done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
