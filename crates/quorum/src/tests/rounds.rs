//! Unit tests of levels, write and read rounds, merges and repair targets.

use base::{HlcTimestamp, NodeId};
use crdt::{Conflicts, Object, VersionVector};

use crate::*;

const A: NodeId = NodeId(1);
const B: NodeId = NodeId(2);
const C: NodeId = NodeId(3);

fn ts(physical: u64) -> HlcTimestamp {
    HlcTimestamp {
        physical,
        logical: 0,
    }
}

#[test]
fn levels_resolve_against_n_and_refuse_what_n_cannot_meet() {
    assert_eq!(Level::One.required(3, "r"), Ok(1));
    assert_eq!(Level::Quorum.required(3, "r"), Ok(2));
    assert_eq!(Level::Quorum.required(4, "r"), Ok(3));
    assert_eq!(Level::Quorum.required(5, "w"), Ok(3));
    assert_eq!(Level::All.required(5, "w"), Ok(5));
    assert_eq!(Level::Count(2).required(3, "w"), Ok(2));
    let above = Level::Count(4).required(3, "w").unwrap_err();
    assert_eq!(above.to_string(), "w=4 exceeds the bucket's n=3");
    assert!(matches!(
        Level::Count(0).required(3, "r"),
        Err(LevelError::Zero { what: "r" })
    ));
}

#[test]
fn a_write_succeeds_at_w_acks_and_fails_once_w_is_out_of_reach() {
    let mut round = WriteRound::new(&[A, B, C], 2);
    round.ack(A);
    round.ack(A); // counted once
    assert_eq!(round.outcome(), None);
    round.fail(B, "unreachable");
    assert_eq!(round.outcome(), None, "C may still answer");
    round.ack(C);
    assert_eq!(round.outcome(), Some(Ok(2)));

    let mut round = WriteRound::new(&[A, B, C], 2);
    round.ack(A);
    round.fail(B, "unreachable");
    round.fail(C, "disk full");
    let shortfall = round.outcome().expect("decided").unwrap_err();
    assert_eq!(shortfall.answered, 1);
    assert_eq!(
        shortfall.to_string(),
        "not enough replicas: 1 of 3 answered, 2 required (2: unreachable; 3: disk full)"
    );
    // A replica that acked and then "failed" (a late error) still counts as acked.
    let mut round = WriteRound::new(&[A, B, C], 3);
    round.ack(A);
    round.fail(A, "late error");
    round.ack(B);
    assert_eq!(round.outcome(), None);
    let at_deadline = round.at_deadline().unwrap_err();
    assert_eq!((at_deadline.answered, at_deadline.required), (2, 3));
    // Answers from members outside the preference list are ignored.
    let mut round = WriteRound::new(&[A], 1);
    round.ack(NodeId(99));
    assert_eq!(round.outcome(), None);
}

#[test]
fn a_write_during_a_ring_change_needs_w_in_both_replica_sets() {
    // Goal: a joint round (current ring A,B,C; next ring A,B,D) succeeds only with W acks in
    // each set. Method: acks that satisfy one set only, then the other; a lost set fails it.
    const D: NodeId = NodeId(4);
    let (current, next) = ([A, B, C], [A, B, D]);
    let mut round = WriteRound::joint(&[&current, &next], 2);
    round.ack(C);
    round.ack(D);
    assert_eq!(round.outcome(), None, "one ack in each set is not W=2");
    round.ack(A);
    assert_eq!(round.outcome(), Some(Ok(3)), "A counts in both sets");

    let mut round = WriteRound::joint(&[&current, &next], 2);
    round.ack(A);
    round.ack(C);
    assert_eq!(round.outcome(), None, "the next ring has only A");
    round.fail(B, "unreachable");
    round.fail(D, "unreachable");
    let shortfall = round.outcome().expect("decided").unwrap_err();
    assert_eq!((shortfall.answered, shortfall.replicas), (1, 3));
    assert!(
        shortfall.to_string().contains("4: unreachable"),
        "{shortfall}"
    );

    let mut round = WriteRound::joint(&[&current, &next], 3);
    round.ack(A);
    round.ack(B);
    round.ack(C);
    let at_deadline = round.at_deadline().unwrap_err();
    assert_eq!((at_deadline.answered, at_deadline.required), (2, 3));
}

#[test]
fn a_read_merges_the_copies_and_names_the_stale_replicas() {
    let mut old = Object::new();
    old.update(
        &VersionVector::new(),
        A.0,
        ts(1),
        Some(b"old".to_vec()),
        Conflicts::Siblings,
    );
    let mut new = old.clone();
    new.update(
        &new.context.clone(),
        B.0,
        ts(2),
        Some(b"new".to_vec()),
        Conflicts::Siblings,
    );
    let mut round = ReadRound::new(&[A, B, C], 2, Conflicts::Siblings);
    round.answer(A, Some(old.clone()));
    assert_eq!(round.outcome(), None);
    round.answer(B, Some(new.clone()));
    assert_eq!(round.outcome(), Some(Ok(2)));
    round.answer(C, None);
    let merged = round.merged();
    assert_eq!(merged, new, "the newer copy supersedes the older");
    let values: Vec<&[u8]> = merged
        .live_values()
        .iter()
        .filter_map(|s| s.value.as_deref())
        .collect();
    assert_eq!(values, vec![&b"new"[..]]);
    assert_eq!(round.stale(&merged), vec![A, C]);
}

#[test]
fn concurrent_copies_merge_into_siblings() {
    let mut left = Object::new();
    left.update(
        &VersionVector::new(),
        A.0,
        ts(1),
        Some(b"left".to_vec()),
        Conflicts::Siblings,
    );
    let mut right = Object::new();
    right.update(
        &VersionVector::new(),
        B.0,
        ts(1),
        Some(b"right".to_vec()),
        Conflicts::Siblings,
    );
    let mut round = ReadRound::new(&[A, B], 2, Conflicts::Siblings);
    round.answer(A, Some(left.clone()));
    round.answer(B, Some(right.clone()));
    let merged = round.merged();
    assert_eq!(merged.live_values().len(), 2);
    assert_eq!(round.stale(&merged), vec![A, B]);
    let mut lww = ReadRound::new(&[A, B], 2, Conflicts::Lww);
    lww.answer(A, Some(left));
    lww.answer(B, Some(right));
    assert_eq!(lww.merged().live_values().len(), 1);
}
