//! Deterministic simulations of Quorate's pure protocol cores: the real cores wired by an
//! in-memory network and in-memory disks, everything driven by one seeded random stream and
//! one virtual clock, so a seed is a complete, replayable run. The network drops, delays,
//! reorders and partitions messages; members crash and restart, losing what their disk had
//! not synced. Runs record histories in the tester's format and the `check` checkers judge
//! them.
//!
//! Must never read the wall clock, OS randomness, the environment or files: a seed alone
//! decides a run (the tests read the seed to replay from the environment, not this crate).

pub mod quorum;
pub mod ranges;
mod rng;

pub use rng::SimRng;
