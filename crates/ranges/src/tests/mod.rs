//! Tests of the range rules: each module's transitions, property tests of the partition and
//! the routing cache, and a seeded cluster model that runs the rebalancer through joins,
//! deaths and drains.

mod cache;
mod descriptor;
mod duties;
mod lifecycle;
mod machine;
mod membership;
mod merging;
mod quiesce;
mod rebalance;
mod relocate;
mod route;
mod split;
mod state;

use base::NodeId;

use crate::descriptor::{RangeId, RangeMap};

/// A map of `count` ranges on members 1..=3, split at `k01`, `k02`, ….
pub fn split_map(count: u64) -> RangeMap {
    let mut map = RangeMap::new(RangeId(1), &[NodeId(1), NodeId(2), NodeId(3)]);
    for i in 1..count {
        let at = key(i);
        let last = map.lookup(&at).clone();
        map.split(last.id, last.generation, &at, RangeId(i + 1))
            .expect("split a fresh map");
    }
    map
}

pub fn key(i: u64) -> Vec<u8> {
    format!("k{i:02}").into_bytes()
}
