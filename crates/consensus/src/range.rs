//! The groups of consensus buckets' ranges on this member: each range's state machine
//! (`machine`), its openraft handle (`group`), their wire forms (`codec`), and [`RangeGroups`],
//! the registry the transport hands peers' messages to by group id (a range's group id is its
//! range id; the main group is 0).

pub mod codec;
mod files;
mod group;
mod machine;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

pub use files::RangeFiles;
pub use group::{RangeGroup, RangeGroupOptions};
pub use machine::RangeStateMachine;

/// The range groups running on this member, by group id (cheap to clone).
#[derive(Clone, Default)]
pub struct RangeGroups {
    groups: Arc<RwLock<BTreeMap<u64, RangeGroup>>>,
}

impl RangeGroups {
    pub fn new() -> RangeGroups {
        RangeGroups::default()
    }

    /// The group of `range`, when this member runs it.
    pub fn get(&self, range: u64) -> Option<RangeGroup> {
        self.groups
            .read()
            .expect("range groups poisoned")
            .get(&range)
            .cloned()
    }

    pub fn insert(&self, group: RangeGroup) {
        self.groups
            .write()
            .expect("range groups poisoned")
            .insert(group.range().0, group);
    }

    pub fn remove(&self, range: u64) -> Option<RangeGroup> {
        self.groups
            .write()
            .expect("range groups poisoned")
            .remove(&range)
    }

    /// Every running group, by ascending id (one lock for all: what per-pass loops over
    /// a thousand groups use instead of `get` per id).
    pub fn all(&self) -> Vec<RangeGroup> {
        self.groups
            .read()
            .expect("range groups poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// Calls `f` on every running group under the registry's read lock (no copies; `f` must
    /// not block).
    pub fn each(&self, mut f: impl FnMut(&RangeGroup)) {
        for group in self.groups.read().expect("range groups poisoned").values() {
            f(group);
        }
    }

    /// The running groups this member leads (copies of only those).
    pub fn leaders(&self) -> Vec<RangeGroup> {
        self.groups
            .read()
            .expect("range groups poisoned")
            .values()
            .filter(|g| g.is_leader())
            .cloned()
            .collect()
    }

    /// The ids of the running groups, ascending.
    pub fn ids(&self) -> Vec<u64> {
        self.groups
            .read()
            .expect("range groups poisoned")
            .keys()
            .copied()
            .collect()
    }

    /// This member's replica state of the range of `bucket` starting at `start`, when it is
    /// frozen for a merge into `into` at `generation` (a merge's left side takes it from any
    /// such replica; one frozen at another generation is not the state the merge decided on).
    pub fn frozen(
        &self,
        bucket: &str,
        start: &[u8],
        into: u64,
        generation: u64,
    ) -> Option<proto::quorate::raft::v1::RangeSnapshot> {
        self.all()
            .iter()
            .find_map(|group| group.frozen_snapshot(bucket, start, into, generation))
    }

    pub fn len(&self) -> usize {
        self.groups.read().expect("range groups poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
