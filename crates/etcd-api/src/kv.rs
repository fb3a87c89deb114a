//! The etcd KV service: validates requests, proposes writes through consensus, reads locally
//! at the requested consistency.

use base::EtcdError;
use prost::Message;
use proto::etcdserverpb::kv_server::{Kv, KvServer};
use proto::etcdserverpb::*;
use proto::quorate::raft::v1 as pb;
use tonic::{Request, Response, Status};

use crate::{Context, to_status, unexpected_reply};

/// The KV service of one member.
pub struct KvService {
    context: Context,
}

impl KvService {
    /// Returns the tonic server, accepting messages a little above the request limit so an
    /// over-large one gets etcd's precise error rather than the transport's.
    pub fn server(context: Context) -> KvServer<KvService> {
        let max = context.max_request_bytes + base::limits::GRPC_OVERHEAD_BYTES;
        KvServer::new(KvService { context })
            .max_decoding_message_size(max)
            .max_encoding_message_size(usize::MAX)
    }

    fn check_size(&self, message: &impl Message) -> Result<(), Status> {
        if message.encoded_len() > self.context.max_request_bytes {
            return Err(to_status(EtcdError::RequestTooLarge));
        }
        Ok(())
    }

    async fn propose(&self, op: pb::command::Op) -> Result<pb::CommandResponse, Status> {
        self.context.propose(op).await
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let request = request.into_inner();
        mvcc::validate::range(&request).map_err(to_status)?;
        let linearizable = !request.serializable;
        if linearizable && self.context.replica.is_learner() {
            return Err(to_status(base::EtcdError::NotSupportedForLearner));
        }
        let mut response = self
            .context
            .replica
            .range(&request, linearizable)
            .await
            .map_err(to_status)?;
        response.header = Some(self.context.header(None));
        Ok(Response::new(response))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let request = request.into_inner();
        self.check_size(&request)?;
        mvcc::validate::put(&request).map_err(to_status)?;
        let reply = self.propose(pb::command::Op::Put(request)).await?;
        let Some(pb::command_response::Op::Put(mut response)) = reply.op else {
            return Err(unexpected_reply());
        };
        response.header = Some(self.context.header(Some(reply.revision)));
        Ok(Response::new(response))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let request = request.into_inner();
        self.check_size(&request)?;
        mvcc::validate::delete_range(&request).map_err(to_status)?;
        let reply = self.propose(pb::command::Op::DeleteRange(request)).await?;
        let Some(pb::command_response::Op::DeleteRange(mut response)) = reply.op else {
            return Err(unexpected_reply());
        };
        response.header = Some(self.context.header(Some(reply.revision)));
        Ok(Response::new(response))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let request = request.into_inner();
        self.check_size(&request)?;
        mvcc::validate::txn(&request, self.context.max_txn_ops).map_err(to_status)?;
        let reply = self.propose(pb::command::Op::Txn(request)).await?;
        let Some(pb::command_response::Op::Txn(mut response)) = reply.op else {
            return Err(unexpected_reply());
        };
        let header = self.context.header(Some(reply.revision));
        fill_headers(&mut response, &header);
        Ok(Response::new(response))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let request = request.into_inner();
        let reply = self.propose(pb::command::Op::Compact(request)).await?;
        let Some(pb::command_response::Op::Compact(mut response)) = reply.op else {
            return Err(unexpected_reply());
        };
        response.header = Some(self.context.header(Some(reply.revision)));
        Ok(Response::new(response))
    }
}

/// etcd puts the Txn's header on every nested response too.
fn fill_headers(response: &mut TxnResponse, header: &ResponseHeader) {
    use response_op::Response as R;
    response.header = Some(*header);
    for op in &mut response.responses {
        match &mut op.response {
            Some(R::ResponseRange(r)) => r.header = Some(*header),
            Some(R::ResponsePut(r)) => r.header = Some(*header),
            Some(R::ResponseDeleteRange(r)) => r.header = Some(*header),
            Some(R::ResponseTxn(r)) => fill_headers(r, header),
            None => {}
        }
    }
}
