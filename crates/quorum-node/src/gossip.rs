//! The driver of SWIM gossip (`membership::Swim`) on one member: one task owns the state
//! machine and feeds it what arrives (gossip messages from peers, its own timers coming due);
//! its sends go out as `Replica.Gossip` calls through the fault-injection table (so partitions
//! cut gossip as they cut everything else), its timers become sleeping tasks, and its view
//! (alive, suspect, down) is published for the coordinator and `member list`. Every gossip
//! message a peer sends is also a heartbeat of that peer's phi-accrual detector, so suspicion
//! levels come from the gossip traffic itself, not from pings of every member by every member.
//!
//! Every second the task announces this member to the cluster members SWIM does not see
//! alive: that is how members find each other at start, after a restart, and after a
//! partition healed.

use membership::{Effects, Liveness, Swim, SwimConfig, SwimTimer};

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base::NodeId;
use base::limits::GOSSIP_SEND_TIMEOUT;
use proto::quorate::replica::v1 as replicapb;
use tokio::sync::mpsc;
use tonic::Request;

use crate::{Every, QuorumNode};

/// How often this member announces itself to the members SWIM does not see alive.
const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(1);

/// Gossip messages and timers waiting for the SWIM task, at most: beyond it received messages
/// are dropped (SWIM takes loss; the sender's probe then fails like a lost datagram).
const GOSSIP_INBOX: usize = 4096;

/// What the SWIM task is handed.
pub(super) enum Input {
    Data(Vec<u8>),
    Timer(SwimTimer),
}

/// The SWIM task's mailbox and what it publishes.
pub(super) struct GossipState {
    inbox: mpsc::Sender<Input>,
    /// Taken by the task when it starts.
    receiver: Mutex<Option<mpsc::Receiver<Input>>>,
    /// How SWIM saw each member after its last event.
    view: Mutex<BTreeMap<NodeId, Liveness>>,
}

impl GossipState {
    pub(super) fn new() -> GossipState {
        let (inbox, receiver) = mpsc::channel(GOSSIP_INBOX);
        GossipState {
            inbox,
            receiver: Mutex::new(Some(receiver)),
            view: Mutex::new(BTreeMap::new()),
        }
    }
}

impl QuorumNode {
    /// Runs SWIM gossip until `stop` turns true (see the module documentation).
    pub async fn watch_liveness(self: Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let Some(mut receiver) = self
            .gossip
            .receiver
            .lock()
            .expect("gossip receiver poisoned")
            .take()
        else {
            tracing::error!("swim: the gossip task was started twice");
            return;
        };
        let me = self.me();
        // A later life than any before it: a restarted member refutes its earlier death.
        let generation = self.clock.physical_micros();
        let size = self.replica.membership().nodes.len().max(3);
        let config = SwimConfig {
            cluster_size: u32::try_from(size).unwrap_or(u32::MAX),
            ..SwimConfig::default()
        };
        let mut swim = Swim::new(me, generation, generation ^ me.0, config);
        let mut every = Every::new(ANNOUNCE_INTERVAL, stop);
        loop {
            let effects = tokio::select! {
                input = receiver.recv() => match input {
                    Some(Input::Data(data)) => swim.handle_data(&data),
                    Some(Input::Timer(timer)) => swim.handle_timer(timer),
                    None => return,
                },
                more = every.tick() => {
                    if !more {
                        return;
                    }
                    let targets = self.announce_targets(&swim);
                    Ok(swim.announce(targets))
                }
            };
            match effects {
                Ok(effects) => self.carry_out(effects),
                // A stale or malformed message: SWIM changed nothing.
                Err(error) => tracing::debug!(%error, "swim: message not taken"),
            }
            *self.gossip.view.lock().expect("gossip view poisoned") =
                swim.members().into_iter().collect();
        }
    }

    /// The cluster members (but this one) SWIM does not see alive; members that left the
    /// cluster are forgotten by the failure detector on the way.
    fn announce_targets(&self, swim: &Swim) -> Vec<NodeId> {
        let me = self.me();
        let members: Vec<NodeId> = self
            .replica
            .membership()
            .nodes
            .keys()
            .map(|id| NodeId(*id))
            .filter(|id| *id != me)
            .collect();
        {
            let mut detector = self.detector.lock().expect("detector poisoned");
            let gone: Vec<NodeId> = detector
                .peers()
                .filter(|p| !members.contains(p))
                .copied()
                .collect();
            for peer in gone {
                detector.remove(&peer);
            }
        }
        let alive: Vec<NodeId> = swim
            .members()
            .into_iter()
            .filter(|(_, liveness)| *liveness == Liveness::Alive)
            .map(|(id, _)| id)
            .collect();
        members.into_iter().filter(|m| !alive.contains(m)).collect()
    }

    /// Sends SWIM's messages, schedules its timers and logs its membership changes.
    fn carry_out(self: &Arc<Self>, effects: Effects) {
        let me = self.me();
        for (to, data) in effects.sends {
            let node = self.clone();
            tokio::spawn(async move {
                let Ok(mut client) = node.client(to).await else {
                    return;
                };
                let mut call = Request::new(replicapb::GossipRequest { from: me.0, data });
                call.set_timeout(GOSSIP_SEND_TIMEOUT);
                // Lost like a datagram when it fails: SWIM's probes account for loss.
                let _ = client.gossip(call).await;
            });
        }
        for (timer, after) in effects.timers {
            let inbox = self.gossip.inbox.clone();
            tokio::spawn(async move {
                tokio::time::sleep(after).await;
                let _ = inbox.send(Input::Timer(timer)).await;
            });
        }
        for (member, up) in effects.changes {
            if up {
                tracing::info!(%member, "swim: member up");
            } else {
                tracing::warn!(%member, "swim: member down");
            }
        }
    }

    /// A gossip message from `from`: a heartbeat of its detector, then SWIM's to handle.
    pub(super) fn gossip_received(&self, from: NodeId, data: Vec<u8>) {
        if from != self.me() {
            let now = self.clock.monotonic();
            self.detector
                .lock()
                .expect("detector poisoned")
                .heartbeat(from, now);
        }
        if self.gossip.inbox.try_send(Input::Data(data)).is_err() {
            tracing::debug!(%from, "swim: inbox full; gossip message dropped");
        }
    }

    /// How SWIM sees each member it knows of.
    pub fn swim_liveness(&self) -> BTreeMap<NodeId, Liveness> {
        self.gossip
            .view
            .lock()
            .expect("gossip view poisoned")
            .clone()
    }

    /// How SWIM sees `member` (None: not known to it).
    pub(super) fn swim_view(&self, member: NodeId) -> Option<Liveness> {
        self.gossip
            .view
            .lock()
            .expect("gossip view poisoned")
            .get(&member)
            .copied()
    }
}
