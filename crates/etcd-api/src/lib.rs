//! The etcd v3 gRPC services a member serves (KV, Watch, Lease, Lock, Election, Maintenance, Cluster) and the one place
//! internal errors become gRPC statuses with etcd's exact codes and messages. It must never
//! implement KV semantics (that is `mvcc`) or consensus (that is `consensus`).

mod cluster;
mod concurrency;
mod kv;
mod learner;
mod lease;
mod maintenance;
mod status;
mod watch;

use std::sync::Arc;

use consensus::Replica;
use proto::etcdserverpb::ResponseHeader;

pub use cluster::ClusterService;
pub use concurrency::{ElectionService, LockService};
pub use kv::KvService;
pub use learner::LearnerGates;
pub use lease::LeaseService;
pub use maintenance::MaintenanceService;
pub use status::to_status;
pub use watch::WatchService;

/// What every service needs: the replica and the member's identity and limits.
#[derive(Clone)]
pub struct Context {
    pub replica: Arc<Replica>,
    pub cluster_id: u64,
    pub member_id: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub version: &'static str,
}

/// The status for a state-machine reply of the wrong kind (a broken invariant, reported).
pub(crate) fn unexpected_reply() -> tonic::Status {
    to_status(base::EtcdError::Internal(
        "unexpected reply from the state machine".into(),
    ))
}

impl Context {
    /// Proposes one command through consensus; its etcd error becomes the gRPC status.
    pub(crate) async fn propose(
        &self,
        op: proto::quorate::raft::v1::command::Op,
    ) -> Result<proto::quorate::raft::v1::CommandResponse, tonic::Status> {
        let command = proto::quorate::raft::v1::Command { op: Some(op) };
        self.replica.propose(command).await.map_err(to_status)
    }

    /// Returns a response header at `revision` (the member's current one when `None`).
    pub fn header(&self, revision: Option<i64>) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision: revision.unwrap_or_else(|| self.replica.revision()),
            raft_term: self.replica.term(),
        }
    }
}
