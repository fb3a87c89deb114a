//! Snapshots outside a running member: inspecting one (`quorate snapshot status`) and building
//! a member of a new cluster from one (`quorate snapshot restore`), as etcd's restore does:
//! every member of the new cluster restores the same snapshot with the same member list, so
//! all start from identical state at the same log position and elect a leader as usual.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base::EtcdError;
use proto::etcdserverpb::RangeRequest;
use storage::{SnapshotFile, StateStore};

use openraft::vote::RaftLeaderId;

use crate::state_machine::StateMachine;
use crate::types::*;

/// What a snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The revision the snapshot was taken at.
    pub revision: i64,
    pub compacted_revision: i64,
    /// Keys live at `revision`.
    pub keys: i64,
    /// Stored revisions of keys (history kept since the compacted revision).
    pub records: u64,
    /// HashKV at `revision`: equals the source member's `endpoint hashkv --rev <revision>`.
    pub hash: u32,
}

fn invalid(error: impl std::fmt::Display) -> EtcdError {
    EtcdError::Internal(format!("snapshot: {error}"))
}

fn summarize(machine: &StateMachine) -> Result<SnapshotSummary, EtcdError> {
    let shared = &machine.shared;
    let (revision, compacted_revision, _) = shared.positions();
    let everything = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        count_only: true,
        serializable: true,
        ..Default::default()
    };
    let keys = shared.range(&everything)?.count;
    let (hash, _, _) = shared.hash_kv(revision)?;
    Ok(SnapshotSummary {
        revision,
        compacted_revision,
        keys,
        records: shared.record_count(),
        hash,
    })
}

/// Loads snapshot `data` into scratch memory and summarizes it; a malformed snapshot is an
/// error.
pub fn inspect(data: &[u8]) -> Result<SnapshotSummary, EtcdError> {
    let store = StateStore::in_memory().map_err(invalid)?;
    // Never written: inspection installs the state only.
    let machine = StateMachine::open(store, SnapshotFile::new(Path::new(""))).map_err(invalid)?;
    machine
        .shared
        .install_state(&SnapshotMeta::default(), data)
        .map_err(invalid)?;
    summarize(&machine)
}

/// The log position a restored cluster starts at: behind the initial membership (index 0),
/// in the same leader term, so it is the same on every restored member.
fn restored_log_id() -> LogId {
    LogId::new(LeaderId::new(0, 0), 1)
}

/// Writes a member of a new cluster into empty `log`, `state` and `snapshot` files: the
/// snapshot's keyspace and leases, the new membership (every member a voter), and a log that
/// starts behind the snapshot, so a member that joins later receives the snapshot too.
pub fn restore_member(
    log: storage::LogStore,
    state: StateStore,
    snapshot: SnapshotFile,
    data: &[u8],
    members: BTreeMap<NodeId, Member>,
) -> Result<SnapshotSummary, EtcdError> {
    if log.last(crate::MAIN_GROUP).map_err(invalid)?.is_some()
        || state.record_count().map_err(invalid)? > 0
    {
        return Err(invalid("the data dir already holds a member"));
    }
    let machine = StateMachine::open(state, snapshot).map_err(invalid)?;
    let log_id = restored_log_id();
    let voters: BTreeSet<NodeId> = members.keys().copied().collect();
    let membership = Membership::new(vec![voters], members).map_err(invalid)?;
    let meta = SnapshotMeta {
        last_log_id: Some(log_id),
        last_membership: StoredMembership::new(Some(log_id), membership),
    };
    machine.shared.install_state(&meta, data).map_err(invalid)?;
    machine.shared.begin_new_cluster().map_err(invalid)?;
    let purged = prost::Message::encode_to_vec(&crate::codec::log_id_to_pb(&log_id));
    log.purge_upto(crate::MAIN_GROUP, log_id.index, &purged)
        .map_err(invalid)?;
    summarize(&machine)
}
