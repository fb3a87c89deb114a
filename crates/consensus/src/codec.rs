//! The explicit wire and disk form of openraft's types, as `quorate.raft.v1` messages. Decoding
//! refuses malformed input with a [`CodecError`] instead of guessing.

use std::collections::{BTreeMap, BTreeSet};

use prost::Message;
use proto::quorate::raft::v1 as pb;

use crate::types::*;

/// Why bytes or a message from disk or a peer were refused.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("decode {what}: {source}")]
    Decode {
        what: &'static str,
        source: prost::DecodeError,
    },
    #[error("{what}: missing field {field}")]
    Missing {
        what: &'static str,
        field: &'static str,
    },
    #[error("invalid membership: {0}")]
    Membership(String),
    #[error("{0}")]
    Invalid(String),
}

fn missing(what: &'static str, field: &'static str) -> CodecError {
    CodecError::Missing { what, field }
}

pub fn leader_id_to_pb(id: &LeaderId) -> pb::LeaderId {
    pb::LeaderId {
        term: id.term,
        node_id: id.node_id,
    }
}

pub fn leader_id_from_pb(id: &pb::LeaderId) -> LeaderId {
    LeaderId {
        term: id.term,
        node_id: id.node_id,
    }
}

pub fn log_id_to_pb(id: &LogId) -> pb::LogId {
    pb::LogId {
        leader_id: Some(leader_id_to_pb(&id.leader_id)),
        index: id.index,
    }
}

pub fn log_id_from_pb(id: &pb::LogId) -> Result<LogId, CodecError> {
    let leader = id
        .leader_id
        .as_ref()
        .ok_or_else(|| missing("log id", "leader_id"))?;
    Ok(LogId::new(leader_id_from_pb(leader), id.index))
}

pub fn opt_log_id_from_pb(id: &Option<pb::LogId>) -> Result<Option<LogId>, CodecError> {
    id.as_ref().map(log_id_from_pb).transpose()
}

pub fn vote_to_pb(vote: &Vote) -> pb::Vote {
    pb::Vote {
        leader_id: Some(leader_id_to_pb(&vote.leader_id)),
        committed: vote.committed,
    }
}

pub fn vote_from_pb(vote: &pb::Vote) -> Result<Vote, CodecError> {
    let leader = vote
        .leader_id
        .as_ref()
        .ok_or_else(|| missing("vote", "leader_id"))?;
    Ok(Vote {
        leader_id: leader_id_from_pb(leader),
        committed: vote.committed,
    })
}

pub fn member_to_pb(member: &Member) -> pb::Member {
    pb::Member {
        name: member.name.clone(),
        peer_urls: member.peer_urls.clone(),
        client_urls: member.client_urls.clone(),
    }
}

pub fn member_from_pb(member: &pb::Member) -> Member {
    Member {
        name: member.name.clone(),
        peer_urls: member.peer_urls.clone(),
        client_urls: member.client_urls.clone(),
    }
}

pub fn membership_to_pb(membership: &Membership) -> pb::Membership {
    pb::Membership {
        configs: membership
            .get_joint_config()
            .iter()
            .map(|set| pb::VoterSet {
                ids: set.iter().copied().collect(),
            })
            .collect(),
        nodes: membership
            .nodes()
            .map(|(id, member)| (*id, member_to_pb(member)))
            .collect(),
    }
}

pub fn membership_from_pb(membership: &pb::Membership) -> Result<Membership, CodecError> {
    let configs: Vec<BTreeSet<NodeId>> = membership
        .configs
        .iter()
        .map(|set| set.ids.iter().copied().collect())
        .collect();
    let nodes: BTreeMap<NodeId, Member> = membership
        .nodes
        .iter()
        .map(|(id, m)| (*id, member_from_pb(m)))
        .collect();
    Membership::new(configs, nodes).map_err(|e| CodecError::Membership(e.to_string()))
}

pub fn stored_membership_to_pb(stored: &StoredMembership) -> pb::StoredMembership {
    pb::StoredMembership {
        log_id: stored.log_id().as_ref().map(log_id_to_pb),
        membership: Some(membership_to_pb(stored.membership())),
    }
}

pub fn stored_membership_from_pb(
    stored: &pb::StoredMembership,
) -> Result<StoredMembership, CodecError> {
    let membership = match &stored.membership {
        Some(m) => membership_from_pb(m)?,
        None => Membership::default(),
    };
    Ok(StoredMembership::new(
        opt_log_id_from_pb(&stored.log_id)?,
        membership,
    ))
}

pub fn entry_to_pb(entry: &Entry) -> pb::Entry {
    let payload = match &entry.payload {
        EntryPayload::Blank => pb::entry::Payload::Blank(pb::Blank {}),
        EntryPayload::Normal(request) => pb::entry::Payload::Normal(request.0.clone()),
        EntryPayload::Membership(m) => pb::entry::Payload::Membership(membership_to_pb(m)),
    };
    pb::Entry {
        log_id: Some(log_id_to_pb(&entry.log_id)),
        payload: Some(payload),
    }
}

pub fn entry_from_pb(entry: pb::Entry) -> Result<Entry, CodecError> {
    let log_id = log_id_from_pb(
        entry
            .log_id
            .as_ref()
            .ok_or_else(|| missing("entry", "log_id"))?,
    )?;
    let payload = match entry.payload.ok_or_else(|| missing("entry", "payload"))? {
        pb::entry::Payload::Blank(_) => EntryPayload::Blank,
        pb::entry::Payload::Normal(command) => EntryPayload::Normal(Request(command)),
        pb::entry::Payload::Membership(m) => EntryPayload::Membership(membership_from_pb(&m)?),
    };
    Ok(Entry { log_id, payload })
}

/// Returns an entry's stored bytes.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    entry_to_pb(entry).encode_to_vec()
}

/// Parses an entry's stored bytes.
pub fn decode_entry(bytes: &[u8]) -> Result<Entry, CodecError> {
    let entry = pb::Entry::decode(bytes).map_err(|source| CodecError::Decode {
        what: "raft entry",
        source,
    })?;
    entry_from_pb(entry)
}

/// Decodes any stored message, naming it in the error.
pub fn decode<M: Message + Default>(bytes: &[u8], what: &'static str) -> Result<M, CodecError> {
    M::decode(bytes).map_err(|source| CodecError::Decode { what, source })
}

pub fn append_request_to_pb(request: &AppendEntriesRequest) -> pb::AppendEntriesRequest {
    pb::AppendEntriesRequest {
        group: 0,
        vote: Some(vote_to_pb(&request.vote)),
        prev_log_id: request.prev_log_id.as_ref().map(log_id_to_pb),
        entries: request.entries.iter().map(entry_to_pb).collect(),
        leader_commit: request.leader_commit.as_ref().map(log_id_to_pb),
    }
}

pub fn append_request_from_pb(
    request: pb::AppendEntriesRequest,
) -> Result<AppendEntriesRequest, CodecError> {
    Ok(AppendEntriesRequest {
        vote: vote_from_pb(
            request
                .vote
                .as_ref()
                .ok_or_else(|| missing("append", "vote"))?,
        )?,
        prev_log_id: opt_log_id_from_pb(&request.prev_log_id)?,
        entries: request
            .entries
            .into_iter()
            .map(entry_from_pb)
            .collect::<Result<_, _>>()?,
        leader_commit: opt_log_id_from_pb(&request.leader_commit)?,
    })
}

pub fn append_response_to_pb(response: &AppendEntriesResponse) -> pb::AppendEntriesResponse {
    use pb::append_entries_response::Result as R;
    let result = match response {
        AppendEntriesResponse::Success => R::Success(pb::Blank {}),
        AppendEntriesResponse::PartialSuccess(matching) => R::PartialSuccess(pb::PartialSuccess {
            matching: matching.as_ref().map(log_id_to_pb),
        }),
        AppendEntriesResponse::Conflict => R::Conflict(pb::Blank {}),
        AppendEntriesResponse::HigherVote(vote) => R::HigherVote(vote_to_pb(vote)),
    };
    pb::AppendEntriesResponse {
        result: Some(result),
    }
}

pub fn append_response_from_pb(
    response: pb::AppendEntriesResponse,
) -> Result<AppendEntriesResponse, CodecError> {
    use pb::append_entries_response::Result as R;
    Ok(
        match response
            .result
            .ok_or_else(|| missing("append response", "result"))?
        {
            R::Success(_) => AppendEntriesResponse::Success,
            R::PartialSuccess(p) => {
                AppendEntriesResponse::PartialSuccess(opt_log_id_from_pb(&p.matching)?)
            }
            R::Conflict(_) => AppendEntriesResponse::Conflict,
            R::HigherVote(vote) => AppendEntriesResponse::HigherVote(vote_from_pb(&vote)?),
        },
    )
}

pub fn vote_request_to_pb(request: &VoteRequest, pre_vote: bool) -> pb::VoteRequest {
    pb::VoteRequest {
        group: 0,
        vote: Some(vote_to_pb(&request.vote)),
        last_log_id: request.last_log_id.as_ref().map(log_id_to_pb),
        leadership_transfer: request.leadership_transfer,
        pre_vote,
    }
}

pub fn vote_request_from_pb(request: &pb::VoteRequest) -> Result<VoteRequest, CodecError> {
    let mut out = VoteRequest::new(
        vote_from_pb(
            request
                .vote
                .as_ref()
                .ok_or_else(|| missing("vote request", "vote"))?,
        )?,
        opt_log_id_from_pb(&request.last_log_id)?,
    );
    out.leadership_transfer = request.leadership_transfer;
    Ok(out)
}

pub fn vote_response_to_pb(response: &VoteResponse) -> pb::VoteResponse {
    pb::VoteResponse {
        vote: Some(vote_to_pb(&response.vote)),
        vote_granted: response.vote_granted,
        last_log_id: response.last_log_id.as_ref().map(log_id_to_pb),
    }
}

pub fn vote_response_from_pb(response: &pb::VoteResponse) -> Result<VoteResponse, CodecError> {
    Ok(VoteResponse::new(
        vote_from_pb(
            response
                .vote
                .as_ref()
                .ok_or_else(|| missing("vote response", "vote"))?,
        )?,
        opt_log_id_from_pb(&response.last_log_id)?,
        response.vote_granted,
    ))
}

pub fn snapshot_meta_to_pb(meta: &SnapshotMeta) -> pb::SnapshotMeta {
    pb::SnapshotMeta {
        last_log_id: meta.last_log_id.as_ref().map(log_id_to_pb),
        last_membership: Some(stored_membership_to_pb(&meta.last_membership)),
    }
}

pub fn snapshot_meta_from_pb(meta: &pb::SnapshotMeta) -> Result<SnapshotMeta, CodecError> {
    Ok(SnapshotMeta {
        last_log_id: opt_log_id_from_pb(&meta.last_log_id)?,
        last_membership: match &meta.last_membership {
            Some(m) => stored_membership_from_pb(m)?,
            None => StoredMembership::default(),
        },
    })
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
