//! Which adjacent ranges merge: two neighbours whose data together stays under a quarter of
//! the range size and whose load together stays under a quarter of the load-split threshold
//! (so the merged range is far from splitting again), and which have the same replicas — if
//! they do not, the right one's replicas are first aligned to the left one's, one change at a
//! time (`align`). A range whose start was made by a split by hand (sticky) is never merged
//! into its left neighbour on its own: the operator's split stays.

use crate::descriptor::{RangeDescriptor, RangeId, RangeMap, ReplicaChange, Role};
use crate::split::{LOAD_SPLIT_QPS_DEFAULT, RANGE_MAX_BYTES_DEFAULT};

/// A merge's thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MergeConfig {
    /// Two ranges merge only if their data together is at most this.
    pub merge_max_bytes: u64,
    /// ... and their requests per second together at most this.
    pub merge_max_qps: f64,
}

impl MergeConfig {
    /// The thresholds for a bucket with ranges of `range_max_bytes` that split above
    /// `load_split_qps`: a quarter of each.
    pub fn for_bucket(range_max_bytes: u64, load_split_qps: f64) -> MergeConfig {
        MergeConfig {
            merge_max_bytes: range_max_bytes / 4,
            merge_max_qps: load_split_qps / 4.0,
        }
    }
}

impl Default for MergeConfig {
    fn default() -> MergeConfig {
        MergeConfig::for_bucket(RANGE_MAX_BYTES_DEFAULT, LOAD_SPLIT_QPS_DEFAULT)
    }
}

/// Two neighbours that should merge.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct MergeCandidate {
    pub left: RangeId,
    pub right: RangeId,
    /// Whether they already have the same replicas (else `align` first).
    pub replicas_aligned: bool,
}

/// Whether `left` and its right neighbour `right` are small and quiet enough to merge on
/// their own, replicas aside (`align` brings them together first): `right`'s start is not
/// sticky (made by a split by hand), they are adjacent, and together they stay under both
/// thresholds.
pub fn merge_fits(
    left: &RangeDescriptor,
    right: &RangeDescriptor,
    left_stats: (u64, f64),
    right_stats: (u64, f64),
    config: &MergeConfig,
) -> bool {
    !right.sticky
        && left.end.as_deref() == Some(right.start.as_slice())
        && left_stats.0 + right_stats.0 <= config.merge_max_bytes
        && left_stats.1 + right_stats.1 <= config.merge_max_qps
}

/// The pairs of neighbours in `map` that should merge, left to right, no range in two pairs.
/// `stats` gives a range's data size and requests per second; a range without stats is left
/// alone.
pub fn merge_candidates(
    map: &RangeMap,
    stats: impl Fn(RangeId) -> Option<(u64, f64)>,
    config: &MergeConfig,
) -> Vec<MergeCandidate> {
    let ranges: Vec<&RangeDescriptor> = map.iter().collect();
    let mut out = Vec::new();
    let mut index = 0;
    while index + 1 < ranges.len() {
        let (left, right) = (ranges[index], ranges[index + 1]);
        let small = match (stats(left.id), stats(right.id)) {
            (Some((lb, lq)), Some((rb, rq))) => {
                !right.sticky
                    && lb + rb <= config.merge_max_bytes
                    && lq + rq <= config.merge_max_qps
            }
            _ => false,
        };
        if small {
            out.push(MergeCandidate {
                left: left.id,
                right: right.id,
                replicas_aligned: left.same_replicas(right),
            });
            index += 2;
        } else {
            index += 1;
        }
    }
    out
}

/// The next change that brings `right`'s replicas towards `left`'s: add what is missing, then
/// promote, then remove what `left` does not have. `None` when they match, or when only a
/// learner of `left` differs (wait for `left`'s own change to finish).
pub fn align(left: &RangeDescriptor, right: &RangeDescriptor) -> Option<ReplicaChange> {
    if let Some(member) = left
        .replicas
        .iter()
        .map(|r| r.member)
        .find(|&m| right.role_of(m).is_none())
    {
        return Some(ReplicaChange::AddLearner(member));
    }
    if let Some(member) = left
        .voters()
        .find(|&m| right.role_of(m) == Some(Role::Learner))
    {
        return Some(ReplicaChange::Promote(member));
    }
    right
        .replicas
        .iter()
        .map(|r| r.member)
        .find(|&m| left.role_of(m).is_none())
        .map(ReplicaChange::Remove)
}
