//! Where a request on a key goes: the key's token, its N replicas on the current ring (and on
//! the pending ring during a ring change), and the other members in ring order, the fallbacks
//! of a sloppy quorum ([`Plan`]). A [`Placer`] holds the rings of one topology, built once per
//! topology change rather than once per request, with the bucket definitions of that topology.

use std::collections::BTreeMap;

use base::NodeId;
use crdt::Conflicts;
use placement::Ring;

use crate::Level;

/// A quorum bucket as its coordinators use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketDef {
    pub name: String,
    /// Replicas of each key.
    pub n: usize,
    /// Default read and write levels.
    pub r: Level,
    pub w: Level,
    pub conflicts: Conflicts,
    /// Whether unreachable replicas' writes may go to fallbacks that count toward W.
    pub sloppy: bool,
}

/// One request's placement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub token: u64,
    /// The current ring's N replicas, in ring order.
    pub replicas: Vec<NodeId>,
    /// The pending ring's N replicas during a ring change (empty otherwise): writes need W of
    /// them too.
    pub next: Vec<NodeId>,
    /// Members in neither list, in ring order.
    pub fallbacks: Vec<NodeId>,
    /// The ring epoch the placement was made at; replicas at a later epoch refuse it.
    pub epoch: u64,
}

impl Plan {
    /// Every member a write goes to: the current replicas, then the pending ring's others.
    pub fn write_targets(&self) -> Vec<NodeId> {
        let mut targets = self.replicas.clone();
        targets.extend(self.next.iter().filter(|m| !self.replicas.contains(m)));
        targets
    }

    /// Whether `member` replicates the key in the current or the pending ring.
    pub fn owns(&self, member: NodeId) -> bool {
        self.replicas.contains(&member) || self.next.contains(&member)
    }
}

/// Why a request cannot be placed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("bucket {0:?} not found")]
    NoBucket(String),
    #[error("the cluster has no token ring yet")]
    NoRing,
}

/// The rings and buckets of one topology.
#[derive(Clone, Debug)]
pub struct Placer {
    epoch: u64,
    current: Option<Ring>,
    next: Option<Ring>,
    buckets: BTreeMap<String, BucketDef>,
}

impl Placer {
    /// The placer of a topology at ring `epoch`: its ring (None before the first bucket), the
    /// pending next ring during a change, and its quorum buckets.
    pub fn new(
        epoch: u64,
        current: Option<Ring>,
        next: Option<Ring>,
        buckets: impl IntoIterator<Item = BucketDef>,
    ) -> Placer {
        Placer {
            epoch,
            current,
            next,
            buckets: buckets.into_iter().map(|b| (b.name.clone(), b)).collect(),
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The current ring.
    pub fn ring(&self) -> Result<&Ring, PlaceError> {
        self.current.as_ref().ok_or(PlaceError::NoRing)
    }

    /// The pending ring of a ring change.
    pub fn next_ring(&self) -> Option<&Ring> {
        self.next.as_ref()
    }

    pub fn bucket(&self, name: &str) -> Result<&BucketDef, PlaceError> {
        self.buckets
            .get(name)
            .ok_or_else(|| PlaceError::NoBucket(name.to_owned()))
    }

    pub fn buckets(&self) -> impl Iterator<Item = &BucketDef> {
        self.buckets.values()
    }

    /// Where a request on `key` of `bucket` goes.
    pub fn plan(&self, bucket: &BucketDef, key: &[u8]) -> Result<Plan, PlaceError> {
        let ring = self.ring()?;
        let token = placement::key_token(&bucket.name, key);
        let mut replicas: Vec<NodeId> = ring.walk(token).collect();
        let mut fallbacks = replicas.split_off(bucket.n.min(replicas.len()));
        let next = match &self.next {
            Some(next) => {
                let next = next.preference_list(token, bucket.n);
                fallbacks.retain(|m| !next.contains(m));
                next
            }
            None => Vec::new(),
        };
        Ok(Plan {
            token,
            replicas,
            next,
            fallbacks,
            epoch: self.epoch,
        })
    }
}
