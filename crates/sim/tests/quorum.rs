//! The quorum-bucket simulation over many seeds: every seed's history must be judged valid by
//! the set checker (no acknowledged add lost, every read at R + W > N holding every add
//! acknowledged before it began, nothing invented) and every key's replicas must converge
//! after healing; the same seed must replay the same run; and each planted bug must be
//! caught within the seeds CI runs. `SIM_SEEDS` sets how many seeds (default 1,000, split over
//! four tests so they run in parallel); `SIM_SEED` picks the seed `replay_one_seed` prints.

use sim::quorum::{Canary, Outcome, Settings, run};

/// Seeds every run of the suite covers, unless `SIM_SEEDS` says otherwise.
const SEEDS_DEFAULT: u64 = 1_000;
/// The seed tests split the seeds into this many parts.
const PARTS: u64 = 4;

fn seed_count() -> u64 {
    sim::seed_count(std::env::var("SIM_SEEDS").ok(), SEEDS_DEFAULT)
}

fn replay_command(seed: u64) -> String {
    format!("SIM_SEED={seed} cargo nextest run -p sim --test quorum replay_one_seed --no-capture")
}

fn settings(seed: u64, canary: Option<Canary>) -> Settings {
    Settings {
        seed,
        canary,
        trace: false,
    }
}

/// Runs part `part` of the seeds; panics with the replay command at the first failure.
fn check_part(part: u64) {
    let count = seed_count();
    let mut checked = 0;
    let mut replaced = 0;
    for seed in (0..count).filter(|s| s % PARTS == part) {
        let outcome = run(settings(seed, None));
        assert!(
            outcome.is_valid(),
            "{}\nreplay it: {}",
            outcome.summary(),
            replay_command(seed)
        );
        checked += outcome.report.ops_checked;
        replaced += outcome.replaced;
    }
    assert!(checked > 0 || count == 0, "the seeds checked no operation");
    // The stale-epoch path is exercised, not only possible.
    assert!(
        replaced > 0 || count < 100,
        "no request was placed again in {count} seeds"
    );
}

#[test]
fn seeds_of_part_0_are_valid() {
    check_part(0);
}

#[test]
fn seeds_of_part_1_are_valid() {
    check_part(1);
}

#[test]
fn seeds_of_part_2_are_valid() {
    check_part(2);
}

#[test]
fn seeds_of_part_3_are_valid() {
    check_part(3);
}

#[test]
fn a_seed_replays_the_same_run() {
    // Goal: determinism. Method: one seed twice; the event hash and the history must match.
    let first = run(settings(17, None));
    let second = run(settings(17, None));
    assert_eq!(first.trace_hash, second.trace_hash);
    assert_eq!(first.history, second.history);
    assert!(
        first.events > 1_000,
        "a run processes events: {}",
        first.events
    );
    let other = run(settings(18, None));
    assert_ne!(first.trace_hash, other.trace_hash, "seeds differ");
}

/// Seeds every planted bug runs on.
const CANARY_SEEDS: u64 = 200;

/// The runs among the first `CANARY_SEEDS` seeds the checkers judge invalid with `canary`
/// planted.
fn caught(canary: Canary) -> Vec<Outcome> {
    (0..CANARY_SEEDS.min(seed_count()))
        .map(|seed| run(settings(seed, Some(canary))))
        .filter(Outcome::is_invalid)
        .collect()
}

#[test]
fn planted_ack_on_send_is_caught() {
    // Goal: the simulation catches a coordinator that counts a merge as acknowledged when it
    // sends it (before any replica stored it). Method: plant it and run seeds; some must be
    // judged invalid.
    let caught = caught(Canary::AckOnSend);
    let first = caught.first().expect("the planted bug was never caught");
    eprintln!(
        "ack-on-send caught by {} of {CANARY_SEEDS} seeds; the first: {}",
        caught.len(),
        first.summary()
    );
}

#[test]
fn planted_ack_before_durable_is_caught() {
    // Goal: the simulation's crashes lose what was not synced, and the checker sees the lost
    // acknowledged write. Method: replicas acknowledge merges before syncing them.
    let caught = caught(Canary::AckBeforeDurable);
    let first = caught.first().expect("the planted bug was never caught");
    eprintln!(
        "ack-before-durable caught by {} of {CANARY_SEEDS} seeds; the first: {}",
        caught.len(),
        first.summary()
    );
}

#[test]
fn replay_one_seed() {
    // Goal: one command replays a failing seed with its whole trace. Method: run SIM_SEED (0
    // unless set) with the trace on, print it, and judge it like the others.
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let outcome = run(Settings {
        seed,
        canary: None,
        trace: true,
    });
    for line in &outcome.trace {
        println!("{line}");
    }
    for line in &outcome.history {
        println!("{line}");
    }
    println!("{}", outcome.summary());
    assert!(!outcome.trace.is_empty());
    assert!(outcome.is_valid(), "{}", outcome.summary());
}
