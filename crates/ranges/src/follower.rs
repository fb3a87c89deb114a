//! The follower-read rule: any replica may serve a read at the range's closed timestamp —
//! every replica that applied it holds all versions up to it, and no write lands at or below
//! it (`state`) — when that timestamp is recent enough for the read's staleness bound by the
//! serving member's clock. Otherwise the read is refused (the gateway then reads on the
//! leader): too stale, or no state yet (a replica waiting for its first snapshot).
//!
//! Must never do I/O, read a clock or depend on a runtime: the caller passes its clock's
//! reading.

use base::clock::HlcTimestamp;

/// What a replica does with a follower read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowerRead {
    /// Serve it at this timestamp (the closed one).
    At(HlcTimestamp),
    /// Refuse it as too stale, naming the closed timestamp.
    TooStale(HlcTimestamp),
    /// Refuse it: this replica holds no state of the range yet.
    NoState,
}

/// The decision for a follower read allowed `max_staleness_ms` of staleness, on a replica
/// whose range is closed at `closed`, at physical time `now_micros` by the serving member's
/// clock; `awaiting_snapshot` while the replica has no state yet.
pub fn follower_read(
    awaiting_snapshot: bool,
    closed: HlcTimestamp,
    now_micros: u64,
    max_staleness_ms: u32,
) -> FollowerRead {
    if awaiting_snapshot {
        return FollowerRead::NoState;
    }
    let oldest = now_micros.saturating_sub(u64::from(max_staleness_ms) * 1000);
    if closed == HlcTimestamp::ZERO || closed.physical < oldest {
        return FollowerRead::TooStale(closed);
    }
    FollowerRead::At(closed)
}
