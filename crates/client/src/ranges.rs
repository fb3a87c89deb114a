//! Client-side routing for consensus buckets: a cache of each bucket's ranges with their
//! leaders (`ranges::RangeCache`, filled by `Ranges.List`) and the members' client addresses
//! (etcd `MemberList`), so a request goes straight to the member leading its key's range and
//! is served there, without the hop a gateway makes to the leader. Every member still serves
//! every key (it routes as a gateway, correcting itself by the replicas' typed refusals), so a
//! stale entry costs one hop, never a wrong answer. A bucket's entries are refilled when a
//! lookup misses, after the caller reports a failed request (`invalidate`), and every
//! `ROUTE_REFRESH` (leaders move under the rebalancer).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base::NodeId;
use proto::etcdserverpb::MemberListRequest;
use proto::etcdserverpb::cluster_client::ClusterClient;
use proto::quorate::v1 as pb;
use proto::quorate::v1::ranges_client::RangesClient;
use ranges::{RangeCache, RangeDescriptor, RangeId, Replica, Role};
use tonic::transport::Channel;

use crate::ClientError;

/// How long a bucket's routes are trusted before they are refilled.
pub const ROUTE_REFRESH: Duration = Duration::from_secs(5);

/// One bucket's routes and when they were filled.
struct Routes {
    cache: RangeCache,
    filled: Instant,
}

/// Routes requests on consensus buckets to the members leading their keys' ranges.
pub struct RangeRouter {
    /// One channel per endpoint, in the caller's order.
    channels: Vec<Channel>,
    /// Member id → index in `channels`.
    index_of: HashMap<u64, usize>,
    routes: Mutex<HashMap<String, Routes>>,
}

/// `host:port` of a URL or address (scheme and trailing slash dropped).
fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.trim_end_matches('/')
}

/// A range as `Ranges.List` describes it, as the cache takes it.
fn descriptor_of(info: &pb::RangeInfo) -> RangeDescriptor {
    let role = |member: &u64, role| Replica {
        member: NodeId(*member),
        role,
    };
    RangeDescriptor {
        id: RangeId(info.id),
        start: info.start.clone(),
        end: info.end.clone(),
        replicas: info
            .replicas
            .iter()
            .map(|m| role(m, Role::Voter))
            .chain(info.learners.iter().map(|m| role(m, Role::Learner)))
            .collect(),
        generation: info.generation,
        sticky: false,
    }
}

impl RangeRouter {
    /// A router over `channels`, the connections to `endpoints` (one each, same order): learns
    /// which member each endpoint is from the cluster's member list.
    pub async fn new(
        endpoints: &[String],
        channels: Vec<Channel>,
    ) -> Result<RangeRouter, ClientError> {
        let mut last = ClientError::Unreachable("no endpoint given".to_owned());
        for channel in &channels {
            let listed = ClusterClient::new(channel.clone())
                .member_list(MemberListRequest {
                    linearizable: false,
                })
                .await;
            let members = match listed {
                Ok(listed) => listed.into_inner().members,
                Err(status) => {
                    last = ClientError::Status(status);
                    continue;
                }
            };
            let mut index_of = HashMap::new();
            for member in members {
                let at = endpoints.iter().position(|e| {
                    member
                        .client_ur_ls
                        .iter()
                        .any(|url| authority(url) == authority(e))
                });
                if let Some(at) = at {
                    index_of.insert(member.id, at);
                }
            }
            return Ok(RangeRouter {
                channels,
                index_of,
                routes: Mutex::new(HashMap::new()),
            });
        }
        Err(last)
    }

    /// The index of the endpoint to send a request on `key` of `bucket` to: the member that
    /// leads its range, as far as the routes know; else one chosen by the key.
    pub async fn endpoint_for(&self, bucket: &str, key: &[u8]) -> usize {
        if let Some(at) = self.cached(bucket, key) {
            return at;
        }
        if let Err(error) = self.refresh(bucket).await {
            tracing::debug!(bucket, %error, "range routes not refreshed");
        }
        self.cached(bucket, key).unwrap_or_else(|| {
            let spread = key
                .iter()
                .fold(0usize, |h, b| h.wrapping_mul(31) ^ usize::from(*b));
            spread % self.channels.len().max(1)
        })
    }

    /// The channel to send a request on `key` of `bucket` to (see `endpoint_for`).
    pub async fn channel_for(&self, bucket: &str, key: &[u8]) -> Channel {
        let at = self.endpoint_for(bucket, key).await;
        self.channels[at].clone()
    }

    /// Forgets `bucket`'s routes (a request failed: they may be stale).
    pub fn invalidate(&self, bucket: &str) {
        self.routes.lock().expect("routes lock").remove(bucket);
    }

    /// The cached leader's endpoint for `key`, while the routes are fresh.
    fn cached(&self, bucket: &str, key: &[u8]) -> Option<usize> {
        let routes = self.routes.lock().expect("routes lock");
        let routes = routes.get(bucket)?;
        if routes.filled.elapsed() > ROUTE_REFRESH {
            return None;
        }
        let leader = routes.cache.lookup(key)?.leader?;
        self.index_of.get(&leader.0).copied()
    }

    /// Refills `bucket`'s routes from `Ranges.List` (through the first endpoint that answers).
    async fn refresh(&self, bucket: &str) -> Result<(), ClientError> {
        let mut last = ClientError::Unreachable("no endpoint".to_owned());
        for channel in &self.channels {
            let request = pb::ListRangesRequest {
                bucket: bucket.to_owned(),
            };
            match RangesClient::new(channel.clone()).list(request).await {
                Ok(listed) => {
                    let mut cache = RangeCache::new();
                    for info in listed.into_inner().ranges {
                        let leader = (info.leader != 0).then_some(NodeId(info.leader));
                        cache.insert(descriptor_of(&info), leader);
                    }
                    let routes = Routes {
                        cache,
                        filled: Instant::now(),
                    };
                    self.routes
                        .lock()
                        .expect("routes lock")
                        .insert(bucket.to_owned(), routes);
                    return Ok(());
                }
                Err(status) => last = ClientError::Status(status),
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_match_member_urls_whatever_their_scheme() {
        assert_eq!(authority("http://127.0.0.1:2379"), "127.0.0.1:2379");
        assert_eq!(authority("https://h:1/"), "h:1");
        assert_eq!(authority("127.0.0.1:2379"), "127.0.0.1:2379");
    }

    #[test]
    fn a_listed_range_becomes_a_cached_descriptor_with_its_learners() {
        let info = pb::RangeInfo {
            id: 7,
            start: b"b".to_vec(),
            end: Some(b"m".to_vec()),
            replicas: vec![1, 2],
            learners: vec![3],
            leader: 2,
            generation: 4,
            ..Default::default()
        };
        let descriptor = descriptor_of(&info);
        assert_eq!(descriptor.id, RangeId(7));
        assert_eq!(descriptor.role_of(NodeId(3)), Some(Role::Learner));
        assert_eq!(descriptor.voters().count(), 2);
        let mut cache = RangeCache::new();
        assert!(cache.insert(descriptor, Some(NodeId(2))));
        assert_eq!(cache.lookup(b"c").and_then(|r| r.leader), Some(NodeId(2)));
        assert!(cache.lookup(b"z").is_none());
    }
}
