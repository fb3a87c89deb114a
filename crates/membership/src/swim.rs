//! SWIM gossip membership: who is alive, suspect or down, agreed by gossip rather than by every
//! member pinging every other one. The protocol is the `foca` crate's (SWIM with the
//! infection-style dissemination and suspicion extensions); this module gives it our member
//! identities and wire encoding and turns its callbacks into a list of effects, so it stays
//! pure like the rest of the crate: the driver hands in received bytes and due timers, and
//! sends, schedules and reports what comes out.
//!
//! Each member probes one random member per period (directly, then through others if the
//! direct probe times out) and piggybacks membership updates on every message; a member that
//! fails its probes becomes suspect, and down once the suspicion has not been refuted for a
//! while. Cost per member is constant in the cluster size, where direct all-to-all pings grow
//! with it.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use base::NodeId;
use foca::{
    AccumulatingRuntime, Foca, Identity, Member, NoCustomBroadcast, OwnedNotification,
    PostcardCodec, State, Timer,
};
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

/// A member as SWIM knows it: its id and the generation of its current life. A restarted
/// member starts a later generation, so what was said about its earlier life (down) does not
/// stick to it; a member declared down renews itself into the next generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SwimId {
    pub member: u64,
    pub generation: u64,
}

impl Identity for SwimId {
    type Addr = u64;

    fn renew(&self) -> Option<Self> {
        Some(SwimId {
            member: self.member,
            generation: self.generation.wrapping_add(1),
        })
    }

    fn addr(&self) -> u64 {
        self.member
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

/// A timer SWIM asked for: hand it back through [`Swim::handle_timer`] once its delay passed.
/// It belongs to one life of the state machine (see `Swim::drain`); a later life ignores it.
#[derive(Clone, Debug)]
pub struct SwimTimer {
    life: u64,
    timer: Timer<SwimId>,
}

/// How SWIM sees one member.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Suspect,
    Down,
}

impl Liveness {
    pub fn as_str(self) -> &'static str {
        match self {
            Liveness::Alive => "alive",
            Liveness::Suspect => "suspect",
            Liveness::Down => "down",
        }
    }
}

/// What the driver must do after an event: send these bytes to these members, hand these
/// timers back after their delays, and note these changes of membership.
#[derive(Debug, Default)]
pub struct Effects {
    pub sends: Vec<(NodeId, Vec<u8>)>,
    pub timers: Vec<(SwimTimer, Duration)>,
    /// Members that came up (true) or went down (false), in order.
    pub changes: Vec<(NodeId, bool)>,
}

/// Why an event could not be handled (a malformed or oversized message, or one from this
/// member itself). Nothing changed; the driver logs it and goes on.
#[derive(Debug, thiserror::Error)]
#[error("swim: {0}")]
pub struct SwimError(String);

/// The timing of SWIM on a LAN.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SwimConfig {
    /// How often this member probes a random member.
    pub probe_period: Duration,
    /// How long a direct probe waits for its answer before asking others to probe.
    pub probe_rtt: Duration,
    /// How many members to expect: sets how long updates are retransmitted and how long a
    /// suspicion lasts before the member is declared down.
    pub cluster_size: u32,
}

impl Default for SwimConfig {
    fn default() -> SwimConfig {
        // foca's LAN timing (memberlist's): an answer may take half a second on a loaded
        // member before it is suspected; quicker hints come from the phi-accrual detector.
        SwimConfig {
            probe_period: Duration::from_secs(1),
            probe_rtt: Duration::from_millis(500),
            cluster_size: 3,
        }
    }
}

type Protocol = Foca<SwimId, PostcardCodec, StdRng, NoCustomBroadcast>;

/// One member's SWIM state machine.
pub struct Swim {
    foca: Protocol,
    runtime: AccumulatingRuntime<SwimId>,
    config: foca::Config,
    seed: u64,
    /// Counts the fresh starts after renewals; timers of earlier lives are ignored.
    life: u64,
}

fn protocol(identity: SwimId, config: &foca::Config, seed: u64) -> Protocol {
    Foca::new(
        identity,
        config.clone(),
        StdRng::seed_from_u64(seed ^ identity.generation),
        PostcardCodec,
    )
}

impl Swim {
    /// This member (`me`, in life `generation`) with randomness from `seed`. Returns the
    /// effects of starting: none until the driver announces it to peers.
    pub fn new(me: NodeId, generation: u64, seed: u64, config: SwimConfig) -> Swim {
        let size = NonZeroU32::new(config.cluster_size.max(1)).expect("at least 1");
        let mut foca_config = foca::Config::new_lan(size);
        foca_config.probe_period = config.probe_period;
        foca_config.probe_rtt = config.probe_rtt;
        // Updates ride on a gRPC call, not a UDP datagram: room for many per message.
        foca_config.max_packet_size = NonZeroUsize::new(64 * 1024).expect("nonzero");
        let identity = SwimId {
            member: me.0,
            generation,
        };
        Swim {
            foca: protocol(identity, &foca_config, seed),
            runtime: AccumulatingRuntime::new(),
            config: foca_config,
            seed,
            life: 0,
        }
    }

    /// Introduces this member to `peers` (whose generations it does not know); repeated for
    /// peers not yet known to be up, it also brings back members after a partition. A peer
    /// foca will not announce to (this member itself) is skipped.
    pub fn announce(&mut self, peers: impl IntoIterator<Item = NodeId>) -> Effects {
        for peer in peers {
            let dst = SwimId {
                member: peer.0,
                generation: 0,
            };
            let _ = self.foca.announce(dst, &mut self.runtime);
        }
        self.drain()
    }

    /// A message from another member.
    pub fn handle_data(&mut self, data: &[u8]) -> Result<Effects, SwimError> {
        let handled = self.foca.handle_data(data, &mut self.runtime);
        // Effects of a partly handled message are kept either way.
        let effects = self.drain();
        handled.map_err(|e| SwimError(e.to_string()))?;
        Ok(effects)
    }

    /// A timer that came due.
    pub fn handle_timer(&mut self, timer: SwimTimer) -> Result<Effects, SwimError> {
        if timer.life != self.life {
            return Ok(Effects::default());
        }
        let handled = self.foca.handle_timer(timer.timer, &mut self.runtime);
        let effects = self.drain();
        handled.map_err(|e| SwimError(e.to_string()))?;
        Ok(effects)
    }

    /// Every member SWIM knows of (this one excluded) and how it sees it.
    pub fn members(&self) -> Vec<(NodeId, Liveness)> {
        let mut out: Vec<(NodeId, Liveness)> = self
            .foca
            .iter_membership_state()
            .map(|m: &Member<SwimId>| {
                let liveness = match m.state() {
                    State::Alive => Liveness::Alive,
                    State::Suspect => Liveness::Suspect,
                    State::Down => Liveness::Down,
                };
                (NodeId(m.id().member), liveness)
            })
            .collect();
        // A member known in two lives is as its latest one says: keep the best state.
        out.sort_by_key(|(id, liveness)| (*id, *liveness as u8));
        out.dedup_by_key(|(id, _)| *id);
        out
    }

    fn drain(&mut self) -> Effects {
        let mut effects = Effects::default();
        loop {
            let mut rejoin = None;
            while let Some((to, data)) = self.runtime.to_send() {
                effects.sends.push((NodeId(to.member), data.to_vec()));
            }
            while let Some((after, timer)) = self.runtime.to_schedule() {
                let life = self.life;
                effects.timers.push((SwimTimer { life, timer }, after));
            }
            while let Some(notification) = self.runtime.to_notify() {
                match notification {
                    OwnedNotification::MemberUp(id) => {
                        effects.changes.push((NodeId(id.member), true));
                    }
                    OwnedNotification::MemberDown(id) => {
                        effects.changes.push((NodeId(id.member), false));
                    }
                    OwnedNotification::Rejoin(id) => rejoin = Some(id),
                    _ => {}
                }
            }
            let Some(identity) = rejoin else {
                return effects;
            };
            self.start_over(identity);
            // What the old life asked for is moot; the new life's requests follow.
            effects.sends.clear();
            effects.timers.clear();
        }
    }

    /// Declared down by the others, foca renews this member's identity (the next
    /// generation). That also voids its pending timers, among them the ones that would turn
    /// its own suspicions into downs, which would leave those members suspect until they
    /// refute. So the renewed member starts over from a fresh state, seeded with the members
    /// it knew: down ones as down, the others as alive, to be probed afresh.
    fn start_over(&mut self, identity: SwimId) {
        let known: Vec<Member<SwimId>> = self
            .foca
            .iter_membership_state()
            .map(|m| {
                let state = match m.state() {
                    State::Down => State::Down,
                    State::Alive | State::Suspect => State::Alive,
                };
                Member::new(*m.id(), m.incarnation(), state)
            })
            .collect();
        self.foca = protocol(identity, &self.config, self.seed);
        self.runtime = AccumulatingRuntime::new();
        self.life += 1;
        // A member foca refuses is left out; the driver's announcements bring it back.
        let _ = self
            .foca
            .apply_many(known.into_iter(), false, &mut self.runtime);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    enum Event {
        Data(Vec<u8>),
        Timer(SwimTimer),
    }

    /// Members on a simulated network with virtual time: messages take 1 ms, a cut member
    /// neither sends nor receives, and (as the driver does) every member announces itself to
    /// the members it does not see alive every 2 s.
    struct Net {
        swims: BTreeMap<u64, Swim>,
        queue: Vec<(Duration, u64, u64, Event)>,
        cut: BTreeSet<u64>,
        now: Duration,
        seq: u64,
    }

    impl Net {
        fn new(members: &[u64]) -> Net {
            let config = SwimConfig {
                cluster_size: members.len() as u32,
                ..SwimConfig::default()
            };
            let mut net = Net {
                swims: members
                    .iter()
                    .map(|m| (*m, Swim::new(NodeId(*m), 1, *m, config)))
                    .collect(),
                queue: Vec::new(),
                cut: BTreeSet::new(),
                now: Duration::ZERO,
                seq: 0,
            };
            net.announce_all();
            net
        }

        fn apply(&mut self, from: u64, effects: Effects) {
            for (to, data) in effects.sends {
                if !self.cut.contains(&from) && !self.cut.contains(&to.0) {
                    self.push(Duration::from_millis(1), to.0, Event::Data(data));
                }
            }
            for (timer, after) in effects.timers {
                self.push(after, from, Event::Timer(timer));
            }
        }

        fn push(&mut self, after: Duration, to: u64, event: Event) {
            self.seq += 1;
            self.queue.push((self.now + after, self.seq, to, event));
        }

        fn announce_all(&mut self) {
            let ids: Vec<u64> = self.swims.keys().copied().collect();
            for me in &ids {
                let alive: Vec<NodeId> = self.swims[me]
                    .members()
                    .into_iter()
                    .filter(|(_, l)| *l == Liveness::Alive)
                    .map(|(id, _)| id)
                    .collect();
                let peers: Vec<NodeId> = ids
                    .iter()
                    .filter(|p| *p != me && !alive.contains(&NodeId(**p)))
                    .map(|p| NodeId(*p))
                    .collect();
                let effects = self.swims.get_mut(me).unwrap().announce(peers);
                self.apply(*me, effects);
            }
        }

        /// Runs events until `until` (virtual time after start).
        fn run_for(&mut self, span: Duration) {
            let until = self.now + span;
            let mut next_announce = self.now + Duration::from_secs(2);
            loop {
                let next = self
                    .queue
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, (at, seq, _, _))| (*at, *seq))
                    .map(|(i, (at, _, _, _))| (i, *at));
                let Some((i, at)) = next.filter(|(_, at)| *at <= until) else {
                    self.now = until;
                    return;
                };
                if next_announce <= at {
                    self.now = next_announce;
                    next_announce += Duration::from_secs(2);
                    self.announce_all();
                    continue;
                }
                let (at, _, to, event) = self.queue.swap_remove(i);
                self.now = at;
                let swim = self.swims.get_mut(&to).unwrap();
                let effects = match event {
                    Event::Data(data) => swim.handle_data(&data),
                    Event::Timer(timer) => swim.handle_timer(timer),
                };
                // A stale message (for an earlier life) is an error to report, not a failure.
                if let Ok(effects) = effects {
                    self.apply(to, effects);
                }
            }
        }

        fn view(&self, of: u64) -> BTreeMap<u64, Liveness> {
            self.swims[&of]
                .members()
                .into_iter()
                .map(|(id, l)| (id.0, l))
                .collect()
        }
    }

    #[test]
    fn members_find_each_other_a_cut_member_goes_down_and_comes_back_after_healing() {
        // Goal: SWIM membership through foca as the driver uses it. Method: three members on
        // a simulated network: after announcing, each sees the others alive; with member 3
        // cut off, 1 and 2 declare it down (and it them); healed, all are alive again.
        let mut net = Net::new(&[1, 2, 3]);
        net.run_for(Duration::from_secs(5));
        for me in [1, 2, 3] {
            let view = net.view(me);
            let others: Vec<u64> = [1, 2, 3].into_iter().filter(|m| *m != me).collect();
            for other in others {
                assert_eq!(
                    view.get(&other),
                    Some(&Liveness::Alive),
                    "{me} sees {view:?}"
                );
            }
        }
        net.cut.insert(3);
        net.run_for(Duration::from_secs(30));
        for me in [1, 2] {
            assert_eq!(
                net.view(me).get(&3),
                Some(&Liveness::Down),
                "{me}: {:?}",
                net.view(me)
            );
            assert_eq!(
                net.view(me).get(&(3 - me)),
                Some(&Liveness::Alive),
                "the majority side stays together"
            );
        }
        assert!(
            net.view(3).values().all(|l| *l != Liveness::Alive),
            "the cut member sees nobody alive: {:?}",
            net.view(3)
        );
        net.cut.clear();
        net.run_for(Duration::from_secs(30));
        for me in [1, 2, 3] {
            let alive = net
                .view(me)
                .values()
                .filter(|l| **l == Liveness::Alive)
                .count();
            assert_eq!(alive, 2, "{me} after healing: {:?}", net.view(me));
        }
    }
}
