//! Fault injection into this member's outgoing peer messages, for the tester's nemesis:
//! messages to blocked peers fail as unreachable (a partition, one direction per member),
//! every message may be delayed, and a share of them dropped. [`FaultService`] serves the
//! `quorate.fault.v1.Faults` control API; a member has both only when started with
//! `--unsafe-fault-injection`. Drops follow a fixed-seed generator, not OS randomness. The same
//! API skews the member's [`HostClock`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use consensus::{PeerError, Replica};

use crate::clock::HostClock;
use proto::quorate::fault::v1 as pb;
use proto::quorate::fault::v1::faults_server::{Faults, FaultsServer};
use tonic::{Request, Response, Status};

/// The faults in force on one member's outgoing peer messages.
#[derive(Default)]
pub struct FaultTable {
    state: Mutex<State>,
    blocked_messages: AtomicU64,
    dropped_messages: AtomicU64,
}

#[derive(Default)]
struct State {
    blocked: BTreeSet<String>,
    delay: Duration,
    drop_ratio: f64,
    /// xorshift64 state for drops.
    rng: u64,
}

/// A peer URL as compared: no trailing slash.
fn normalize(url: &str) -> String {
    url.trim_end_matches('/').to_owned()
}

impl FaultTable {
    pub fn new() -> FaultTable {
        FaultTable::default()
    }

    /// Blocks messages to these peer URLs, in addition to those already blocked.
    pub fn block(&self, urls: impl IntoIterator<Item = String>) {
        let mut state = self.state.lock().expect("fault table poisoned");
        state
            .blocked
            .extend(urls.into_iter().map(|u| normalize(&u)));
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().expect("fault table poisoned").delay = delay;
    }

    /// Drops this share of messages (clamped to 0..=1).
    pub fn set_drop_ratio(&self, ratio: f64) {
        let mut state = self.state.lock().expect("fault table poisoned");
        state.drop_ratio = if ratio.is_nan() {
            0.0
        } else {
            ratio.clamp(0.0, 1.0)
        };
    }

    /// Removes every fault (the counters stay).
    pub fn heal(&self) {
        let mut state = self.state.lock().expect("fault table poisoned");
        state.blocked.clear();
        state.delay = Duration::ZERO;
        state.drop_ratio = 0.0;
    }

    /// Decides the fate of one message to `url`: the delay to apply before sending it, or
    /// the error it fails with.
    pub fn gate(&self, url: &str) -> Result<Duration, PeerError> {
        let mut state = self.state.lock().expect("fault table poisoned");
        if state.blocked.contains(&normalize(url)) {
            self.blocked_messages.fetch_add(1, Ordering::Relaxed);
            return Err(PeerError::Unreachable(format!(
                "{url}: blocked by fault injection"
            )));
        }
        if state.drop_ratio > 0.0 {
            if state.rng == 0 {
                state.rng = 0x9e37_79b9_7f4a_7c15;
            }
            state.rng ^= state.rng << 13;
            state.rng ^= state.rng >> 7;
            state.rng ^= state.rng << 17;
            let draw = (state.rng >> 11) as f64 / (1u64 << 53) as f64;
            if draw < state.drop_ratio {
                self.dropped_messages.fetch_add(1, Ordering::Relaxed);
                return Err(PeerError::Unreachable(format!(
                    "{url}: dropped by fault injection"
                )));
            }
        }
        Ok(state.delay)
    }

    /// The faults in force and the counters, for `member`.
    pub fn snapshot(&self, member: &str) -> pb::FaultState {
        let state = self.state.lock().expect("fault table poisoned");
        pb::FaultState {
            member: member.to_owned(),
            blocked_peer_urls: state.blocked.iter().cloned().collect(),
            delay_ms: state.delay.as_millis() as u64,
            drop_ratio: state.drop_ratio,
            blocked_messages: self.blocked_messages.load(Ordering::Relaxed),
            dropped_messages: self.dropped_messages.load(Ordering::Relaxed),
            clock_offset_ms: 0,
            clock_rate: 1.0,
        }
    }
}

/// Serves `quorate.fault.v1.Faults` for one member.
pub struct FaultService {
    table: Arc<FaultTable>,
    clock: Arc<HostClock>,
    replica: Arc<Replica>,
}

impl FaultService {
    pub fn server(
        table: Arc<FaultTable>,
        clock: Arc<HostClock>,
        replica: Arc<Replica>,
    ) -> FaultsServer<FaultService> {
        FaultsServer::new(FaultService {
            table,
            clock,
            replica,
        })
    }

    fn state(&self) -> Response<pb::FaultState> {
        let name = self
            .replica
            .membership()
            .nodes
            .get(&self.replica.id())
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let skew = self.clock.skew();
        Response::new(pb::FaultState {
            clock_offset_ms: skew.offset_ms,
            clock_rate: skew.rate,
            ..self.table.snapshot(&name)
        })
    }

    /// Peer URLs of `peer`: a member's name, or a URL as given.
    fn resolve(&self, peer: &str) -> Result<Vec<String>, Status> {
        if peer.contains("://") {
            return Ok(vec![peer.to_owned()]);
        }
        let membership = self.replica.membership();
        let member = membership
            .nodes
            .values()
            .find(|m| m.name == peer)
            .ok_or_else(|| Status::not_found(format!("no member named {peer:?}")))?;
        Ok(member.peer_urls.clone())
    }
}

#[tonic::async_trait]
impl Faults for FaultService {
    async fn block(
        &self,
        request: Request<pb::BlockRequest>,
    ) -> Result<Response<pb::FaultState>, Status> {
        let mut urls = Vec::new();
        for peer in &request.get_ref().peers {
            urls.extend(self.resolve(peer)?);
        }
        tracing::info!(?urls, "fault injection: blocking peers");
        self.table.block(urls);
        Ok(self.state())
    }

    async fn delay(
        &self,
        request: Request<pb::DelayRequest>,
    ) -> Result<Response<pb::FaultState>, Status> {
        let delay = Duration::from_millis(request.get_ref().delay_ms);
        tracing::info!(?delay, "fault injection: delaying peer messages");
        self.table.set_delay(delay);
        Ok(self.state())
    }

    async fn drop(
        &self,
        request: Request<pb::DropRequest>,
    ) -> Result<Response<pb::FaultState>, Status> {
        let ratio = request.get_ref().ratio;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(Status::invalid_argument(format!(
                "drop ratio {ratio} is not between 0 and 1"
            )));
        }
        tracing::info!(ratio, "fault injection: dropping peer messages");
        self.table.set_drop_ratio(ratio);
        Ok(self.state())
    }

    async fn clock(
        &self,
        request: Request<pb::ClockRequest>,
    ) -> Result<Response<pb::FaultState>, Status> {
        let request = request.get_ref();
        let skew = self
            .clock
            .set_skew(request.offset_ms, request.rate)
            .map_err(|error| Status::invalid_argument(error.to_string()))?;
        tracing::info!(
            offset_ms = skew.offset_ms,
            rate = skew.rate,
            "fault injection: clock skewed"
        );
        Ok(self.state())
    }

    async fn heal(
        &self,
        _request: Request<pb::HealRequest>,
    ) -> Result<Response<pb::FaultState>, Status> {
        tracing::info!("fault injection: healed");
        self.table.heal();
        self.clock.reset();
        Ok(self.state())
    }

    async fn state(
        &self,
        _request: Request<pb::StateRequest>,
    ) -> Result<Response<pb::FaultState>, Status> {
        Ok(self.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_peers_fail_dropped_share_is_close_and_heal_clears() {
        let table = FaultTable::new();
        assert_eq!(table.gate("http://a:1").ok(), Some(Duration::ZERO));
        table.block(["http://a:1/".to_owned()]);
        assert!(
            matches!(table.gate("http://a:1"), Err(PeerError::Unreachable(m)) if m.contains("blocked"))
        );
        assert_eq!(table.gate("http://b:1").ok(), Some(Duration::ZERO));
        table.set_delay(Duration::from_millis(30));
        assert_eq!(
            table.gate("http://b:1").ok(),
            Some(Duration::from_millis(30))
        );
        table.set_drop_ratio(0.25);
        let dropped = (0..4000)
            .filter(|_| table.gate("http://b:1").is_err())
            .count();
        assert!(
            (800..1200).contains(&dropped),
            "{dropped} of 4000 dropped at 25 %"
        );
        table.heal();
        assert_eq!(table.gate("http://a:1").ok(), Some(Duration::ZERO));
        let state = table.snapshot("n1");
        assert_eq!(state.blocked_messages, 1);
        assert_eq!(state.dropped_messages, dropped as u64);
        assert!(state.blocked_peer_urls.is_empty());
    }
}
