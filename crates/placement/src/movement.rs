//! What changes between two rings: per range, which replicas a member gains or loses, and the
//! two summary numbers `quorate` reports when a member joins or leaves. Pure comparison of
//! token maps; it never moves data itself.

use std::collections::BTreeSet;

use crate::ring::Ring;
use crate::token::{TokenRange, fraction_of_space, ranges_between};

/// One range whose preference list differs between an old and a new ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeChange {
    /// The tokens concerned; no vnode of either ring lies strictly inside it.
    pub range: TokenRange,
    /// Members in the old preference list but not the new one: they may drop the range's data
    /// once the new holders have it. Ascending.
    pub removed: Vec<base::NodeId>,
    /// Members in the new preference list but not the old one: the range's data must be
    /// streamed to them. Ascending.
    pub added: Vec<base::NodeId>,
}

/// Returns every range whose set of `n` replicas differs between `old` and `new`, in ascending
/// order of range end.
///
/// The ranges are cut at the union of both rings' vnode tokens, so within each range both
/// rings have a single preference list; adjacent changed ranges are not merged.
pub fn placement_changes(old: &Ring, new: &Ring, n: usize) -> Vec<RangeChange> {
    let boundaries: BTreeSet<u64> = old
        .tokens()
        .keys()
        .chain(new.tokens().keys())
        .copied()
        .collect();
    let boundaries: Vec<u64> = boundaries.into_iter().collect();
    ranges_between(&boundaries)
        .filter_map(|range| {
            let before: BTreeSet<_> = old.walk(range.end).take(n).collect();
            let after: BTreeSet<_> = new.walk(range.end).take(n).collect();
            let removed: Vec<_> = before.difference(&after).copied().collect();
            let added: Vec<_> = after.difference(&before).copied().collect();
            (!removed.is_empty() || !added.is_empty()).then_some(RangeChange {
                range,
                removed,
                added,
            })
        })
        .collect()
}

/// Returns the fraction of the token space whose replica set (the preference list of length
/// `n`, as a set: reordering alone is not a change) differs between `old` and `new`.
///
/// This counts a range once however many of its replicas changed. When a member joins `m`
/// others it is exactly the newcomer's [`Ring::ownership`], about `min(n, m + 1) / (m + 1)`:
/// most ranges change when `n` is close to `m`, even though each changes only one replica. For
/// the amount of data to stream, see [`moved_replica_fraction`].
pub fn moved_fraction(old: &Ring, new: &Ring, n: usize) -> f64 {
    let moved: u128 = placement_changes(old, new, n)
        .iter()
        .map(|change| change.range.len())
        .sum();
    fraction_of_space(moved)
}

/// Returns the fraction of the new ring's (token, replica) placements that the old ring did
/// not have: the share of all stored replicas that must be streamed to a new holder. The
/// denominator is `2^64 * min(n, new.member_count())`; the result is 0 when that is 0.
///
/// When a member joins `m` members with `n <= m`, it enters the preference list of each range
/// it appears in and pushes out exactly the old last replica, so each range changes at most one
/// replica and the result is exactly the newcomer's ownership divided by `n`. With balanced
/// vnodes the newcomer owns `n / (m + 1)` of the space, so about `1 / (m + 1)` of all replicas
/// move: the minimum possible, since the newcomer must end up with its fair share.
pub fn moved_replica_fraction(old: &Ring, new: &Ring, n: usize) -> f64 {
    let replicas = n.min(new.member_count());
    if replicas == 0 {
        return 0.0;
    }
    let streamed: u128 = placement_changes(old, new, n)
        .iter()
        // Precision: at most `n` members per range, far below 2^128 / 2^64.
        .map(|change| change.range.len() * change.added.len() as u128)
        .sum();
    // Precision: `replicas` is far below 2^53, so the conversion is exact.
    fraction_of_space(streamed) / replicas as f64
}
