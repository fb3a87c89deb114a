//! Routing one request by key, as a client or a gateway member does: look the key up in the
//! routing cache (or ask the metadata on a miss), send to the range's leader if one is known,
//! else to a voter not yet tried, and learn from each typed failure — `range moved` (with the
//! replica's newer descriptor, or without: forget the cached range), `not leader` (with the
//! leader, if the replica knows it), `unavailable` (try another replica), `stale` (no serving
//! copy there: forget the range, the metadata will name the one that serves the key) — until the request
//! is answered or the attempts run out. A write may be retried on another replica only
//! because range commands carry request ids (`machine` applies each once).

use base::NodeId;

use crate::cache::RangeCache;
use crate::descriptor::{RangeDescriptor, RangeId};

/// Why a replica did not serve a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteFailure {
    /// The key is not in that range (any more); the replica's descriptor, if it sent one.
    RangeMoved(Option<RangeDescriptor>),
    /// That replica does not lead the range; the leader, if it knows one.
    NotLeader(Option<NodeId>),
    /// The replica did not answer, or could not serve now.
    Unavailable,
    /// The replica has no serving copy of the range — frozen while its left neighbour takes
    /// it over, retired after a merge, or not started yet: forget the cached range and ask
    /// the metadata again after a pause (it names the merged range once the merge commits).
    Stale,
}

/// Where to send the request next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// To `member`, the replica of `range` (at `generation` in the cache) to try now.
    Send {
        range: RangeId,
        generation: u64,
        member: NodeId,
    },
    /// The cache does not know the key's range: ask the metadata, `insert` the answer into
    /// the cache, and call `next` again.
    AskMetadata,
    /// Attempts are used up.
    GiveUp,
}

/// The routing of one request.
#[derive(Clone, Debug)]
pub struct Route {
    key: Vec<u8>,
    attempts_left: u32,
    /// Replicas of the current range that failed with `unavailable` or `not leader` without
    /// a hint.
    tried: Vec<NodeId>,
    /// The range `tried` refers to.
    tried_range: Option<(RangeId, u64)>,
}

impl Route {
    /// Routes a request for `key`, making at most `attempts` sends and metadata lookups.
    pub fn new(key: &[u8], attempts: u32) -> Route {
        Route {
            key: key.to_vec(),
            attempts_left: attempts,
            tried: Vec::new(),
            tried_range: None,
        }
    }

    /// Where to go now.
    pub fn next(&mut self, cache: &RangeCache) -> Next {
        if self.attempts_left == 0 {
            return Next::GiveUp;
        }
        self.attempts_left -= 1;
        let Some(cached) = cache.lookup(&self.key) else {
            return Next::AskMetadata;
        };
        let descriptor = &cached.descriptor;
        let current = (descriptor.id, descriptor.generation);
        if self.tried_range != Some(current) {
            self.tried.clear();
            self.tried_range = Some(current);
        }
        let leader = cached.leader.filter(|l| !self.tried.contains(l));
        let member = leader.or_else(|| descriptor.voters().find(|v| !self.tried.contains(v)));
        match member {
            Some(member) => Next::Send {
                range: descriptor.id,
                generation: descriptor.generation,
                member,
            },
            None => {
                // Every voter failed once: start over (a leader may have been elected since).
                self.tried.clear();
                match descriptor.voters().next() {
                    Some(member) => Next::Send {
                        range: descriptor.id,
                        generation: descriptor.generation,
                        member,
                    },
                    None => Next::AskMetadata,
                }
            }
        }
    }

    /// Learns from a failed send to `member` of `range` at `generation`.
    pub fn failed(
        &mut self,
        cache: &mut RangeCache,
        range: RangeId,
        generation: u64,
        member: NodeId,
        failure: RouteFailure,
    ) {
        match failure {
            RouteFailure::RangeMoved(Some(descriptor)) => {
                // Its newer view replaces what it overlaps (if the key is not in it, the next
                // lookup misses and asks the metadata); a view no newer than the cache's
                // means the cached range is wrong anyway.
                if !cache.insert(descriptor, None) {
                    cache.evict(range, generation);
                }
            }
            RouteFailure::RangeMoved(None) | RouteFailure::Stale => cache.evict(range, generation),
            RouteFailure::NotLeader(Some(leader)) if leader != member => {
                // Fresh news: the hinted leader is tried again even if it refused before (it
                // may have been elected since), and the replica that pointed there is not.
                cache.set_leader(range, leader);
                self.tried.retain(|tried| *tried != leader);
                if !self.tried.contains(&member) {
                    self.tried.push(member);
                }
            }
            RouteFailure::NotLeader(_) | RouteFailure::Unavailable => {
                self.tried.push(member);
            }
        }
    }
}
