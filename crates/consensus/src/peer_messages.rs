//! The Raft messages peers send, handed to any group's openraft instance (the main group's
//! and every range's): decode, call openraft, encode. No decisions.

use std::io::Cursor;

use openraft::storage::RaftStateMachine;
use proto::quorate::raft::v1 as pb;

use crate::codec;
use crate::types::*;

/// Handles a peer's AppendEntries.
pub(crate) async fn append<SM: RaftStateMachine<TypeConfig>>(
    raft: &openraft::Raft<TypeConfig, SM>,
    request: pb::AppendEntriesRequest,
) -> Result<pb::AppendEntriesResponse, String> {
    let request = codec::append_request_from_pb(request).map_err(|e| e.to_string())?;
    let response = raft
        .append_entries(request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(codec::append_response_to_pb(&response))
}

/// Handles a peer's (pre-)vote request.
pub(crate) async fn vote<SM: RaftStateMachine<TypeConfig>>(
    raft: &openraft::Raft<TypeConfig, SM>,
    request: pb::VoteRequest,
) -> Result<pb::VoteResponse, String> {
    let pre_vote = request.pre_vote;
    let request = codec::vote_request_from_pb(&request).map_err(|e| e.to_string())?;
    let response = if pre_vote {
        raft.pre_vote(request).await
    } else {
        raft.vote(request).await
    };
    Ok(codec::vote_response_to_pb(
        &response.map_err(|e| e.to_string())?,
    ))
}

/// Handles the leader's request to let this replica take over.
pub(crate) async fn transfer_leader<SM: RaftStateMachine<TypeConfig>>(
    raft: &openraft::Raft<TypeConfig, SM>,
    request: pb::TransferLeaderRequest,
) -> Result<pb::TransferLeaderResponse, String> {
    let vote = request
        .from_leader
        .as_ref()
        .ok_or("transfer leader request without vote")?;
    let vote = codec::vote_from_pb(vote).map_err(|e| e.to_string())?;
    let last_log_id = codec::opt_log_id_from_pb(&request.last_log_id).map_err(|e| e.to_string())?;
    let request = openraft::raft::TransferLeaderRequest::new(vote, request.to, last_log_id);
    let answer = raft
        .handle_transfer_leader(request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(pb::TransferLeaderResponse {
        refused: answer.err().map(|e| e.to_string()).unwrap_or_default(),
    })
}

/// Handles a whole snapshot sent by the leader.
pub(crate) async fn snapshot<SM: RaftStateMachine<TypeConfig, SnapshotData = SnapshotData>>(
    raft: &openraft::Raft<TypeConfig, SM>,
    vote: pb::Vote,
    meta: pb::SnapshotMeta,
    data: Vec<u8>,
) -> Result<pb::SnapshotResponse, String> {
    let vote = codec::vote_from_pb(&vote).map_err(|e| e.to_string())?;
    let meta = codec::snapshot_meta_from_pb(&meta).map_err(|e| e.to_string())?;
    let snapshot = Snapshot {
        meta,
        snapshot: Cursor::new(data),
    };
    let response = raft
        .install_full_snapshot(vote, snapshot)
        .await
        .map_err(|e| e.to_string())?;
    Ok(pb::SnapshotResponse {
        vote: Some(codec::vote_to_pb(&response.vote)),
    })
}
