//! Latency and throughput bookkeeping of one bench run: an HDR histogram of latencies in
//! microseconds and a count of completions per second of the measured window, kept per
//! client and merged at the end. Pure bookkeeping: it never reads the clock itself.

use std::time::Duration;

use hdrhistogram::Histogram;

/// The largest latency recorded exactly; slower operations are clamped to it (and still
/// counted), so one stuck request cannot make the histogram refuse the run.
pub const LATENCY_MAX: Duration = Duration::from_secs(60);

/// Significant decimal digits the histogram keeps (0.1 % relative error).
const SIGNIFICANT_DIGITS: u8 = 3;

/// What one client (or the whole run, once merged) measured.
#[derive(Clone, Debug)]
pub struct Recorder {
    latencies: Histogram<u64>,
    per_second: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

/// Percentiles and counts of a finished run.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub ops: u64,
    pub errors: u64,
    pub ops_per_sec: f64,
    pub mean: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// Returns an empty recorder.
    pub fn new() -> Recorder {
        let max_us = LATENCY_MAX.as_micros() as u64;
        Recorder {
            latencies: Histogram::new_with_bounds(1, max_us, SIGNIFICANT_DIGITS)
                .expect("1 µs to 60 s at 3 digits is a valid histogram"),
            per_second: Vec::new(),
            errors: 0,
            first_error: None,
        }
    }

    /// Records one successful operation that took `latency` and completed `at` after the
    /// start of the measured window.
    pub fn record(&mut self, latency: Duration, at: Duration) {
        let micros = (latency.as_micros() as u64).clamp(1, LATENCY_MAX.as_micros() as u64);
        self.latencies
            .record(micros)
            .expect("the value is clamped into the histogram's bounds");
        let second = at.as_secs() as usize;
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, 0);
        }
        self.per_second[second] += 1;
    }

    /// Counts one failed operation; the first message is kept for the report.
    pub fn record_error(&mut self, message: impl FnOnce() -> String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }

    /// Adds `other`'s measurements to these.
    pub fn merge(&mut self, other: &Recorder) {
        self.latencies
            .add(&other.latencies)
            .expect("recorders share their bounds");
        if self.per_second.len() < other.per_second.len() {
            self.per_second.resize(other.per_second.len(), 0);
        }
        for (mine, theirs) in self.per_second.iter_mut().zip(&other.per_second) {
            *mine += theirs;
        }
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error.clone_from(&other.first_error);
        }
    }

    /// Successful operations recorded.
    pub fn ops(&self) -> u64 {
        self.latencies.len()
    }

    /// The first error seen, if any.
    pub fn first_error(&self) -> Option<&str> {
        self.first_error.as_deref()
    }

    /// Completions in each second of a window `seconds` long (seconds past the window, from
    /// operations that completed after it, are dropped; missing ones are zero).
    pub fn per_second(&self, seconds: usize) -> Vec<u64> {
        let mut counts = self.per_second.clone();
        counts.resize(seconds, 0);
        counts
    }

    /// The latency at quantile `q` (0..=1); zero when nothing was recorded.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        Duration::from_micros(self.latencies.value_at_quantile(q))
    }

    /// Summarizes a window `window` long.
    pub fn summary(&self, window: Duration) -> Summary {
        let seconds = window.as_secs_f64();
        let ops = self.ops();
        Summary {
            ops,
            errors: self.errors,
            ops_per_sec: if seconds > 0.0 {
                ops as f64 / seconds
            } else {
                0.0
            },
            mean: if ops == 0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(self.latencies.mean() / 1e6)
            },
            p50: self.quantile(0.50),
            p90: self.quantile(0.90),
            p99: self.quantile(0.99),
            p999: self.quantile(0.999),
            max: if ops == 0 {
                Duration::ZERO
            } else {
                Duration::from_micros(self.latencies.max())
            },
        }
    }
}
