//! The smaller decisions of the core: admitting a call by ring epoch, the coordinated write's
//! dot above the reaped floor, the hint book's bound and delivery targets, the handoff plan
//! (checked against preference lists of both rings for many tokens), and reaping.

use base::{HlcTimestamp, NodeId};
use crdt::{Conflicts, Object, VersionVector};
use placement::Ring;

use crate::replica::{Coordinated, admit, coordinate};
use crate::*;

const A: NodeId = NodeId(1);
const B: NodeId = NodeId(2);
const C: NodeId = NodeId(3);
const D: NodeId = NodeId(4);

fn ts(physical: u64) -> HlcTimestamp {
    HlcTimestamp {
        physical,
        logical: 0,
    }
}

#[test]
fn a_replica_refuses_calls_placed_at_an_older_epoch_only() {
    assert_eq!(admit(5, 5), Ok(()));
    assert_eq!(
        admit(6, 5),
        Ok(()),
        "a newer placement is this member's future"
    );
    assert_eq!(admit(0, 9), Ok(()), "unplaced calls are never refused");
    let refused = admit(4, 5).unwrap_err();
    assert!(refused.is_stale_epoch());
    assert_eq!(
        refused.to_string(),
        "stale ring epoch: the call was placed at epoch 4, this member is at 5"
    );
}

#[test]
fn a_coordinated_write_to_a_key_held_nowhere_here_gets_a_dot_above_the_reaped_floor() {
    let write = Coordinated {
        context: VersionVector::new(),
        actor: A.0,
        timestamp: ts(1),
        value: Some(b"v".to_vec()),
        conflicts: Conflicts::Siblings,
        reaped_floor: 41,
    };
    let fresh = coordinate(None, &write);
    assert_eq!(fresh.siblings[0].dot.counter, 42);
    // A key this member holds continues from its own context.
    let held = coordinate(Some(Object::new()), &write);
    assert_eq!(held.siblings[0].dot.counter, 1);
}

#[test]
fn the_hint_book_keeps_each_target_within_its_bound() {
    let mut book = HintBook::new(100, [(B, 60)]);
    assert!(book.admit(B, 40));
    assert!(!book.admit(B, 41), "60 + 41 exceeds 100");
    assert!(book.admit(C, 100), "each target has its own bound");
    book.stored(B, 0, 40);
    book.stored(B, 40, 45); // a hint for the same key merged and grew
    assert!(!book.admit(B, 1));
    book.removed(B, 45, true);
    book.removed(B, 60, false);
    assert_eq!(book.targets(), Vec::<NodeId>::new());
    assert_eq!(
        book.stats(),
        HintStats {
            bytes: 0,
            stored: 2,
            delivered: 1,
            dropped: 3,
        }
    );
}

#[test]
fn a_hint_goes_to_its_target_while_it_replicates_the_key_else_to_the_owners() {
    let plan = Plan {
        token: 1,
        replicas: vec![A, B, C],
        next: vec![A, B, D],
        fallbacks: vec![],
        epoch: 3,
    };
    assert_eq!(delivery_targets(&plan, C), vec![C]);
    assert_eq!(delivery_targets(&plan, D), vec![D]);
    assert_eq!(delivery_targets(&plan, NodeId(9)), vec![A, B, C, D]);
}

#[test]
fn the_handoff_plan_streams_exactly_to_the_replicas_the_next_ring_adds() {
    let current = Ring::new(&[A, B, C], 16).expect("ring");
    let next = current.with_member(D).expect("joined");
    let left = current.without_member(B).expect("left");
    for (from, to) in [(&current, &next), (&current, &left), (&next, &current)] {
        let plan = HandoffPlan::new(from, to, 2);
        for i in 0..2000u64 {
            let token = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            for me in [A, B, C, D] {
                let before = from.preference_list(token, 2);
                let expected: Vec<NodeId> = to
                    .preference_list(token, 2)
                    .into_iter()
                    .filter(|m| *m != me && !before.contains(m))
                    .collect();
                let mut got = plan.targets(token, me);
                got.sort();
                let mut expected = expected;
                expected.sort();
                assert_eq!(got, expected, "token {token:#x} member {me}");
            }
        }
        // After the switch a member keeps exactly what it replicates on the new ring.
        let token = 0x1234_5678_9abc_def0;
        let holders = to.preference_list(token, 2);
        for me in [A, B, C, D] {
            assert_eq!(
                keeps(to, token, 2, me),
                holders.contains(&me),
                "member {me}"
            );
        }
    }
}

fn delete(base: &Object, actor: NodeId, at: u64) -> Object {
    let mut object = base.clone();
    let context = object.context.clone();
    object.update(&context, actor.0, ts(at), None, Conflicts::Siblings);
    object
}

#[test]
fn an_entry_is_reaped_only_once_every_replica_holds_the_delete() {
    let mut value = Object::new();
    value.update(
        &VersionVector::new(),
        A.0,
        ts(1),
        Some(b"v".to_vec()),
        Conflicts::Siblings,
    );
    let deleted = delete(&value, A, 2);
    assert!(reap::reapable(&deleted, ts(3)));
    assert!(
        !reap::reapable(&deleted, ts(2)),
        "not older than the grace period"
    );
    assert!(!reap::reapable(&value, ts(9)), "a live value");

    let everywhere = [(B, Ok(Some(deleted.clone()))), (C, Ok(None))];
    assert_eq!(
        reap::decide(A, &deleted, &everywhere),
        reap::Reap::Remove { floor: 2 }
    );
    let lagging = [
        (B, Ok(Some(value.clone()))),
        (C, Err(ReplicaError::Timeout)),
    ];
    assert_eq!(
        reap::decide(A, &deleted, &lagging),
        reap::Reap::Keep { repair: vec![B] },
        "B lacks the delete: it gets it; C did not answer: the entry stays"
    );
    let newer = delete(&deleted, B, 3);
    let superseded = [(B, Ok(Some(newer)))];
    assert_eq!(
        reap::decide(A, &deleted, &superseded),
        reap::Reap::Keep { repair: vec![] },
        "B holds more: nothing to send, and nothing to reap yet"
    );
}
