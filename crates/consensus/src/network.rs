//! openraft's network over the [`Peers`] trait, which the `transport` crate implements with
//! gRPC. Each call is bounded by openraft's RPC deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use openraft::OptionalSend;
use openraft::errors::{NetworkError, ReplicationClosed, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use proto::quorate::raft::v1 as pb;

use crate::codec;
use crate::types::*;

/// Why a peer call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// The peer could not be reached (connect failed, timed out): the request did not arrive
    /// or its answer was lost.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// The peer answered with an error.
    #[error("peer error: {0}")]
    Remote(String),
}

/// Member-to-member calls of one group, addressed by peer URL.
pub trait Peers: Send + Sync + 'static {
    fn append_entries(
        &self,
        peer_url: &str,
        request: pb::AppendEntriesRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::AppendEntriesResponse, PeerError>>;

    fn vote(
        &self,
        peer_url: &str,
        request: pb::VoteRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::VoteResponse, PeerError>>;

    fn install_snapshot(
        &self,
        peer_url: &str,
        group: u64,
        vote: pb::Vote,
        meta: pb::SnapshotMeta,
        data: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::SnapshotResponse, PeerError>>;

    fn forward(
        &self,
        peer_url: &str,
        request: pb::ForwardRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::CommandResponse, PeerError>>;

    fn read_index(
        &self,
        peer_url: &str,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<u64, PeerError>>;

    fn change_members(
        &self,
        peer_url: &str,
        request: pb::MemberChangeRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::MemberChangeResponse, PeerError>>;

    fn lease_call(
        &self,
        peer_url: &str,
        request: pb::LeaseCallRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::LeaseCallResponse, PeerError>>;

    fn transfer_leader(
        &self,
        peer_url: &str,
        request: pb::TransferLeaderRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::TransferLeaderResponse, PeerError>>;

    /// Sends a client request for a range to a replica of it.
    fn range_call(
        &self,
        peer_url: &str,
        request: pb::RangeCallRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::RangeCallResponse, PeerError>>;

    /// Asks a replica of a range what it holds.
    fn range_status(
        &self,
        peer_url: &str,
        range: u64,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::RangeStatusResponse, PeerError>>;

    /// Asks the member at `peer_url` for its replica state of a range frozen for a merge.
    fn frozen_range(
        &self,
        peer_url: &str,
        request: pb::FrozenRangeRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::RangeSnapshot, PeerError>>;

    /// Asks the member at `peer_url` which ranges it leads.
    fn led_ranges(
        &self,
        peer_url: &str,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::LedRangesResponse, PeerError>>;

    /// Asks the member at `peer_url`, leading a range, to hand the leadership to a voter.
    fn transfer_range(
        &self,
        peer_url: &str,
        request: pb::TransferRangeRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::TransferRangeResponse, PeerError>>;

    /// Probes the member at `peer_url`; answers with the id of the member that answered.
    fn ping(
        &self,
        peer_url: &str,
        from: u64,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<u64, PeerError>>;

    /// Asks the member at `peer_url` for the cluster id and its memberships.
    fn members(
        &self,
        peer_url: &str,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::MembersResponse, PeerError>>;
}

/// How long an append or vote RPC may take: openraft's own deadline (its heartbeat interval
/// for appends, so 50–100 ms), but never less than `RAFT_RPC_TIMEOUT_MIN` — a follower's
/// fsync on a busy machine can take longer than one heartbeat, and an append abandoned then
/// is sent again from scratch, which on a loaded member turns slowness into timeouts.
fn rpc_ttl(option: &RPCOption) -> std::time::Duration {
    option.hard_ttl().max(base::limits::RAFT_RPC_TIMEOUT_MIN)
}

fn rpc_error(error: PeerError) -> RpcError {
    match error {
        PeerError::Unreachable(m) => RpcError::Unreachable(Unreachable::from_string(m)),
        PeerError::Remote(m) => RpcError::Network(NetworkError::from_string(m)),
    }
}

fn decode_error(error: codec::CodecError) -> RpcError {
    RpcError::Network(NetworkError::from_string(error.to_string()))
}

/// Each member's current peer URL, kept up to date from the membership by the replica, so a
/// MemberUpdate takes effect on replication streams that were opened before it.
pub(crate) type AddressBook = Arc<std::sync::RwLock<std::collections::BTreeMap<NodeId, String>>>;

/// Makes a client per peer for openraft.
pub(crate) struct NetworkFactory {
    pub(crate) peers: Arc<dyn Peers>,
    pub(crate) book: AddressBook,
    /// The group whose messages this network carries.
    pub(crate) group: u64,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = NetworkClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Self::Network {
        let fallback = node.peer_urls.first().cloned().unwrap_or_default();
        NetworkClient {
            peers: self.peers.clone(),
            target,
            fallback,
            book: self.book.clone(),
            group: self.group,
        }
    }
}

pub(crate) struct NetworkClient {
    peers: Arc<dyn Peers>,
    target: NodeId,
    /// The URL the membership named when the client was made.
    fallback: String,
    book: AddressBook,
    group: u64,
}

impl NetworkClient {
    fn peer_url(&self) -> String {
        let book = self.book.read().expect("address book poisoned");
        book.get(&self.target)
            .cloned()
            .unwrap_or_else(|| self.fallback.clone())
    }

    /// Sends a vote or pre-vote request; the receiver tells them apart by the flag.
    async fn send_vote(
        &self,
        rpc: VoteRequest,
        option: RPCOption,
        pre_vote: bool,
    ) -> Result<VoteResponse, RpcError> {
        let mut request = codec::vote_request_to_pb(&rpc, pre_vote);
        request.group = self.group;
        let response = self
            .peers
            .vote(&self.peer_url(), request, rpc_ttl(&option))
            .await
            .map_err(rpc_error)?;
        codec::vote_response_from_pb(&response).map_err(decode_error)
    }
}

impl RaftNetworkV2<TypeConfig> for NetworkClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse, RpcError> {
        let mut request = codec::append_request_to_pb(&rpc);
        request.group = self.group;
        let response = self
            .peers
            .append_entries(&self.peer_url(), request, rpc_ttl(&option))
            .await
            .map_err(rpc_error)?;
        codec::append_response_from_pb(response).map_err(decode_error)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        self.send_vote(rpc, option, false).await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest,
        option: RPCOption,
    ) -> Result<VoteResponse, RpcError> {
        self.send_vote(rpc, option, true).await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse, StreamingError> {
        let send = self.peers.install_snapshot(
            &self.peer_url(),
            self.group,
            codec::vote_to_pb(&vote),
            codec::snapshot_meta_to_pb(&snapshot.meta),
            snapshot.snapshot.into_inner(),
            option.hard_ttl(),
        );
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = send => {
                let response = result.map_err(|e| StreamingError::from(rpc_error(e)))?;
                let vote = response.vote.as_ref().ok_or_else(|| {
                    StreamingError::from(decode_error(codec::CodecError::Missing { what: "snapshot response", field: "vote" }))
                })?;
                let vote = codec::vote_from_pb(vote).map_err(|e| StreamingError::from(decode_error(e)))?;
                Ok(SnapshotResponse { vote })
            }
        }
    }

    async fn transfer_leader(
        &mut self,
        request: openraft::raft::TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<openraft::raft::TransferLeaderResponse<TypeConfig>, RpcError> {
        let request = pb::TransferLeaderRequest {
            group: self.group,
            from_leader: Some(codec::vote_to_pb(request.from_leader())),
            to: *request.to_node_id(),
            last_log_id: request.last_log_id().map(codec::log_id_to_pb),
        };
        let response = self
            .peers
            .transfer_leader(&self.peer_url(), request, option.hard_ttl())
            .await
            .map_err(rpc_error)?;
        // openraft only logs the answer; a refusal is reported as a network error with the
        // receiver's reason.
        if response.refused.is_empty() {
            Ok(Ok(()))
        } else {
            Err(RpcError::Network(NetworkError::from_string(
                response.refused,
            )))
        }
    }
}
