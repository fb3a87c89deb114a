//! The phi-accrual estimate for one peer: a bounded window of heartbeat intervals with exact
//! running sums, and the suspicion level phi computed from them. It never reads a clock: every
//! time comes in as an argument.

use std::collections::VecDeque;
use std::f64::consts::LN_10;
use std::time::{Duration, Instant};

use base::limits::{PHI_INTERVAL_MAX, PHI_MAX, PHI_WINDOW_DEFAULT, PHI_WINDOW_MAX};

// `n * sum_squares` of a full window must fit in a u128 so the variance is exact (also
// asserted next to the limits themselves).
const _: () = assert!(
    PHI_INTERVAL_MAX.as_nanos() * PHI_INTERVAL_MAX.as_nanos()
        <= u128::MAX / (PHI_WINDOW_MAX as u128 * PHI_WINDOW_MAX as u128)
);

/// The smallest window: it must hold the two samples seeded from the first-heartbeat estimate.
const WINDOW_MIN: usize = 2;

/// Settings of the phi-accrual failure detector, shared by every peer of a [`crate::Detector`].
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct Config {
    /// The phi at and above which a peer is suspected. Default 8 (a chance of about 1e-8 that
    /// the peer is alive given its history); must be in `(0, PHI_MAX]`.
    pub threshold: f64,
    /// The floor of the standard deviation, so that regular heartbeats do not make phi shoot
    /// up on a few milliseconds of jitter. Default 100 ms; must not be zero.
    pub min_std_deviation: Duration,
    /// Extra silence tolerated beyond the mean interval, for known pauses. Default zero.
    pub acceptable_pause: Duration,
    /// The interval assumed before any has been measured: the window starts with two samples,
    /// this minus and plus a quarter of it. Default 1 s; must be in `(0, PHI_INTERVAL_MAX]`.
    pub first_heartbeat_estimate: Duration,
    /// How many recent intervals each peer's window keeps. Default
    /// [`PHI_WINDOW_DEFAULT`]; must be in `2..=PHI_WINDOW_MAX`.
    pub window: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            threshold: 8.0,
            min_std_deviation: Duration::from_millis(100),
            acceptable_pause: Duration::ZERO,
            first_heartbeat_estimate: Duration::from_secs(1),
            window: PHI_WINDOW_DEFAULT,
        }
    }
}

impl Config {
    /// Returns an error naming the first setting out of its documented range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.threshold > 0.0 && self.threshold <= PHI_MAX) {
            return Err(ConfigError::ThresholdOutOfRange {
                threshold: self.threshold,
                max: PHI_MAX,
            });
        }
        if !(WINDOW_MIN..=PHI_WINDOW_MAX).contains(&self.window) {
            return Err(ConfigError::WindowOutOfRange {
                window: self.window,
                min: WINDOW_MIN,
                max: PHI_WINDOW_MAX,
            });
        }
        if self.min_std_deviation.is_zero() {
            return Err(ConfigError::MinStdDeviationZero);
        }
        if self.first_heartbeat_estimate.is_zero()
            || self.first_heartbeat_estimate > PHI_INTERVAL_MAX
        {
            return Err(ConfigError::FirstHeartbeatEstimateOutOfRange {
                estimate: self.first_heartbeat_estimate,
                max: PHI_INTERVAL_MAX,
            });
        }
        Ok(())
    }
}

/// A [`Config`] setting out of range.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// The threshold is not a number in `(0, max]`.
    #[error("phi threshold {threshold} is not in (0, {max}]")]
    ThresholdOutOfRange {
        /// The configured threshold.
        threshold: f64,
        /// The largest phi the detector reports.
        max: f64,
    },
    /// The window is too small to hold the seed samples, or above the limit.
    #[error("phi window of {window} intervals is not in {min}..={max}")]
    WindowOutOfRange {
        /// The configured window.
        window: usize,
        /// The smallest window.
        min: usize,
        /// The largest window.
        max: usize,
    },
    /// The standard deviation floor is zero, which would let phi become infinite.
    #[error("phi minimum standard deviation must not be zero")]
    MinStdDeviationZero,
    /// The first-heartbeat estimate is zero or above the longest recorded interval.
    #[error("first heartbeat estimate {estimate:?} is not in (0, {max:?}]")]
    FirstHeartbeatEstimateOutOfRange {
        /// The configured estimate.
        estimate: Duration,
        /// The longest interval the detector records.
        max: Duration,
    },
}

/// The phi-accrual failure detector's view of one peer.
///
/// Invariants: `intervals` holds between 1 and `window` samples (it starts with two seeds and
/// only ever drops one to make room for another), each at most [`PHI_INTERVAL_MAX`]; `sum` and
/// `sum_squares` are exactly the sums of the samples and of their squares, in nanoseconds.
#[derive(Clone, Debug)]
pub struct PhiAccrual {
    /// The standard deviation floor used by [`PhiAccrual::phi`].
    min_std_deviation: Duration,
    /// Silence added to the mean interval by [`PhiAccrual::phi`].
    acceptable_pause: Duration,
    /// The most samples kept.
    window: usize,
    /// Recent intervals in nanoseconds, oldest first.
    intervals: VecDeque<u64>,
    /// Sum of `intervals`.
    sum: u128,
    /// Sum of the squares of `intervals`.
    sum_squares: u128,
    /// When the latest heartbeat arrived; `None` before the first.
    last_heartbeat: Option<Instant>,
}

impl PhiAccrual {
    /// Returns a detector for one peer that has not sent a heartbeat yet, its window seeded
    /// from `config.first_heartbeat_estimate`. `config.threshold` is checked but not used.
    pub fn new(config: &Config) -> Result<PhiAccrual, ConfigError> {
        config.validate()?;
        Ok(PhiAccrual::with_valid_config(config))
    }

    /// Returns a detector for one peer; `config` must have passed [`Config::validate`].
    pub(crate) fn with_valid_config(config: &Config) -> PhiAccrual {
        let mut detector = PhiAccrual {
            min_std_deviation: config.min_std_deviation,
            acceptable_pause: config.acceptable_pause,
            window: config.window,
            intervals: VecDeque::with_capacity(config.window),
            sum: 0,
            sum_squares: 0,
            last_heartbeat: None,
        };
        // As Akka does: two samples one assumed standard deviation (a quarter of the estimate)
        // either side of it, so the first real silence is judged against a sane distribution.
        let estimate = config.first_heartbeat_estimate;
        detector.record(estimate - estimate / 4);
        detector.record(estimate + estimate / 4);
        detector
    }

    /// Records a heartbeat that arrived at `now`: the interval since the previous one joins
    /// the window, evicting the oldest sample when it is full. A heartbeat that claims to be
    /// older than the latest counts as a zero interval and leaves the latest time in place.
    pub fn heartbeat(&mut self, now: Instant) {
        if let Some(last) = self.last_heartbeat {
            self.record(now.saturating_duration_since(last));
            self.last_heartbeat = Some(last.max(now));
        } else {
            self.last_heartbeat = Some(now);
        }
    }

    /// Returns the suspicion level at `now`: -log10 of the chance that a heartbeat from a
    /// live peer would still be missing after the current silence, with intervals taken as
    /// normally distributed with the window's mean (plus the acceptable pause) and standard
    /// deviation (at least the configured floor). Returns 0 before the first heartbeat. The
    /// result is finite, in `[0, PHI_MAX]`, and never decreases as `now` advances without a
    /// heartbeat.
    pub fn phi(&self, now: Instant) -> f64 {
        let Some(last) = self.last_heartbeat else {
            return 0.0;
        };
        let elapsed = now.saturating_duration_since(last).as_secs_f64();
        let mean = self.mean_nanos() / 1e9 + self.acceptable_pause.as_secs_f64();
        let std_deviation =
            (self.std_deviation_nanos() / 1e9).max(self.min_std_deviation.as_secs_f64());
        phi_of(elapsed, mean, std_deviation)
    }

    /// Returns when the latest heartbeat arrived, or `None` before the first.
    pub fn last_heartbeat(&self) -> Option<Instant> {
        self.last_heartbeat
    }

    /// Returns the mean of the intervals in the window (without the acceptable pause).
    pub fn mean(&self) -> Duration {
        let mean = self.sum / self.sample_count();
        Duration::from_nanos(u64::try_from(mean).unwrap_or(u64::MAX))
    }

    /// Returns the standard deviation of the intervals in the window, before the floor that
    /// [`PhiAccrual::phi`] applies.
    pub fn std_deviation(&self) -> Duration {
        // `as` saturates, and the value is finite and at most PHI_INTERVAL_MAX anyway.
        Duration::from_nanos(self.std_deviation_nanos().round() as u64)
    }

    /// Returns how many intervals the window holds, counting the two seed samples until they
    /// are evicted.
    pub fn samples(&self) -> usize {
        self.intervals.len()
    }

    /// Adds one interval to the window, evicting the oldest if it is full.
    fn record(&mut self, interval: Duration) {
        let nanos = u64::try_from(interval.min(PHI_INTERVAL_MAX).as_nanos()).unwrap_or(u64::MAX);
        if self.intervals.len() >= self.window
            && let Some(oldest) = self.intervals.pop_front()
        {
            self.sum -= u128::from(oldest);
            self.sum_squares -= u128::from(oldest) * u128::from(oldest);
        }
        self.intervals.push_back(nanos);
        self.sum += u128::from(nanos);
        self.sum_squares += u128::from(nanos) * u128::from(nanos);
    }

    /// The sample count as a divisor; never zero, since the window is never empty.
    fn sample_count(&self) -> u128 {
        u128::try_from(self.intervals.len())
            .unwrap_or(u128::MAX)
            .max(1)
    }

    /// The window's mean in nanoseconds.
    fn mean_nanos(&self) -> f64 {
        self.sum as f64 / self.sample_count() as f64
    }

    /// The window's standard deviation in nanoseconds, from the exact integer spread
    /// `n * sum_squares - sum^2` (non-negative by Cauchy-Schwarz; the const assertion above
    /// keeps it from overflowing).
    fn std_deviation_nanos(&self) -> f64 {
        let n = self.sample_count();
        let spread = (n * self.sum_squares).saturating_sub(self.sum * self.sum);
        (spread as f64).sqrt() / n as f64
    }
}

/// Returns phi for `elapsed` seconds of silence when intervals are normal with `mean` and
/// `std_deviation` seconds (which must be positive), clamped to `[0, PHI_MAX]`.
///
/// The normal tail uses the logistic approximation of the normal CDF that Akka and Cassandra
/// use: with `y = (elapsed - mean) / std_deviation` and `e = exp(-y * (1.5976 + 0.070566 *
/// y^2))`, phi = -log10(e / (1 + e)). That equals log10(1 + exp(a)) with `a = y * (1.5976 +
/// 0.070566 * y^2)`, which is computed here in a form that neither overflows nor underflows, so
/// phi keeps growing smoothly far past where the direct form would reach infinity.
pub(crate) fn phi_of(elapsed: f64, mean: f64, std_deviation: f64) -> f64 {
    let y = (elapsed - mean) / std_deviation;
    let a = y * (1.5976 + 0.070566 * y * y);
    let softplus = if a > 0.0 {
        a + (-a).exp().ln_1p()
    } else {
        a.exp().ln_1p()
    };
    let phi = softplus / LN_10;
    if phi.is_nan() {
        // Unreachable with a positive standard deviation; suspect rather than trust.
        debug_assert!(false, "phi is NaN: y {y}, a {a}");
        return PHI_MAX;
    }
    phi.clamp(0.0, PHI_MAX)
}
