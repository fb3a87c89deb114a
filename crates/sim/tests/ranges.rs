//! The range simulation over many seeds: every seed's history must be judged valid by the set
//! checker with linearizable reads, and the invariants (the metadata partitions the keys, no
//! generation goes backwards, no member serves overlapping replicas) must hold at every step;
//! the same seed must replay the same run; and each planted bug must be caught within the
//! seeds CI runs. `SIM_SEEDS` sets how many seeds (default 1,000, split over four tests);
//! `SIM_SEED` picks the seed `replay_one_range_seed` prints.

use sim::ranges::{Canary, Settings, Workload, run};

const SEEDS_DEFAULT: u64 = 1_000;
const PARTS: u64 = 4;
/// Seeds a canary is given to be caught in.
const CANARY_SEEDS: u64 = 100;

fn seed_count() -> u64 {
    sim::seed_count(std::env::var("SIM_SEEDS").ok(), SEEDS_DEFAULT)
}

fn replay_command(seed: u64) -> String {
    format!(
        "SIM_SEED={seed} cargo nextest run -p sim --test ranges replay_one_range_seed --no-capture"
    )
}

/// A seed's settings: the set workload on even seeds, the registers on odd ones.
fn settings(seed: u64, canary: Option<Canary>) -> Settings {
    Settings {
        seed,
        canary,
        workload: Workload::for_seed(seed),
    }
}

fn check_part(part: u64) {
    let count = seed_count();
    let (mut checked, mut splits, mut merges, mut snapshots) = (0, 0, 0, 0);
    for seed in (0..count).filter(|s| s % PARTS == part) {
        let outcome = run(settings(seed, None));
        assert!(
            outcome.is_valid(),
            "{}\nreplay it: {}",
            outcome.summary(),
            replay_command(seed)
        );
        checked += outcome.report.ops_checked;
        splits += outcome.splits;
        merges += outcome.merges;
        snapshots += outcome.snapshots;
    }
    // The seeds exercise what they are for, not only allow it.
    assert!(checked > 0 || count == 0, "the seeds checked no operation");
    assert!(
        (splits > 0 && merges > 0 && snapshots > 0) || count < 20,
        "{splits} splits, {merges} merges and {snapshots} snapshots in {count} seeds"
    );
}

#[test]
fn range_seeds_of_part_0_are_valid() {
    check_part(0);
}

#[test]
fn range_seeds_of_part_1_are_valid() {
    check_part(1);
}

#[test]
fn range_seeds_of_part_2_are_valid() {
    check_part(2);
}

#[test]
fn range_seeds_of_part_3_are_valid() {
    check_part(3);
}

#[test]
fn a_range_seed_replays_the_same_run() {
    for seed in [42, 43] {
        let first = run(settings(seed, None));
        let again = run(settings(seed, None));
        assert_eq!(first.history_hash, again.history_hash);
        assert_eq!(first.steps, again.steps);
    }
}

/// The first seed in which `canary` is caught, if any (its outcome printed), and how many of
/// the seeds caught it.
fn caught(canary: Canary) -> (Option<u64>, u64) {
    let mut first = None;
    let mut count = 0;
    for seed in 0..CANARY_SEEDS {
        let outcome = run(settings(seed, Some(canary)));
        if outcome.is_invalid() {
            count += 1;
            if first.is_none() {
                eprintln!("{canary:?}: {}", outcome.summary());
                first = Some(seed);
            }
        }
    }
    (first, count)
}

#[test]
fn a_split_stale_read_is_caught() {
    let (seed, count) = caught(Canary::SplitStaleRead);
    eprintln!("split-stale-read caught by {count} of {CANARY_SEEDS} seeds, first {seed:?}");
    assert!(seed.is_some(), "not caught in {CANARY_SEEDS} seeds");
}

#[test]
fn a_merge_losing_its_right_neighbour_is_caught() {
    let (seed, count) = caught(Canary::MergeLosesRight);
    eprintln!("merge-loses-right caught by {count} of {CANARY_SEEDS} seeds, first {seed:?}");
    assert!(seed.is_some(), "not caught in {CANARY_SEEDS} seeds");
}

#[test]
fn an_unbounded_follower_read_is_caught() {
    let (seed, count) = caught(Canary::FollowerReadUnbounded);
    eprintln!("follower-read-unbounded caught by {count} of {CANARY_SEEDS} seeds, first {seed:?}");
    assert!(seed.is_some(), "not caught in {CANARY_SEEDS} seeds");
}

#[test]
fn replay_one_range_seed() {
    // Prints one seed's outcome (`SIM_SEED`, default 0) for a human to read.
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let outcome = run(settings(seed, None));
    println!("{}", outcome.summary());
}
