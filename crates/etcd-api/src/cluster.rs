//! The etcd Cluster service: MemberList, and MemberAdd (voter or learner), MemberRemove,
//! MemberUpdate (peer URLs) and MemberPromote as membership changes through consensus
//! (forwarded to the leader, one at a time).

use proto::etcdserverpb::cluster_server::{Cluster, ClusterServer};
use proto::etcdserverpb::*;
use tonic::{Request, Response, Status};

use proto::quorate::raft::v1 as pb;

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

/// Returns etcd's member list for a membership as the group records it.
fn members_of(membership: &pb::Membership) -> Vec<Member> {
    let voters: std::collections::BTreeSet<u64> = membership
        .configs
        .iter()
        .flat_map(|set| set.ids.iter().copied())
        .collect();
    membership
        .nodes
        .iter()
        .map(|(id, member)| Member {
            id: *id,
            name: member.name.clone(),
            peer_ur_ls: member.peer_urls.clone(),
            client_ur_ls: member.client_urls.clone(),
            is_learner: !voters.contains(id),
        })
        .collect()
}

impl ClusterService {
    async fn change(&self, change: pb::member_change::Change) -> Result<Vec<Member>, Status> {
        let membership = self
            .context
            .replica
            .change_members(pb::MemberChange {
                change: Some(change),
            })
            .await
            .map_err(to_status)?;
        Ok(members_of(&membership))
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let request = request.into_inner();
        if request.peer_ur_ls.is_empty() {
            return Err(Status::invalid_argument(
                "quorate: MemberAdd needs peer URLs",
            ));
        }
        // etcd derives the id from the URLs and the time; any unused non-zero id will do.
        let id = (rand::random::<u64>() >> 1).max(1);
        let member = pb::Member {
            name: String::new(),
            peer_urls: request.peer_ur_ls.clone(),
            client_urls: Vec::new(),
        };
        let members = self
            .change(pb::member_change::Change::AddMember(pb::AddMember {
                id,
                member: Some(member),
                learner: request.is_learner,
            }))
            .await?;
        let added = members.iter().find(|m| m.id == id).cloned();
        Ok(Response::new(MemberAddResponse {
            header: Some(self.context.header(None)),
            member: added,
            members,
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = request.into_inner().id;
        let members = self
            .change(pb::member_change::Change::RemoveMember(id))
            .await?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.context.header(None)),
            members,
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let request = request.into_inner();
        let current = self.context.replica.membership();
        let existing = current
            .nodes
            .get(&request.id)
            .cloned()
            .ok_or_else(|| to_status(base::EtcdError::MemberNotFound))?;
        let member = pb::Member {
            peer_urls: request.peer_ur_ls,
            ..existing
        };
        let members = self
            .change(pb::member_change::Change::SetMember(pb::SetMember {
                id: request.id,
                member: Some(member),
            }))
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: Some(self.context.header(None)),
            members,
        }))
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
        let members = members_of(&self.context.replica.membership());
        Ok(Response::new(MemberListResponse {
            header: Some(self.context.header(None)),
            members,
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = request.into_inner().id;
        let members = self
            .change(pb::member_change::Change::PromoteMember(id))
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.context.header(None)),
            members,
        }))
    }
}
