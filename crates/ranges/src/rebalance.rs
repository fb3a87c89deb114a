//! The rebalancer's plan: given the members (who is live, who has been unreachable for how
//! long, who is draining) and every range with its leader and caught-up learners, the next
//! steps — at most one per range, at most `steps_max` in all, repairs first:
//!
//! 1. **Repair.** A replica on a member unreachable for `dead_member_timeout`, on a draining
//!    member, or on a member no longer in the cluster is replaced: a learner is added on the
//!    member with the fewest replicas, promoted once it has caught up, and only then is the
//!    old voter removed. A range below its replica target gets a learner the same way.
//! 2. **Balance.** While the member with the most replicas has two or more than the one with
//!    the fewest, a range on the first and not on the second gets a learner on the second;
//!    after its promotion the range has one voter too many and sheds the voter on the member
//!    with the most replicas.
//! 3. **Leaders.** A range whose leader leads two or more ranges more than one of its other
//!    voters hands its leadership to the voter leading the fewest; a leader on a draining
//!    member hands it over during repair.
//!
//! A voter is removed only while the range has more voters than its target, and a leader
//! never removes itself (it transfers first), so no step takes a range below its target or
//! leaves it without a leader for longer than an election. One change at a time per range:
//! while a learner catches up, the range waits. The plan is recomputed every round from what
//! the metadata says, so a step that failed or raced is simply planned again.

use std::collections::BTreeMap;
use std::time::Duration;

use base::NodeId;

use crate::descriptor::{RangeDescriptor, RangeId, ReplicaChange};

/// How reachable a member is, as the failure detector says.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MemberHealth {
    Live,
    /// Not heard from for this long.
    Unreachable {
        since: Duration,
    },
}

/// A member as the rebalancer sees it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: NodeId,
    pub health: MemberHealth,
    /// `quorate member drain`: everything moves off it.
    pub draining: bool,
}

/// A range as the rebalancer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeInfo {
    pub descriptor: RangeDescriptor,
    pub leader: Option<NodeId>,
    /// Learners whose log has caught up with the leader's (ready to vote).
    pub caught_up: Vec<NodeId>,
    /// Voters this range should have (its bucket's `--replicas`); `None`: the config's.
    pub replicas: Option<usize>,
}

/// The rebalancer's settings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct RebalanceConfig {
    /// Voters a range should have when its `RangeInfo` does not say.
    pub replicas: usize,
    /// Unreachable this long, a member's replicas are re-created elsewhere.
    pub dead_member_timeout: Duration,
    /// Steps per round, cluster-wide, so a join or a death does not flood the cluster with
    /// snapshots at once.
    pub steps_max: usize,
}

/// The default of `--dead-member-timeout`.
pub const DEAD_MEMBER_TIMEOUT_DEFAULT: Duration = Duration::from_secs(5 * 60);
/// The default number of steps per round.
pub const STEPS_MAX_DEFAULT: usize = 8;

impl Default for RebalanceConfig {
    fn default() -> RebalanceConfig {
        RebalanceConfig {
            replicas: 3,
            dead_member_timeout: DEAD_MEMBER_TIMEOUT_DEFAULT,
            steps_max: STEPS_MAX_DEFAULT,
        }
    }
}

/// One step of the plan. A replica change names the generation it was planned for, so the
/// metadata refuses it if the range changed meanwhile.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Step {
    Change {
        range: RangeId,
        generation: u64,
        change: ReplicaChange,
    },
    TransferLeader {
        range: RangeId,
        to: NodeId,
    },
}

/// Replica and leader counts per member, updated as steps are chosen.
struct Load {
    replicas: BTreeMap<NodeId, usize>,
    leaders: BTreeMap<NodeId, usize>,
}

impl Load {
    fn replicas_of(&self, id: NodeId) -> usize {
        self.replicas.get(&id).copied().unwrap_or(0)
    }

    fn leaders_of(&self, id: NodeId) -> usize {
        self.leaders.get(&id).copied().unwrap_or(0)
    }
}

struct Members<'a> {
    by_id: BTreeMap<NodeId, &'a MemberInfo>,
    timeout: Duration,
}

impl Members<'_> {
    /// Takes new replicas: live and not draining.
    fn usable(&self, id: NodeId) -> bool {
        self.by_id
            .get(&id)
            .is_some_and(|m| m.health == MemberHealth::Live && !m.draining)
    }

    /// Its replicas must move: draining, gone from the cluster, or unreachable too long.
    fn leaving(&self, id: NodeId) -> bool {
        match self.by_id.get(&id) {
            None => true,
            Some(m) => {
                m.draining
                    || matches!(m.health, MemberHealth::Unreachable { since } if since >= self.timeout)
            }
        }
    }
}

/// The next steps; see the module documentation.
pub fn plan(members: &[MemberInfo], ranges: &[RangeInfo], config: &RebalanceConfig) -> Vec<Step> {
    let members = Members {
        by_id: members.iter().map(|m| (m.id, m)).collect(),
        timeout: config.dead_member_timeout,
    };
    let mut load = Load {
        replicas: BTreeMap::new(),
        leaders: BTreeMap::new(),
    };
    for &id in members.by_id.keys() {
        load.replicas.insert(id, 0);
        load.leaders.insert(id, 0);
    }
    for range in ranges {
        for replica in &range.descriptor.replicas {
            *load.replicas.entry(replica.member).or_default() += 1;
        }
        if let Some(leader) = range.leader {
            *load.leaders.entry(leader).or_default() += 1;
        }
    }
    let mut steps: Vec<Step> = Vec::new();
    let mut planned: Vec<bool> = vec![false; ranges.len()];
    type Pass = fn(&RangeInfo, &Members, &mut Load, &RebalanceConfig) -> Option<Step>;
    let passes: [Pass; 3] = [repair_step, balance_step, leader_step];
    for pass in passes {
        for (index, range) in ranges.iter().enumerate() {
            if steps.len() >= config.steps_max {
                return steps;
            }
            if planned[index] {
                continue;
            }
            if let Some(step) = pass(range, &members, &mut load, config) {
                planned[index] = true;
                steps.push(step);
            }
        }
    }
    steps
}

fn change(range: &RangeInfo, change: ReplicaChange) -> Step {
    Step::Change {
        range: range.descriptor.id,
        generation: range.descriptor.generation,
        change,
    }
}

/// The usable member without a replica of `range` that has the fewest replicas.
fn emptiest_outside(range: &RangeDescriptor, members: &Members, load: &Load) -> Option<NodeId> {
    load.replicas
        .iter()
        .filter(|&(&id, _)| members.usable(id) && range.role_of(id).is_none())
        .min_by_key(|&(&id, &count)| (count, id))
        .map(|(&id, _)| id)
}

/// Moves the range's leadership to the usable voter other than `from` that leads the fewest.
fn hand_over(range: &RangeInfo, from: NodeId, members: &Members, load: &mut Load) -> Option<Step> {
    let to = range
        .descriptor
        .voters()
        .filter(|&v| v != from && members.usable(v))
        .min_by_key(|&v| (load.leaders_of(v), v))?;
    *load.leaders.entry(from).or_default() -= 1;
    *load.leaders.entry(to).or_default() += 1;
    Some(Step::TransferLeader {
        range: range.descriptor.id,
        to,
    })
}

/// Finishes a change in flight, sheds a surplus voter, or replaces what is leaving or missing.
fn repair_step(
    range: &RangeInfo,
    members: &Members,
    load: &mut Load,
    config: &RebalanceConfig,
) -> Option<Step> {
    let desc = &range.descriptor;
    // A learner in flight: promote it once caught up, drop it if its member is leaving, else
    // wait — one change at a time.
    if let Some(learner) = desc.learners().next() {
        if members.leaving(learner) {
            *load.replicas.entry(learner).or_default() -= 1;
            return Some(change(range, ReplicaChange::Remove(learner)));
        }
        if range.caught_up.contains(&learner) && members.usable(learner) {
            return Some(change(range, ReplicaChange::Promote(learner)));
        }
        return None;
    }
    let voters: Vec<NodeId> = desc.voters().collect();
    let target = range.replicas.unwrap_or(config.replicas);
    if voters.len() > target {
        // Shed a leaving voter other than the leader first; else the voter on the fullest
        // member, the leader handing over first if that is itself.
        let leaving = voters
            .iter()
            .copied()
            .filter(|&v| members.leaving(v) && range.leader != Some(v))
            .min();
        let fullest = || {
            voters
                .iter()
                .copied()
                .max_by_key(|&v| (load.replicas_of(v), v))
        };
        let victim = match leaving.or_else(fullest)? {
            victim if range.leader == Some(victim) => {
                if let Some(step) = hand_over(range, victim, members, load) {
                    return Some(step);
                }
                voters
                    .iter()
                    .copied()
                    .filter(|&v| v != victim)
                    .max_by_key(|&v| (load.replicas_of(v), v))?
            }
            victim => victim,
        };
        *load.replicas.entry(victim).or_default() -= 1;
        return Some(change(range, ReplicaChange::Remove(victim)));
    }
    if let Some(leader) = range.leader
        && members.leaving(leader)
        && members
            .by_id
            .get(&leader)
            .is_some_and(|m| m.health == MemberHealth::Live)
    {
        // A draining leader hands over before its replica is replaced.
        if let Some(step) = hand_over(range, leader, members, load) {
            return Some(step);
        }
    }
    let missing = voters.len() < target || voters.iter().any(|&v| members.leaving(v));
    if missing {
        let target = emptiest_outside(desc, members, load)?;
        *load.replicas.entry(target).or_default() += 1;
        return Some(change(range, ReplicaChange::AddLearner(target)));
    }
    None
}

/// Moves one replica from the fullest usable member to the emptiest, if they differ by two.
fn balance_step(
    range: &RangeInfo,
    members: &Members,
    load: &mut Load,
    _config: &RebalanceConfig,
) -> Option<Step> {
    let usable = || load.replicas.iter().filter(|&(&id, _)| members.usable(id));
    let (&fullest, &most) = usable().max_by_key(|&(&id, &count)| (count, std::cmp::Reverse(id)))?;
    let (&emptiest, &fewest) = usable().min_by_key(|&(&id, &count)| (count, id))?;
    if most < fewest + 2 {
        return None;
    }
    let desc = &range.descriptor;
    if desc.role_of(fullest).is_none() || desc.role_of(emptiest).is_some() {
        return None;
    }
    if desc.learners().next().is_some() {
        return None;
    }
    *load.replicas.entry(emptiest).or_default() += 1;
    Some(change(range, ReplicaChange::AddLearner(emptiest)))
}

/// Hands leadership to a voter that leads two or more ranges fewer.
fn leader_step(
    range: &RangeInfo,
    members: &Members,
    load: &mut Load,
    _config: &RebalanceConfig,
) -> Option<Step> {
    let leader = range.leader?;
    let leads = load.leaders_of(leader);
    let fewest = range
        .descriptor
        .voters()
        .filter(|&v| v != leader && members.usable(v))
        .map(|v| load.leaders_of(v))
        .min()?;
    if leads < fewest + 2 {
        return None;
    }
    hand_over(range, leader, members, load)
}

/// Too few members to place a new bucket's first range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{asked} replicas asked for, but the cluster has {available} voting members that are not draining"
)]
pub struct TooFewMembers {
    pub asked: usize,
    pub available: usize,
}

/// Where a new consensus bucket's first range goes: `n` of the cluster's `voters`, never a
/// `draining` one, the least loaded first (`replicas_on` counts a member's range replicas; ties
/// by id), in ascending id order.
pub fn first_replicas(
    voters: &[NodeId],
    draining: &[NodeId],
    n: usize,
    replicas_on: impl Fn(NodeId) -> usize,
) -> Result<Vec<NodeId>, TooFewMembers> {
    let mut candidates: Vec<NodeId> = voters
        .iter()
        .copied()
        .filter(|v| !draining.contains(v))
        .collect();
    candidates.sort();
    candidates.dedup();
    if n > candidates.len() {
        return Err(TooFewMembers {
            asked: n,
            available: candidates.len(),
        });
    }
    candidates.sort_by_key(|m| (replicas_on(*m), *m));
    let mut chosen: Vec<NodeId> = candidates.into_iter().take(n).collect();
    chosen.sort();
    Ok(chosen)
}
