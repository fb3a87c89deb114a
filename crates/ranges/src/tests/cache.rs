//! The routing cache: newer descriptors replace older overlapping ones, stale ones are
//! refused, and whatever order replies arrive in, once every current descriptor has been seen
//! the cache routes exactly as the metadata does.

use base::NodeId;
use proptest::prelude::*;

use super::split_map;
use crate::cache::RangeCache;
use crate::descriptor::{RangeDescriptor, RangeId, RangeMap};

fn members() -> Vec<NodeId> {
    vec![NodeId(1), NodeId(2), NodeId(3)]
}

#[test]
fn a_newer_descriptor_replaces_and_a_stale_one_is_refused() {
    let mut map = RangeMap::new(RangeId(1), &members());
    let parent = map.lookup(b"").clone();
    let (left, right) = map.split(RangeId(1), 1, b"m", RangeId(2)).expect("split");
    let mut cache = RangeCache::new();
    assert!(cache.lookup(b"a").is_none());
    assert!(cache.insert(parent.clone(), Some(NodeId(1))));
    assert_eq!(
        cache.lookup(b"z").map(|c| c.descriptor.id),
        Some(RangeId(1))
    );
    // The left half replaces the parent; keys of the right half now miss.
    assert!(cache.insert(left.clone(), None));
    assert_eq!(cache.lookup(b"a").map(|c| c.descriptor.generation), Some(2));
    assert!(cache.lookup(b"z").is_none());
    assert!(cache.insert(right.clone(), Some(NodeId(3))));
    // A slow reply carrying the parent cannot undo the split.
    assert!(!cache.insert(parent, Some(NodeId(2))));
    assert_eq!(
        cache.lookup(b"z").map(|c| c.descriptor.id),
        Some(RangeId(2))
    );
    assert_eq!(cache.lookup(b"z").and_then(|c| c.leader), Some(NodeId(3)));
    assert_eq!(cache.len(), 2);
}

#[test]
fn errors_correct_the_cache() {
    let map = split_map(2);
    let mut cache = RangeCache::new();
    for range in map.iter() {
        cache.insert(range.clone(), None);
    }
    let r2 = map.get(RangeId(2)).expect("r2").clone();
    // `not leader` names the leader; a refresh at the same generation keeps it.
    cache.set_leader(RangeId(2), NodeId(2));
    assert!(cache.insert(r2.clone(), None));
    assert_eq!(
        cache.lookup(&r2.start).and_then(|c| c.leader),
        Some(NodeId(2))
    );
    // `range moved` at an older generation than cached changes nothing; at the cached one,
    // the range is forgotten.
    cache.evict(RangeId(2), r2.generation - 1);
    assert!(cache.lookup(&r2.start).is_some());
    cache.evict(RangeId(2), r2.generation);
    assert!(cache.lookup(&r2.start).is_none());
    assert!(cache.lookup(b"a").is_some());
}

/// Every descriptor a sequence of splits and merges ever created, and the final map.
fn history(cuts: &[(u8, u8)]) -> (Vec<RangeDescriptor>, RangeMap) {
    let mut map = RangeMap::new(RangeId(1), &members());
    let mut seen: Vec<RangeDescriptor> = map.iter().cloned().collect();
    let mut next = 2;
    for &(pick, at) in cuts {
        let ranges: Vec<_> = map.iter().cloned().collect();
        let range = ranges[pick as usize % ranges.len()].clone();
        if at % 3 == 0 {
            if let Some(end) = &range.end {
                let right = map.lookup(end).generation;
                if let Ok(merged) = map.merge(range.id, range.generation, right) {
                    seen.push(merged);
                }
            }
        } else if let Ok((l, r)) = map.split(range.id, range.generation, &[at], RangeId(next)) {
            next += 1;
            seen.push(l);
            seen.push(r);
        }
    }
    (seen, map)
}

proptest! {
    /// Goal: replies arriving in any order (stale ones included) never leave the cache
    /// routing a key to a range that does not hold it, and once every current descriptor has
    /// arrived the cache routes every key as the metadata does.
    #[test]
    fn any_arrival_order_converges_to_the_metadata(
        cuts in proptest::collection::vec((any::<u8>(), any::<u8>()), 0..30),
        order in proptest::collection::vec(any::<u16>(), 0..80),
        probes in proptest::collection::vec(any::<u8>(), 1..20),
    ) {
        let (seen, map) = history(&cuts);
        let current: Vec<RangeDescriptor> = map.iter().cloned().collect();
        // Stale and current descriptors interleaved, then every current one somewhere.
        let mut arrivals: Vec<RangeDescriptor> =
            order.iter().map(|&i| seen[i as usize % seen.len()].clone()).collect();
        for (i, range) in current.iter().enumerate() {
            let at = order.get(i).map_or(arrivals.len(), |&o| o as usize % (arrivals.len() + 1));
            arrivals.insert(at, range.clone());
        }
        let mut cache = RangeCache::new();
        for descriptor in arrivals {
            cache.insert(descriptor, None);
            for &probe in &probes {
                if let Some(cached) = cache.lookup(&[probe]) {
                    prop_assert!(cached.descriptor.contains(&[probe]));
                }
            }
        }
        for &probe in &probes {
            let cached = cache.lookup(&[probe]).map(|c| c.descriptor.clone());
            prop_assert_eq!(cached.as_ref(), Some(map.lookup(&[probe])));
        }
        prop_assert_eq!(cache.len(), map.len());
    }
}
