//! The routing cache of a client or gateway for one bucket: the descriptors it has seen and
//! the leader each range last had. It is a hint, never the truth: a request routed by it goes
//! to a replica that checks the key against its own descriptor and answers `range moved`
//! (with its newer descriptor when it has one) or `not leader` (with the leader it knows), and
//! the caller corrects the cache and retries. A descriptor replaces every cached one it
//! overlaps unless one of those is newer (a higher generation), so a slow reply carrying an
//! old descriptor cannot undo what a newer one taught.

use std::collections::BTreeMap;

use base::NodeId;

use crate::descriptor::{RangeDescriptor, RangeId};

/// A cached range and the member believed to lead it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedRange {
    pub descriptor: RangeDescriptor,
    pub leader: Option<NodeId>,
}

/// The routing cache of one bucket.
#[derive(Clone, Debug, Default)]
pub struct RangeCache {
    /// By start key; spans never overlap.
    ranges: BTreeMap<Vec<u8>, CachedRange>,
}

impl RangeCache {
    pub fn new() -> RangeCache {
        RangeCache::default()
    }

    /// The cached range with the greatest start at or before `key`.
    fn at_or_before(&self, key: &[u8]) -> Option<(&Vec<u8>, &CachedRange)> {
        self.ranges
            .range::<[u8], _>((std::ops::Bound::Unbounded, std::ops::Bound::Included(key)))
            .next_back()
    }

    /// The cached range holding `key`, if the cache knows one.
    pub fn lookup(&self, key: &[u8]) -> Option<&CachedRange> {
        self.at_or_before(key)
            .map(|(_, cached)| cached)
            .filter(|cached| cached.descriptor.contains(key))
    }

    /// Learns `descriptor` (with its leader, if known). Returns false, changing nothing, when
    /// a cached range overlapping it is newer.
    pub fn insert(&mut self, descriptor: RangeDescriptor, leader: Option<NodeId>) -> bool {
        // Cached spans do not overlap: only the one starting at or before the new start, and
        // those starting before the new end, can overlap it.
        let first = self
            .at_or_before(&descriptor.start)
            .map_or_else(Vec::new, |(start, _)| start.clone());
        let overlapping: Vec<Vec<u8>> = self
            .ranges
            .range(first..)
            .take_while(|(start, _)| {
                descriptor
                    .end
                    .as_deref()
                    .is_none_or(|end| start.as_slice() < end)
            })
            .filter(|(_, c)| {
                c.descriptor
                    .overlaps(&descriptor.start, descriptor.end.as_deref())
            })
            .map(|(start, _)| start.clone())
            .collect();
        let mut kept_leader = None;
        for start in &overlapping {
            let cached = &self.ranges[start];
            if cached.descriptor.generation > descriptor.generation {
                return false;
            }
            if cached.descriptor.id == descriptor.id
                && cached.descriptor.generation == descriptor.generation
            {
                kept_leader = cached.leader;
            }
        }
        for start in overlapping {
            self.ranges.remove(&start);
        }
        self.ranges.insert(
            descriptor.start.clone(),
            CachedRange {
                descriptor,
                leader: leader.or(kept_leader),
            },
        );
        true
    }

    /// Forgets range `id` if the cache holds it at `generation` or older (a replica said it
    /// moved; the next lookup misses and the caller asks the metadata again).
    pub fn evict(&mut self, id: RangeId, generation: u64) {
        self.ranges.retain(|_, cached| {
            cached.descriptor.id != id || cached.descriptor.generation > generation
        });
    }

    /// Records that `leader` leads range `id` (a `not leader` reply named it).
    pub fn set_leader(&mut self, id: RangeId, leader: NodeId) {
        if let Some(cached) = self
            .ranges
            .values_mut()
            .find(|cached| cached.descriptor.id == id)
        {
            cached.leader = Some(leader);
        }
    }

    /// The cached ranges in key order.
    pub fn iter(&self) -> impl Iterator<Item = &CachedRange> + '_ {
        self.ranges.values()
    }

    /// The number of cached ranges.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}
