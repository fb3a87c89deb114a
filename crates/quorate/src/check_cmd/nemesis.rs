//! The nemesis of a check run: a seeded plan of faults (when, which kind, for how long, which
//! member) printed before the run so it can be repeated, and its execution against the
//! members — SIGKILL and restart of one member, the leader, a minority or all of them,
//! SIGSTOP/SIGCONT pauses of one member or the leader, and network faults through the
//! members' fault-injection API (one member or the leader isolated, two halves, a bridge,
//! delayed or dropped peer messages, a member's clock stepped or run fast or slow).
//! Every fault is healed when its window ends, and the windows are recorded for the report.

use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::members::Members;
use crate::fault_cmd::FaultCommand;

/// The delay of the `delay` fault, on every peer message of every member.
const NEMESIS_DELAY_MS: u64 = 100;
/// The share of peer messages the `drop` fault loses.
const NEMESIS_DROP_RATIO: f64 = 0.2;

/// The kinds of fault.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum FaultKind {
    /// No faults.
    None,
    /// SIGKILL one member, restart it when the window ends.
    Kill,
    /// SIGKILL the current leader.
    KillLeader,
    /// SIGKILL a minority of the members.
    KillMinority,
    /// SIGKILL every member.
    KillAll,
    /// SIGSTOP one member, SIGCONT it when the window ends.
    Pause,
    /// SIGSTOP the current leader.
    PauseLeader,
    /// Cut one member off from all others.
    PartitionOne,
    /// Cut the current leader off from all others.
    PartitionLeader,
    /// Split the members into two halves (the smaller one a minority).
    PartitionHalves,
    /// Two halves that cannot talk, and one member that talks to both.
    Bridge,
    /// Every member delays each of its peer messages by 100 ms.
    Delay,
    /// Every member drops a fifth of its peer messages.
    Drop,
    /// Skew one member's clock: a step of 10-59 s ahead or behind, or a rate of 4x or 1/4x.
    Clock,
    /// Skew the current leader's clock (the one its lease timers read).
    ClockLeader,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::None => "none",
            FaultKind::Kill => "kill",
            FaultKind::KillLeader => "kill-leader",
            FaultKind::KillMinority => "kill-minority",
            FaultKind::KillAll => "kill-all",
            FaultKind::Pause => "pause",
            FaultKind::PauseLeader => "pause-leader",
            FaultKind::PartitionOne => "partition-one",
            FaultKind::PartitionLeader => "partition-leader",
            FaultKind::PartitionHalves => "partition-halves",
            FaultKind::Bridge => "bridge",
            FaultKind::Delay => "delay",
            FaultKind::Drop => "drop",
            FaultKind::Clock => "clock",
            FaultKind::ClockLeader => "clock-leader",
        }
    }

    fn is_pause(self) -> bool {
        matches!(self, FaultKind::Pause | FaultKind::PauseLeader)
    }

    fn is_clock(self) -> bool {
        matches!(self, FaultKind::Clock | FaultKind::ClockLeader)
    }

    /// Faults of the network, applied through the members' fault-injection hook.
    fn is_network(self) -> bool {
        matches!(
            self,
            FaultKind::PartitionOne
                | FaultKind::PartitionLeader
                | FaultKind::PartitionHalves
                | FaultKind::Bridge
                | FaultKind::Delay
                | FaultKind::Drop
        )
    }
}

/// One fault of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedFault {
    /// From the start of the run.
    pub at: Duration,
    pub duration: Duration,
    pub kind: FaultKind,
    /// Picks the member(s) when the kind does not name them (index modulo members).
    pub pick: usize,
}

/// Plans faults over `time`: quiet gaps and fault windows each lasting between half and one
/// and a half `interval`, kinds drawn from `kinds`, all from `seed`. Nothing starts in the
/// last `interval`, so the run ends with a quiet stretch before healing.
pub fn plan(
    kinds: &[FaultKind],
    seed: u64,
    time: Duration,
    interval: Duration,
) -> Vec<PlannedFault> {
    let kinds: Vec<FaultKind> = kinds
        .iter()
        .copied()
        .filter(|k| *k != FaultKind::None)
        .collect();
    if kinds.is_empty() || interval.is_zero() {
        return Vec::new();
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x006e_656d_6573_6973);
    let span = |rng: &mut StdRng| interval.mul_f64(rng.random_range(0.5..1.5));
    let mut faults = Vec::new();
    let mut now = span(&mut rng);
    while now + interval < time {
        let duration = span(&mut rng).min(time - now);
        faults.push(PlannedFault {
            at: now,
            duration,
            kind: kinds[rng.random_range(0..kinds.len())],
            pick: rng.random_range(0..1024),
        });
        now += duration + span(&mut rng);
    }
    faults
}

/// The plan as text, one fault per line.
pub fn describe(plan: &[PlannedFault]) -> String {
    if plan.is_empty() {
        return "  (no faults)\n".to_owned();
    }
    plan.iter()
        .map(|f| {
            format!(
                "  at {:>6.1}s for {:>4.1}s: {} (pick {})\n",
                f.at.as_secs_f64(),
                f.duration.as_secs_f64(),
                f.kind.as_str(),
                f.pick
            )
        })
        .collect()
}

/// A fault as it happened.
#[derive(Clone, Debug)]
pub struct FaultWindow {
    pub kind: FaultKind,
    pub members: Vec<String>,
    /// Nanoseconds since the run started, on the history's clock.
    pub start: u64,
    pub end: u64,
}

impl FaultWindow {
    pub fn to_json(&self) -> Value {
        json!({
            "kind": self.kind.as_str(),
            "members": self.members,
            "start": self.start,
            "end": self.end,
        })
    }
}

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
) -> anyhow::Result<Vec<FaultWindow>> {
    let since = |at: Instant| (at - start).as_nanos() as u64;
    let mut windows = Vec::new();
    for fault in plan {
        tokio::time::sleep_until(start + fault.at).await;
        if fault.kind.is_clock() {
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
            let heal = async { members.lock().await.skew(target, &FaultCommand::Heal).await };
            windows.push(hold(&fault, shown, start, heal).await);
            continue;
        }
        if fault.kind.is_network() {
            let shown = {
                let guard = members.lock().await;
                match fault.kind {
                    FaultKind::Delay => {
                        guard
                            .degrade(&FaultCommand::Delay {
                                ms: NEMESIS_DELAY_MS,
                            })
                            .await;
                        format!("every peer message delayed {NEMESIS_DELAY_MS} ms")
                    }
                    FaultKind::Drop => {
                        guard
                            .degrade(&FaultCommand::Drop {
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
            windows.push(hold(&fault, shown, start, heal).await);
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
        | FaultKind::ClockLeader => Vec::new(),
    }
}

/// The skew of a clock fault, from its pick: a step ahead or behind by 10-59 s (longer than
/// any lease the workloads take, so a lessor that read a step as elapsed time would expire
/// them all), or a clock running four times fast or slow (leases timed by it end early or
/// late).
fn skew_of(pick: usize) -> (FaultCommand, String) {
    let step_ms = (10 + (pick / 4) % 50) as i64 * 1000;
    match pick % 4 {
        0 => (
            FaultCommand::Clock {
                offset_ms: Some(step_ms),
                rate: None,
            },
            format!("clock stepped {} s ahead", step_ms / 1000),
        ),
        1 => (
            FaultCommand::Clock {
                offset_ms: Some(-step_ms),
                rate: None,
            },
            format!("clock stepped {} s behind", step_ms / 1000),
        ),
        2 => (
            FaultCommand::Clock {
                offset_ms: None,
                rate: Some(4.0),
            },
            "clock runs 4x fast".to_owned(),
        ),
        _ => (
            FaultCommand::Clock {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_is_fixed_by_its_seed_and_stays_inside_the_run() {
        let kinds = [FaultKind::Kill, FaultKind::Pause];
        let time = Duration::from_secs(60);
        let interval = Duration::from_secs(5);
        let first = plan(&kinds, 7, time, interval);
        assert_eq!(first, plan(&kinds, 7, time, interval));
        assert_ne!(first, plan(&kinds, 8, time, interval));
        assert!(first.len() >= 3, "{first:?}");
        for window in first.windows(2) {
            assert!(
                window[0].at + window[0].duration <= window[1].at,
                "{window:?}"
            );
        }
        for fault in &first {
            assert!(fault.at + interval < time, "{fault:?}");
            assert!(fault.at + fault.duration <= time, "{fault:?}");
            assert!(kinds.contains(&fault.kind));
        }
        assert!(plan(&[FaultKind::None], 7, time, interval).is_empty());
    }
}
