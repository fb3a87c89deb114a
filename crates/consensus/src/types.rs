//! openraft's type configuration for a consensus group and the aliases the crate uses.

use std::fmt;
use std::io::Cursor;

use proto::quorate::raft::v1 as pb;

/// A member id inside a group (the etcd member id).
pub type NodeId = u64;

/// A member as the Raft membership records it: etcd's member fields.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

/// A replicated command: one etcd write request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request(pub pb::Command);

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.op {
            Some(pb::command::Op::Put(_)) => write!(f, "put"),
            Some(pb::command::Op::DeleteRange(_)) => write!(f, "delete_range"),
            Some(pb::command::Op::Txn(_)) => write!(f, "txn"),
            Some(pb::command::Op::Compact(c)) => write!(f, "compact({})", c.revision),
            Some(pb::command::Op::LeaseGrant(g)) => write!(f, "lease_grant({:x})", g.id),
            Some(pb::command::Op::LeaseRevoke(r)) => write!(f, "lease_revoke({:x})", r.id),
            Some(pb::command::Op::Alarm(a)) => write!(f, "alarm({:?})", a.action),
            Some(pb::command::Op::LeaseCheckpoint(c)) => {
                write!(f, "lease_checkpoint({})", c.checkpoints.len())
            }
            Some(pb::command::Op::Bucket(_)) => write!(f, "bucket_change"),
            Some(pb::command::Op::Ring(_)) => write!(f, "ring_change"),
            Some(pb::command::Op::RangeChange(c)) => write!(f, "range_change({})", c.range),
            Some(pb::command::Op::Drain(d)) => write!(f, "drain({:x}, {})", d.member, d.draining),
            Some(pb::command::Op::Range(_)) => write!(f, "range_command"),
            None => write!(f, "empty"),
        }
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Request,
        R = pb::CommandResponse,
        NodeId = NodeId,
        Node = Member,
        AsyncRuntime = openraft::impls::TokioRuntime,
);

pub type LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, u64>;
pub type LogId = openraft::LogId<LeaderId>;
pub type Vote = openraft::Vote<LeaderId>;
pub type EntryPayload = openraft::EntryPayload<Request, NodeId, Member>;
pub type Entry = openraft::Entry<LeaderId, EntryPayload>;
pub type Membership = openraft::Membership<NodeId, Member>;
pub type StoredMembership = openraft::StoredMembership<LeaderId, NodeId, Member>;
pub type SnapshotMeta = openraft::SnapshotMeta<LeaderId, NodeId, Member>;
pub type SnapshotData = Cursor<Vec<u8>>;
pub type Snapshot = openraft::Snapshot<LeaderId, NodeId, Member, SnapshotData>;
pub type LogState = openraft::LogState<TypeConfig>;
pub type IOFlushed = openraft::storage::IOFlushed<TypeConfig>;
pub type EntryResponder = openraft::storage::EntryResponder<TypeConfig>;
pub type Raft = openraft::Raft<TypeConfig, crate::state_machine::StateMachine>;
pub type RaftError<E = openraft::errors::Infallible> = openraft::errors::RaftError<TypeConfig, E>;
pub type RpcError = openraft::errors::RPCError<TypeConfig>;
pub type StreamingError = openraft::errors::StreamingError<TypeConfig>;
pub type ClientWriteError = openraft::errors::ClientWriteError<TypeConfig>;
pub type LinearizableReadError = openraft::errors::LinearizableReadError<TypeConfig>;
pub type InitializeError = openraft::errors::InitializeError<TypeConfig>;
pub type AppendEntriesRequest = openraft::raft::AppendEntriesRequest<TypeConfig>;
pub type AppendEntriesResponse = openraft::raft::AppendEntriesResponse<TypeConfig>;
pub type VoteRequest = openraft::raft::VoteRequest<TypeConfig>;
pub type VoteResponse = openraft::raft::VoteResponse<TypeConfig>;
pub type SnapshotResponse = openraft::raft::SnapshotResponse<TypeConfig>;
