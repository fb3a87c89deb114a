//! Canaries: bugs planted on purpose, compiled only with the `canary` feature, so the tester
//! can prove it catches them (`quorate check --canary NAME` must report the run invalid). A
//! release build never contains them; a member runs one only when started with
//! `--unsafe-canary NAME`.

/// The planted bugs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Canary {
    /// Linearizable reads are served from the local state without the ReadIndex barrier,
    /// so a member that lags (just restarted, or resumed after a pause) answers stale data.
    StaleRead,
    /// A put on the leader is acknowledged as soon as it is handed to Raft, before it is
    /// committed, so a leader crash loses acknowledged writes.
    AckBeforeCommit,
    /// A watcher that reads more than one change at once (one that lags and catches up)
    /// loses the oldest of them.
    WatchGap,
    /// Lock answers at once instead of waiting for the holders before it.
    LockNoWait,
    /// Quorum buckets without version vectors: a coordinator's put replaces the key's
    /// siblings with its value and replicas take the object that arrives last instead of
    /// merging, so concurrent writes are lost (what a last-arrival-wins store does).
    QuorumOverwrite,
    /// A range answers reads of keys a split moved out of it from what it still holds (none
    /// of them) instead of refusing them as moved, so a gateway whose routing cache predates
    /// the split reads a written key as absent.
    SplitStaleRead,
    /// Follower reads are served at the replica's closed timestamp however old it is, so a
    /// replica cut off from its leader answers from long ago.
    FollowerReadUnbounded,
    /// One replica of a range (the one on the merged range's lowest voter) applies a merge
    /// without the right neighbour's first keys (those below its middle key), so replicas of
    /// the merged range diverge: the ones it serves reads from lose acknowledged writes.
    MergeLosesRight,
}

impl Canary {
    /// Every canary's name.
    pub const NAMES: [&'static str; 8] = [
        "stale-read",
        "ack-before-commit",
        "watch-gap",
        "lock-no-wait",
        "quorum-overwrite",
        "split-stale-read",
        "follower-read-unbounded",
        "merge-loses-right",
    ];

    pub fn name(self) -> &'static str {
        match self {
            Canary::StaleRead => "stale-read",
            Canary::AckBeforeCommit => "ack-before-commit",
            Canary::WatchGap => "watch-gap",
            Canary::LockNoWait => "lock-no-wait",
            Canary::QuorumOverwrite => "quorum-overwrite",
            Canary::SplitStaleRead => "split-stale-read",
            Canary::FollowerReadUnbounded => "follower-read-unbounded",
            Canary::MergeLosesRight => "merge-loses-right",
        }
    }

    pub fn parse(name: &str) -> Option<Canary> {
        match name {
            "stale-read" => Some(Canary::StaleRead),
            "ack-before-commit" => Some(Canary::AckBeforeCommit),
            "watch-gap" => Some(Canary::WatchGap),
            "lock-no-wait" => Some(Canary::LockNoWait),
            "quorum-overwrite" => Some(Canary::QuorumOverwrite),
            "split-stale-read" => Some(Canary::SplitStaleRead),
            "follower-read-unbounded" => Some(Canary::FollowerReadUnbounded),
            "merge-loses-right" => Some(Canary::MergeLosesRight),
            _ => None,
        }
    }
}
