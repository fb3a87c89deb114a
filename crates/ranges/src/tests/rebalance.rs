//! The rebalancer: single transitions, then a seeded model of a cluster in which members
//! join, die and drain while the plan's steps are carried out (some fail), checked after
//! every step — no range below its replica target, no leader removing itself — and, once the
//! events stop, for convergence: every range on exactly its target of usable members,
//! replicas even (max − min ≤ 1), leaders spread.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base::NodeId;

use super::split_map;
use crate::descriptor::{RangeId, RangeMap, ReplicaChange, Role};
use crate::rebalance::{MemberHealth, MemberInfo, RangeInfo, RebalanceConfig, Step, plan};

fn live(id: u64) -> MemberInfo {
    MemberInfo {
        id: NodeId(id),
        health: MemberHealth::Live,
        draining: false,
    }
}

fn infos(map: &RangeMap, leaders: &BTreeMap<RangeId, NodeId>) -> Vec<RangeInfo> {
    map.iter()
        .map(|d| RangeInfo {
            descriptor: d.clone(),
            leader: leaders.get(&d.id).copied(),
            caught_up: d.learners().collect(),
            replicas: None,
        })
        .collect()
}

#[test]
fn a_balanced_cluster_has_nothing_to_do() {
    let map = split_map(6);
    let leaders = map.iter().map(|d| (d.id, NodeId(d.id.0 % 3 + 1))).collect();
    let members = [live(1), live(2), live(3)];
    assert_eq!(
        plan(
            &members,
            &infos(&map, &leaders),
            &RebalanceConfig::default()
        ),
        vec![]
    );
}

#[test]
fn a_dead_member_is_replaced_only_after_the_timeout_and_add_comes_before_remove() {
    let map = split_map(1);
    let leaders = BTreeMap::from([(RangeId(1), NodeId(1))]);
    let config = RebalanceConfig::default();
    let mut members = vec![live(1), live(2), live(3), live(4)];
    members[2].health = MemberHealth::Unreachable {
        since: config.dead_member_timeout - Duration::from_secs(1),
    };
    // Member 4 holds nothing, but moving replicas to it waits while member 3 may come back:
    // only balance could move, and 3 voters on 4 members are balanced.
    assert_eq!(plan(&members, &infos(&map, &leaders), &config), vec![]);
    members[2].health = MemberHealth::Unreachable {
        since: config.dead_member_timeout,
    };
    let range = map.lookup(b"");
    assert_eq!(
        plan(&members, &infos(&map, &leaders), &config),
        vec![Step::Change {
            range: RangeId(1),
            generation: range.generation,
            change: ReplicaChange::AddLearner(NodeId(4)),
        }]
    );
}

#[test]
fn a_leader_on_a_draining_member_hands_over_before_its_replica_moves() {
    let map = split_map(1);
    let leaders = BTreeMap::from([(RangeId(1), NodeId(1))]);
    let mut members = vec![live(1), live(2), live(3), live(4)];
    members[0].draining = true;
    let steps = plan(
        &members,
        &infos(&map, &leaders),
        &RebalanceConfig::default(),
    );
    assert_eq!(
        steps,
        vec![Step::TransferLeader {
            range: RangeId(1),
            to: NodeId(2)
        }]
    );
}

#[test]
fn steps_per_round_are_bounded() {
    let map = split_map(20);
    let leaders = BTreeMap::new();
    let members = [live(1), live(2), live(3), live(4), live(5), live(6)];
    let config = RebalanceConfig {
        steps_max: 4,
        ..RebalanceConfig::default()
    };
    let steps = plan(&members, &infos(&map, &leaders), &config);
    assert_eq!(steps.len(), 4, "{steps:?}");
    let ranges: BTreeSet<RangeId> = steps
        .iter()
        .map(|s| match s {
            Step::Change { range, .. } | Step::TransferLeader { range, .. } => *range,
        })
        .collect();
    assert_eq!(ranges.len(), 4, "one step per range");
}

/// SplitMix64, the model's one random stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

type Planner = fn(&[MemberInfo], &[RangeInfo], &RebalanceConfig) -> Vec<Step>;

struct Model {
    planner: Planner,
    map: RangeMap,
    leaders: BTreeMap<RangeId, NodeId>,
    members: Vec<MemberInfo>,
    config: RebalanceConfig,
}

impl Model {
    fn usable(&self, id: NodeId) -> bool {
        self.members
            .iter()
            .any(|m| m.id == id && m.health == MemberHealth::Live && !m.draining)
    }

    fn reachable(&self, id: NodeId) -> bool {
        self.members
            .iter()
            .any(|m| m.id == id && m.health == MemberHealth::Live)
    }

    /// Raft's part: a range whose leader is unreachable elects the first reachable voter,
    /// if a quorum of voters is reachable.
    fn elect(&mut self) {
        for range in self.map.iter() {
            let leader = self.leaders.get(&range.id).copied();
            if leader.is_some_and(|l| self.reachable(l) && range.role_of(l) == Some(Role::Voter)) {
                continue;
            }
            let reachable: Vec<NodeId> = range.voters().filter(|&v| self.reachable(v)).collect();
            if reachable.len() >= range.quorum() {
                self.leaders.insert(range.id, reachable[0]);
            } else {
                self.leaders.remove(&range.id);
            }
        }
    }

    /// One round: plan, then carry out each step (a tenth fail), checking the invariants.
    fn round(&mut self, rng: &mut Rng) -> usize {
        self.elect();
        let steps = (self.planner)(
            &self.members,
            &infos(&self.map, &self.leaders),
            &self.config,
        );
        for step in &steps {
            if rng.below(10) == 0 {
                continue;
            }
            match *step {
                Step::TransferLeader { range, to } => {
                    let desc = self.map.get(range).expect("planned for a range");
                    assert_eq!(desc.role_of(to), Some(Role::Voter), "{step:?}");
                    if self.reachable(to) {
                        self.leaders.insert(range, to);
                    }
                }
                Step::Change {
                    range,
                    generation,
                    change,
                } => {
                    if let ReplicaChange::Remove(member) = change {
                        assert_ne!(
                            self.leaders.get(&range),
                            Some(&member),
                            "a leader removing itself: {step:?}"
                        );
                    }
                    let changed = self
                        .map
                        .change_replicas(range, generation, change)
                        .unwrap_or_else(|e| panic!("{step:?}: {e}"));
                    assert!(
                        changed.voters().count() >= self.config.replicas,
                        "{step:?} took {} below its target: {changed:?}",
                        changed.id
                    );
                }
            }
        }
        steps.len()
    }

    fn assert_converged(&self) {
        let mut counts: BTreeMap<NodeId, usize> = self
            .members
            .iter()
            .filter(|m| self.usable(m.id))
            .map(|m| (m.id, 0))
            .collect();
        let mut leads: BTreeMap<NodeId, usize> = counts.clone();
        for range in self.map.iter() {
            assert_eq!(range.learners().count(), 0, "{range:?}");
            assert_eq!(range.voters().count(), self.config.replicas, "{range:?}");
            for voter in range.voters() {
                assert!(self.usable(voter), "{range:?} keeps a replica on {voter}");
                *counts.get_mut(&voter).expect("usable") += 1;
            }
            let leader = self.leaders.get(&range.id).expect("a leader");
            *leads.get_mut(leader).expect("usable leader") += 1;
        }
        let (min, max) = (
            counts.values().min().copied().unwrap_or(0),
            counts.values().max().copied().unwrap_or(0),
        );
        assert!(max <= min + 1, "replicas per member: {counts:?}");
        for range in self.map.iter() {
            let leader = self.leaders[&range.id];
            for voter in range.voters() {
                assert!(
                    leads[&leader] < leads[&voter] + 2,
                    "leaders per member: {leads:?}"
                );
            }
        }
    }
}

fn run_seed(seed: u64, planner: Planner) {
    let mut rng = Rng(seed);
    let mut model = Model {
        planner,
        map: split_map(12 + rng.below(12)),
        leaders: BTreeMap::new(),
        members: vec![live(1), live(2), live(3)],
        config: RebalanceConfig {
            steps_max: 1 + rng.below(8) as usize,
            ..RebalanceConfig::default()
        },
    };
    let mut next_member = 4;
    let dead = Duration::from_secs(3600);
    for _ in 0..60 {
        match rng.below(12) {
            0 => {
                model.members.push(live(next_member));
                next_member += 1;
            }
            1 => {
                // One member dies at a time, and only while enough usable ones remain.
                let usable = model.members.iter().filter(|m| model.usable(m.id)).count();
                let any_down = model.members.iter().any(|m| m.health != MemberHealth::Live);
                if usable > model.config.replicas && !any_down {
                    let i = rng.below(model.members.len() as u64) as usize;
                    model.members[i].health = MemberHealth::Unreachable { since: dead };
                }
            }
            2 => {
                let usable = model.members.iter().filter(|m| model.usable(m.id)).count();
                if usable > model.config.replicas {
                    let i = rng.below(model.members.len() as u64) as usize;
                    model.members[i].draining = true;
                }
            }
            3 => {
                // A dead member that has nothing left is removed from the cluster.
                let holding: BTreeSet<NodeId> = model
                    .map
                    .iter()
                    .flat_map(|r| r.replicas.iter().map(|x| x.member))
                    .collect();
                model
                    .members
                    .retain(|m| m.health == MemberHealth::Live || holding.contains(&m.id));
            }
            _ => {}
        }
        model.round(&mut rng);
    }
    for _ in 0..400 {
        if model.round(&mut rng) == 0 {
            model.assert_converged();
            return;
        }
    }
    panic!("seed {seed}: the plan did not settle");
}

#[test]
fn joins_deaths_and_drains_converge_without_going_below_target() {
    for seed in 0..300 {
        run_seed(seed, plan);
    }
}

/// The classic bug: replace a dead or draining voter by removing it first and adding its
/// successor after (for a moment the range has one voter fewer than its target, and a second
/// failure then loses its quorum).
fn remove_before_add(
    members: &[MemberInfo],
    ranges: &[RangeInfo],
    config: &RebalanceConfig,
) -> Vec<Step> {
    let mut steps = plan(members, ranges, config);
    for step in &mut steps {
        if let Step::Change {
            range,
            generation,
            change: ReplicaChange::AddLearner(_),
        } = *step
            && let Some(info) = ranges.iter().find(|r| r.descriptor.id == range)
            && let Some(leaving) = info.descriptor.voters().find(|&v| {
                info.leader != Some(v)
                    && members
                        .iter()
                        .find(|m| m.id == v)
                        .is_none_or(|m| m.draining || m.health != MemberHealth::Live)
            })
        {
            *step = Step::Change {
                range,
                generation,
                change: ReplicaChange::Remove(leaving),
            };
        }
    }
    steps
}

#[test]
fn planted_remove_before_add_is_caught() {
    // Each catch is a panic of the model's check; keep the log to the count (nextest runs
    // every test in its own process, so the hook is this test's alone).
    std::panic::set_hook(Box::new(|_| {}));
    let caught = (0..300)
        .filter(|&seed| std::panic::catch_unwind(|| run_seed(seed, remove_before_add)).is_err())
        .count();
    let _ = std::panic::take_hook();
    assert!(caught > 0, "no seed caught a range going below its target");
    eprintln!("remove-before-add caught by {caught} of 300 seeds");
}

#[test]
fn a_new_buckets_first_range_goes_on_the_least_loaded_members_that_do_not_drain() {
    use crate::rebalance::{TooFewMembers, first_replicas};
    let voters = [NodeId(4), NodeId(1), NodeId(3), NodeId(2), NodeId(3)];
    let load = |m: NodeId| match m.0 {
        1 => 5,
        2 => 0,
        3 => 1,
        _ => 1,
    };
    assert_eq!(
        first_replicas(&voters, &[], 2, load),
        Ok(vec![NodeId(2), NodeId(3)]),
        "least loaded first, ties by id, listed by id"
    );
    assert_eq!(
        first_replicas(&voters, &[NodeId(2)], 3, load),
        Ok(vec![NodeId(1), NodeId(3), NodeId(4)])
    );
    assert_eq!(
        first_replicas(&voters, &[NodeId(2)], 4, load),
        Err(TooFewMembers {
            asked: 4,
            available: 3
        }),
        "a member listed twice counts once; a draining one not at all"
    );
}
