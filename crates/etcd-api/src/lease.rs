//! The etcd Lease service: grant and revoke go through Raft; keep-alive and time-to-live are
//! answered by the leader's timers (forwarded there by the replica); Leases lists the local
//! table after a linearizable barrier. It must never keep lease time itself.

use base::EtcdError;
use consensus::Replica;
use proto::etcdserverpb::lease_server::{Lease, LeaseServer};
use proto::etcdserverpb::*;
use proto::quorate::raft::v1 as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::{Context, to_status, unexpected_reply};

/// Lease grants retried with a fresh id when a chosen id is taken.
const GRANT_ID_ATTEMPTS: usize = 8;

/// Keep-alive answers queued for one stream's client.
const KEEP_ALIVE_BUFFER: usize = 16;

/// The Lease service of one member.
pub struct LeaseService {
    context: Context,
}

impl LeaseService {
    /// Returns the tonic server.
    pub fn server(context: Context) -> LeaseServer<LeaseService> {
        LeaseServer::new(LeaseService { context })
    }
}

/// Returns a random positive lease id (etcd's ids are positive int64).
fn random_lease_id() -> i64 {
    loop {
        let id = (rand::random::<u64>() >> 1) as i64;
        if id != 0 {
            return id;
        }
    }
}

async fn keep_alive_once(replica: &Replica, id: i64) -> Result<LeaseKeepAliveResponse, EtcdError> {
    let call = pb::lease_call_request::Call::KeepAlive(LeaseKeepAliveRequest { id });
    match replica.lease_call(call).await? {
        pb::lease_call_response::Reply::KeepAlive(response) => Ok(response),
        _ => Err(EtcdError::Internal(
            "keep-alive answered with another reply".into(),
        )),
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut request = request.into_inner();
        if request.ttl > mvcc::LEASE_TTL_MAX {
            return Err(to_status(EtcdError::LeaseTtlTooLarge));
        }
        request.ttl = request.ttl.max(self.context.replica.lease_ttl_min());
        let chosen = request.id == 0;
        for _ in 0..GRANT_ID_ATTEMPTS {
            if chosen {
                request.id = random_lease_id();
            }
            let command = pb::Command {
                op: Some(pb::command::Op::LeaseGrant(request)),
            };
            match self.context.replica.propose(command).await {
                Ok(reply) => {
                    let Some(pb::command_response::Op::LeaseGrant(mut response)) = reply.op else {
                        return Err(unexpected_reply());
                    };
                    response.header = Some(self.context.header(Some(reply.revision)));
                    return Ok(Response::new(response));
                }
                Err(EtcdError::LeaseExists) if chosen => continue,
                Err(error) => return Err(to_status(error)),
            }
        }
        Err(to_status(EtcdError::LeaseExists))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let command = pb::Command {
            op: Some(pb::command::Op::LeaseRevoke(request.into_inner())),
        };
        let reply = self
            .context
            .replica
            .propose(command)
            .await
            .map_err(to_status)?;
        let Some(pb::command_response::Op::LeaseRevoke(mut response)) = reply.op else {
            return Err(unexpected_reply());
        };
        response.header = Some(self.context.header(Some(reply.revision)));
        Ok(Response::new(response))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(KEEP_ALIVE_BUFFER);
        let context = self.context.clone();
        tokio::spawn(async move {
            loop {
                let request = match inbound.message().await {
                    Ok(Some(request)) => request,
                    Ok(None) | Err(_) => return,
                };
                let answer = match keep_alive_once(&context.replica, request.id).await {
                    Ok(mut response) => {
                        response.header = Some(context.header(None));
                        Ok(response)
                    }
                    Err(error) => Err(to_status(error)),
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let call = pb::lease_call_request::Call::TimeToLive(request.into_inner());
        let reply = self
            .context
            .replica
            .lease_call(call)
            .await
            .map_err(to_status)?;
        let pb::lease_call_response::Reply::TimeToLive(mut response) = reply else {
            return Err(unexpected_reply());
        };
        response.header = Some(self.context.header(None));
        Ok(Response::new(response))
    }

    async fn lease_leases(
        &self,
        _: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.context
            .replica
            .linearizable_barrier()
            .await
            .map_err(to_status)?;
        let leases = self
            .context
            .replica
            .lease_ids()
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.context.header(None)),
            leases,
        }))
    }
}
