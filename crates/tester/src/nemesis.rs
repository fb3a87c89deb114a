//! The execution of a nemesis plan (`workload::nemesis`) against member processes: SIGKILL
//! and restart of one member, the leader, a minority or all of them, SIGSTOP/SIGCONT pauses of
//! one member or the leader, and network faults through the members' fault-injection API (one
//! member or the leader isolated, two halves, a bridge, delayed or dropped peer messages, a
//! member's clock stepped or run fast or slow), and the changes of a consensus bucket's ranges
//! (`range_faults`), and a member joining the cluster and leaving it again (`join_leave`).
//! Every fault is healed when its window ends,
//! and the windows are recorded for the report.

use std::sync::Arc;

use client::faults::Fault;
use tokio::sync::Mutex;
use tokio::time::Instant;
use workload::nemesis::{
    FaultKind, FaultWindow, NEMESIS_DELAY_MS, NEMESIS_DROP_RATIO, PlannedFault,
};

use crate::error::CheckError;
use crate::members::Members;

/// Keeps a fault (described by `shown`) in force for its duration, then runs `heal`; returns
/// its window on the run's clock (from `start`).
async fn hold(
    fault: &PlannedFault,
    shown: String,
    start: Instant,
    heal: impl std::future::Future<Output = ()>,
) -> FaultWindow {
    let since = |at: Instant| (at - start).as_nanos() as u64;
    let began = since(Instant::now());
    tracing::info!(kind = fault.kind.as_str(), what = %shown, "fault begins");
    tokio::time::sleep(fault.duration).await;
    heal.await;
    tracing::info!(kind = fault.kind.as_str(), "fault healed");
    FaultWindow {
        kind: fault.kind,
        members: vec![shown],
        start: began,
        end: since(Instant::now()),
    }
}

/// Runs the plan from `start` and returns the windows; every fault is healed at the end of
/// its window.
pub async fn execute(
    plan: Vec<PlannedFault>,
    members: Arc<Mutex<Members>>,
    start: Instant,
) -> Result<Vec<FaultWindow>, CheckError> {
    let since = |at: Instant| (at - start).as_nanos() as u64;
    let mut windows = Vec::new();
    for fault in plan {
        tokio::time::sleep_until(start + fault.at).await;
        if fault.kind.is_clock() {
            windows.push(clock_fault(&fault, &members, start).await);
            continue;
        }
        if fault.kind.is_network() {
            windows.push(network_fault(&fault, &members, start).await);
            continue;
        }
        if fault.kind == FaultKind::JoinLeave {
            windows.push(crate::join_leave::hold(&fault, &members, start).await?);
            continue;
        }
        if fault.kind.is_range() {
            windows.push(crate::range_faults::hold(&fault, &members, start).await);
            continue;
        }
        let targets = {
            let guard = members.lock().await;
            targets(&guard, fault.kind, fault.pick).await
        };
        let names = {
            let mut guard = members.lock().await;
            for &i in &targets {
                if fault.kind.is_pause() {
                    guard.pause(i)?;
                } else {
                    guard.kill(i).await?;
                }
            }
            targets.iter().map(|&i| guard.name(i).to_owned()).collect()
        };
        let began = since(Instant::now());
        tracing::info!(kind = fault.kind.as_str(), members = ?names, "fault begins");
        tokio::time::sleep(fault.duration).await;
        {
            let mut guard = members.lock().await;
            for &i in &targets {
                if fault.kind.is_pause() {
                    guard.resume(i)?;
                } else {
                    guard.restart(i)?;
                }
            }
        }
        tracing::info!(kind = fault.kind.as_str(), "fault healed");
        windows.push(FaultWindow {
            kind: fault.kind,
            members: names,
            start: began,
            end: since(Instant::now()),
        });
    }
    Ok(windows)
}

/// A clock fault: the member's (or the leader's) clock stepped or run fast or slow.
async fn clock_fault(
    fault: &PlannedFault,
    members: &Arc<Mutex<Members>>,
    start: Instant,
) -> FaultWindow {
    let (target, shown) = {
        let guard = members.lock().await;
        let n = guard.len();
        let target = match fault.kind {
            FaultKind::ClockLeader => guard.leader().await.unwrap_or(fault.pick % n),
            _ => fault.pick % n,
        };
        let (command, what) = skew_of(fault.pick);
        guard.skew(target, &command).await;
        (target, format!("{}: {what}", guard.name(target)))
    };
    let heal = async { members.lock().await.skew(target, &Fault::Heal).await };
    hold(fault, shown, start, heal).await
}

/// A network fault: a partition, or every peer message delayed or some dropped.
async fn network_fault(
    fault: &PlannedFault,
    members: &Arc<Mutex<Members>>,
    start: Instant,
) -> FaultWindow {
    let shown = {
        let guard = members.lock().await;
        match fault.kind {
            FaultKind::Delay => {
                guard
                    .degrade(&Fault::Delay {
                        ms: NEMESIS_DELAY_MS,
                    })
                    .await;
                format!("every peer message delayed {NEMESIS_DELAY_MS} ms")
            }
            FaultKind::Drop => {
                guard
                    .degrade(&Fault::Drop {
                        ratio: NEMESIS_DROP_RATIO,
                    })
                    .await;
                format!(
                    "{:.0} % of peer messages dropped",
                    NEMESIS_DROP_RATIO * 100.0
                )
            }
            _ => {
                let cuts = partition(&guard, fault.kind, fault.pick).await;
                for (from, to) in &cuts {
                    guard.block(*from, to).await;
                }
                describe_cuts(&guard, &cuts)
            }
        }
    };
    let heal = async { members.lock().await.heal_network().await };
    hold(fault, shown, start, heal).await
}

/// The members a fault hits.
async fn targets(members: &Members, kind: FaultKind, pick: usize) -> Vec<usize> {
    let n = members.len();
    let leader_or_pick = match kind {
        FaultKind::KillLeader | FaultKind::PauseLeader => {
            members.leader().await.unwrap_or(pick % n)
        }
        _ => pick % n,
    };
    match kind {
        FaultKind::None => Vec::new(),
        FaultKind::Kill | FaultKind::Pause | FaultKind::KillLeader | FaultKind::PauseLeader => {
            vec![leader_or_pick]
        }
        FaultKind::KillMinority => (0..(n - 1) / 2).map(|k| (pick + k) % n).collect(),
        FaultKind::KillAll => (0..n).collect(),
        // Partitions are cut by `partition`.
        FaultKind::PartitionOne
        | FaultKind::PartitionLeader
        | FaultKind::PartitionHalves
        | FaultKind::Bridge
        | FaultKind::Delay
        | FaultKind::Drop
        | FaultKind::Clock
        | FaultKind::ClockLeader
        | FaultKind::Split
        | FaultKind::Merge
        | FaultKind::MoveRange
        | FaultKind::Drain
        | FaultKind::JoinLeave => Vec::new(),
    }
}

/// The skew of a clock fault, from its pick: a step ahead or behind by 10-59 s (longer than
/// any lease the workloads take, so a lessor that read a step as elapsed time would expire
/// them all), or a clock running four times fast or slow (leases timed by it end early or
/// late).
fn skew_of(pick: usize) -> (Fault, String) {
    let step_ms = (10 + (pick / 4) % 50) as i64 * 1000;
    match pick % 4 {
        0 => (
            Fault::Clock {
                offset_ms: Some(step_ms),
                rate: None,
            },
            format!("clock stepped {} s ahead", step_ms / 1000),
        ),
        1 => (
            Fault::Clock {
                offset_ms: Some(-step_ms),
                rate: None,
            },
            format!("clock stepped {} s behind", step_ms / 1000),
        ),
        2 => (
            Fault::Clock {
                offset_ms: None,
                rate: Some(4.0),
            },
            "clock runs 4x fast".to_owned(),
        ),
        _ => (
            Fault::Clock {
                offset_ms: None,
                rate: Some(0.25),
            },
            "clock runs 4x slow".to_owned(),
        ),
    }
}

/// The cuts of a partition: for each member, the members its messages to are blocked.
async fn partition(members: &Members, kind: FaultKind, pick: usize) -> Vec<(usize, Vec<usize>)> {
    let n = members.len();
    let order: Vec<usize> = (0..n).map(|k| (pick + k) % n).collect();
    let (a, b): (Vec<usize>, Vec<usize>) = match kind {
        FaultKind::PartitionLeader => {
            let leader = members.leader().await.unwrap_or(pick % n);
            (vec![leader], (0..n).filter(|&i| i != leader).collect())
        }
        FaultKind::PartitionHalves => (order[..n / 2].to_vec(), order[n / 2..].to_vec()),
        FaultKind::Bridge if n >= 3 => {
            // order[0] is the bridge; the others split in two halves that cannot talk.
            let rest = &order[1..];
            let half = rest.len() / 2;
            (rest[..half].to_vec(), rest[half..].to_vec())
        }
        _ => (vec![order[0]], order[1..].to_vec()),
    };
    let mut cuts: Vec<(usize, Vec<usize>)> = Vec::new();
    for &i in &a {
        cuts.push((i, b.clone()));
    }
    for &i in &b {
        cuts.push((i, a.clone()));
    }
    cuts
}

/// A partition as text: `n1 -/-> n2 n3; …`.
fn describe_cuts(members: &Members, cuts: &[(usize, Vec<usize>)]) -> String {
    cuts.iter()
        .map(|(from, to)| {
            let to: Vec<&str> = to.iter().map(|&j| members.name(j)).collect();
            format!("{} -/-> {}", members.name(*from), to.join(" "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}
