//! `quorate.v1` for consensus buckets, in front of the quorum path's services: `KvFront` and
//! `BucketsFront` serve a request themselves when its bucket is a consensus bucket and hand
//! it to the wrapped quorum service otherwise, so one Kv and one Buckets service cover both
//! kinds; `RangesService` lists and splits ranges. They check the request, call the node and
//! encode; errors leave through `RangeNodeError`'s status mapping.

use proto::quorate::v1::Refusal;
use std::sync::Arc;

use base::limits::{CONSENSUS_KEY_BYTES_MAX, RANGE_MAX_BYTES_DEFAULT, RANGE_MAX_BYTES_MIN};
use proto::quorate::raft::v1 as raftpb;
use proto::quorate::v1 as pb;
use proto::quorate::v1::buckets_server::Buckets;
use proto::quorate::v1::kv_server::Kv;
use proto::quorate::v1::ranges_server::Ranges;
use tonic::{Request, Response, Status};

use crate::gateway::{RangeOp, Served};
use crate::{RangeNode, RangeNodeError};

/// Replicas per range when a bucket does not say.
const REPLICAS_DEFAULT: u32 = 3;

/// Checks a key of a consensus bucket.
pub(crate) fn check_key(key: &[u8]) -> Result<(), RangeNodeError> {
    if key.is_empty() {
        return Err(RangeNodeError::EmptyKey);
    }
    if key.len() > CONSENSUS_KEY_BYTES_MAX {
        return Err(RangeNodeError::KeyTooLarge {
            len: key.len(),
            max: CONSENSUS_KEY_BYTES_MAX,
        });
    }
    Ok(())
}

/// A read's staleness bound in milliseconds when it asks for a follower read (the default
/// when it names none), `None` for a linearizable read.
fn follower_staleness(
    consistency: i32,
    max_staleness_ms: u32,
) -> Result<Option<u32>, RangeNodeError> {
    match pb::ReadConsistency::try_from(consistency) {
        Ok(pb::ReadConsistency::ReadLinearizable) => Ok(None),
        Ok(pb::ReadConsistency::ReadFollower) => Ok(Some(match max_staleness_ms {
            0 => base::limits::FOLLOWER_READ_STALENESS_DEFAULT.as_millis() as u32,
            ms => ms,
        })),
        Err(_) => Err(RangeNodeError::Invalid(format!(
            "unknown read consistency {consistency}"
        ))),
    }
}

fn ts_fields(ts: &Option<raftpb::Timestamp>) -> (u64, u32) {
    ts.as_ref().map_or((0, 0), |ts| (ts.micros, ts.logical))
}

impl RangeNode {
    /// Creates a consensus bucket: its first range goes on the `n` voting members holding the
    /// fewest ranges now (ties by id).
    async fn create_bucket(&self, mut bucket: pb::Bucket) -> Result<pb::Bucket, RangeNodeError> {
        topology::validate_bucket_name(&bucket.name)
            .map_err(|e| RangeNodeError::Invalid(e.to_string()))?;
        if bucket.n == 0 {
            bucket.n = REPLICAS_DEFAULT;
        }
        if bucket.range_max_bytes == 0 {
            bucket.range_max_bytes = RANGE_MAX_BYTES_DEFAULT;
        }
        if bucket.range_max_bytes < RANGE_MAX_BYTES_MIN {
            return Err(RangeNodeError::Invalid(format!(
                "range size {} is below the minimum of {RANGE_MAX_BYTES_MIN} bytes",
                bucket.range_max_bytes
            )));
        }
        if bucket.r.is_some() || bucket.w.is_some() || bucket.sloppy {
            return Err(RangeNodeError::Invalid(
                "read and write levels and sloppy quorums are for quorum buckets".into(),
            ));
        }
        bucket.conflicts = pb::Conflicts::Unspecified as i32;
        // Place by the cluster's current membership and load: a member that just started may
        // not have applied them yet (it knew no voters, and refused the bucket for that).
        self.replica.linearizable_barrier().await?;
        let membership = self.replica.membership();
        let voters: Vec<base::NodeId> = membership
            .configs
            .iter()
            .flat_map(|set| set.ids.iter().copied())
            .map(base::NodeId)
            .collect();
        let topology = self.replica.topology();
        let draining: Vec<base::NodeId> = topology
            .draining
            .iter()
            .copied()
            .map(base::NodeId)
            .collect();
        let replicas: Vec<u64> =
            ranges::first_replicas(&voters, &draining, bucket.n as usize, |m| {
                topology::replicas_on(&topology, m.0)
            })
            .map_err(|e| RangeNodeError::refused(Refusal::Invalid, e.to_string()))?
            .into_iter()
            .map(|m| m.0)
            .collect();
        let change = raftpb::BucketChange {
            change: Some(raftpb::bucket_change::Change::Create(bucket)),
            range_replicas: replicas,
            ..Default::default()
        };
        let reply = self.replica.change_bucket(change).await?;
        if !reply.refusal.is_empty() {
            return Err(RangeNodeError::from_reply(
                reply.refusal_kind,
                reply.refusal,
            ));
        }
        reply.bucket.ok_or_else(|| {
            RangeNodeError::Internal("bucket change answered without a bucket".into())
        })
    }

    async fn write(
        &self,
        bucket: &str,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
    ) -> Result<(u64, u32), RangeNodeError> {
        check_key(&key)?;
        use raftpb::range_command::Op;
        let op = match value {
            Some(value) => {
                if value.len() > self.config.value_bytes_max {
                    return Err(RangeNodeError::ValueTooLarge {
                        len: value.len(),
                        max: self.config.value_bytes_max,
                    });
                }
                Op::Put(raftpb::RangePut {
                    key: key.clone(),
                    value,
                    ts: None,
                })
            }
            None => Op::Delete(raftpb::RangeDelete {
                key: key.clone(),
                ts: None,
            }),
        };
        let command = raftpb::RangeCommand {
            op: Some(op),
            ..Default::default()
        };
        match self
            .route(bucket, &key, RangeOp::Write(Box::new(command)))
            .await?
        {
            Served::Written(written) => {
                use raftpb::range_command_response::Outcome;
                match written.outcome {
                    Some(Outcome::Written(ts)) => Ok((ts.micros, ts.logical)),
                    other => Err(RangeNodeError::Internal(format!(
                        "range write answered {other:?}"
                    ))),
                }
            }
            Served::Read(_) => Err(RangeNodeError::Internal(
                "a write was answered by a read".into(),
            )),
        }
    }

    async fn read(
        &self,
        bucket: &str,
        read: raftpb::RangeRead,
    ) -> Result<raftpb::RangeReadResult, RangeNodeError> {
        let key = read.from.clone();
        match self.route(bucket, &key, RangeOp::Read(read)).await? {
            Served::Read(result) => Ok(result),
            Served::Written(_) => Err(RangeNodeError::Internal(
                "a read was answered by a write".into(),
            )),
        }
    }

    async fn get(
        &self,
        bucket: &str,
        key: Vec<u8>,
        follower: Option<u32>,
    ) -> Result<Vec<pb::Sibling>, RangeNodeError> {
        check_key(&key)?;
        let read = raftpb::RangeRead {
            from: key,
            follower: follower.is_some(),
            max_staleness_ms: follower.unwrap_or(0),
            ..Default::default()
        };
        let result = self.read(bucket, read).await?;
        Ok(result
            .versions
            .into_iter()
            .filter_map(|v| {
                let (micros, logical) = ts_fields(&v.ts);
                v.value.map(|value| pb::Sibling {
                    value,
                    timestamp_micros: micros,
                    timestamp_logical: logical,
                    member: 0,
                })
            })
            .collect())
    }

    /// The live keys of `[from, to)`, range after range, at most `limit`.
    async fn scan(&self, request: pb::ScanRequest) -> Result<pb::ScanResponse, RangeNodeError> {
        let follower = follower_staleness(request.consistency, request.max_staleness_ms)?;
        let limit = match request.limit {
            0 => base::limits::SCAN_KEYS_MAX,
            n => n.min(base::limits::SCAN_KEYS_MAX),
        };
        let mut entries = Vec::new();
        let mut bytes = 0u64;
        let mut from = request.from;
        loop {
            let part = self
                .read(
                    &request.bucket,
                    raftpb::RangeRead {
                        from: from.clone(),
                        scan: true,
                        to: request.to.clone(),
                        limit: limit - entries.len() as u32,
                        follower: follower.is_some(),
                        max_staleness_ms: follower.unwrap_or(0),
                        max_bytes: base::limits::SCAN_BYTES_MAX.saturating_sub(bytes).max(1),
                        ..Default::default()
                    },
                )
                .await?;
            for version in part.versions {
                let (micros, logical) = ts_fields(&version.ts);
                if let Some(value) = version.value {
                    bytes += (version.key.len() + value.len()) as u64;
                    entries.push(pb::ScanEntry {
                        key: version.key,
                        value,
                        timestamp_micros: micros,
                        timestamp_logical: logical,
                    });
                }
            }
            match part.resume {
                Some(next)
                    if entries.len() < limit as usize && bytes < base::limits::SCAN_BYTES_MAX =>
                {
                    from = next
                }
                resume => {
                    return Ok(pb::ScanResponse { entries, resume });
                }
            }
        }
    }

    /// Every range of `bucket` with what its leader reports.
    async fn list_ranges(&self, bucket: &str) -> Result<Vec<pb::RangeInfo>, RangeNodeError> {
        self.require_consensus(bucket, "range list").await?;
        use futures::StreamExt;
        let ranges = self.metadata_ranges(bucket);
        // The replicas are asked a few ranges at a time: a thousand ranges listed one by one
        // would take a thousand round trips, all at once would flood the peers.
        let infos = futures::stream::iter(ranges)
            .map(|range| async move {
                let status = self.status_of(&range).await;
                range_info(&range, status.as_ref())
            })
            .buffered(base::limits::RANGE_STATUS_CONCURRENCY)
            .collect()
            .await;
        Ok(infos)
    }
}

fn range_info(
    range: &raftpb::RangeDescriptor,
    status: Option<&raftpb::RangeStatusResponse>,
) -> pb::RangeInfo {
    pb::RangeInfo {
        id: range.id,
        start: range.start.clone(),
        end: range.end.clone(),
        replicas: range
            .replicas
            .iter()
            .filter(|r| !r.learner)
            .map(|r| r.member)
            .collect(),
        learners: range
            .replicas
            .iter()
            .filter(|r| r.learner)
            .map(|r| r.member)
            .collect(),
        leader: status.map_or(0, |s| s.leader),
        bytes: status.map_or(0, |s| s.bytes),
        generation: range.generation,
        load: status.map_or(0.0, |s| s.load),
    }
}

/// `quorate.v1.Kv` over both bucket kinds.
pub struct KvFront<K> {
    inner: K,
    node: Arc<RangeNode>,
}

impl<K> KvFront<K> {
    pub fn new(inner: K, node: Arc<RangeNode>) -> KvFront<K> {
        KvFront { inner, node }
    }
}

#[tonic::async_trait]
impl<K: Kv> Kv for KvFront<K> {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        if self
            .node
            .consensus_bucket(&request.get_ref().bucket)
            .await?
            .is_none()
        {
            return self.inner.get(request).await;
        }
        let request = request.into_inner();
        let follower = follower_staleness(request.consistency, request.max_staleness_ms)?;
        let siblings = self
            .node
            .get(&request.bucket, request.key, follower)
            .await?;
        Ok(Response::new(pb::GetResponse {
            replied: 1,
            siblings,
            context: String::new(),
        }))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        if self
            .node
            .consensus_bucket(&request.get_ref().bucket)
            .await?
            .is_none()
        {
            return self.inner.put(request).await;
        }
        let request = request.into_inner();
        let (micros, logical) = self
            .node
            .write(&request.bucket, request.key, Some(request.value))
            .await?;
        Ok(Response::new(pb::PutResponse {
            context: String::new(),
            acked: 0,
            timestamp_micros: micros,
            timestamp_logical: logical,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        if self
            .node
            .consensus_bucket(&request.get_ref().bucket)
            .await?
            .is_none()
        {
            return self.inner.delete(request).await;
        }
        let request = request.into_inner();
        let (micros, logical) = self.node.write(&request.bucket, request.key, None).await?;
        Ok(Response::new(pb::DeleteResponse {
            context: String::new(),
            acked: 0,
            timestamp_micros: micros,
            timestamp_logical: logical,
        }))
    }

    async fn scan(
        &self,
        request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        if self
            .node
            .consensus_bucket(&request.get_ref().bucket)
            .await?
            .is_none()
        {
            return self.inner.scan(request).await;
        }
        Ok(Response::new(self.node.scan(request.into_inner()).await?))
    }

    async fn locate(
        &self,
        request: Request<pb::LocateRequest>,
    ) -> Result<Response<pb::LocateResponse>, Status> {
        self.inner.locate(request).await
    }

    async fn liveness(
        &self,
        request: Request<pb::LivenessRequest>,
    ) -> Result<Response<pb::LivenessResponse>, Status> {
        self.inner.liveness(request).await
    }
}

/// `quorate.v1.Buckets` over both bucket kinds: consensus buckets are created here, the rest
/// by the quorum path.
pub struct BucketsFront<B> {
    inner: B,
    node: Arc<RangeNode>,
}

impl<B> BucketsFront<B> {
    pub fn new(inner: B, node: Arc<RangeNode>) -> BucketsFront<B> {
        BucketsFront { inner, node }
    }
}

#[tonic::async_trait]
impl<B: Buckets> Buckets for BucketsFront<B> {
    async fn create(
        &self,
        request: Request<pb::CreateBucketRequest>,
    ) -> Result<Response<pb::BucketResponse>, Status> {
        let is_consensus = request
            .get_ref()
            .bucket
            .as_ref()
            .is_some_and(|b| b.r#type == pb::BucketType::Consensus as i32);
        if !is_consensus {
            return self.inner.create(request).await;
        }
        let bucket = request.into_inner().bucket.expect("checked above");
        let bucket = self.node.create_bucket(bucket).await?;
        Ok(Response::new(pb::BucketResponse {
            bucket: Some(bucket),
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetBucketRequest>,
    ) -> Result<Response<pb::BucketResponse>, Status> {
        self.inner.get(request).await
    }

    async fn list(
        &self,
        request: Request<pb::ListBucketsRequest>,
    ) -> Result<Response<pb::ListBucketsResponse>, Status> {
        self.inner.list(request).await
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteBucketRequest>,
    ) -> Result<Response<pb::DeleteBucketResponse>, Status> {
        self.inner.delete(request).await
    }
}

/// `quorate.v1.Ranges`.
pub struct RangesService(pub Arc<RangeNode>);

#[tonic::async_trait]
impl Ranges for RangesService {
    async fn list(
        &self,
        request: Request<pb::ListRangesRequest>,
    ) -> Result<Response<pb::ListRangesResponse>, Status> {
        let ranges = self.0.list_ranges(&request.into_inner().bucket).await?;
        Ok(Response::new(pb::ListRangesResponse { ranges }))
    }

    async fn split(
        &self,
        request: Request<pb::SplitRangeRequest>,
    ) -> Result<Response<pb::RangeChangeReply>, Status> {
        let request = request.into_inner();
        let halves = self.0.split(&request.bucket, &request.key).await?;
        let mut ranges = Vec::with_capacity(halves.len());
        for half in &halves {
            let status = self.0.status_of(half).await;
            ranges.push(range_info(half, status.as_ref()));
        }
        Ok(Response::new(pb::RangeChangeReply { ranges }))
    }

    async fn merge(
        &self,
        request: Request<pb::MergeRangeRequest>,
    ) -> Result<Response<pb::RangeChangeReply>, Status> {
        let request = request.into_inner();
        let merged = self.0.merge(&request.bucket, &request.key).await?;
        let status = self.0.status_of(&merged).await;
        Ok(Response::new(pb::RangeChangeReply {
            ranges: vec![range_info(&merged, status.as_ref())],
        }))
    }

    async fn check(
        &self,
        request: Request<pb::CheckRangesRequest>,
    ) -> Result<Response<pb::CheckRangesResponse>, Status> {
        let request = request.into_inner();
        let ranges = self.0.check_ranges(&request.bucket).await?;
        Ok(Response::new(pb::CheckRangesResponse { ranges }))
    }

    async fn r#move(
        &self,
        request: Request<pb::MoveRangeRequest>,
    ) -> Result<Response<pb::RangeChangeReply>, Status> {
        let request = request.into_inner();
        let moved = self
            .0
            .move_replica(&request.bucket, &request.key, request.from, request.to)
            .await?;
        let status = self.0.status_of(&moved).await;
        Ok(Response::new(pb::RangeChangeReply {
            ranges: vec![range_info(&moved, status.as_ref())],
        }))
    }

    async fn drain(
        &self,
        request: Request<pb::DrainMemberRequest>,
    ) -> Result<Response<pb::DrainMemberResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(
            self.0.drain(request.member, request.undo).await?,
        ))
    }
}
