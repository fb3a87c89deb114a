//! The gRPC services of the quorum path: `quorate.v1.Buckets` (definitions through Raft) and
//! `quorate.v1.Kv` for clients, `quorate.replica.v1.Replica` for peers, and the bucket
//! changes they propose. They decode, call the node, and encode; replica failures leave
//! through `status`.

use std::sync::Arc;

use base::NodeId;
use base::limits::{
    APPLY_POLL_INTERVAL, BUCKET_REPLICAS_MAX as REPLICAS_MAX, RING_VNODES_DEFAULT as RING_VNODES,
};
use crdt::{Object, VersionVector};
use placement::Ring;
use proto::quorate::raft::v1 as raftpb;
use proto::quorate::replica::v1 as replicapb;
use proto::quorate::replica::v1::replica_server::Replica as ReplicaRpc;
use proto::quorate::v1 as pb;
use proto::quorate::v1::buckets_server::Buckets;
use proto::quorate::v1::kv_server::Kv;
use tonic::{Request, Response, Status};

use crate::{
    MergeCall, QuorumError, QuorumNode, bucket_def, conflicts_of, level_to_pb, replica, ring_of,
    ring_tokens, status, voters,
};

impl QuorumNode {
    async fn create_bucket(&self, bucket: pb::Bucket) -> Result<pb::Bucket, QuorumError> {
        topology::validate_bucket_name(&bucket.name)?;
        let mut bucket = bucket;
        if bucket.r#type == pb::BucketType::Unspecified as i32 {
            bucket.r#type = pb::BucketType::Quorum as i32;
        }
        if bucket.r#type != pb::BucketType::Quorum as i32 {
            return Err(QuorumError::UnsupportedBucketType(bucket.r#type));
        }
        if bucket.n == 0 || bucket.n > REPLICAS_MAX {
            return Err(QuorumError::ReplicasOutOfRange(bucket.n));
        }
        // A member that just started may not have applied the membership yet: wait for it.
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let voters = loop {
            let voters = voters(&self.replica.membership());
            if !voters.is_empty() {
                break voters;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(QuorumError::NoMembershipYet);
            }
            tokio::time::sleep(APPLY_POLL_INTERVAL).await;
        };
        let topology = self.replica.topology();
        // The ring's members hold the replicas; before the first bucket the voters will.
        let (holders, what) = match ring_of(&topology) {
            Ok(ring) => (ring.member_count(), "ring members"),
            Err(_) => (voters.len(), "voting members"),
        };
        if bucket.n as usize > holders {
            return Err(QuorumError::TooFewHolders {
                n: bucket.n,
                holders,
                what,
            });
        }
        if bucket.conflicts == pb::Conflicts::Unspecified as i32 {
            bucket.conflicts = pb::Conflicts::Siblings as i32;
        }
        // Stored with explicit levels, so a definition reads the same everywhere.
        let def = bucket_def(&bucket)?;
        bucket.r = Some(level_to_pb(def.r));
        bucket.w = Some(level_to_pb(def.w));
        let ring = Ring::new(&voters, RING_VNODES)
            .map_err(|e| QuorumError::Internal(format!("the first ring: {e}")))?;
        let change = raftpb::BucketChange {
            change: Some(raftpb::bucket_change::Change::Create(bucket)),
            initial_ring: ring_tokens(&ring),
            vnodes: RING_VNODES,
            ..Default::default()
        };
        let reply = self
            .replica
            .change_bucket(change)
            .await
            .map_err(|e| QuorumError::Proposal(e.to_string()))?;
        if !reply.refusal.is_empty() {
            return Err(QuorumError::refused(reply.refusal_kind, reply.refusal));
        }
        reply.bucket.ok_or_else(|| {
            QuorumError::Internal("bucket change answered without a bucket".to_owned())
        })
    }

    async fn delete_bucket(&self, name: String) -> Result<(), QuorumError> {
        let change = raftpb::BucketChange {
            change: Some(raftpb::bucket_change::Change::Delete(name)),
            initial_ring: Vec::new(),
            vnodes: 0,
            ..Default::default()
        };
        let reply = self
            .replica
            .change_bucket(change)
            .await
            .map_err(|e| QuorumError::Proposal(e.to_string()))?;
        if !reply.refusal.is_empty() {
            return Err(QuorumError::refused(reply.refusal_kind, reply.refusal));
        }
        Ok(())
    }
}

fn siblings_of(object: &Object) -> Vec<pb::Sibling> {
    object
        .live_values()
        .iter()
        .map(|s| pb::Sibling {
            value: s.value.clone().unwrap_or_default(),
            timestamp_micros: s.timestamp.physical,
            timestamp_logical: s.timestamp.logical,
            member: s.dot.actor,
        })
        .collect()
}

/// `quorate.v1.Buckets`.
pub struct BucketsService(pub(super) Arc<QuorumNode>);

#[tonic::async_trait]
impl Buckets for BucketsService {
    async fn create(
        &self,
        request: Request<pb::CreateBucketRequest>,
    ) -> Result<Response<pb::BucketResponse>, Status> {
        let bucket = request
            .into_inner()
            .bucket
            .ok_or(QuorumError::Missing("no bucket given"))?;
        let bucket = self.0.create_bucket(bucket).await?;
        Ok(Response::new(pb::BucketResponse {
            bucket: Some(bucket),
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetBucketRequest>,
    ) -> Result<Response<pb::BucketResponse>, Status> {
        let name = request.into_inner().name;
        let bucket = self
            .0
            .replica
            .topology()
            .buckets
            .into_iter()
            .find(|b| b.name == name)
            .ok_or(QuorumError::NoBucket(name))?;
        Ok(Response::new(pb::BucketResponse {
            bucket: Some(bucket),
        }))
    }

    async fn list(
        &self,
        _request: Request<pb::ListBucketsRequest>,
    ) -> Result<Response<pb::ListBucketsResponse>, Status> {
        Ok(Response::new(pb::ListBucketsResponse {
            buckets: self.0.replica.topology().buckets,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteBucketRequest>,
    ) -> Result<Response<pb::DeleteBucketResponse>, Status> {
        self.0.delete_bucket(request.into_inner().name).await?;
        Ok(Response::new(pb::DeleteBucketResponse {}))
    }
}

/// `quorate.v1.Kv`.
pub struct KvService(pub(super) Arc<QuorumNode>);

#[tonic::async_trait]
impl Kv for KvService {
    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let request = request.into_inner();
        let (object, replied) = self
            .0
            .read(
                &request.bucket,
                request.key,
                request.r.as_ref(),
                request.timeout_ms,
                request.monotonic,
            )
            .await?;
        Ok(Response::new(pb::GetResponse {
            siblings: siblings_of(&object),
            context: object.context.to_token(),
            replied: replied as u32,
        }))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let request = request.into_inner();
        let (context, acked) = self
            .0
            .write(
                &request.bucket,
                request.key,
                Some(request.value),
                request.w.as_ref(),
                &request.context,
                request.timeout_ms,
            )
            .await?;
        Ok(Response::new(pb::PutResponse {
            context,
            acked: acked as u32,
            ..Default::default()
        }))
    }

    async fn locate(
        &self,
        request: Request<pb::LocateRequest>,
    ) -> Result<Response<pb::LocateResponse>, Status> {
        let request = request.into_inner();
        let placed = self.0.place(&request.bucket, &request.key)?;
        let ids = |members: &[NodeId]| members.iter().map(|m| m.0).collect();
        let plan = placed.plan;
        Ok(Response::new(pb::LocateResponse {
            replicas: ids(&plan.replicas),
            fallbacks: ids(&plan.fallbacks),
            token: plan.token,
            next_replicas: ids(&plan.next),
        }))
    }

    async fn scan(
        &self,
        _request: Request<pb::ScanRequest>,
    ) -> Result<Response<pb::ScanResponse>, Status> {
        Err(Status::unimplemented(
            "scans of quorum buckets are not served yet (issue #17)",
        ))
    }

    async fn liveness(
        &self,
        _request: Request<pb::LivenessRequest>,
    ) -> Result<Response<pb::LivenessResponse>, Status> {
        let peers = self
            .0
            .liveness()
            .into_iter()
            .map(|(member, phi, status)| pb::PeerLiveness {
                member: member.0,
                phi,
                status: status.as_str().to_owned(),
                swim: self
                    .0
                    .swim_view(member)
                    .map_or("unknown", |l| l.as_str())
                    .to_owned(),
            })
            .collect();
        Ok(Response::new(pb::LivenessResponse {
            member: self.0.me().0,
            peers,
            threshold: membership::Config::default().threshold,
        }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let request = request.into_inner();
        let (context, acked) = self
            .0
            .write(
                &request.bucket,
                request.key,
                None,
                request.w.as_ref(),
                &request.context,
                request.timeout_ms,
            )
            .await?;
        Ok(Response::new(pb::DeleteResponse {
            context,
            acked: acked as u32,
            ..Default::default()
        }))
    }
}

/// `quorate.replica.v1.Replica`: what coordinators ask of this member.
pub struct ReplicaService(pub(super) Arc<QuorumNode>);

#[tonic::async_trait]
impl ReplicaRpc for ReplicaService {
    async fn coordinate(
        &self,
        request: Request<replicapb::CoordinateRequest>,
    ) -> Result<Response<replicapb::CoordinateResponse>, Status> {
        let request = request.into_inner();
        let context = if request.context.is_empty() {
            VersionVector::new()
        } else {
            VersionVector::from_token(&request.context)
                .map_err(|e| QuorumError::BadContext(e.to_string()))?
        };
        let conflicts = conflicts_of(request.conflicts)?;
        let object = self
            .0
            .coordinate_local(request, context, conflicts)
            .await
            .map_err(|e| status::of_replica_error(&e))?;
        Ok(Response::new(replicapb::CoordinateResponse {
            object: crdt::codec::encode_object(&object),
        }))
    }

    async fn merge(
        &self,
        request: Request<replicapb::MergeRequest>,
    ) -> Result<Response<replicapb::MergeResponse>, Status> {
        let request = request.into_inner();
        let object = replica::decode_copy(&request.object)
            .map_err(|e| status::of_replica_error(&e))?
            .ok_or(QuorumError::Missing("merge without an object"))?;
        let call = MergeCall {
            bucket: request.bucket,
            key: request.key,
            object,
            conflicts: conflicts_of(request.conflicts)?,
            epoch: request.epoch,
            handoff: request.handoff,
        };
        self.0
            .merge_local(call)
            .await
            .map_err(|e| status::of_replica_error(&e))?;
        Ok(Response::new(replicapb::MergeResponse {}))
    }

    async fn hint(
        &self,
        request: Request<replicapb::HintRequest>,
    ) -> Result<Response<replicapb::HintResponse>, Status> {
        let request = request.into_inner();
        let object = replica::decode_copy(&request.object)
            .map_err(|e| status::of_replica_error(&e))?
            .ok_or(QuorumError::Missing("hint without an object"))?;
        let conflicts = conflicts_of(request.conflicts)?;
        let stored = self
            .0
            .store_hint(
                NodeId(request.target),
                request.bucket,
                request.key,
                object,
                conflicts,
            )
            .await
            .map_err(|e| status::of_replica_error(&e))?;
        Ok(Response::new(replicapb::HintResponse { stored }))
    }

    async fn gossip(
        &self,
        request: Request<replicapb::GossipRequest>,
    ) -> Result<Response<replicapb::GossipResponse>, Status> {
        let request = request.into_inner();
        self.0.gossip_received(NodeId(request.from), request.data);
        Ok(Response::new(replicapb::GossipResponse {}))
    }

    async fn read(
        &self,
        request: Request<replicapb::ReadRequest>,
    ) -> Result<Response<replicapb::ReadResponse>, Status> {
        let request = request.into_inner();
        let object = self
            .0
            .read_local(request.bucket, request.key, request.epoch)
            .await
            .map_err(|e| status::of_replica_error(&e))?;
        Ok(Response::new(replicapb::ReadResponse {
            object: object
                .map(|o| crdt::codec::encode_object(&o))
                .unwrap_or_default(),
        }))
    }
}
