//! Member-to-member gRPC: [`GrpcPeers`] implements `consensus::Peers` over pooled tonic channels,
//! and [`RaftService`] serves the `quorate.raft.v1.Raft` service into a local `Replica`. It makes
//! no protocol decisions: every message is handed to openraft through the replica. With a
//! [`FaultTable`] (members started with `--unsafe-fault-injection`) every outgoing message
//! passes its gate first, and [`HostClock`] is the member's clock, skewable through the same
//! fault-injection API.

mod clock;
mod faults;

pub use clock::{BadRate, HostClock, SKEW_RATE_MAX, SkewState};
pub use faults::{FaultService, FaultTable};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use consensus::{PeerError, Peers, RangeGroups, Replica};
use futures::future::BoxFuture;
use prost::bytes::Bytes;
use proto::quorate::raft::v1 as pb;
use proto::quorate::raft::v1::raft_client::RaftClient;
use proto::quorate::raft::v1::raft_server::{Raft, RaftServer};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

/// Largest snapshot chunk sent in one gRPC message.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
/// Largest message a peer accepts: a full AppendEntries batch or a snapshot chunk.
pub const PEER_MESSAGE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Peer channels by URL; connections are made lazily and reused.
#[derive(Default)]
pub struct GrpcPeers {
    channels: Mutex<HashMap<String, Channel>>,
    faults: Option<Arc<FaultTable>>,
}

/// A client for one message, with the delay fault injection puts before it.
type Gated = Result<(RaftClient<Channel>, Duration), PeerError>;

/// Waits out the injected delay, then hands over the client.
async fn open(gated: Gated) -> Result<RaftClient<Channel>, PeerError> {
    let (client, delay) = gated?;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Ok(client)
}

impl GrpcPeers {
    /// Returns an empty pool.
    pub fn new() -> GrpcPeers {
        GrpcPeers::default()
    }

    /// Returns an empty pool whose messages pass `faults` first.
    pub fn with_faults(faults: Arc<FaultTable>) -> GrpcPeers {
        GrpcPeers {
            channels: Mutex::default(),
            faults: Some(faults),
        }
    }

    fn client(&self, url: &str) -> Gated {
        let delay = match &self.faults {
            Some(faults) => faults.gate(url)?,
            None => Duration::ZERO,
        };
        Ok((self.channel_client(url)?, delay))
    }

    /// The pooled channel to `url` and the delay fault injection puts before a message (an
    /// error when fault injection blocks or drops it), for peer services other than Raft.
    pub fn channel(&self, url: &str) -> Result<(Channel, Duration), PeerError> {
        let delay = match &self.faults {
            Some(faults) => faults.gate(url)?,
            None => Duration::ZERO,
        };
        Ok((self.pooled(url)?, delay))
    }

    fn pooled(&self, url: &str) -> Result<Channel, PeerError> {
        let mut channels = self.channels.lock().expect("channel pool poisoned");
        if let Some(channel) = channels.get(url) {
            return Ok(channel.clone());
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| PeerError::Unreachable(format!("{url}: {e}")))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        channels.insert(url.to_string(), channel.clone());
        Ok(channel)
    }

    fn channel_client(&self, url: &str) -> Result<RaftClient<Channel>, PeerError> {
        Ok(RaftClient::new(self.pooled(url)?)
            .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX))
    }
}

fn with_timeout<T>(message: T, timeout: Duration) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    request
}

/// A status that means the request was not delivered is `Unreachable` (safe to resend);
/// anything else carries the peer's message. A connection that broke after the request was
/// sent (an `Unknown` status made here by tonic from the transport's error, which it keeps as
/// the status's source; a peer's own status has none) leaves the outcome unknown, as a
/// deadline does: etcd's "request timed out", never resent.
fn peer_error(status: Status) -> PeerError {
    match status.code() {
        tonic::Code::Unavailable => PeerError::Unreachable(status.message().to_string()),
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            PeerError::Remote(base::EtcdError::Timeout.to_string())
        }
        tonic::Code::Unknown if std::error::Error::source(&status).is_some() => {
            PeerError::Remote(base::EtcdError::Timeout.to_string())
        }
        _ => PeerError::Remote(status.message().to_string()),
    }
}

impl Peers for GrpcPeers {
    fn members(
        &self,
        peer_url: &str,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::MembersResponse, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let request = with_timeout(pb::MembersRequest { group: 0 }, timeout);
            let response = open(client).await?.members(request).await;
            response.map(Response::into_inner).map_err(peer_error)
        })
    }

    fn transfer_leader(
        &self,
        peer_url: &str,
        request: pb::TransferLeaderRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::TransferLeaderResponse, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let response = open(client)
                .await?
                .transfer_leader(with_timeout(request, timeout))
                .await;
            response.map(Response::into_inner).map_err(peer_error)
        })
    }

    fn append_entries(
        &self,
        peer_url: &str,
        request: pb::AppendEntriesRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::AppendEntriesResponse, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let response = open(client)
                .await?
                .append_entries(with_timeout(request, timeout))
                .await;
            response.map(Response::into_inner).map_err(peer_error)
        })
    }

    fn vote(
        &self,
        peer_url: &str,
        request: pb::VoteRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::VoteResponse, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let response = open(client)
                .await?
                .request_vote(with_timeout(request, timeout))
                .await;
            response.map(Response::into_inner).map_err(peer_error)
        })
    }

    fn install_snapshot(
        &self,
        peer_url: &str,
        group: u64,
        vote: pb::Vote,
        meta: pb::SnapshotMeta,
        data: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::SnapshotResponse, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            // The first chunk carries vote and meta; every chunk carries data.
            let chunks: Vec<pb::SnapshotChunk> = snapshot_pieces(data)
                .into_iter()
                .enumerate()
                .map(|(i, piece)| pb::SnapshotChunk {
                    group,
                    vote: (i == 0).then_some(vote),
                    meta: (i == 0).then(|| meta.clone()),
                    data: piece,
                })
                .collect();
            let stream = tokio_stream::iter(chunks);
            let response = open(client)
                .await?
                .install_snapshot(with_timeout(stream, timeout))
                .await;
            response.map(Response::into_inner).map_err(peer_error)
        })
    }

    fn forward(
        &self,
        peer_url: &str,
        request: pb::ForwardRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::CommandResponse, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let response = open(client)
                .await?
                .forward(with_timeout(request, timeout))
                .await;
            response.map(Response::into_inner).map_err(peer_error)
        })
    }

    fn read_index(
        &self,
        peer_url: &str,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<u64, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let request = with_timeout(pb::ReadIndexRequest { group: 0 }, timeout);
            let response = open(client).await?.read_index(request).await;
            response.map(|r| r.into_inner().index).map_err(peer_error)
        })
    }

    fn change_members(
        &self,
        peer_url: &str,
        request: pb::MemberChangeRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::MemberChangeResponse, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let response = open(client)
                .await?
                .change_members(with_timeout(request, timeout))
                .await;
            response.map(Response::into_inner).map_err(peer_error)
        })
    }

    fn range_call(
        &self,
        peer_url: &str,
        request: pb::RangeCallRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::RangeCallResponse, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let response = open(client)
                .await?
                .range_call(with_timeout(request, timeout))
                .await;
            response.map(Response::into_inner).map_err(peer_error)
        })
    }

    fn range_status(
        &self,
        peer_url: &str,
        range: u64,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::RangeStatusResponse, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let request = with_timeout(pb::RangeStatusRequest { range }, timeout);
            let response = open(client).await?.range_status(request).await;
            response.map(Response::into_inner).map_err(peer_error)
        })
    }

    fn frozen_range(
        &self,
        peer_url: &str,
        request: pb::FrozenRangeRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::RangeSnapshot, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let response = open(client)
                .await?
                .frozen_range(with_timeout(request, timeout))
                .await;
            response.map(Response::into_inner).map_err(peer_error)
        })
    }

    fn led_ranges(
        &self,
        peer_url: &str,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::LedRangesResponse, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let request = with_timeout(pb::LedRangesRequest {}, timeout);
            let response = open(client).await?.led_ranges(request).await;
            response.map(Response::into_inner).map_err(peer_error)
        })
    }

    fn transfer_range(
        &self,
        peer_url: &str,
        request: pb::TransferRangeRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::TransferRangeResponse, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let response = open(client)
                .await?
                .transfer_range(with_timeout(request, timeout))
                .await;
            response.map(Response::into_inner).map_err(peer_error)
        })
    }

    fn ping(
        &self,
        peer_url: &str,
        from: u64,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<u64, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let request = with_timeout(pb::PingRequest { from }, timeout);
            let response = open(client).await?.ping(request).await;
            response.map(|r| r.into_inner().member).map_err(peer_error)
        })
    }

    fn lease_call(
        &self,
        peer_url: &str,
        request: pb::LeaseCallRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<pb::LeaseCallResponse, PeerError>> {
        let client = self.client(peer_url);
        Box::pin(async move {
            let response = open(client)
                .await?
                .lease_call(with_timeout(request, timeout))
                .await;
            response.map(Response::into_inner).map_err(peer_error)
        })
    }
}

/// Splits snapshot data into chunks of at most `SNAPSHOT_CHUNK_BYTES`, without copying; an
/// empty snapshot is one empty chunk, so the stream always has a first chunk.
fn snapshot_pieces(data: Vec<u8>) -> Vec<Bytes> {
    let data = Bytes::from(data);
    if data.is_empty() {
        return vec![data];
    }
    (0..data.len())
        .step_by(SNAPSHOT_CHUNK_BYTES)
        .map(|start| data.slice(start..(start + SNAPSHOT_CHUNK_BYTES).min(data.len())))
        .collect()
}

/// Serves peers' Raft messages into the local replica of the group they name: the main
/// group's (0) or a range's.
pub struct RaftService {
    replica: Arc<Replica>,
    ranges: RangeGroups,
    cluster_id: u64,
}

/// A message for a range this member runs no group of: the sender sees it as not delivered
/// and tries again later (the group may be starting).
fn no_group(group: u64) -> Status {
    Status::unavailable(format!("no replica of range {group} on this member"))
}

impl RaftService {
    /// Returns the tonic server for `replica` and the range groups `ranges`.
    pub fn server(
        replica: Arc<Replica>,
        ranges: RangeGroups,
        cluster_id: u64,
    ) -> RaftServer<RaftService> {
        RaftServer::new(RaftService {
            replica,
            ranges,
            cluster_id,
        })
        .max_decoding_message_size(PEER_MESSAGE_BYTES_MAX)
        .max_encoding_message_size(PEER_MESSAGE_BYTES_MAX)
    }
}

fn status_from_etcd(error: base::EtcdError) -> Status {
    Status::failed_precondition(error.to_string())
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(
        &self,
        request: Request<pb::AppendEntriesRequest>,
    ) -> Result<Response<pb::AppendEntriesResponse>, Status> {
        let request = request.into_inner();
        let response = match request.group {
            consensus::MAIN_GROUP => self.replica.handle_append(request).await,
            group => {
                let range = self.ranges.get(group).ok_or_else(|| no_group(group))?;
                range.handle_append(request).await
            }
        };
        Ok(Response::new(response.map_err(Status::internal)?))
    }

    async fn request_vote(
        &self,
        request: Request<pb::VoteRequest>,
    ) -> Result<Response<pb::VoteResponse>, Status> {
        let request = request.into_inner();
        let response = match request.group {
            consensus::MAIN_GROUP => self.replica.handle_vote(request).await,
            group => {
                let range = self.ranges.get(group).ok_or_else(|| no_group(group))?;
                range.handle_vote(request).await
            }
        };
        Ok(Response::new(response.map_err(Status::internal)?))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotResponse>, Status> {
        let mut stream = request.into_inner();
        let mut vote = None;
        let mut meta = None;
        let mut group = consensus::MAIN_GROUP;
        let mut data = Vec::new();
        while let Some(chunk) = stream.message().await? {
            if vote.is_none() {
                vote = chunk.vote;
                meta = chunk.meta;
                group = chunk.group;
            }
            data.extend_from_slice(&chunk.data);
        }
        let vote = vote.ok_or_else(|| Status::invalid_argument("snapshot stream without vote"))?;
        let meta = meta.ok_or_else(|| Status::invalid_argument("snapshot stream without meta"))?;
        let response = match group {
            consensus::MAIN_GROUP => self.replica.handle_snapshot(vote, meta, data).await,
            group => {
                let range = self.ranges.get(group).ok_or_else(|| no_group(group))?;
                range.handle_snapshot(vote, meta, data).await
            }
        };
        Ok(Response::new(response.map_err(Status::internal)?))
    }

    async fn forward(
        &self,
        request: Request<pb::ForwardRequest>,
    ) -> Result<Response<pb::CommandResponse>, Status> {
        let command = request
            .into_inner()
            .command
            .ok_or_else(|| Status::invalid_argument("forward without command"))?;
        match self.replica.propose_local(command).await {
            Ok(reply) => Ok(Response::new(reply)),
            Err(error) => Err(status_from_etcd(error)),
        }
    }

    async fn change_members(
        &self,
        request: Request<pb::MemberChangeRequest>,
    ) -> Result<Response<pb::MemberChangeResponse>, Status> {
        let change = request
            .into_inner()
            .change
            .ok_or_else(|| Status::invalid_argument("member change request without change"))?;
        match self.replica.change_members_local(change).await {
            Ok(membership) => Ok(Response::new(pb::MemberChangeResponse {
                membership: Some(membership),
            })),
            Err(error) => Err(status_from_etcd(error)),
        }
    }

    async fn lease_call(
        &self,
        request: Request<pb::LeaseCallRequest>,
    ) -> Result<Response<pb::LeaseCallResponse>, Status> {
        let call = request
            .into_inner()
            .call
            .ok_or_else(|| Status::invalid_argument("lease call without call"))?;
        match self.replica.lease_call_local(call).await {
            Ok(reply) => Ok(Response::new(pb::LeaseCallResponse { reply: Some(reply) })),
            Err(error) => Err(status_from_etcd(error)),
        }
    }

    async fn members(
        &self,
        _request: Request<pb::MembersRequest>,
    ) -> Result<Response<pb::MembersResponse>, Status> {
        Ok(Response::new(pb::MembersResponse {
            cluster_id: self.cluster_id,
            membership: Some(self.replica.membership()),
            removed: self.replica.removed_members(),
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::TransferLeaderRequest>,
    ) -> Result<Response<pb::TransferLeaderResponse>, Status> {
        let request = request.into_inner();
        let response = match request.group {
            consensus::MAIN_GROUP => self.replica.handle_transfer_leader(request).await,
            group => {
                let range = self.ranges.get(group).ok_or_else(|| no_group(group))?;
                range.handle_transfer_leader(request).await
            }
        };
        Ok(Response::new(response.map_err(Status::internal)?))
    }

    async fn led_ranges(
        &self,
        _request: Request<pb::LedRangesRequest>,
    ) -> Result<Response<pb::LedRangesResponse>, Status> {
        let ranges = self
            .ranges
            .all()
            .into_iter()
            .filter(|group| group.is_leader())
            .map(|group| pb::LedRange {
                range: group.range().0,
                term: group.term(),
                caught_up: group.caught_up_learners(),
            })
            .collect();
        Ok(Response::new(pb::LedRangesResponse {
            member: self.replica.id(),
            ranges,
        }))
    }

    async fn transfer_range(
        &self,
        request: Request<pb::TransferRangeRequest>,
    ) -> Result<Response<pb::TransferRangeResponse>, Status> {
        let request = request.into_inner();
        let group = self
            .ranges
            .get(request.range)
            .ok_or_else(|| no_group(request.range))?;
        let refused = if !group.is_leader() {
            format!("this member does not lead range {}", request.range)
        } else {
            match group.transfer_leader(request.to).await {
                Ok(()) => String::new(),
                Err(error) => error.to_string(),
            }
        };
        Ok(Response::new(pb::TransferRangeResponse { refused }))
    }

    async fn range_call(
        &self,
        request: Request<pb::RangeCallRequest>,
    ) -> Result<Response<pb::RangeCallResponse>, Status> {
        let request = request.into_inner();
        let Some(range) = self.ranges.get(request.range) else {
            return Ok(Response::new(pb::RangeCallResponse {
                result: Some(pb::range_call_response::Result::Refused(pb::RangeRefusal {
                    why: Some(pb::range_refusal::Why::NoReplica(request.range)),
                })),
            }));
        };
        let answer = match request.op {
            Some(pb::range_call_request::Op::Write(command)) => range.write(command).await,
            Some(pb::range_call_request::Op::Read(read)) => range.read(read).await,
            None => return Err(Status::invalid_argument("range call without op")),
        };
        answer.map(Response::new).map_err(status_from_etcd)
    }

    async fn range_status(
        &self,
        request: Request<pb::RangeStatusRequest>,
    ) -> Result<Response<pb::RangeStatusResponse>, Status> {
        let range = request.into_inner().range;
        let group = self.ranges.get(range).ok_or_else(|| no_group(range))?;
        Ok(Response::new(group.status()))
    }

    async fn frozen_range(
        &self,
        request: Request<pb::FrozenRangeRequest>,
    ) -> Result<Response<pb::RangeSnapshot>, Status> {
        let request = request.into_inner();
        self.ranges
            .frozen(
                &request.bucket,
                &request.start,
                request.into,
                request.generation,
            )
            .map(Response::new)
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no replica here of a range frozen for a merge into range {}",
                    request.into
                ))
            })
    }

    async fn ping(
        &self,
        _request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        Ok(Response::new(pb::PingResponse {
            member: self.replica.id(),
        }))
    }

    async fn read_index(
        &self,
        _request: Request<pb::ReadIndexRequest>,
    ) -> Result<Response<pb::ReadIndexResponse>, Status> {
        match self.replica.read_index().await {
            Ok(index) => Ok(Response::new(pb::ReadIndexResponse { index })),
            Err(error) => Err(status_from_etcd(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_errors_resend_only_what_was_not_delivered() {
        // Goal: only an undelivered call may be resent; a broken connection after sending is
        // an unknown outcome (etcd's timeout). Method: map each kind of status.
        assert!(matches!(
            peer_error(Status::unavailable("connection refused")),
            PeerError::Unreachable(_)
        ));
        let timeout = base::EtcdError::Timeout.to_string();
        for status in [
            Status::from_error(Box::new(std::io::Error::other("broken pipe"))),
            Status::deadline_exceeded("late"),
            Status::cancelled("gone"),
        ] {
            assert!(
                matches!(peer_error(status.clone()), PeerError::Remote(ref m) if *m == timeout),
                "{status:?}"
            );
        }
        assert!(matches!(
            peer_error(Status::unknown("etcdserver: not leader")),
            PeerError::Remote(ref m) if m == "etcdserver: not leader"
        ));
    }
}
