//! The etcd v3 gRPC services a member serves (KV, Watch, Lease, Lock, Election, Maintenance, Cluster) and the one place
//! internal errors become gRPC statuses with etcd's exact codes and messages. It must never
//! implement KV semantics (that is `mvcc`) or consensus (that is `consensus`).

mod cluster;
mod concurrency;
mod kv;
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

impl Context {
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
