//! This member as a replica (apply a coordinated write, merge a copy, read, all admitted by
//! ring epoch and made durable through the group-committing writer before they answer), and
//! calls to one replica, local or remote, each failing with a typed `quorum::ReplicaError`.
//! The rules (epoch admission, the coordinated dot above the reaped floor, the merge) are
//! `quorum::replica`'s; this owns the I/O.

use quorum::ReplicaError;
use quorum::replica::Coordinated;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base::NodeId;
use consensus::PeerError;
use crdt::{Conflicts, Object, VersionVector};
use proto::quorate::replica::v1 as replicapb;
use proto::quorate::replica::v1::replica_client::ReplicaClient;
use storage::{Change, Slot, StorageError};
use tonic::Request;

use crate::{MergeCall, QuorumNode, conflicts_to_pb, decode_stored, status};

fn corrupt(error: impl std::fmt::Display) -> ReplicaError {
    ReplicaError::Corrupt(error.to_string())
}

/// A stored or received copy: `None` when empty.
pub(super) fn decode_copy(bytes: &[u8]) -> Result<Option<Object>, ReplicaError> {
    if bytes.is_empty() {
        return Ok(None);
    }
    crdt::codec::decode_object(bytes)
        .map(Some)
        .map_err(|e| corrupt(format!("quorum object: {e}")))
}

impl QuorumNode {
    /// Admits a replica call placed at ring `epoch`: refused when this member is at a later
    /// epoch. The guard is held until the call's write is durable (see `gate`).
    pub(super) async fn admit(
        &self,
        epoch: u64,
    ) -> Result<tokio::sync::RwLockReadGuard<'_, ()>, ReplicaError> {
        let guard = self.gate.read().await;
        quorum::replica::admit(epoch, self.replica.topology_epoch())?;
        Ok(guard)
    }

    /// Applies one change through the group-committing writer: (stored size before, bytes
    /// after).
    pub(super) async fn apply(
        &self,
        slot: Slot,
        change: Change,
    ) -> Result<(u64, Option<Vec<u8>>), ReplicaError> {
        match self.writer.write(slot, change).await {
            Ok(Ok(done)) => Ok(done),
            // The change refused: the stored value does not decode or fails its checksum.
            Ok(Err(refusal)) => Err(ReplicaError::Corrupt(refusal)),
            Err(error) => Err(ReplicaError::Storage(format!(
                "quorum object store: {error}"
            ))),
        }
    }

    /// Applies a client write to this member's copy as the coordinating replica.
    pub(super) async fn coordinate_local(
        self: &Arc<Self>,
        request: replicapb::CoordinateRequest,
        context: VersionVector,
        conflicts: Conflicts,
    ) -> Result<Object, ReplicaError> {
        let _admitted = self.admit(request.epoch).await?;
        let write = Coordinated {
            context,
            actor: self.me().0,
            timestamp: self.now(),
            value: request.value,
            conflicts,
            reaped_floor: self.reaped_floor.load(Ordering::Acquire),
        };
        let overwrite = self.overwrites();
        let change: Change = Box::new(move |old| {
            let mut old = old.map(decode_stored).transpose()?;
            if overwrite && let Some(object) = &mut old {
                object.siblings.clear();
            }
            let object = quorum::replica::coordinate(old, &write);
            Ok(Some(crdt::codec::encode_object(&object)))
        });
        let slot = Slot::Object {
            bucket: request.bucket,
            key: request.key,
        };
        let (_, stored) = self.apply(slot, change).await?;
        let stored = stored.ok_or_else(|| "the coordinated write stored nothing".to_owned())?;
        decode_copy(&stored)?.ok_or_else(|| "the coordinated write stored nothing".into())
    }

    /// Merges an object into this member's copy, durably.
    pub(super) async fn merge_local(self: &Arc<Self>, call: MergeCall) -> Result<(), ReplicaError> {
        let _admitted = self.admit(call.epoch).await?;
        let MergeCall {
            bucket,
            key,
            object,
            conflicts,
            handoff,
            ..
        } = call;
        self.observe(&object);
        let overwrite = self.overwrites();
        let change: Change = Box::new(move |old| {
            let mut old = old.map(decode_stored).transpose()?;
            if overwrite {
                old = Some(object.clone());
            }
            let merged = quorum::replica::merge(old, &object, conflicts);
            Ok(Some(crdt::codec::encode_object(&merged)))
        });
        let (before, _) = self.apply(Slot::Object { bucket, key }, change).await?;
        if handoff {
            self.handoff
                .lock()
                .expect("handoff progress poisoned")
                .received(before == 0);
        }
        Ok(())
    }

    pub(super) async fn read_local(
        self: &Arc<Self>,
        bucket: String,
        key: Vec<u8>,
        epoch: u64,
    ) -> Result<Option<Object>, ReplicaError> {
        let _admitted = self.admit(epoch).await?;
        let node = self.clone();
        let bytes = tokio::task::spawn_blocking(move || node.store.get(&bucket, &key))
            .await
            .map_err(|e| ReplicaError::Failed(e.to_string()))?
            .map_err(|e| match e {
                StorageError::Corrupt { what, detail } => corrupt(format!("{what}: {detail}")),
                other => ReplicaError::Storage(other.to_string()),
            })?;
        match bytes {
            Some(bytes) => decode_copy(&bytes),
            None => Ok(None),
        }
    }

    // ----- calls to one replica, local or remote -----

    fn peer_url(&self, member: NodeId) -> Option<String> {
        let membership = self.replica.membership();
        membership
            .nodes
            .get(&member.0)
            .and_then(|m| m.peer_urls.first().cloned())
    }

    pub(super) async fn client(
        &self,
        member: NodeId,
    ) -> Result<ReplicaClient<tonic::transport::Channel>, ReplicaError> {
        let url = self
            .peer_url(member)
            .ok_or_else(|| ReplicaError::Unreachable(format!("member {member} has no peer URL")))?;
        let (channel, delay) = self.peers.channel(&url).map_err(|e| match e {
            PeerError::Unreachable(why) => ReplicaError::Unreachable(why),
            PeerError::Remote(why) => ReplicaError::Failed(why),
        })?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(ReplicaClient::new(channel)
            .max_decoding_message_size(transport::PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(transport::PEER_MESSAGE_BYTES_MAX))
    }

    pub(super) async fn coordinate_at(
        self: &Arc<Self>,
        member: NodeId,
        request: replicapb::CoordinateRequest,
        context: VersionVector,
        conflicts: Conflicts,
        timeout: Duration,
    ) -> Result<Object, ReplicaError> {
        if member == self.me() {
            return self.coordinate_local(request, context, conflicts).await;
        }
        let mut client = self.client(member).await?;
        let mut call = Request::new(request);
        call.set_timeout(timeout);
        let reply = client
            .coordinate(call)
            .await
            .map_err(|s| status::to_replica_error(&s))?;
        let object = decode_copy(&reply.into_inner().object)?
            .ok_or_else(|| ReplicaError::Failed("the coordinator returned no object".into()))?;
        self.observe(&object);
        Ok(object)
    }

    /// Merges a copy into `member`'s.
    pub(super) async fn merge_at(
        self: Arc<Self>,
        member: NodeId,
        call: MergeCall,
        timeout: Duration,
    ) -> Result<(), ReplicaError> {
        if member == self.me() {
            return self.merge_local(call).await;
        }
        let mut client = self.client(member).await?;
        let mut request = Request::new(replicapb::MergeRequest {
            bucket: call.bucket,
            key: call.key,
            object: crdt::codec::encode_object(&call.object),
            conflicts: conflicts_to_pb(call.conflicts),
            epoch: call.epoch,
            handoff: call.handoff,
        });
        request.set_timeout(timeout);
        client
            .merge(request)
            .await
            .map(|_| ())
            .map_err(|s| status::to_replica_error(&s))
    }

    /// Asks `member` to hold `object` as a hint for `target`.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn hint_at(
        self: &Arc<Self>,
        member: NodeId,
        target: NodeId,
        bucket: String,
        key: Vec<u8>,
        object: Object,
        conflicts: Conflicts,
        timeout: Duration,
    ) -> Result<bool, ReplicaError> {
        if member == self.me() {
            return self
                .store_hint(target, bucket, key, object, conflicts)
                .await;
        }
        let mut client = self.client(member).await?;
        let mut call = Request::new(replicapb::HintRequest {
            target: target.0,
            bucket,
            key,
            object: crdt::codec::encode_object(&object),
            conflicts: conflicts_to_pb(conflicts),
        });
        call.set_timeout(timeout);
        client
            .hint(call)
            .await
            .map(|reply| reply.into_inner().stored)
            .map_err(|s| status::to_replica_error(&s))
    }

    pub(super) async fn read_at(
        self: Arc<Self>,
        member: NodeId,
        bucket: String,
        key: Vec<u8>,
        epoch: u64,
        timeout: Duration,
    ) -> Result<Option<Object>, ReplicaError> {
        if member == self.me() {
            return self.read_local(bucket, key, epoch).await;
        }
        let mut client = self.client(member).await?;
        let mut call = Request::new(replicapb::ReadRequest { bucket, key, epoch });
        call.set_timeout(timeout);
        let reply = client
            .read(call)
            .await
            .map_err(|s| status::to_replica_error(&s))?;
        let object = decode_copy(&reply.into_inner().object)?;
        if let Some(object) = &object {
            self.observe(object);
        }
        Ok(object)
    }
}
