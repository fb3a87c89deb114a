//! [`HostClock`]: the operating system's clock as a member's [`Clock`], with a skew the
//! tester's fault hook can set — a step (offset) and a rate — applied to both the monotonic
//! and the physical reading. Without a skew it reads the host clocks unchanged.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use base::Clock;

/// The highest rate a skew may set (and its inverse the lowest).
pub const SKEW_RATE_MAX: f64 = 100.0;

/// The host's clock with an injectable skew.
#[derive(Debug)]
pub struct HostClock {
    skew: Mutex<Skew>,
}

/// The skew is `offset(t) = offset_at_anchor + (t - anchor) * (rate - 1)` for host instant
/// `t`: continuous when only the rate changes, a step when the offset is set.
#[derive(Copy, Clone, Debug)]
struct Skew {
    anchor: Instant,
    offset_at_anchor_nanos: i128,
    rate: f64,
}

impl Skew {
    fn offset_nanos(&self, at: Instant) -> i128 {
        let since = at.saturating_duration_since(self.anchor).as_nanos() as f64;
        self.offset_at_anchor_nanos + (since * (self.rate - 1.0)) as i128
    }
}

/// A skew as reported: the offset now and the rate.
#[derive(Copy, Clone, Debug, PartialEq)]
pub struct SkewState {
    pub offset_ms: i64,
    pub rate: f64,
}

/// A skew request the clock refuses.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("clock rate {0} is outside 1/{max} to {max}", max = SKEW_RATE_MAX)]
pub struct BadRate(pub f64);

impl Default for HostClock {
    fn default() -> Self {
        HostClock::new()
    }
}

impl HostClock {
    pub fn new() -> HostClock {
        HostClock {
            skew: Mutex::new(Skew {
                anchor: Instant::now(),
                offset_at_anchor_nanos: 0,
                rate: 1.0,
            }),
        }
    }

    /// Sets the offset now (a step) and/or the rate from now on; `None` keeps the current one.
    pub fn set_skew(&self, offset: Option<i64>, rate: Option<f64>) -> Result<SkewState, BadRate> {
        if let Some(rate) = rate
            && !(1.0 / SKEW_RATE_MAX..=SKEW_RATE_MAX).contains(&rate)
        {
            return Err(BadRate(rate));
        }
        let now = Instant::now();
        let mut skew = self.skew.lock().expect("clock lock poisoned");
        let current = skew.offset_nanos(now);
        *skew = Skew {
            anchor: now,
            offset_at_anchor_nanos: offset.map_or(current, |ms| i128::from(ms) * 1_000_000),
            rate: rate.unwrap_or(skew.rate),
        };
        Ok(state_of(&skew, now))
    }

    /// Removes the skew (a step back to the host's time).
    pub fn reset(&self) -> SkewState {
        self.set_skew(Some(0), Some(1.0))
            .expect("rate 1 is always allowed")
    }

    pub fn skew(&self) -> SkewState {
        let skew = self.skew.lock().expect("clock lock poisoned");
        state_of(&skew, Instant::now())
    }

    fn offset_nanos(&self) -> (Instant, i128) {
        let now = Instant::now();
        let skew = self.skew.lock().expect("clock lock poisoned");
        (now, skew.offset_nanos(now))
    }
}

fn state_of(skew: &Skew, now: Instant) -> SkewState {
    SkewState {
        offset_ms: (skew.offset_nanos(now) / 1_000_000) as i64,
        rate: skew.rate,
    }
}

fn nanos(offset: i128) -> Duration {
    Duration::from_nanos(offset.unsigned_abs().min(u128::from(u64::MAX)) as u64)
}

impl Clock for HostClock {
    fn monotonic(&self) -> Instant {
        let (now, offset) = self.offset_nanos();
        if offset >= 0 {
            now.checked_add(nanos(offset)).unwrap_or(now)
        } else {
            now.checked_sub(nanos(offset)).unwrap_or(now)
        }
    }

    fn physical_micros(&self) -> u64 {
        let (_, offset) = self.offset_nanos();
        let host = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        ((host + offset).max(0) / 1_000) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_moves_both_readings_and_reset_steps_back() {
        let clock = HostClock::new();
        let host = Instant::now();
        let wall = clock.physical_micros();
        clock.set_skew(Some(60_000), None).expect("offset");
        assert!(clock.monotonic() >= host + Duration::from_secs(60));
        assert!(clock.physical_micros() >= wall + 60_000_000);
        clock.set_skew(Some(-60_000), None).expect("offset");
        assert!(clock.monotonic() < Instant::now() - Duration::from_secs(59));
        let state = clock.reset();
        assert_eq!(state.rate, 1.0);
        assert!(state.offset_ms.abs() <= 1, "{state:?}");
    }

    #[test]
    fn a_rate_accumulates_an_offset_without_a_step() {
        let clock = HostClock::new();
        clock.set_skew(None, Some(50.0)).expect("rate");
        let before = clock.monotonic();
        // Some host time passes (no sleep: the offset grows with it).
        let host_start = Instant::now();
        while host_start.elapsed() < Duration::from_millis(20) {
            std::hint::spin_loop();
        }
        let skew = clock.skew();
        assert!(skew.offset_ms >= 20 * 49, "{skew:?}");
        assert!(clock.monotonic() >= before + Duration::from_millis(20 * 50));
        // Changing only the rate keeps the offset reached (continuous).
        let kept = clock.set_skew(None, Some(1.0)).expect("rate");
        assert!(kept.offset_ms >= skew.offset_ms, "{kept:?} after {skew:?}");
        assert_eq!(
            clock.set_skew(None, Some(0.001)),
            Err(BadRate(0.001)),
            "below the lowest rate"
        );
    }
}
