//! Time as every member sees it: the [`Clock`] trait (a monotonic reading for timers and a
//! physical reading for timestamps) and the hybrid logical clock ([`Hlc`]) built on the
//! physical reading. A member's clock can be skewed (offset and rate) by the tester's fault
//! hook; nothing here reads the operating system's clock — implementations live in the
//! driver crates and in the simulator.

use std::fmt;
use std::time::{Duration, Instant};

/// One member's source of time.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// A monotonic reading for timers and deadlines (lease expiry). Under an injected skew it
    /// may jump forward or back and run fast or slow, as a misbehaving host clock does.
    fn monotonic(&self) -> Instant;
    /// Physical time in microseconds since the Unix epoch (the input of the [`Hlc`]).
    fn physical_micros(&self) -> u64;
}

/// A hybrid logical clock timestamp: physical microseconds since the Unix epoch and a logical
/// counter that orders events within one physical reading. Ordered by (physical, logical);
/// a member breaks remaining ties with its id where it needs a total order.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HlcTimestamp {
    pub physical: u64,
    pub logical: u32,
}

impl HlcTimestamp {
    pub const ZERO: HlcTimestamp = HlcTimestamp {
        physical: 0,
        logical: 0,
    };

    /// The timestamp right after this one.
    pub fn successor(self) -> HlcTimestamp {
        match self.logical.checked_add(1) {
            Some(logical) => HlcTimestamp {
                physical: self.physical,
                logical,
            },
            // 2^32 events in one microsecond cannot happen; move physical time instead of
            // wrapping, which keeps the order strict.
            None => HlcTimestamp {
                physical: self.physical + 1,
                logical: 0,
            },
        }
    }
}

impl fmt::Display for HlcTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.physical, self.logical)
    }
}

/// A remote timestamp too far ahead of this member's physical clock to be trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "a timestamp {ahead_micros} us ahead of this member's clock exceeds the maximum clock \
     offset of {max_offset_micros} us"
)]
pub struct ClockOffsetExceeded {
    pub ahead_micros: u64,
    pub max_offset_micros: u64,
}

/// A hybrid logical clock (Kulkarni et al., 2014): timestamps that never go backwards on one
/// member even when its physical clock does, exceed every timestamp the member has observed,
/// and stay within the clock offset bound of physical time. Pure: the caller passes the
/// physical reading.
#[derive(Clone, Debug)]
pub struct Hlc {
    last: HlcTimestamp,
    max_offset: Duration,
}

impl Hlc {
    /// A clock that refuses remote timestamps more than `max_offset` ahead of physical time.
    pub fn new(max_offset: Duration) -> Hlc {
        Hlc {
            last: HlcTimestamp::ZERO,
            max_offset,
        }
    }

    /// The last timestamp issued or observed.
    pub fn last(&self) -> HlcTimestamp {
        self.last
    }

    /// A timestamp for a local event at physical time `physical`: greater than every earlier
    /// one.
    pub fn now(&mut self, physical: u64) -> HlcTimestamp {
        self.last = if physical > self.last.physical {
            HlcTimestamp {
                physical,
                logical: 0,
            }
        } else {
            self.last.successor()
        };
        self.last
    }

    /// Takes in `remote` (carried by a message) at physical time `physical` and returns a
    /// timestamp greater than both it and every earlier local one. A remote timestamp more than
    /// the maximum offset ahead is refused and leaves the clock unchanged, so one member with
    /// a runaway clock cannot drag the others' timestamps into the future.
    pub fn observe(
        &mut self,
        physical: u64,
        remote: HlcTimestamp,
    ) -> Result<HlcTimestamp, ClockOffsetExceeded> {
        let max_offset_micros = self.max_offset.as_micros() as u64;
        let ahead_micros = remote.physical.saturating_sub(physical);
        if ahead_micros > max_offset_micros {
            return Err(ClockOffsetExceeded {
                ahead_micros,
                max_offset_micros,
            });
        }
        let latest = self.last.max(remote);
        self.last = if physical > latest.physical {
            HlcTimestamp {
                physical,
                logical: 0,
            }
        } else {
            latest.successor()
        };
        Ok(self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn physical_time_leads_and_the_counter_orders_within_a_reading() {
        let mut hlc = Hlc::new(Duration::from_millis(500));
        let a = hlc.now(1_000);
        let b = hlc.now(1_000);
        let c = hlc.now(999); // the physical clock stepped back
        let d = hlc.now(2_000);
        assert_eq!(
            (a, b, c, d),
            (
                HlcTimestamp {
                    physical: 1_000,
                    logical: 0
                },
                HlcTimestamp {
                    physical: 1_000,
                    logical: 1
                },
                HlcTimestamp {
                    physical: 1_000,
                    logical: 2
                },
                HlcTimestamp {
                    physical: 2_000,
                    logical: 0
                },
            )
        );
    }

    #[test]
    fn a_remote_timestamp_within_the_bound_moves_the_clock_and_one_beyond_is_refused() {
        let mut hlc = Hlc::new(Duration::from_millis(1));
        hlc.now(10_000);
        let remote = HlcTimestamp {
            physical: 10_900,
            logical: 4,
        };
        assert_eq!(
            hlc.observe(10_000, remote),
            Ok(HlcTimestamp {
                physical: 10_900,
                logical: 5
            })
        );
        let runaway = HlcTimestamp {
            physical: 12_001,
            logical: 0,
        };
        assert_eq!(
            hlc.observe(11_000, runaway),
            Err(ClockOffsetExceeded {
                ahead_micros: 1_001,
                max_offset_micros: 1_000
            })
        );
        assert_eq!(
            hlc.last().physical,
            10_900,
            "a refused timestamp is not taken in"
        );
    }

    #[test]
    fn the_counter_never_wraps() {
        let mut hlc = Hlc::new(Duration::ZERO);
        hlc.last = HlcTimestamp {
            physical: 5,
            logical: u32::MAX,
        };
        assert_eq!(
            hlc.now(5),
            HlcTimestamp {
                physical: 6,
                logical: 0
            }
        );
    }

    #[derive(Clone, Debug)]
    enum Event {
        Local(u64),
        Receive(u64, HlcTimestamp),
    }

    fn events() -> impl Strategy<Value = Vec<Event>> {
        let ts = (0u64..2_000, 0u32..4)
            .prop_map(|(physical, logical)| HlcTimestamp { physical, logical });
        prop::collection::vec(
            prop_oneof![
                (0u64..2_000).prop_map(Event::Local),
                ((0u64..2_000), ts).prop_map(|(p, t)| Event::Receive(p, t)),
            ],
            1..64,
        )
    }

    proptest! {
        /// Whatever the physical readings do (go back, repeat, jump), timestamps strictly
        /// increase, exceed every accepted remote timestamp, and never run ahead of the
        /// highest physical reading or accepted remote timestamp.
        #[test]
        fn timestamps_strictly_increase_and_follow_what_was_seen(events in events()) {
            let mut hlc = Hlc::new(Duration::from_micros(300));
            let mut previous = HlcTimestamp::ZERO;
            let mut highest_seen = 0u64;
            for event in events {
                let (issued, physical) = match event {
                    Event::Local(physical) => (hlc.now(physical), physical),
                    Event::Receive(physical, remote) => match hlc.observe(physical, remote) {
                        Ok(t) => {
                            prop_assert!(t > remote);
                            highest_seen = highest_seen.max(remote.physical);
                            (t, physical)
                        }
                        Err(_) => {
                            prop_assert!(remote.physical > physical + 300);
                            prop_assert_eq!(hlc.last(), previous);
                            continue;
                        }
                    },
                };
                highest_seen = highest_seen.max(physical);
                prop_assert!(issued > previous, "{issued} after {previous}");
                prop_assert!(issued.physical <= highest_seen);
                previous = issued;
            }
        }
    }
}
