//! The nemesis plan of one run, drawn from its seed: how lossy the network is, and a few
//! faults at random times while clients run — crash-restarts (the member's unsynced writes
//! and coordinated requests are lost), one member cut off, or the cluster split in two —
//! each healed after a while; at the end everything heals at once.

use std::collections::BTreeSet;

use base::NodeId;

use super::Sim;
use crate::SimRng;

#[derive(Clone, Debug)]
pub(super) enum Fault {
    Crash(NodeId),
    Restart(NodeId),
    /// Messages between the two sides are lost (both ways).
    Partition(Vec<NodeId>, Vec<NodeId>),
    Heal,
    /// The ring epoch moves on (as a ring change's steps move it); members apply it at
    /// different times, so calls placed at the older one are refused for a while.
    EpochBump,
    /// Heal every partition, restart every member, stop losing messages.
    HealAll,
}

pub(super) struct FaultPlan {
    pub(super) drop_per_mille: u64,
    pub(super) faults: Vec<(u64, Fault)>,
}

impl FaultPlan {
    /// A plan for `members` over the first `until` microseconds.
    pub(super) fn new(rng: &mut SimRng, members: &[NodeId], until: u64) -> FaultPlan {
        let drop_per_mille = *rng.pick(&[0, 10, 50, 150]);
        let mut faults = Vec::new();
        for _ in 0..rng.range(1, 5) {
            let start = rng.range(50_000, until - 100_000);
            let end = (start + rng.range(20_000, 400_000)).min(until);
            let member = *rng.pick(members);
            match rng.range(0, 4) {
                3 => faults.push((start, Fault::EpochBump)),
                0 => {
                    faults.push((start, Fault::Crash(member)));
                    faults.push((end, Fault::Restart(member)));
                }
                1 => {
                    let rest = members.iter().copied().filter(|m| *m != member).collect();
                    faults.push((start, Fault::Partition(vec![member], rest)));
                    faults.push((end, Fault::Heal));
                }
                _ => {
                    let cut = rng.range(1, members.len() as u64) as usize;
                    let (left, right) = members.split_at(cut);
                    faults.push((start, Fault::Partition(left.to_vec(), right.to_vec())));
                    faults.push((end, Fault::Heal));
                }
            }
        }
        faults.sort_by_key(|(time, _)| *time);
        FaultPlan {
            drop_per_mille,
            faults,
        }
    }

    pub(super) fn describe(&self) -> String {
        let each: Vec<String> = self
            .faults
            .iter()
            .map(|(time, fault)| format!("{}ms {fault:?}", time / 1_000))
            .collect();
        format!(
            "{}‰ of messages lost; {}",
            self.drop_per_mille,
            each.join(", ")
        )
    }
}

impl Sim {
    pub(super) fn fault(&mut self, fault: Fault) {
        match fault {
            Fault::Crash(member) => {
                if self.members[&member].up {
                    self.members.get_mut(&member).expect("member").crash();
                }
            }
            Fault::Restart(member) => self.restart(member),
            Fault::Partition(left, right) => {
                for a in &left {
                    for b in &right {
                        self.net.blocked.insert((*a, *b));
                        self.net.blocked.insert((*b, *a));
                    }
                }
            }
            Fault::Heal => self.net.blocked = BTreeSet::new(),
            Fault::EpochBump => {
                self.epoch += 1;
                for member in self.ids.clone() {
                    // The metadata group's commit reaches members at different times, down
                    // ones included (they replay it at restart).
                    let delay = self.rng.range(0, 50_000);
                    let epoch = self.epoch;
                    self.after(delay, super::Event::LearnEpoch { member, epoch });
                }
            }
            Fault::HealAll => {
                self.ops_open = false;
                self.net.blocked = BTreeSet::new();
                self.net.drop_per_mille = 0;
                for member in self.ids.clone() {
                    self.restart(member);
                }
            }
        }
    }

    fn restart(&mut self, member: NodeId) {
        let m = self.members.get_mut(&member).expect("member");
        if m.up {
            return;
        }
        m.restart();
        let life = m.life;
        self.after(
            super::HINT_INTERVAL,
            super::Event::HintTick { member, life },
        );
    }
}
