//! The etcd Lock and Election services, built as etcd builds them: a waiter creates its own key
//! `name/<lease hex>` under the lease it brings, and it holds the lock (or leads) once no key
//! under `name/` has a smaller create revision. That key's create revision is the fencing
//! token: a write guarded by `Compare(CreateRevision(key) == token)` fails once the holder
//! lost the lock. Every step is an ordinary KV operation through consensus; this module must
//! never keep its own state about holders.

use std::pin::Pin;

use base::EtcdError;
use base::keys::prefix_end;
use futures::Stream;
use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use proto::etcdserverpb::request_op::Request as Op;
use proto::etcdserverpb::response_op::Response as OpResponse;
use proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
    TxnResponse,
};
use proto::mvccpb::KeyValue;
use proto::quorate::raft::v1 as pb;
use proto::v3electionpb::election_server::{Election, ElectionServer};
use proto::v3electionpb::*;
use proto::v3lockpb::lock_server::{Lock, LockServer};
use proto::v3lockpb::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::{Context, to_status, unexpected_reply};

/// Leader changes queued for one Observe stream's client.
const OBSERVE_BUFFER: usize = 16;

fn not_leader() -> Status {
    // etcd answers these with the client library's plain error text and code Unknown.
    Status::new(Code::Unknown, "election: not leader")
}

fn no_leader() -> Status {
    Status::new(Code::Unknown, "election: no leader")
}

fn waiter_key(name: &[u8], lease: i64) -> (Vec<u8>, Vec<u8>) {
    let mut prefix = name.to_vec();
    prefix.push(b'/');
    let mut key = prefix.clone();
    key.extend_from_slice(format!("{lease:x}").as_bytes());
    (prefix, key)
}

fn create_revision_is(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        range_end: Vec::new(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
    }
}

fn get(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(RangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

async fn txn(context: &Context, request: TxnRequest) -> Result<(TxnResponse, i64), Status> {
    let reply = context.propose(pb::command::Op::Txn(request)).await?;
    match reply.op {
        Some(pb::command_response::Op::Txn(response)) => Ok((response, reply.revision)),
        _ => Err(unexpected_reply()),
    }
}

/// Creates `key` under `lease` with `value` unless it exists; returns the key as stored.
async fn create_or_get(
    context: &Context,
    key: &[u8],
    lease: i64,
    value: &[u8],
) -> Result<KeyValue, Status> {
    let put = RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    };
    let request = TxnRequest {
        compare: vec![create_revision_is(key, 0)],
        success: vec![put, get(key)],
        failure: vec![get(key)],
    };
    let (response, _) = txn(context, request).await?;
    let kv = response.responses.iter().find_map(|r| match &r.response {
        Some(OpResponse::ResponseRange(range)) => range.kvs.first().cloned(),
        _ => None,
    });
    kv.ok_or_else(|| Status::aborted("quorate: the waiter key vanished as it was created"))
}

/// Reads locally (this member applied every write it forwarded, so its own key is visible).
async fn read(context: &Context, request: RangeRequest) -> Result<Vec<KeyValue>, Status> {
    let response = context
        .replica
        .range(&request, false)
        .await
        .map_err(to_status)?;
    Ok(response.kvs)
}

/// Returns the first key under `prefix` by create revision (the holder or leader).
async fn first_under(context: &Context, prefix: &[u8]) -> Result<Option<KeyValue>, Status> {
    let request = RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    };
    Ok(read(context, request).await?.into_iter().next())
}

/// Waits until `mine` is the oldest key under `prefix`; fails if `mine` is deleted first
/// (its lease expired or it was unlocked elsewhere).
async fn wait_for_turn(context: &Context, prefix: &[u8], mine: &KeyValue) -> Result<(), Status> {
    let mut revisions = context.replica.subscribe_revision();
    loop {
        revisions.borrow_and_update();
        let own = RangeRequest {
            key: mine.key.clone(),
            ..Default::default()
        };
        let still_mine = read(context, own)
            .await?
            .first()
            .is_some_and(|kv| kv.create_revision == mine.create_revision);
        if !still_mine {
            return Err(Status::aborted(
                "quorate: the waiter key was deleted (lease expired or revoked) before its turn",
            ));
        }
        // Keys only, filtered by create revision (as in etcd, `count` would ignore the
        // filter, so the keys themselves are asked for).
        let older = RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            max_create_revision: mine.create_revision - 1,
            keys_only: true,
            ..Default::default()
        };
        if read(context, older).await?.is_empty() {
            return Ok(());
        }
        if revisions.changed().await.is_err() {
            return Err(to_status(EtcdError::Stopped));
        }
    }
}

fn header(context: &Context) -> Option<ResponseHeader> {
    Some(context.header(None))
}

/// The Lock service of one member.
pub struct LockService {
    context: Context,
}

impl LockService {
    /// Returns the tonic server.
    pub fn server(context: Context) -> LockServer<LockService> {
        LockServer::new(LockService { context })
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let request = request.into_inner();
        if request.lease == 0 {
            return Err(Status::invalid_argument(
                "quorate: Lock needs a lease (grant one and keep it alive while holding the lock)",
            ));
        }
        let (prefix, key) = waiter_key(&request.name, request.lease);
        let mine = create_or_get(&self.context, &key, request.lease, b"").await?;
        #[cfg(feature = "canary")]
        let wait = self.context.replica.canary() != Some(consensus::Canary::LockNoWait);
        #[cfg(not(feature = "canary"))]
        let wait = true;
        if wait {
            wait_for_turn(&self.context, &prefix, &mine).await?;
        }
        Ok(Response::new(LockResponse {
            header: header(&self.context),
            key,
        }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let op = pb::command::Op::DeleteRange(DeleteRangeRequest {
            key: request.into_inner().key,
            ..Default::default()
        });
        let reply = self.context.propose(op).await?;
        Ok(Response::new(UnlockResponse {
            header: Some(self.context.header(Some(reply.revision))),
        }))
    }
}

/// The Election service of one member.
pub struct ElectionService {
    context: Context,
}

impl ElectionService {
    /// Returns the tonic server.
    pub fn server(context: Context) -> ElectionServer<ElectionService> {
        ElectionServer::new(ElectionService { context })
    }
}

fn leader_key(leader: Option<LeaderKey>) -> Result<LeaderKey, Status> {
    leader.ok_or_else(|| Status::invalid_argument("quorate: request without a leader key"))
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let request = request.into_inner();
        if request.lease == 0 {
            return Err(Status::invalid_argument(
                "quorate: Campaign needs a lease (grant one and keep it alive while leading)",
            ));
        }
        let (prefix, key) = waiter_key(&request.name, request.lease);
        let mine = create_or_get(&self.context, &key, request.lease, &request.value).await?;
        if mine.value != request.value {
            // Campaigning again with the same lease updates the value, as etcd does.
            let put = PutRequest {
                key: key.clone(),
                value: request.value.clone(),
                lease: request.lease,
                ..Default::default()
            };
            let request = TxnRequest {
                compare: vec![create_revision_is(&key, mine.create_revision)],
                success: vec![RequestOp {
                    request: Some(Op::RequestPut(put)),
                }],
                failure: vec![],
            };
            txn(&self.context, request).await?;
        }
        wait_for_turn(&self.context, &prefix, &mine).await?;
        Ok(Response::new(CampaignResponse {
            header: header(&self.context),
            leader: Some(LeaderKey {
                name: request.name,
                key,
                rev: mine.create_revision,
                lease: request.lease,
            }),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let request = request.into_inner();
        let leader = leader_key(request.leader)?;
        let put = PutRequest {
            key: leader.key.clone(),
            value: request.value,
            lease: leader.lease,
            ..Default::default()
        };
        let txn_request = TxnRequest {
            compare: vec![create_revision_is(&leader.key, leader.rev)],
            success: vec![RequestOp {
                request: Some(Op::RequestPut(put)),
            }],
            failure: vec![],
        };
        let (response, revision) = txn(&self.context, txn_request).await?;
        if !response.succeeded {
            return Err(not_leader());
        }
        Ok(Response::new(ProclaimResponse {
            header: Some(self.context.header(Some(revision))),
        }))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        self.context
            .replica
            .linearizable_barrier()
            .await
            .map_err(to_status)?;
        let (prefix, _) = waiter_key(&request.into_inner().name, 0);
        let kv = first_under(&self.context, &prefix)
            .await?
            .ok_or_else(no_leader)?;
        Ok(Response::new(LeaderResponse {
            header: header(&self.context),
            kv: Some(kv),
        }))
    }

    type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let (prefix, _) = waiter_key(&request.into_inner().name, 0);
        let context = self.context.clone();
        let (tx, rx) = mpsc::channel(OBSERVE_BUFFER);
        tokio::spawn(async move {
            let mut revisions = context.replica.subscribe_revision();
            let mut last: Option<(Vec<u8>, i64)> = None;
            loop {
                revisions.borrow_and_update();
                match first_under(&context, &prefix).await {
                    Ok(Some(kv)) => {
                        let seen = (kv.key.clone(), kv.mod_revision);
                        if last.as_ref() != Some(&seen) {
                            last = Some(seen);
                            let response = LeaderResponse {
                                header: Some(context.header(None)),
                                kv: Some(kv),
                            };
                            if tx.send(Ok(response)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                }
                tokio::select! {
                    changed = revisions.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let leader = leader_key(request.into_inner().leader)?;
        let delete = DeleteRangeRequest {
            key: leader.key.clone(),
            ..Default::default()
        };
        let txn_request = TxnRequest {
            compare: vec![create_revision_is(&leader.key, leader.rev)],
            success: vec![RequestOp {
                request: Some(Op::RequestDeleteRange(delete)),
            }],
            failure: vec![],
        };
        let (_, revision) = txn(&self.context, txn_request).await?;
        Ok(Response::new(ResignResponse {
            header: Some(self.context.header(Some(revision))),
        }))
    }
}
