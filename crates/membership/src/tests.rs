//! Tests of the phi-accrual failure detector: the window's statistics and bound, the time phi
//! takes to cross the threshold for regular and jittery heartbeats against the value predicted
//! from the mean and standard deviation, agreement with Akka's formula, a property test that phi
//! is finite and never falls during silence, and the per-peer statuses of `Detector`. Tests
//! read the clock once, for an origin; every time after it is an exact offset.

use std::time::{Duration, Instant};

use base::NodeId;
use base::limits::{PHI_INTERVAL_MAX, PHI_MAX, PHI_WINDOW_DEFAULT, PHI_WINDOW_MAX};
use proptest::prelude::*;

use crate::phi::phi_of;
use crate::{Config, ConfigError, Detector, PhiAccrual, Status};

/// The `y = (silence - mean) / std_deviation` at which phi reaches 8: the root of
/// `log10(1 + exp(y * (1.5976 + 0.070566 * y^2))) = 8`, found by bisection.
const Y_AT_PHI_8: f64 = 5.225_987;

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

/// Returns an estimate built with `config` that received a first heartbeat at `origin` and
/// then one after each of `intervals`, and the time of the last heartbeat; the one place tests
/// feed a `PhiAccrual`.
fn fed(config: &Config, origin: Instant, intervals: &[Duration]) -> (PhiAccrual, Instant) {
    let mut estimate = PhiAccrual::new(config).expect("test config is valid");
    let mut now = origin;
    estimate.heartbeat(now);
    for interval in intervals {
        now += *interval;
        estimate.heartbeat(now);
    }
    (estimate, now)
}

/// Returns the silence, in whole milliseconds after `last`, at which phi first reaches
/// `threshold`, checking on the way that phi never decreases; `None` if not within a minute.
fn crossing(estimate: &PhiAccrual, last: Instant, threshold: f64) -> Option<Duration> {
    let mut previous = 0.0;
    for millis in 0..=60_000 {
        let phi = estimate.phi(last + ms(millis));
        assert!(
            phi >= previous,
            "phi fell from {previous} to {phi} at {millis} ms"
        );
        if phi >= threshold {
            return Some(ms(millis));
        }
        previous = phi;
    }
    None
}

/// Returns the silence at which phi should reach 8: the mean plus the pause plus
/// `Y_AT_PHI_8` standard deviations, the deviation raised to the floor.
fn predicted_crossing(estimate: &PhiAccrual, config: &Config) -> Duration {
    let std_deviation = estimate.std_deviation().max(config.min_std_deviation);
    estimate.mean() + config.acceptable_pause + std_deviation.mul_f64(Y_AT_PHI_8)
}

/// Asserts that `measured` is within 2 ms (the search step plus rounding) of `predicted`.
fn assert_near(measured: Duration, predicted: Duration) {
    let gap = measured.abs_diff(predicted);
    assert!(
        gap <= ms(2),
        "crossed at {measured:?}, predicted {predicted:?}"
    );
}

#[test]
fn regular_heartbeats_cross_the_threshold_in_bounded_time() {
    // Goal: with heartbeats every 100 ms, phi is low right after one, rises steadily with the
    // silence, reaches 8 when the mean, deviation and floor predict (0.1 s + 5.226 * 0.1 s),
    // and drops back after the next heartbeat.
    // Method: fill the window with 100 ms intervals, step the silence by 1 ms.
    let config = Config::default();
    let origin = Instant::now();
    let (mut estimate, last) = fed(&config, origin, &[ms(100); PHI_WINDOW_DEFAULT]);
    assert_eq!(estimate.mean(), ms(100));
    assert_eq!(estimate.std_deviation(), Duration::ZERO);
    let phi_after_heartbeat = estimate.phi(last);
    assert!(phi_after_heartbeat < 0.5, "phi {phi_after_heartbeat}");
    let at = |millis| estimate.phi(last + ms(millis));
    assert!(at(200) < at(400), "{} {}", at(200), at(400));
    assert!(at(400) < at(600), "{} {}", at(400), at(600));

    let crossed = crossing(&estimate, last, 8.0).expect("phi reaches 8");
    assert!(crossed >= ms(300), "crossed at {crossed:?}");
    assert!(crossed <= ms(1500), "crossed at {crossed:?}");
    assert_near(crossed, predicted_crossing(&estimate, &config));

    estimate.heartbeat(last + crossed);
    let phi_after_return = estimate.phi(last + crossed);
    assert!(phi_after_return < 0.5, "phi {phi_after_return}");
}

#[test]
fn seed_samples_shape_a_young_window() {
    // Goal: before 1000 intervals arrive, the two samples seeded from the 1 s estimate still
    // count, making phi more lenient, and the crossing still matches the prediction.
    // Method: check the seeded window before any heartbeat, then 19 intervals of 100 ms
    // (window 0.75, 1.25 and 19 x 0.1 s: mean 186 ms, deviation 275 ms, crossing about 1.62 s).
    let config = Config::default();
    let origin = Instant::now();
    let fresh = PhiAccrual::new(&config).expect("default config is valid");
    assert_eq!(fresh.samples(), 2);
    assert_eq!(fresh.mean(), ms(1000));
    assert_eq!(fresh.std_deviation(), ms(250));
    assert_eq!(fresh.last_heartbeat(), None);
    assert_eq!(fresh.phi(origin + ms(10_000)), 0.0);

    let (young, last) = fed(&config, origin, &[ms(100); 19]);
    assert_eq!(young.samples(), 21);
    assert_eq!(young.last_heartbeat(), Some(last));
    let crossed = crossing(&young, last, 8.0).expect("phi reaches 8");
    assert!(crossed > ms(1500), "crossed at {crossed:?}");
    assert_near(crossed, predicted_crossing(&young, &config));
}

#[test]
fn jitter_delays_suspicion() {
    // Goal: heartbeats alternating 50/150 ms take longer to be suspected than regular 100 ms
    // ones with the same mean, and a floor above the jitter hides it.
    // Method: with a 10 ms floor, regular ones should cross at 0.1 + 5.226 * 0.01 s (152 ms)
    // and jittery ones at 0.1 + 5.226 * 0.05 s (361 ms); with the default 100 ms floor both at
    // 623 ms.
    let regular = [ms(100); PHI_WINDOW_DEFAULT];
    let jittery: Vec<Duration> = (0..PHI_WINDOW_DEFAULT)
        .map(|i| if i % 2 == 0 { ms(50) } else { ms(150) })
        .collect();
    let origin = Instant::now();
    let fine_floor = Config {
        min_std_deviation: ms(10),
        ..Config::default()
    };
    let cross = |config: &Config, intervals: &[Duration]| {
        let (estimate, last) = fed(config, origin, intervals);
        assert_eq!(estimate.mean(), ms(100));
        let crossed = crossing(&estimate, last, config.threshold).expect("phi reaches 8");
        assert_near(crossed, predicted_crossing(&estimate, config));
        crossed
    };
    let regular_crossing = cross(&fine_floor, &regular);
    let jittery_crossing = cross(&fine_floor, &jittery);
    assert!(
        jittery_crossing >= regular_crossing + ms(150),
        "jittery {jittery_crossing:?}, regular {regular_crossing:?}"
    );
    let default = Config::default();
    assert_eq!(cross(&default, &regular), cross(&default, &jittery));
}

#[test]
fn window_keeps_only_recent_intervals() {
    // Goal: the window holds at most `window` intervals and its statistics cover only those.
    // Method: 1000 intervals of 1 s (evicting the seeds), then 500 and 500 more of 100 ms.
    let config = Config::default();
    let origin = Instant::now();
    let (mut estimate, mut now) = fed(&config, origin, &[ms(1000); PHI_WINDOW_DEFAULT]);
    assert_eq!(estimate.samples(), PHI_WINDOW_DEFAULT);
    assert_eq!(estimate.mean(), ms(1000));
    assert_eq!(estimate.std_deviation(), Duration::ZERO);
    for round in 0..2 {
        for _ in 0..PHI_WINDOW_DEFAULT / 2 {
            now += ms(100);
            estimate.heartbeat(now);
        }
        assert_eq!(estimate.samples(), PHI_WINDOW_DEFAULT);
        let expected = if round == 0 { ms(550) } else { ms(100) };
        assert_eq!(estimate.mean(), expected);
    }
    assert_eq!(estimate.std_deviation(), Duration::ZERO);
}

#[test]
fn stale_and_far_future_times_stay_in_range() {
    // Goal: a heartbeat older than the latest neither moves the latest back nor breaks the
    // window, a silence of days gives exactly PHI_MAX, and an interval beyond the cap is
    // recorded as the cap.
    // Method: feed out-of-order and enormous times and inspect the estimate.
    let config = Config::default();
    let origin = Instant::now();
    let (mut estimate, last) = fed(&config, origin, &[ms(100); 10]);
    estimate.heartbeat(last - ms(50));
    assert_eq!(estimate.last_heartbeat(), Some(last));
    assert_eq!(estimate.samples(), 13);
    assert!(estimate.phi(last - ms(500)) < 0.5);
    assert_eq!(
        estimate.phi(last + Duration::from_secs(86_400 * 30)),
        PHI_MAX
    );

    let (capped, _) = fed(&config, origin, &[PHI_INTERVAL_MAX * 3; PHI_WINDOW_DEFAULT]);
    assert_eq!(capped.mean(), PHI_INTERVAL_MAX);
}

#[test]
fn stable_formula_matches_akka() {
    // Goal: the overflow-free form of phi equals Akka's two-branch formula wherever the latter
    // is finite.
    // Method: compare at y from -10 to 10 in steps of 0.125 with mean 1 s and deviation 0.2 s.
    let akka = |elapsed: f64, mean: f64, std_deviation: f64| {
        let y = (elapsed - mean) / std_deviation;
        let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
        if elapsed > mean {
            -(e / (1.0 + e)).log10()
        } else {
            -(1.0 - 1.0 / (1.0 + e)).log10()
        }
    };
    for step in -80..=80 {
        let y = f64::from(step) / 8.0;
        let elapsed = 1.0 + y * 0.2;
        let expected = akka(elapsed, 1.0, 0.2);
        let actual = phi_of(elapsed, 1.0, 0.2);
        assert!(expected.is_finite(), "akka phi {expected} at y {y}");
        let tolerance = 1e-9 * expected.max(1.0);
        assert!(
            (actual - expected).abs() <= tolerance,
            "y {y}: phi {actual}, akka {expected}"
        );
    }
}

#[test]
fn config_rejects_out_of_range_settings() {
    // Goal: each documented range is enforced by both constructors.
    // Method: break one setting at a time.
    let base = Config::default();
    assert_eq!(base.validate(), Ok(()));
    for threshold in [0.0, -1.0, f64::NAN, PHI_MAX * 2.0] {
        let config = Config { threshold, ..base };
        assert!(
            matches!(
                config.validate(),
                Err(ConfigError::ThresholdOutOfRange { .. })
            ),
            "threshold {threshold}"
        );
    }
    for window in [0, 1, PHI_WINDOW_MAX + 1] {
        let config = Config { window, ..base };
        assert_eq!(
            Detector::<u64>::new(config).err(),
            Some(ConfigError::WindowOutOfRange {
                window,
                min: 2,
                max: PHI_WINDOW_MAX
            })
        );
    }
    let no_floor = Config {
        min_std_deviation: Duration::ZERO,
        ..base
    };
    assert_eq!(
        PhiAccrual::new(&no_floor).err(),
        Some(ConfigError::MinStdDeviationZero)
    );
    for estimate in [Duration::ZERO, PHI_INTERVAL_MAX + ms(1)] {
        let config = Config {
            first_heartbeat_estimate: estimate,
            ..base
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::FirstHeartbeatEstimateOutOfRange { .. })
        ));
    }
}

#[test]
fn detector_tracks_status_per_peer() {
    // Goal: a peer is Unknown before its first heartbeat and after removal, Alive while it
    // beats, Suspect after a long silence; unknown peers count as available; the report is
    // sorted by peer and agrees with `phi` and `status`.
    // Method: peers 3, 1, 2 beat every 100 ms for 3.9 s, except that 2 stops after 0.9 s
    // (its young window predicts suspicion after about 2.2 s of silence; it gets 3 s).
    let mut detector = Detector::new(Config::default()).expect("default config is valid");
    let origin = Instant::now();
    let quiet = NodeId(2);
    assert_eq!(detector.status(&quiet, origin), Status::Unknown);
    assert_eq!(detector.phi(&quiet, origin), 0.0);
    assert!(detector.is_available(&quiet, origin));

    let mut now = origin;
    for tick in 0..40 {
        now = origin + ms(100 * tick);
        for peer in [3, 1, 2] {
            if peer != 2 || tick < 10 {
                detector.heartbeat(NodeId(peer), now);
            }
        }
        if tick == 9 {
            assert_eq!(detector.status(&quiet, now), Status::Alive);
        }
    }
    assert_eq!(detector.status(&quiet, now), Status::Suspect);
    assert!(!detector.is_available(&quiet, now));
    assert!(detector.is_available(&NodeId(1), now));

    let report = detector.report(now);
    let expected = [
        (NodeId(1), Status::Alive),
        (NodeId(2), Status::Suspect),
        (NodeId(3), Status::Alive),
    ];
    assert_eq!(report.len(), expected.len());
    for ((peer, phi, status), (expected_peer, expected_status)) in report.iter().zip(expected) {
        assert_eq!((*peer, *status), (expected_peer, expected_status));
        assert_eq!(*phi, detector.phi(peer, now));
        assert_eq!(*status, detector.status(peer, now));
    }

    let removed = detector.remove(&quiet).expect("peer 2 was tracked");
    assert_eq!(removed.last_heartbeat(), Some(origin + ms(900)));
    assert_eq!(detector.status(&quiet, now), Status::Unknown);
    assert!(detector.get(&quiet).is_none());
    let peers: Vec<NodeId> = detector.peers().copied().collect();
    assert_eq!(peers, [NodeId(1), NodeId(3)]);
    detector.heartbeat(quiet, now);
    assert_eq!(detector.status(&quiet, now), Status::Alive);
    assert_eq!(detector.get(&quiet).map(PhiAccrual::samples), Some(2));
}

proptest! {
    #[test]
    fn phi_is_finite_and_never_falls_during_silence(
        intervals in prop::collection::vec(1u64..=5_000, 1..60),
        probes in prop::collection::vec(0u64..=120_000, 1..40),
        min_std_millis in 1u64..=500,
        pause_millis in 0u64..=1_000,
    ) {
        // Goal: for any heartbeat history with intervals of 1 ms to 5 s, phi is finite, within
        // [0, PHI_MAX], and non-decreasing in `now` after the last heartbeat.
        // Method: feed the intervals, evaluate phi at sorted silences up to two minutes.
        let config = Config {
            min_std_deviation: ms(min_std_millis),
            acceptable_pause: ms(pause_millis),
            ..Config::default()
        };
        let intervals: Vec<Duration> = intervals.into_iter().map(ms).collect();
        let (estimate, last) = fed(&config, Instant::now(), &intervals);
        let mut probes = probes;
        probes.sort_unstable();
        let mut previous = 0.0;
        for millis in probes {
            let phi = estimate.phi(last + ms(millis));
            prop_assert!(phi.is_finite(), "phi {} at {} ms", phi, millis);
            prop_assert!((0.0..=PHI_MAX).contains(&phi), "phi {} at {} ms", phi, millis);
            prop_assert!(phi >= previous, "phi fell from {} to {} at {} ms", previous, phi, millis);
            previous = phi;
        }
    }
}
