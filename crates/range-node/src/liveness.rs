//! Member liveness for quiesced ranges: every member probes every other member once per Raft
//! heartbeat interval (`Ping` on the peer service) — one probe per member pair, however many
//! ranges they share, which is what lets a thousand idle ranges drop their own heartbeats. A
//! member is live while its last answer is younger than the window (the longest election
//! timeout), so a quiesced range whose leader's member dies wakes within about one election
//! timeout, as an awake range would notice its leader's silence. A member the gateway found
//! unreachable stops counting as live at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::RangeNode;

/// When each member last answered a probe, and which probes are in flight.
pub(crate) struct Liveness {
    window: Duration,
    /// When probing began: a member never heard from is silent since then.
    started: Instant,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    answered: HashMap<u64, Instant>,
    probing: std::collections::HashSet<u64>,
}

impl Liveness {
    pub(crate) fn new(window: Duration) -> Liveness {
        Liveness {
            window,
            started: Instant::now(),
            state: Mutex::new(State::default()),
        }
    }

    /// Whether `member` answered within the window.
    pub(crate) fn live(&self, member: u64) -> bool {
        let state = self.state.lock().expect("liveness poisoned");
        state
            .answered
            .get(&member)
            .is_some_and(|at| at.elapsed() < self.window)
    }

    /// How long `member` has not answered: since its last answer, or since probing began.
    pub(crate) fn silent_for(&self, member: u64) -> Duration {
        let state = self.state.lock().expect("liveness poisoned");
        state
            .answered
            .get(&member)
            .copied()
            .unwrap_or(self.started)
            .elapsed()
    }

    /// `member` could not be reached: it is not live until it answers again.
    pub(crate) fn lost(&self, member: u64) {
        self.state
            .lock()
            .expect("liveness poisoned")
            .answered
            .remove(&member);
    }

    fn answered(&self, member: u64) {
        self.state
            .lock()
            .expect("liveness poisoned")
            .answered
            .insert(member, Instant::now());
    }

    /// Marks a probe of `member` in flight; false when one already is.
    fn start_probe(&self, member: u64) -> bool {
        self.state
            .lock()
            .expect("liveness poisoned")
            .probing
            .insert(member)
    }

    fn end_probe(&self, member: u64) {
        self.state
            .lock()
            .expect("liveness poisoned")
            .probing
            .remove(&member);
    }
}

impl RangeNode {
    /// Probes every other member once per heartbeat interval, until stopped.
    pub(crate) async fn liveness_loop(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            let me = self.me();
            let members = self.replica.status().members;
            for (id, member) in members {
                if id == me {
                    continue;
                }
                let Some(url) = member.peer_urls.first().cloned() else {
                    continue;
                };
                if !self.liveness.start_probe(id) {
                    continue;
                }
                let node = self.clone();
                tokio::spawn(async move {
                    let answer = node.peers.ping(&url, me, node.liveness.window).await;
                    match answer {
                        Ok(answered) if answered == id => node.liveness.answered(id),
                        Ok(other) => {
                            tracing::debug!(
                                member = id,
                                answered = other,
                                "ping answered by another member"
                            );
                        }
                        Err(error) => tracing::debug!(member = id, %error, "ping"),
                    }
                    node.liveness.end_probe(id);
                });
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.heartbeat_interval) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }
}
