//! The decisions of range-sharded consensus buckets, as pure functions and state machines (no
//! I/O, no clock, no runtime; time comes in as ticks and durations): a bucket's keys, in byte
//! order, are partitioned into ranges, each its own Raft group on a few members.
//!
//! - `descriptor`: a range's descriptor (span, replicas, generation) and a bucket's `RangeMap`
//!   with the rules of its changes — split, merge, replica changes — each checked against the
//!   generation the proposer saw, so a change computed from stale metadata is refused.
//! - `cache`: the routing cache of clients and gateways, which a newer descriptor or a typed
//!   error (`range moved`, `not leader`) corrects.
//! - `route`: where one request goes next, and what each typed failure teaches the cache.
//! - `split`: when a range splits (size, or load sustained over windows) and at which key.
//! - `duties`: what the leader of a range does on each pass (classify the metadata's change,
//!   the named duties in order and their periods, when stuck followers get snapshots).
//! - `follower`: when a replica serves a follower read (at its closed timestamp, within the
//!   read's staleness bound).
//! - `lifecycle`: a member's replica of a range from start (from its state, after a split's
//!   seed, or awaiting a snapshot) to retirement (only once nothing can still need it).
//! - `membership`: the next step of a group's Raft membership towards its descriptor, and
//!   who takes a leadership over.
//! - `merge`: which adjacent ranges are small and quiet enough to merge.
//! - `merging`: the sequence of one merge (align, freeze, fetch, commit, apply; release when
//!   given up) and when a freeze outlived its merge.
//! - `rebalance`: the steps (add learner, promote, remove, transfer leader) that re-create
//!   replicas of dead members, drain members and even out replicas and leaders, never taking a
//!   range below its replica target.
//! - `relocate`: the steps of a manual move of one replica (`quorate range move`).
//! - `quiesce`: when an idle group stops heartbeating and when it wakes.
//! - `machine`: what applying a committed command does, with client sessions so a retried
//!   request is applied once even across splits, and plain writes versioned above what they
//!   follow.
//! - `memory`: a range replica whose versions are in memory (the simulation's and tests').
//! - `state`: one replica's state of a range — its record here, its keys' versions in the
//!   member's ordered store as the span of its keys — which refuses keys outside its span
//!   (`range moved`), so no replica serves what a split moved.
//!
//! The metadata group applies descriptor changes; drivers in `consensus` and `node` feed the
//! decisions their inputs and carry out their outputs.

pub mod cache;
pub mod descriptor;
pub mod duties;
pub mod follower;
pub mod lifecycle;
pub mod machine;
pub mod membership;
pub mod memory;
pub mod merge;
pub mod merging;
pub mod quiesce;
pub mod rebalance;
pub mod relocate;
pub mod route;
pub mod split;
pub mod state;

pub use cache::{CachedRange, RangeCache};
pub use descriptor::{
    RangeDescriptor, RangeError, RangeId, RangeMap, Replica, ReplicaChange, Role,
};
pub use duties::{
    Duty, DutyPeriods, LeaderView, Pending, SnapshotAction, StuckPeriods, StuckWatch, classify,
    leader_duties, snapshot_action,
};
pub use follower::{FollowerRead, follower_read};
pub use lifecycle::{Keep, RunningReplica, Start, keep_replica, stands_in_way, start_replica};
pub use machine::{FrozenRange, Outcome, RangeCommand, RangeMachine, RequestId, Session};
pub use membership::{
    Follower, MembershipStep, RaftMembership, membership_step, next_transferee, takes_over_at_once,
};
pub use memory::{MemRange, MemStore};
pub use merge::{MergeCandidate, MergeConfig, align, merge_candidates, merge_fits};
pub use merging::{
    AlignStep, CommandFate, FreezeWatch, GroupView, MergeEnd, MergeEvent, MergeFailure, MergePhase,
    MergeRun, MergeStep, align_step,
};
pub use quiesce::{QuiesceConfig, QuiesceInput, QuiesceOutput, Quiescer};
pub use rebalance::{
    MemberHealth, MemberInfo, RangeInfo, RebalanceConfig, Step, TooFewMembers, first_replicas, plan,
};
pub use relocate::{MoveRefusal, MoveStep, move_step};
pub use route::{Next, Route, RouteFailure};
pub use split::{LoadTracker, Split, SplitConfig, SplitReason, decide_split};
pub use state::{ListedVersion, RangeOpError, RangeState, ScanPart, Stored};

#[cfg(test)]
mod tests;
