//! The hint book: how many bytes of hints a member holds for each other member, within a
//! bound per target, and where a held hint goes when it is delivered. The hints themselves are
//! stored by the driver; this keeps the accounting and the decisions.

use std::collections::BTreeMap;

use base::NodeId;

use crate::Plan;

/// Counters of a member's hints.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct HintStats {
    /// Bytes held, over all targets.
    pub bytes: u64,
    pub stored: u64,
    pub delivered: u64,
    /// Hints not kept because their target's bound was full (left to read repair), or
    /// dropped undelivered (their bucket went away, or they did not decode).
    pub dropped: u64,
}

/// The bytes of hints held per target.
#[derive(Clone, Debug)]
pub struct HintBook {
    bytes_max: u64,
    bytes: BTreeMap<NodeId, u64>,
    stats: HintStats,
}

impl HintBook {
    /// A book with `bytes_max` per target, holding what the store already has (`held`).
    pub fn new(bytes_max: u64, held: impl IntoIterator<Item = (NodeId, u64)>) -> HintBook {
        HintBook {
            bytes_max,
            bytes: held.into_iter().collect(),
            stats: HintStats::default(),
        }
    }

    /// Whether a hint of `size` bytes for `target` fits its bound; a refusal counts as a drop.
    pub fn admit(&mut self, target: NodeId, size: u64) -> bool {
        let held = self.bytes.get(&target).copied().unwrap_or(0);
        let fits = held.saturating_add(size) <= self.bytes_max;
        if !fits {
            self.stats.dropped += 1;
        }
        fits
    }

    /// A hint for `target` was stored: its stored bytes went from `before` to `after` (a hint
    /// for a key already hinted merges into it).
    pub fn stored(&mut self, target: NodeId, before: u64, after: u64) {
        let bytes = self.bytes.entry(target).or_insert(0);
        *bytes = bytes.saturating_add(after).saturating_sub(before);
        self.stats.stored += 1;
    }

    /// A hint of `size` bytes for `target` was removed: delivered, or dropped.
    pub fn removed(&mut self, target: NodeId, size: u64, delivered: bool) {
        let bytes = self.bytes.entry(target).or_insert(0);
        *bytes = bytes.saturating_sub(size);
        if delivered {
            self.stats.delivered += 1;
        } else {
            self.stats.dropped += 1;
        }
    }

    /// The targets this member holds hints for.
    pub fn targets(&self) -> Vec<NodeId> {
        self.bytes
            .iter()
            .filter(|(_, bytes)| **bytes > 0)
            .map(|(target, _)| *target)
            .collect()
    }

    pub fn stats(&self) -> HintStats {
        HintStats {
            bytes: self.bytes.values().sum(),
            ..self.stats
        }
    }
}

/// Where a hint held for `target` is delivered, given the key's placement now: to `target`
/// while it still replicates the key (in the current or the pending ring), else — the ring
/// changed since the hint was taken — to every member that does, all of which must take it.
pub fn delivery_targets(plan: &Plan, target: NodeId) -> Vec<NodeId> {
    if plan.owns(target) {
        vec![target]
    } else {
        plan.write_targets()
    }
}
