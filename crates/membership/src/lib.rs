//! Cluster membership cores. For now it owns the phi-accrual failure detector: how suspicious a
//! member should be of each peer, given the heartbeats it has received. It is pure: it never
//! performs I/O, reads a clock, draws random numbers or depends on a runtime; the driver passes
//! every heartbeat's arrival time and the current time in as `Instant`s.
//!
//! # Why accrual
//!
//! A fixed timeout ("dead after 2 s of silence") is either too eager on a jittery network or
//! too slow on a quiet one, and it gives a yes/no answer with no measure of confidence. The
//! phi-accrual detector (Hayashibara et al., 2004, in the variant Akka and Cassandra use)
//! instead keeps a window of recent heartbeat intervals per peer and turns the current silence
//! into a suspicion level: phi = -log10(P), where P is the chance, under a normal distribution
//! fitted to the window, that a live peer's next heartbeat would come this late or later. So
//! the detector adapts to the jitter it observes: regular heartbeats make phi rise quickly once
//! one is late, irregular ones make it rise slowly.
//!
//! Phi = 1 means a 10% chance that the peer is still alive given its history, phi = 8 (the
//! default threshold) about 1e-8. A floor on the standard deviation (100 ms by default) keeps
//! perfectly regular heartbeats from making phi explode on a few milliseconds of jitter, and an
//! acceptable pause can be added to the expected interval to tolerate known stalls.
//!
//! # What callers do with it
//!
//! [`Detector`] tracks every peer and classifies each as [`Status::Alive`] (phi below the
//! threshold), [`Status::Suspect`] or [`Status::Unknown`] (never heard from). The quorum
//! coordinator prefers replicas below the threshold and sends hints for suspects instead of
//! waiting on them; liveness and phi are reported by `quorate member list -w json` and in the
//! metrics.

mod detector;
mod phi;
pub mod swim;

pub use detector::{Detector, Status};
pub use phi::{Config, ConfigError, PhiAccrual};
pub use swim::{Effects, Liveness, Swim, SwimConfig, SwimError, SwimId, SwimTimer};

#[cfg(test)]
mod tests;
