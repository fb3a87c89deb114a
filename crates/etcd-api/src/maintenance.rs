//! The etcd Maintenance service. Status is served now; the other calls arrive with the
//! coordination issue and answer `Unimplemented` with a message until then.

use proto::etcdserverpb::maintenance_server::{Maintenance, MaintenanceServer};
use proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::Context;

/// The Maintenance service of one member.
pub struct MaintenanceService {
    context: Context,
}

impl MaintenanceService {
    /// Returns the tonic server.
    pub fn server(context: Context) -> MaintenanceServer<MaintenanceService> {
        MaintenanceServer::new(MaintenanceService { context })
    }
}

fn later(call: &str) -> Status {
    Status::unimplemented(format!("quorate: Maintenance.{call} is not served yet"))
}

type SnapshotStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(&self, _: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        // No alarm can be raised yet (no backend quota): report none, as etcd does when clear.
        Ok(Response::new(AlarmResponse {
            header: Some(self.context.header(None)),
            alarms: vec![],
        }))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let status = self.context.replica.status();
        let response = StatusResponse {
            header: Some(self.context.header(Some(status.revision))),
            version: self.context.version.to_string(),
            db_size: status.db_size as i64,
            leader: status.leader.unwrap_or(0),
            raft_index: status.committed_index,
            raft_term: status.term,
            raft_applied_index: status.applied_index,
            errors: Vec::new(),
            db_size_in_use: status.db_size_in_use as i64,
            is_learner: status.is_learner,
            ..Default::default()
        };
        Ok(Response::new(response))
    }

    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        Err(later("Defragment"))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(later("Hash"))
    }

    async fn hash_kv(&self, _: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        Err(later("HashKV"))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(later("Snapshot"))
    }

    async fn move_leader(
        &self,
        _: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        Err(later("MoveLeader"))
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(later("Downgrade"))
    }
}
