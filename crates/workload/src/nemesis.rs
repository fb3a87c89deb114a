//! Nemesis plans: a seeded plan of faults (when, which kind, for how long, which member),
//! printed before a run so it can be repeated, and the windows in which faults were in force,
//! as the report draws them. Pure: the tester executes a plan against member processes
//! (`tester::nemesis`), a simulation against its in-memory members.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The delay of the `delay` fault, on every peer message of every member.
pub const NEMESIS_DELAY_MS: u64 = 100;
/// The share of peer messages the `drop` fault loses.
pub const NEMESIS_DROP_RATIO: f64 = 0.2;

/// The kinds of fault.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
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
    /// Split ranges of the workload's consensus bucket at keys among its own, one a second.
    Split,
    /// Merge ranges of the consensus bucket with their right neighbours, one a second.
    Merge,
    /// Move replicas of the consensus bucket's ranges to members without one, one after
    /// another (a learner catches up, votes, the old replica goes).
    MoveRange,
    /// Drain one member (its range replicas and leaderships move to the others), undone when
    /// the window ends (the rebalancer moves replicas back).
    Drain,
    /// A new member joins the cluster (and receives range replicas); when the window ends it
    /// is drained, removed and stopped.
    JoinLeave,
}

impl FaultKind {
    /// Every kind, in the order help lists them.
    pub const ALL: &'static [FaultKind] = &[
        FaultKind::None,
        FaultKind::Kill,
        FaultKind::KillLeader,
        FaultKind::KillMinority,
        FaultKind::KillAll,
        FaultKind::Pause,
        FaultKind::PauseLeader,
        FaultKind::PartitionOne,
        FaultKind::PartitionLeader,
        FaultKind::PartitionHalves,
        FaultKind::Bridge,
        FaultKind::Delay,
        FaultKind::Drop,
        FaultKind::Clock,
        FaultKind::ClockLeader,
        FaultKind::Split,
        FaultKind::Merge,
        FaultKind::MoveRange,
        FaultKind::Drain,
        FaultKind::JoinLeave,
    ];

    /// What the fault does, in one line.
    pub fn help(self) -> &'static str {
        match self {
            FaultKind::None => "no faults",
            FaultKind::Kill => "SIGKILL one member, restart it when the window ends",
            FaultKind::KillLeader => "SIGKILL the current leader",
            FaultKind::KillMinority => "SIGKILL a minority of the members",
            FaultKind::KillAll => "SIGKILL every member",
            FaultKind::Pause => "SIGSTOP one member, SIGCONT it when the window ends",
            FaultKind::PauseLeader => "SIGSTOP the current leader",
            FaultKind::PartitionOne => "cut one member off from all others",
            FaultKind::PartitionLeader => "cut the current leader off from all others",
            FaultKind::PartitionHalves => "split the members into two halves",
            FaultKind::Bridge => "two halves that cannot talk, and one member that talks to both",
            FaultKind::Delay => "every member delays each of its peer messages by 100 ms",
            FaultKind::Drop => "every member drops a fifth of its peer messages",
            FaultKind::Clock => {
                "skew one member's clock: a step of 10-59 s, or a rate of 4x or 1/4x"
            }
            FaultKind::ClockLeader => "skew the current leader's clock",
            FaultKind::Split => {
                "split ranges of the consensus bucket, one a second (range workloads)"
            }
            FaultKind::Merge => {
                "merge ranges with their right neighbours, one a second (range workloads)"
            }
            FaultKind::MoveRange => "move range replicas to members without one (range workloads)",
            FaultKind::Drain => {
                "drain a member's range replicas and leaderships, undone at the end (range workloads)"
            }
            FaultKind::JoinLeave => {
                "a new member joins, gets range replicas, then is drained, removed and stopped"
            }
        }
    }

    /// The kind's name, as the command line and reports spell it.
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
            FaultKind::Split => "split",
            FaultKind::Merge => "merge",
            FaultKind::MoveRange => "move-range",
            FaultKind::Drain => "drain",
            FaultKind::JoinLeave => "join-leave",
        }
    }

    /// Changes of a consensus bucket's ranges, for the workloads on one.
    pub fn is_range(self) -> bool {
        matches!(
            self,
            FaultKind::Split | FaultKind::Merge | FaultKind::MoveRange | FaultKind::Drain
        )
    }

    pub fn is_pause(self) -> bool {
        matches!(self, FaultKind::Pause | FaultKind::PauseLeader)
    }

    pub fn is_clock(self) -> bool {
        matches!(self, FaultKind::Clock | FaultKind::ClockLeader)
    }

    /// Faults of the network, applied through the members' fault-injection hook.
    pub fn is_network(self) -> bool {
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
