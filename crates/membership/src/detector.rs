//! The failure detector over all peers: one [`PhiAccrual`] per peer heard from, and the rule
//! that turns phi into a [`Status`]. It never reads a clock and keeps peers in key order, so
//! reports are deterministic.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::phi::{Config, ConfigError, PhiAccrual};

/// What the detector believes about a peer.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    /// Heard from, and phi is below the threshold.
    Alive,
    /// Heard from, and phi is at or above the threshold.
    Suspect,
    /// Never heard from (or removed): the detector has no evidence either way.
    Unknown,
}

impl Status {
    /// Returns the lowercase name used in JSON output and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Alive => "alive",
            Status::Suspect => "suspect",
            Status::Unknown => "unknown",
        }
    }
}

/// A phi-accrual failure detector for a set of peers keyed by `K`.
///
/// A peer is tracked from its first heartbeat until [`Detector::remove`]; the caller removes
/// peers that leave the cluster, which keeps the map bounded by the membership.
#[derive(Clone, Debug)]
pub struct Detector<K: Ord + Clone> {
    /// The validated settings every peer's estimate is built with.
    config: Config,
    /// One estimate per peer heard from.
    peers: BTreeMap<K, PhiAccrual>,
}

impl<K: Ord + Clone> Detector<K> {
    /// Returns a detector that tracks no peer yet, or the first setting of `config` out of range.
    pub fn new(config: Config) -> Result<Detector<K>, ConfigError> {
        config.validate()?;
        Ok(Detector {
            config,
            peers: BTreeMap::new(),
        })
    }

    /// Returns the settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Records a heartbeat from `peer` that arrived at `now`, starting to track it if new.
    pub fn heartbeat(&mut self, peer: K, now: Instant) {
        self.peers
            .entry(peer)
            .or_insert_with(|| PhiAccrual::with_valid_config(&self.config))
            .heartbeat(now);
    }

    /// Returns `peer`'s phi at `now`, or 0 if it was never heard from.
    pub fn phi(&self, peer: &K, now: Instant) -> f64 {
        self.peers
            .get(peer)
            .map_or(0.0, |estimate| estimate.phi(now))
    }

    /// Returns [`Status::Unknown`] for a peer never heard from, otherwise
    /// [`Status::Alive`] while its phi is below the threshold and [`Status::Suspect`] from then on.
    pub fn status(&self, peer: &K, now: Instant) -> Status {
        match self.peers.get(peer) {
            None => Status::Unknown,
            Some(estimate) => self.classify(estimate.phi(now)),
        }
    }

    /// Returns whether requests may be sent to `peer`: true unless it is suspect. An unknown
    /// peer counts as available (as in Akka), so a freshly started member does not treat the
    /// whole cluster as down before the first heartbeats arrive; callers that must tell the two
    /// apart use [`Detector::status`].
    pub fn is_available(&self, peer: &K, now: Instant) -> bool {
        self.status(peer, now) != Status::Suspect
    }

    /// Stops tracking `peer` and returns its estimate; it is unknown until its next heartbeat.
    pub fn remove(&mut self, peer: &K) -> Option<PhiAccrual> {
        self.peers.remove(peer)
    }

    /// Returns `peer`'s estimate, for its mean, deviation and last heartbeat.
    pub fn get(&self, peer: &K) -> Option<&PhiAccrual> {
        self.peers.get(peer)
    }

    /// Returns the tracked peers in ascending order.
    pub fn peers(&self) -> impl Iterator<Item = &K> + '_ {
        self.peers.keys()
    }

    /// Returns every tracked peer with its phi and status at `now`, in ascending peer order.
    pub fn report(&self, now: Instant) -> Vec<(K, f64, Status)> {
        self.peers
            .iter()
            .map(|(peer, estimate)| {
                let phi = estimate.phi(now);
                (peer.clone(), phi, self.classify(phi))
            })
            .collect()
    }

    /// Returns the status of a tracked peer with suspicion level `phi`.
    fn classify(&self, phi: f64) -> Status {
        if phi < self.config.threshold {
            Status::Alive
        } else {
            Status::Suspect
        }
    }
}
