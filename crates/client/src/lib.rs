//! The one client of Quorate: the CLI, the tester and the bench reach members through it, over
//! the etcd v3 API and `quorate.v1`, with one endpoint and retry policy. `channels` says how an
//! endpoint is reached (scheme, connect bound, call deadline); `fate` what a failed call did
//! (reads may move to another member when one is unavailable; a write whose reply was lost may
//! have committed, so it is indeterminate and never retried blindly); `Client` picks the first
//! reachable endpoint and applies that policy to etcd calls; `buckets` and `faults` are the
//! `quorate.v1` administration and fault-injection calls; `ranges` routes consensus-bucket
//! requests to the members leading their keys' ranges by a cache of the range map.

pub mod buckets;
pub mod channels;
pub mod fate;
pub mod faults;
pub mod ranges;

use std::time::Duration;

use futures::StreamExt;
use proto::etcdserverpb::cluster_client::ClusterClient;
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::watch_client::WatchClient;
use proto::etcdserverpb::{
    DeleteRangeRequest, DeleteRangeResponse, MemberListRequest, MemberListResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, StatusRequest, StatusResponse, TxnRequest,
    TxnResponse, WatchCreateRequest, WatchRequest, WatchResponse, watch_request,
};
use tonic::transport::Channel;

pub use channels::with_scheme;

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no endpoint reachable: {0}")]
    Unreachable(String),
    #[error("invalid endpoint {endpoint}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    #[error("{endpoint} does not serve fault injection (start it with --unsafe-fault-injection)")]
    FaultInjectionOff { endpoint: String },
}

/// A connection to one member of a cluster, chosen from a list of endpoints.
#[derive(Clone)]
pub struct Client {
    endpoints: Vec<String>,
    channel: Channel,
    endpoint: String,
    timeout: Duration,
}

impl Client {
    /// Connects to the first reachable endpoint; `timeout` bounds each call.
    pub async fn connect(endpoints: &[String], timeout: Duration) -> Result<Client, ClientError> {
        let mut last_error = String::from("no endpoints given");
        for endpoint in endpoints {
            match Self::connect_one(endpoint, timeout).await {
                Ok(channel) => {
                    return Ok(Client {
                        endpoints: endpoints.to_vec(),
                        channel,
                        endpoint: endpoint.clone(),
                        timeout,
                    });
                }
                Err(error) => last_error = format!("{endpoint}: {error}"),
            }
        }
        Err(ClientError::Unreachable(last_error))
    }

    async fn connect_one(endpoint: &str, timeout: Duration) -> Result<Channel, ClientError> {
        channels::connect(endpoint, timeout, Some(timeout)).await
    }

    /// Returns the endpoint this client is connected to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Returns a client connected to each endpoint in turn, for per-member commands.
    pub async fn each(
        endpoints: &[String],
        timeout: Duration,
    ) -> Vec<(String, Result<Client, ClientError>)> {
        let mut out = Vec::new();
        for endpoint in endpoints {
            let client = Client::connect(std::slice::from_ref(endpoint), timeout).await;
            out.push((endpoint.clone(), client));
        }
        out
    }

    /// Reads a range; an unavailable member is skipped for the next endpoint.
    pub async fn range(&mut self, request: RangeRequest) -> Result<RangeResponse, ClientError> {
        let mut attempts = self.endpoints.len().max(1);
        loop {
            let result = KvClient::new(self.channel.clone())
                .range(request.clone())
                .await;
            match result {
                Err(status) if fate::read_retryable(&status) && attempts > 1 => {
                    attempts -= 1;
                    self.rotate().await?;
                }
                other => return Ok(other?.into_inner()),
            }
        }
    }

    async fn rotate(&mut self) -> Result<(), ClientError> {
        let position = self
            .endpoints
            .iter()
            .position(|e| *e == self.endpoint)
            .unwrap_or(0);
        let mut rotated = self.endpoints.clone();
        rotated.rotate_left(position + 1);
        *self = Client::connect(&rotated, self.timeout).await?;
        Ok(())
    }

    /// Writes a key.
    pub async fn put(&mut self, request: PutRequest) -> Result<PutResponse, ClientError> {
        Ok(KvClient::new(self.channel.clone())
            .put(request)
            .await?
            .into_inner())
    }

    /// Deletes a key or range.
    pub async fn delete_range(
        &mut self,
        request: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, ClientError> {
        Ok(KvClient::new(self.channel.clone())
            .delete_range(request)
            .await?
            .into_inner())
    }

    /// Runs a transaction.
    pub async fn txn(&mut self, request: TxnRequest) -> Result<TxnResponse, ClientError> {
        Ok(KvClient::new(self.channel.clone())
            .txn(request)
            .await?
            .into_inner())
    }

    /// Returns the channel to the connected member (every call on it has the deadline).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Opens a second channel to the connected member without a per-call deadline, for
    /// long-lived streams (keep-alives, observe) and calls that wait (Lock, Campaign).
    pub async fn stream_channel(&self) -> Result<Channel, ClientError> {
        channels::connect(&self.endpoint, self.timeout, None).await
    }

    /// Opens a watch on the connected member. The stream has no deadline (only connecting
    /// has); it ends when the member goes away, and the caller resumes from the last revision
    /// it saw plus one.
    pub async fn watch(
        &self,
        create: WatchCreateRequest,
    ) -> Result<tonic::Streaming<WatchResponse>, ClientError> {
        let channel = self.stream_channel().await?;
        let request = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        };
        // The request side stays open (and empty) for as long as the stream is read.
        let requests = futures::stream::iter([request]).chain(futures::stream::pending());
        let response = WatchClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .watch(requests)
            .await?;
        Ok(response.into_inner())
    }

    /// Returns the connected member's status.
    pub async fn status(&mut self) -> Result<StatusResponse, ClientError> {
        Ok(MaintenanceClient::new(self.channel.clone())
            .status(StatusRequest {})
            .await?
            .into_inner())
    }

    /// Returns the cluster's members.
    pub async fn member_list(
        &mut self,
        linearizable: bool,
    ) -> Result<MemberListResponse, ClientError> {
        let request = MemberListRequest { linearizable };
        Ok(ClusterClient::new(self.channel.clone())
            .member_list(request)
            .await?
            .into_inner())
    }
}
