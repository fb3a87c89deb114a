//! Round trips of every openraft type through its `quorate.raft.v1` form, and refusal of
//! malformed bytes.

use std::collections::{BTreeMap, BTreeSet};

use proto::etcdserverpb::PutRequest;
use proto::quorate::raft::v1 as pb;

use super::*;

fn members() -> Membership {
    let nodes: BTreeMap<NodeId, Member> = (1..=3)
        .map(|id| {
            let member = Member {
                name: format!("n{id}"),
                peer_urls: vec![format!("http://127.0.0.1:{}", 2380 + id)],
                client_urls: vec![format!("http://127.0.0.1:{}", 2379 + id)],
            };
            (id, member)
        })
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes).expect("valid membership")
}

#[test]
fn entries_round_trip() {
    let log_id = LogId::new(
        LeaderId {
            term: 3,
            node_id: 2,
        },
        17,
    );
    let put = pb::Command {
        op: Some(pb::command::Op::Put(PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        })),
    };
    for payload in [
        EntryPayload::Blank,
        EntryPayload::Normal(Request(put)),
        EntryPayload::Membership(members()),
    ] {
        let entry = Entry { log_id, payload };
        let decoded = decode_entry(&encode_entry(&entry)).expect("decode");
        assert_eq!(decoded, entry);
    }
}

#[test]
fn append_request_and_vote_round_trip() {
    let vote = Vote {
        leader_id: LeaderId {
            term: 5,
            node_id: 1,
        },
        committed: true,
    };
    let request = AppendEntriesRequest {
        vote,
        prev_log_id: Some(LogId::new(
            LeaderId {
                term: 4,
                node_id: 1,
            },
            9,
        )),
        entries: vec![Entry {
            log_id: LogId::new(vote.leader_id, 10),
            payload: EntryPayload::Blank,
        }],
        leader_commit: None,
    };
    let decoded = append_request_from_pb(append_request_to_pb(&request)).expect("decode");
    assert_eq!(decoded.vote, request.vote);
    assert_eq!(decoded.prev_log_id, request.prev_log_id);
    assert_eq!(decoded.entries, request.entries);
    let stored = StoredMembership::new(Some(LogId::new(vote.leader_id, 2)), members());
    let back = stored_membership_from_pb(&stored_membership_to_pb(&stored)).expect("decode");
    assert_eq!(back, stored);
}

#[test]
fn malformed_entries_are_refused() {
    assert!(decode_entry(&[0xff, 0xff, 0xff]).is_err());
    let no_log_id = pb::Entry {
        log_id: None,
        payload: Some(pb::entry::Payload::Blank(pb::Blank {})),
    };
    let error = entry_from_pb(no_log_id).expect_err("missing log id");
    assert!(error.to_string().contains("log_id"), "{error}");
}
