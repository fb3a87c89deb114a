//! The etcd Maintenance service: Status, Alarm (raised through Raft, listed locally), Hash and HashKV (members that applied the same
//! entries hash equal), Snapshot (a consistent copy of the state, streamed), Defragment
//! (accepted; nothing to rewrite), MoveLeader (on the leader, to a voter; returns once the
//! target leads). Downgrade answers `Unimplemented`: there is no older storage version.

use proto::etcdserverpb::maintenance_server::{Maintenance, MaintenanceServer};
use proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use proto::quorate::raft::v1 as pb;

use crate::{Context, to_status, unexpected_reply};

/// Bytes per Snapshot response message.
const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

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

fn not_applicable(call: &str) -> Status {
    Status::unimplemented(format!(
        "quorate: Maintenance.{call} does not apply: Quorate has one storage version"
    ))
}

type SnapshotStream =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let request = request.into_inner();
        let mut response = match alarm_request::AlarmAction::try_from(request.action) {
            Ok(alarm_request::AlarmAction::Get) => {
                self.context
                    .replica
                    .linearizable_barrier()
                    .await
                    .map_err(to_status)?;
                self.context
                    .replica
                    .alarms(request.member_id, request.alarm)
            }
            Ok(_) => {
                let reply = self
                    .context
                    .propose(pb::command::Op::Alarm(request))
                    .await?;
                match reply.op {
                    Some(pb::command_response::Op::Alarm(response)) => response,
                    _ => return Err(unexpected_reply()),
                }
            }
            Err(_) => return Err(Status::invalid_argument("quorate: unknown alarm action")),
        };
        response.header = Some(self.context.header(None));
        Ok(Response::new(response))
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
        // redb reuses freed pages for new writes, so there is nothing to rewrite; the call is
        // accepted so tools that defragment after compaction keep working.
        Ok(Response::new(DefragmentResponse {
            header: Some(self.context.header(None)),
        }))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let hash = self.context.replica.hash_all().await.map_err(to_status)?;
        Ok(Response::new(HashResponse {
            header: Some(self.context.header(None)),
            hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let revision = request.into_inner().revision;
        let (hash, compact_revision, hash_revision) = self
            .context
            .replica
            .hash_kv(revision)
            .await
            .map_err(to_status)?;
        Ok(Response::new(HashKvResponse {
            header: Some(self.context.header(None)),
            hash,
            compact_revision,
            hash_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let (revision, data) = self
            .context
            .replica
            .snapshot_data()
            .await
            .map_err(to_status)?;
        let header = self.context.header(Some(revision));
        let version = self.context.version.to_string();
        // As etcd: the stream ends with the SHA-256 of what came before, so a restore can
        // refuse a truncated or damaged file.
        let mut data = data;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(&data);
        data.extend_from_slice(&digest);
        let total = data.len();
        let chunks: Vec<Result<SnapshotResponse, Status>> = (0..total.max(1))
            .step_by(SNAPSHOT_CHUNK_BYTES)
            .map(|start| {
                let end = (start + SNAPSHOT_CHUNK_BYTES).min(total);
                Ok(SnapshotResponse {
                    header: Some(header),
                    remaining_bytes: (total - end) as u64,
                    blob: data[start..end].to_vec(),
                    version: version.clone(),
                })
            })
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(chunks))))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        self.context
            .replica
            .move_leader(target)
            .await
            .map_err(to_status)?;
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.context.header(None)),
        }))
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(not_applicable("Downgrade"))
    }
}
