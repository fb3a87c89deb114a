//! The etcd Cluster service. MemberList is served now; membership changes arrive with the
//! coordination issue and answer `Unimplemented` with a message until then.

use proto::etcdserverpb::cluster_server::{Cluster, ClusterServer};
use proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use crate::{Context, to_status};

/// The Cluster service of one member.
pub struct ClusterService {
    context: Context,
}

impl ClusterService {
    /// Returns the tonic server.
    pub fn server(context: Context) -> ClusterServer<ClusterService> {
        ClusterServer::new(ClusterService { context })
    }
}

fn later(call: &str) -> Status {
    Status::unimplemented(format!("quorate: Cluster.{call} is not served yet"))
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(later("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(later("MemberRemove"))
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(later("MemberUpdate"))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.context
                .replica
                .linearizable_barrier()
                .await
                .map_err(to_status)?;
        }
        let status = self.context.replica.status();
        let members = status
            .members
            .iter()
            .map(|(id, member)| Member {
                id: *id,
                name: member.name.clone(),
                peer_ur_ls: member.peer_urls.clone(),
                client_ur_ls: member.client_urls.clone(),
                is_learner: status.learners.contains(id),
            })
            .collect();
        Ok(Response::new(MemberListResponse {
            header: Some(self.context.header(None)),
            members,
        }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(later("MemberPromote"))
    }
}
