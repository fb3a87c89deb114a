//! The write and read coordinators' transitions: success at W and R, failure with "A of N
//! answered", the coordinating replica's order, sloppy fallbacks taking hints, stale epochs
//! placed again, deadlines, blocking and background read repair. Each test feeds answers by
//! hand and asserts the exact commands that come out.

use std::collections::BTreeSet;

use base::{HlcTimestamp, NodeId};
use crdt::{Conflicts, Object};

use crate::*;

const A: NodeId = NodeId(1);
const B: NodeId = NodeId(2);
const C: NodeId = NodeId(3);
const D: NodeId = NodeId(4);
const E: NodeId = NodeId(5);

fn plan(replicas: &[NodeId], fallbacks: &[NodeId], epoch: u64) -> Plan {
    Plan {
        token: 7,
        replicas: replicas.to_vec(),
        next: Vec::new(),
        fallbacks: fallbacks.to_vec(),
        epoch,
    }
}

/// An object written once by `actor` with `value`, on top of `base`.
fn written(base: &Object, actor: NodeId, value: &str) -> Object {
    let mut object = base.clone();
    let context = object.context.clone();
    object.update(
        &context,
        actor.0,
        HlcTimestamp {
            physical: 1,
            logical: 0,
        },
        Some(value.as_bytes().to_vec()),
        Conflicts::Siblings,
    );
    object
}

fn unreachable() -> ReplicaError {
    ReplicaError::Unreachable("connection refused".into())
}

fn stale(placed: u64) -> ReplicaError {
    ReplicaError::StaleEpoch {
        placed,
        current: placed + 1,
    }
}

/// The calls among `commands` as (kind, call, member): "coordinate", "merge", "hint" (the
/// member is the fallback), "keep-hint" (the member is the target, no call).
fn write_calls(commands: &[WriteCommand]) -> Vec<(&'static str, Option<CallId>, NodeId)> {
    commands
        .iter()
        .filter_map(|c| match c {
            WriteCommand::Coordinate { call, to, .. } => Some(("coordinate", Some(*call), *to)),
            WriteCommand::Merge { call, to, .. } => Some(("merge", Some(*call), *to)),
            WriteCommand::Hint { call, at, .. } => Some(("hint", Some(*call), *at)),
            WriteCommand::KeepHint { target, .. } => Some(("keep-hint", None, *target)),
            WriteCommand::PlaceAgain { .. } | WriteCommand::Reply(_) => None,
        })
        .collect()
}

fn kinds(commands: &[WriteCommand]) -> Vec<(&'static str, NodeId)> {
    write_calls(commands)
        .into_iter()
        .map(|(kind, _, to)| (kind, to))
        .collect()
}

fn call_to(commands: &[WriteCommand], kind: &str, member: NodeId) -> CallId {
    write_calls(commands)
        .into_iter()
        .find(|(k, _, m)| *k == kind && *m == member)
        .and_then(|(_, call, _)| call)
        .unwrap_or_else(|| panic!("no {kind} call to {member} in {commands:?}"))
}

fn write_reply(commands: &[WriteCommand]) -> Option<Result<WriteDone, NotEnoughReplicas>> {
    commands.iter().find_map(|c| match c {
        WriteCommand::Reply(reply) => Some(reply.clone()),
        _ => None,
    })
}

fn writer(me: NodeId, w: usize, sloppy: bool, plan: Plan) -> (WriteCoordinator, Vec<WriteCommand>) {
    let spec = WriteSpec {
        me,
        w,
        sloppy,
        suspects: BTreeSet::new(),
    };
    let mut coordinator = WriteCoordinator::new(spec, plan);
    let first = coordinator.start();
    (coordinator, first)
}

/// Starts a write as A on A, B, C and has A coordinate it; returns the merge commands.
fn coordinated_on_a(w: usize, sloppy: bool) -> (WriteCoordinator, Vec<WriteCommand>, Object) {
    let (mut coordinator, first) = writer(A, w, sloppy, plan(&[A, B, C], &[D, E], 5));
    assert_eq!(kinds(&first), vec![("coordinate", A)]);
    let object = written(&Object::new(), A, "v");
    let merges = coordinator.handle(WriteInput::Coordinated {
        call: call_to(&first, "coordinate", A),
        object: object.clone(),
    });
    (coordinator, merges, object)
}

#[test]
fn a_write_replies_at_w_and_keeps_replicating_to_the_rest() {
    let (mut coordinator, merges, object) = coordinated_on_a(2, false);
    assert_eq!(kinds(&merges), vec![("merge", B), ("merge", C)]);
    let after_b = coordinator.handle(WriteInput::Merged {
        call: call_to(&merges, "merge", B),
    });
    let done = write_reply(&after_b)
        .expect("replied at W")
        .expect("succeeded");
    assert_eq!(done, WriteDone { object, acked: 2 });
    assert!(!coordinator.is_finished(), "the merge to C is outstanding");
    let after_c = coordinator.handle(WriteInput::Merged {
        call: call_to(&merges, "merge", C),
    });
    assert_eq!(after_c, vec![], "one reply only");
    assert!(coordinator.is_finished());
}

#[test]
fn a_write_short_of_w_fails_saying_how_many_answered_and_keeps_a_hint() {
    let (mut coordinator, merges, _) = coordinated_on_a(3, false);
    let after_b = coordinator.handle(WriteInput::Failed {
        call: call_to(&merges, "merge", B),
        error: unreachable(),
    });
    assert_eq!(kinds(&after_b), vec![("keep-hint", B)]);
    let shortfall = write_reply(&after_b)
        .expect("decided: W=3 is out of reach")
        .unwrap_err();
    assert_eq!(
        shortfall.to_string(),
        "not enough replicas: 1 of 3 answered, 3 required (2: unreachable: connection refused)"
    );
}

#[test]
fn the_coordinating_replica_is_this_member_else_the_others_in_order_suspects_last() {
    let spec = WriteSpec {
        me: A,
        w: 1,
        sloppy: false,
        suspects: BTreeSet::from([B]),
    };
    let mut coordinator = WriteCoordinator::new(spec, plan(&[B, C, D], &[], 5));
    let first = coordinator.start();
    assert_eq!(kinds(&first), vec![("coordinate", C)]);
    let second = coordinator.handle(WriteInput::Failed {
        call: call_to(&first, "coordinate", C),
        error: ReplicaError::Timeout,
    });
    assert_eq!(kinds(&second), vec![("coordinate", D)]);
    let third = coordinator.handle(WriteInput::Failed {
        call: call_to(&second, "coordinate", D),
        error: unreachable(),
    });
    assert!(
        matches!(
            third[..],
            [WriteCommand::Coordinate {
                to: B,
                short: true,
                ..
            }]
        ),
        "the suspect is tried last, briefly: {third:?}"
    );
    let last = coordinator.handle(WriteInput::Failed {
        call: call_to(&third, "coordinate", B),
        error: unreachable(),
    });
    let shortfall = write_reply(&last).expect("no replica left").unwrap_err();
    assert_eq!((shortfall.answered, shortfall.failures.len()), (0, 3));
    assert!(coordinator.is_finished());
}

#[test]
fn a_sloppy_write_counts_a_fallback_that_holds_the_hint() {
    let (mut coordinator, merges, _) = coordinated_on_a(3, true);
    let after_b = coordinator.handle(WriteInput::Failed {
        call: call_to(&merges, "merge", B),
        error: unreachable(),
    });
    assert_eq!(kinds(&after_b), vec![("hint", D)]);
    // D's bound is full: the next fallback is asked.
    let after_d = coordinator.handle(WriteInput::Hinted {
        call: call_to(&after_b, "hint", D),
        stored: false,
    });
    assert_eq!(kinds(&after_d), vec![("hint", E)]);
    coordinator.handle(WriteInput::Merged {
        call: call_to(&merges, "merge", C),
    });
    let after_e = coordinator.handle(WriteInput::Hinted {
        call: call_to(&after_d, "hint", E),
        stored: true,
    });
    let done = write_reply(&after_e).expect("W=3 with E standing in for B");
    assert_eq!(done.expect("succeeded").acked, 3);
}

#[test]
fn a_sloppy_write_whose_fallbacks_are_used_up_keeps_the_hint_itself() {
    let (mut coordinator, merges, _) = coordinated_on_a(2, true);
    let after_b = coordinator.handle(WriteInput::Failed {
        call: call_to(&merges, "merge", B),
        error: unreachable(),
    });
    let after_c = coordinator.handle(WriteInput::Failed {
        call: call_to(&merges, "merge", C),
        error: unreachable(),
    });
    assert_eq!(kinds(&after_b), vec![("hint", D)]);
    assert_eq!(kinds(&after_c), vec![("hint", E)], "each fallback once");
    let after_d = coordinator.handle(WriteInput::Failed {
        call: call_to(&after_b, "hint", D),
        error: ReplicaError::Timeout,
    });
    assert_eq!(kinds(&after_d), vec![("keep-hint", B)]);
    let reply = coordinator.handle(WriteInput::Hinted {
        call: call_to(&after_c, "hint", E),
        stored: true,
    });
    assert_eq!(write_reply(&reply).expect("decided").expect("ok").acked, 2);
}

#[test]
fn a_write_refused_for_a_stale_epoch_is_placed_again_keeping_its_object() {
    let (mut coordinator, merges, object) = coordinated_on_a(2, false);
    let after_b = coordinator.handle(WriteInput::Failed {
        call: call_to(&merges, "merge", B),
        error: stale(5),
    });
    assert_eq!(
        after_b,
        vec![],
        "no hint for a refused epoch; C may still ack"
    );
    let after_c = coordinator.handle(WriteInput::Failed {
        call: call_to(&merges, "merge", C),
        error: stale(5),
    });
    assert_eq!(after_c, vec![WriteCommand::PlaceAgain { after_epoch: 5 }]);
    let again = coordinator.handle(WriteInput::Placed(plan(&[A, B, D], &[], 6)));
    assert_eq!(
        kinds(&again),
        vec![("merge", A), ("merge", B), ("merge", D)],
        "the coordinated object goes to every replica of the new placement"
    );
    assert!(again.iter().all(|c| match c {
        WriteCommand::Merge {
            object: sent,
            epoch,
            ..
        } => sent == &object && *epoch == 6,
        _ => false,
    }));
    // An answer to a call of the abandoned attempt changes nothing.
    let late = coordinator.handle(WriteInput::Merged {
        call: call_to(&merges, "merge", C),
    });
    assert_eq!(late, vec![]);
    coordinator.handle(WriteInput::Merged {
        call: call_to(&again, "merge", A),
    });
    let reply = coordinator.handle(WriteInput::Merged {
        call: call_to(&again, "merge", D),
    });
    assert_eq!(write_reply(&reply).expect("W=2").expect("ok").acked, 2);
}

#[test]
fn a_write_at_its_deadline_fails_and_still_hints_what_times_out_later() {
    let (mut coordinator, merges, _) = coordinated_on_a(2, false);
    let at_deadline = coordinator.handle(WriteInput::Deadline);
    let shortfall = write_reply(&at_deadline).expect("replied").unwrap_err();
    assert_eq!((shortfall.answered, shortfall.required), (1, 2));
    let timed_out = coordinator.handle(WriteInput::Failed {
        call: call_to(&merges, "merge", B),
        error: ReplicaError::Timeout,
    });
    assert_eq!(kinds(&timed_out), vec![("keep-hint", B)]);
    assert_eq!(write_reply(&timed_out), None, "one reply only");

    // At the deadline while waiting for a newer ring: the stale shortfall is the answer.
    let (mut coordinator, merges, _) = coordinated_on_a(3, false);
    let placing = coordinator.handle(WriteInput::Failed {
        call: call_to(&merges, "merge", B),
        error: stale(5),
    });
    assert_eq!(placing, vec![WriteCommand::PlaceAgain { after_epoch: 5 }]);
    let at_deadline = coordinator.handle(WriteInput::Deadline);
    let shortfall = write_reply(&at_deadline).expect("replied").unwrap_err();
    assert!(shortfall.has_stale_epoch(), "{shortfall}");
    assert!(coordinator.is_finished());
}

#[test]
fn a_write_during_a_ring_change_goes_to_both_replica_sets() {
    let mut joint = plan(&[A, B, C], &[E], 5);
    joint.next = vec![A, B, D];
    let (mut coordinator, first) = writer(A, 2, false, joint);
    let merges = coordinator.handle(WriteInput::Coordinated {
        call: call_to(&first, "coordinate", A),
        object: written(&Object::new(), A, "v"),
    });
    assert_eq!(
        kinds(&merges),
        vec![("merge", B), ("merge", C), ("merge", D)]
    );
    let after_c = coordinator.handle(WriteInput::Merged {
        call: call_to(&merges, "merge", C),
    });
    assert_eq!(write_reply(&after_c), None, "the next ring has only A");
    let after_d = coordinator.handle(WriteInput::Merged {
        call: call_to(&merges, "merge", D),
    });
    assert_eq!(
        write_reply(&after_d).expect("W in both").expect("ok").acked,
        3
    );
}

// ----- reads -----

fn read_calls(commands: &[ReadCommand]) -> Vec<(&'static str, CallId, NodeId)> {
    commands
        .iter()
        .filter_map(|c| match c {
            ReadCommand::Read { call, to, .. } => Some(("read", *call, *to)),
            ReadCommand::Repair { call, to, .. } => Some(("repair", *call, *to)),
            ReadCommand::PlaceAgain { .. } | ReadCommand::Reply(_) => None,
        })
        .collect()
}

fn read_kinds(commands: &[ReadCommand]) -> Vec<(&'static str, NodeId)> {
    read_calls(commands)
        .into_iter()
        .map(|(kind, _, to)| (kind, to))
        .collect()
}

fn read_call(commands: &[ReadCommand], kind: &str, member: NodeId) -> CallId {
    read_calls(commands)
        .into_iter()
        .find(|(k, _, m)| *k == kind && *m == member)
        .map(|(_, call, _)| call)
        .unwrap_or_else(|| panic!("no {kind} call to {member} in {commands:?}"))
}

fn read_reply(commands: &[ReadCommand]) -> Option<Result<ReadDone, ReadError>> {
    commands.iter().find_map(|c| match c {
        ReadCommand::Reply(reply) => Some(reply.clone()),
        _ => None,
    })
}

fn reader(r: usize, blocking: bool, plan: Plan) -> (ReadCoordinator, Vec<ReadCommand>) {
    let spec = ReadSpec {
        r,
        conflicts: Conflicts::Siblings,
        repair_before_reply: blocking,
    };
    let mut coordinator = ReadCoordinator::new(spec, plan);
    let first = coordinator.start();
    assert_eq!(
        read_kinds(&first),
        vec![("read", A), ("read", B), ("read", C)]
    );
    (coordinator, first)
}

fn copy(commands: &[ReadCommand], member: NodeId, object: Option<&Object>) -> ReadInput {
    ReadInput::Copy {
        call: read_call(commands, "read", member),
        copy: object.cloned(),
    }
}

#[test]
fn a_read_replies_at_r_then_repairs_the_late_stale_replica() {
    let old = written(&Object::new(), A, "old");
    let new = written(&old, B, "new");
    let (mut coordinator, reads) = reader(2, false, plan(&[A, B, C], &[], 5));
    assert_eq!(coordinator.handle(copy(&reads, A, Some(&new))), vec![]);
    let after_b = coordinator.handle(copy(&reads, B, Some(&new)));
    let done = read_reply(&after_b).expect("R=2").expect("ok");
    assert_eq!((done.object, done.answered), (new.clone(), 2));
    let after_c = coordinator.handle(copy(&reads, C, Some(&old)));
    assert_eq!(read_kinds(&after_c), vec![("repair", C)]);
    assert!(!coordinator.is_finished(), "the repair is outstanding");
    coordinator.handle(ReadInput::Failed {
        call: read_call(&after_c, "repair", C),
        error: ReplicaError::Timeout,
    });
    assert!(coordinator.is_finished());
}

#[test]
fn a_read_short_of_r_fails_saying_how_many_answered() {
    let (mut coordinator, reads) = reader(2, false, plan(&[A, B, C], &[], 5));
    coordinator.handle(copy(&reads, A, None));
    coordinator.handle(ReadInput::Failed {
        call: read_call(&reads, "read", B),
        error: unreachable(),
    });
    let after_c = coordinator.handle(ReadInput::Failed {
        call: read_call(&reads, "read", C),
        error: ReplicaError::Corrupt("checksum mismatch".into()),
    });
    let error = read_reply(&after_c).expect("decided").unwrap_err();
    assert_eq!(
        error.to_string(),
        "not enough replicas: 1 of 3 answered, 2 required (2: unreachable: connection \
         refused; 3: corrupt copy: checksum mismatch)"
    );
    assert!(coordinator.is_finished(), "a failed read repairs nothing");
}

#[test]
fn a_blocking_read_repairs_before_replying_and_not_again_after() {
    let old = written(&Object::new(), A, "old");
    let new = written(&old, B, "new");
    let (mut coordinator, reads) = reader(2, true, plan(&[A, B, C], &[], 5));
    coordinator.handle(copy(&reads, A, Some(&new)));
    let after_b = coordinator.handle(copy(&reads, B, Some(&old)));
    assert_eq!(read_kinds(&after_b), vec![("repair", B)]);
    assert_eq!(read_reply(&after_b), None, "the reply waits for the repair");
    let repaired = coordinator.handle(ReadInput::Repaired {
        call: read_call(&after_b, "repair", B),
    });
    assert_eq!(
        read_reply(&repaired)
            .expect("R hold it")
            .expect("ok")
            .object,
        new
    );
    let after_c = coordinator.handle(copy(&reads, C, Some(&new)));
    assert_eq!(after_c, vec![], "B was repaired with this merge already");
    assert!(coordinator.is_finished());

    // A repair that fails leaves one replica holding the value: the read fails.
    let (mut coordinator, reads) = reader(2, true, plan(&[A, B, C], &[], 5));
    coordinator.handle(copy(&reads, A, Some(&new)));
    let after_b = coordinator.handle(copy(&reads, B, Some(&old)));
    let failed = coordinator.handle(ReadInput::Failed {
        call: read_call(&after_b, "repair", B),
        error: unreachable(),
    });
    let error = read_reply(&failed).expect("decided").unwrap_err();
    assert_eq!(
        error.to_string(),
        "blocking read repair: 1 replicas hold the value read, 2 required (2: unreachable: \
         connection refused)"
    );
}

#[test]
fn a_read_refused_for_a_stale_epoch_is_placed_again() {
    let (mut coordinator, reads) = reader(2, false, plan(&[A, B, C], &[], 5));
    coordinator.handle(ReadInput::Failed {
        call: read_call(&reads, "read", A),
        error: stale(5),
    });
    let after_b = coordinator.handle(ReadInput::Failed {
        call: read_call(&reads, "read", B),
        error: unreachable(),
    });
    assert_eq!(after_b, vec![ReadCommand::PlaceAgain { after_epoch: 5 }]);
    let again = coordinator.handle(ReadInput::Placed(plan(&[A, B, D], &[], 6)));
    assert_eq!(
        read_kinds(&again),
        vec![("read", A), ("read", B), ("read", D)]
    );
    coordinator.handle(copy(&again, A, None));
    let reply = coordinator.handle(copy(&again, D, None));
    let done = read_reply(&reply).expect("R=2").expect("ok");
    assert_eq!((done.object, done.answered), (Object::new(), 2));
}

#[test]
fn a_read_at_its_deadline_fails() {
    let (mut coordinator, reads) = reader(2, false, plan(&[A, B, C], &[], 5));
    coordinator.handle(copy(&reads, A, None));
    let at_deadline = coordinator.handle(ReadInput::Deadline);
    let error = read_reply(&at_deadline).expect("replied").unwrap_err();
    assert_eq!(
        error.to_string(),
        "not enough replicas: 1 of 3 answered, 2 required"
    );
    assert_eq!(coordinator.handle(copy(&reads, B, None)), vec![]);
}
