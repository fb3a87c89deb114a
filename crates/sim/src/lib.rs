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

/// A checker's verdict in words, each anomaly on its own line (for a failing seed's summary).
pub fn verdict_text(verdict: &check::Verdict) -> String {
    match verdict {
        check::Verdict::Valid => "valid".to_owned(),
        check::Verdict::Unknown(why) => format!("unknown: {why}"),
        check::Verdict::Invalid(anomalies) => {
            let each: Vec<String> = anomalies.iter().map(|a| a.explanation.clone()).collect();
            format!("invalid:\n  {}", each.join("\n  "))
        }
    }
}

/// How many seeds a simulation suite runs: `SIM_SEEDS` from the test's environment (read by
/// the tests, never by a run), else `default`.
pub fn seed_count(from_env: Option<String>, default: u64) -> u64 {
    from_env.and_then(|s| s.parse().ok()).unwrap_or(default)
}
