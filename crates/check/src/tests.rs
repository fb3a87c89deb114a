//! Checker tests on hand-written histories: valid ones pass, each anomaly class is rejected,
//! exhausted budgets are unknown; and property tests: histories of a real sequential register
//! with random overlapping windows always pass, and a read mutated to a value never written
//! never passes.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::bank::check_bank;
use crate::codec::{decode_history, encode_event};
use crate::history::Operation;
use crate::history::{Event, EventType, History, HistoryError};
use crate::linear::{Budget, Monitor, check_linearizable, check_linearizable_monitored};
use crate::lock::check_lock;
use crate::model::{COMPARE_FAILED, Datum, Model, Register, RegisterOp};
use crate::revisions::check_revisions;
use crate::set::{Reads, check_set, check_set_with};
use crate::verdict::{AnomalyKind, Verdict};
use crate::watch::check_watch;

/// Builds histories line by line: `invoke`/`ok`/`fail`/`info` at a time.
#[derive(Default)]
struct Recorder {
    events: Vec<Event>,
}

impl Recorder {
    fn push(&mut self, process: u64, kind: EventType, f: &str, key: &str, value: Value, time: u64) {
        let key = (!key.is_empty()).then_some(key);
        self.events
            .push(Event::new(process, kind, f, key, value, time));
    }
    fn invoke(&mut self, p: u64, f: &str, key: &str, value: Value, t: u64) -> &mut Self {
        self.push(p, EventType::Invoke, f, key, value, t);
        self
    }
    fn ok(&mut self, p: u64, f: &str, key: &str, value: Value, t: u64) -> &mut Self {
        self.push(p, EventType::Ok, f, key, value, t);
        self
    }
    fn fail(&mut self, p: u64, f: &str, key: &str, error: &str, t: u64) -> &mut Self {
        self.push(p, EventType::Fail, f, key, Value::Null, t);
        self.events.last_mut().expect("just pushed").error = Some(error.to_owned());
        self
    }
    fn info(&mut self, p: u64, f: &str, key: &str, t: u64) -> &mut Self {
        self.push(p, EventType::Info, f, key, Value::Null, t);
        self
    }
    fn history(&self) -> History {
        History::from_events(&self.events).expect("a well-formed history")
    }
}

/// The one entry point of the register tests: the verdict of `model` on the history.
fn check(model: Register, recorder: &Recorder) -> Verdict {
    check_linearizable(&model, &recorder.history(), Budget::default()).verdict
}

fn kinds(verdict: &Verdict) -> Vec<AnomalyKind> {
    match verdict {
        Verdict::Invalid(anomalies) => anomalies.iter().map(|a| a.kind).collect(),
        other => panic!("expected invalid, got {other:?}"),
    }
}

const REGISTER: Register = Register { cas: false };
const CAS_REGISTER: Register = Register { cas: true };

#[test]
fn codec_round_trips_every_field_and_names_the_bad_line() {
    let mut event = Event::new(3, EventType::Ok, "read", Some("k"), json!([1, "a"]), 42);
    event.revision = Some(7);
    event.member = Some("n2".into());
    event.term = Some(4);
    event.error = Some("x".into());
    let line = encode_event(&event);
    assert_eq!(decode_history(&line).expect("decodes"), vec![event]);

    let text = format!("{line}\n\n{{\"process\":1,\"type\":\"done\",\"f\":\"read\",\"time\":1}}\n");
    let error = decode_history(&text).expect_err("type done is not a type");
    assert!(error.to_string().starts_with("line 3:"), "{error}");
    let error = decode_history("{\"process\":1}").expect_err("fields missing");
    assert!(error.to_string().contains("line 1"), "{error}");
}

#[test]
fn pairing_closes_open_invocations_as_unknown_and_rejects_double_invokes() {
    let mut r = Recorder::default();
    r.invoke(1, "write", "x", json!(1), 0)
        .invoke(2, "write", "x", json!(2), 1)
        .ok(1, "write", "x", Value::Null, 2);
    let history = r.history();
    assert_eq!(history.ops.len(), 2);
    assert_eq!(history.ops[1].outcome, crate::Outcome::Info);
    assert_eq!(history.ops[1].ret, None);
    assert_eq!(history.counts()["write"], [1, 0, 1]);

    r.invoke(1, "read", "x", Value::Null, 3)
        .invoke(1, "read", "x", Value::Null, 4);
    let error = History::from_events(&r.events).expect_err("p1 invoked twice");
    assert!(matches!(
        error,
        HistoryError::DoubleInvoke { process: 1, .. }
    ));
}

#[test]
fn sequential_register_history_is_linearizable() {
    let mut r = Recorder::default();
    r.invoke(1, "read", "x", Value::Null, 0)
        .ok(1, "read", "x", Value::Null, 1)
        .invoke(1, "write", "x", json!(1), 2)
        .ok(1, "write", "x", Value::Null, 3)
        .invoke(2, "read", "x", Value::Null, 4)
        .ok(2, "read", "x", json!(1), 5);
    assert_eq!(check(REGISTER, &r), Verdict::Valid);
}

#[test]
fn concurrent_reads_may_see_either_side_of_a_write() {
    let mut r = Recorder::default();
    r.invoke(1, "write", "x", json!(1), 0)
        .ok(1, "write", "x", Value::Null, 1)
        .invoke(1, "write", "x", json!(2), 10)
        .invoke(2, "read", "x", Value::Null, 11)
        .invoke(3, "read", "x", Value::Null, 12)
        .ok(2, "read", "x", json!(2), 13)
        .ok(3, "read", "x", json!(1), 14)
        .ok(1, "write", "x", Value::Null, 20);
    // p3 read 1 after p2 read 2: p3's read must come before the write, p2's after; both
    // overlap the write and each other, so the order read(p3), write, read(p2) works.
    assert_eq!(check(REGISTER, &r), Verdict::Valid);
}

#[test]
fn stale_read_after_an_acknowledged_write_is_rejected_with_an_explanation() {
    let mut r = Recorder::default();
    r.invoke(1, "write", "x", json!(1), 0)
        .ok(1, "write", "x", Value::Null, 1)
        .invoke(1, "write", "x", json!(2), 2)
        .ok(1, "write", "x", Value::Null, 3)
        .invoke(2, "read", "x", Value::Null, 4)
        .ok(2, "read", "x", json!(1), 5);
    let verdict = check(REGISTER, &r);
    assert_eq!(kinds(&verdict), vec![AnomalyKind::NotLinearizable]);
    let Verdict::Invalid(anomalies) = verdict else {
        unreachable!()
    };
    let text = &anomalies[0].explanation;
    assert!(text.contains("2 operations can be placed"), "{text}");
    assert!(text.contains("p2 read x -> ok 1"), "{text}");
    assert!(text.contains("state 2"), "{text}");
    assert_eq!(anomalies[0].key.as_deref(), Some("x"));
}

#[test]
fn a_write_lost_after_acknowledgement_is_rejected() {
    let mut r = Recorder::default();
    r.invoke(1, "write", "x", json!(1), 0)
        .ok(1, "write", "x", Value::Null, 1)
        .invoke(2, "read", "x", Value::Null, 2)
        .ok(2, "read", "x", Value::Null, 3);
    assert_eq!(
        kinds(&check(REGISTER, &r)),
        vec![AnomalyKind::NotLinearizable]
    );
}

#[test]
fn unknown_writes_may_take_effect_late_or_never_but_not_twice() {
    let mut r = Recorder::default();
    r.invoke(1, "write", "x", json!(1), 0)
        .info(1, "write", "x", 1)
        .invoke(2, "read", "x", Value::Null, 2)
        .ok(2, "read", "x", Value::Null, 3)
        .invoke(2, "read", "x", Value::Null, 4)
        .ok(2, "read", "x", json!(1), 5);
    assert_eq!(check(REGISTER, &r), Verdict::Valid, "took effect late");

    let mut never = Recorder::default();
    never
        .invoke(1, "write", "x", json!(1), 0)
        .info(1, "write", "x", 1)
        .invoke(2, "read", "x", Value::Null, 2)
        .ok(2, "read", "x", Value::Null, 3);
    assert_eq!(check(REGISTER, &never), Verdict::Valid, "never took effect");

    // Seen, then unseen, with no other write: impossible.
    r.invoke(2, "read", "x", Value::Null, 6)
        .ok(2, "read", "x", Value::Null, 7);
    assert_eq!(
        kinds(&check(REGISTER, &r)),
        vec![AnomalyKind::NotLinearizable]
    );
}

#[test]
fn failed_writes_have_no_effect() {
    let mut r = Recorder::default();
    r.invoke(1, "write", "x", json!(1), 0)
        .fail(1, "write", "x", "too-large", 1)
        .invoke(2, "read", "x", Value::Null, 2)
        .ok(2, "read", "x", json!(1), 3);
    assert_eq!(
        kinds(&check(REGISTER, &r)),
        vec![AnomalyKind::NotLinearizable]
    );
}

#[test]
fn compare_and_set_follows_the_register() {
    let mut r = Recorder::default();
    r.invoke(1, "write", "x", json!(1), 0)
        .ok(1, "write", "x", Value::Null, 1)
        .invoke(1, "cas", "x", json!([1, 2]), 2)
        .ok(1, "cas", "x", Value::Null, 3)
        .invoke(2, "cas", "x", json!([1, 3]), 4)
        .fail(2, "cas", "x", COMPARE_FAILED, 5)
        .invoke(2, "read", "x", Value::Null, 6)
        .ok(2, "read", "x", json!(2), 7);
    assert_eq!(check(CAS_REGISTER, &r), Verdict::Valid);

    // A swap from a value the register did not hold.
    let mut wrong = Recorder::default();
    wrong
        .invoke(1, "write", "x", json!(1), 0)
        .ok(1, "write", "x", Value::Null, 1)
        .invoke(1, "cas", "x", json!([5, 2]), 2)
        .ok(1, "cas", "x", Value::Null, 3);
    assert_eq!(
        kinds(&check(CAS_REGISTER, &wrong)),
        vec![AnomalyKind::NotLinearizable]
    );

    // A comparison reported false while the register held the expected value.
    let mut false_mismatch = Recorder::default();
    false_mismatch
        .invoke(1, "write", "x", json!(1), 0)
        .ok(1, "write", "x", Value::Null, 1)
        .invoke(1, "cas", "x", json!([1, 2]), 2)
        .fail(1, "cas", "x", COMPARE_FAILED, 3);
    assert_eq!(
        kinds(&check(CAS_REGISTER, &false_mismatch)),
        vec![AnomalyKind::NotLinearizable]
    );

    // An unknown swap may have happened.
    let mut unknown = Recorder::default();
    unknown
        .invoke(1, "cas", "x", json!([null, 9]), 0)
        .info(1, "cas", "x", 1)
        .invoke(2, "read", "x", Value::Null, 2)
        .ok(2, "read", "x", json!(9), 3);
    assert_eq!(check(CAS_REGISTER, &unknown), Verdict::Valid);

    assert!(
        matches!(check(REGISTER, &unknown), Verdict::Unknown(reason) if reason.contains("no operation \"cas\"")),
        "the plain register refuses cas"
    );
}

#[test]
fn keys_are_checked_apart_and_the_failing_key_is_named() {
    let mut r = Recorder::default();
    r.invoke(1, "write", "a", json!(1), 0)
        .ok(1, "write", "a", Value::Null, 1)
        .invoke(2, "write", "b", json!(1), 0)
        .ok(2, "write", "b", Value::Null, 1)
        .invoke(1, "read", "a", Value::Null, 2)
        .ok(1, "read", "a", json!(1), 3)
        .invoke(2, "read", "b", Value::Null, 2)
        .ok(2, "read", "b", json!(7), 3);
    let report = check_linearizable(&REGISTER, &r.history(), Budget::default());
    assert_eq!(report.parts, 2);
    assert_eq!(report.ops_checked, 4);
    let Verdict::Invalid(anomalies) = report.verdict else {
        panic!("key b read a value never written")
    };
    assert_eq!(anomalies.len(), 1);
    assert_eq!(anomalies[0].key.as_deref(), Some("b"));
}

#[test]
fn an_exhausted_budget_is_unknown_never_valid() {
    let mut r = Recorder::default();
    // Twelve concurrent writes and reads: valid, but more steps than the tiny budget.
    for p in 0..12 {
        r.invoke(p, "write", "x", json!(p), p);
    }
    for p in 0..12 {
        r.ok(p, "write", "x", Value::Null, 100 + p);
    }
    r.invoke(20, "read", "x", Value::Null, 200)
        .ok(20, "read", "x", json!(11), 201);
    let tiny = Budget {
        steps_max: 5,
        cache_entries_max: 1_000,
    };
    let verdict = check_linearizable(&REGISTER, &r.history(), tiny).verdict;
    assert!(
        matches!(verdict, Verdict::Unknown(ref reason) if reason.contains("budget")),
        "{verdict:?}"
    );
    assert_eq!(check(REGISTER, &r), Verdict::Valid);
}

#[test]
fn set_history_passes_when_nothing_is_lost_or_invented() {
    let mut r = Recorder::default();
    r.invoke(1, "add", "", json!(1), 0)
        .ok(1, "add", "", Value::Null, 1)
        .invoke(2, "add", "", json!(2), 0)
        .info(2, "add", "", 5)
        .invoke(3, "add", "", json!(3), 2)
        .fail(3, "add", "", "unavailable", 3)
        .invoke(4, "read", "", Value::Null, 10)
        .ok(4, "read", "", json!([1, 2]), 11);
    assert_eq!(check_set(&r.history(), true).verdict, Verdict::Valid);
}

#[test]
fn set_anomalies_are_each_named() {
    let mut r = Recorder::default();
    r.invoke(1, "add", "", json!(1), 0)
        .ok(1, "add", "", Value::Null, 1)
        .invoke(1, "add", "", json!(2), 2)
        .ok(1, "add", "", Value::Null, 3)
        .invoke(3, "add", "", json!(3), 2)
        .fail(3, "add", "", "unavailable", 3)
        // Misses 2 (acknowledged before), holds 3 (failed) and 9 (never added), 1 twice.
        .invoke(4, "read", "", Value::Null, 10)
        .ok(4, "read", "", json!([1, 1, 3, 9]), 11)
        // The final read misses 2.
        .invoke(4, "read", "", Value::Null, 20)
        .ok(4, "read", "", json!([1]), 21);
    let verdict = check_set(&r.history(), true).verdict;
    assert_eq!(
        kinds(&verdict),
        vec![
            AnomalyKind::Duplicate,
            AnomalyKind::Unexpected,
            AnomalyKind::StaleRead,
            AnomalyKind::LostWrite
        ]
    );
    // Without linearizable reads only the final read must be complete.
    assert_eq!(
        kinds(&check_set(&r.history(), false).verdict),
        vec![
            AnomalyKind::Duplicate,
            AnomalyKind::Unexpected,
            AnomalyKind::LostWrite
        ]
    );
}

#[test]
fn quorum_set_reads_must_hold_what_was_acknowledged_but_not_what_others_read() {
    // Goal: the `Acknowledged` demand of quorum reads (R+W>N): a read must hold every add
    // acknowledged before it began, but may miss one another read returned while its add was
    // still in flight. Method: the same histories judged by each demand.
    let mut r = Recorder::default();
    r.invoke(1, "add", "", json!(1), 0)
        .ok(1, "add", "", Value::Null, 1)
        .invoke(2, "add", "", json!(2), 2)
        .invoke(3, "read", "", Value::Null, 3)
        .ok(3, "read", "", json!([1, 2]), 4)
        // Misses 2, which only a read returned: fine for quorum reads, not linearizable.
        .invoke(4, "read", "", Value::Null, 5)
        .ok(4, "read", "", json!([1]), 6)
        .ok(2, "add", "", Value::Null, 7)
        .invoke(4, "read", "", Value::Null, 8)
        .ok(4, "read", "", json!([1, 2]), 9);
    let history = r.history();
    assert_eq!(
        check_set_with(&history, Reads::Acknowledged).verdict,
        Verdict::Valid
    );
    assert_eq!(
        kinds(&check_set_with(&history, Reads::Linearizable).verdict),
        vec![AnomalyKind::StaleRead]
    );
    // Missing an acknowledged add is stale for quorum reads too.
    let mut r = Recorder::default();
    r.invoke(1, "add", "", json!(1), 0)
        .ok(1, "add", "", Value::Null, 1)
        .invoke(2, "read", "", Value::Null, 2)
        .ok(2, "read", "", json!([]), 3)
        .invoke(2, "read", "", Value::Null, 4)
        .ok(2, "read", "", json!([1]), 5);
    assert_eq!(
        kinds(&check_set_with(&r.history(), Reads::Acknowledged).verdict),
        vec![AnomalyKind::StaleRead]
    );
    assert_eq!(
        check_set_with(&r.history(), Reads::FinalOnly).verdict,
        Verdict::Valid
    );
}

#[test]
fn set_element_seen_then_lost_is_a_lost_write_even_if_its_add_was_unknown() {
    let mut r = Recorder::default();
    r.invoke(1, "add", "", json!(1), 0)
        .info(1, "add", "", 1)
        .invoke(2, "read", "", Value::Null, 2)
        .ok(2, "read", "", json!([1]), 3)
        .invoke(2, "read", "", Value::Null, 4)
        .ok(2, "read", "", json!([]), 5);
    assert_eq!(
        kinds(&check_set(&r.history(), false).verdict),
        vec![AnomalyKind::LostWrite]
    );
}

#[test]
fn set_without_a_successful_read_is_unknown() {
    let mut r = Recorder::default();
    r.invoke(1, "add", "", json!(1), 0)
        .ok(1, "add", "", Value::Null, 1)
        .invoke(2, "read", "", Value::Null, 2)
        .info(2, "read", "", 3);
    assert!(matches!(
        check_set(&r.history(), true).verdict,
        Verdict::Unknown(_)
    ));
}

#[test]
fn bank_reads_must_conserve_the_total_without_negative_balances() {
    let mut r = Recorder::default();
    r.invoke(0, "init", "", json!({"a": 10, "b": 10}), 0)
        .ok(0, "init", "", Value::Null, 1)
        .invoke(
            1,
            "transfer",
            "",
            json!({"from": "a", "to": "b", "amount": 3}),
            2,
        )
        .ok(1, "transfer", "", Value::Null, 3)
        .invoke(2, "read", "", Value::Null, 4)
        .ok(2, "read", "", json!({"a": 7, "b": 13}), 5);
    assert_eq!(check_bank(&r.history()).verdict, Verdict::Valid);

    r.invoke(2, "read", "", Value::Null, 6)
        .ok(2, "read", "", json!({"a": 7, "b": 10}), 7)
        .invoke(2, "read", "", Value::Null, 8)
        .ok(2, "read", "", json!({"a": -1, "b": 21}), 9)
        .invoke(2, "read", "", Value::Null, 10)
        .ok(2, "read", "", json!({"a": 20}), 11);
    assert_eq!(
        kinds(&check_bank(&r.history()).verdict),
        vec![
            AnomalyKind::TotalNotConserved,
            AnomalyKind::NegativeBalance,
            AnomalyKind::WrongAccounts
        ]
    );

    let mut no_init = Recorder::default();
    no_init
        .invoke(2, "read", "", Value::Null, 4)
        .ok(2, "read", "", json!({"a": 7}), 5);
    assert!(matches!(
        check_bank(&no_init.history()).verdict,
        Verdict::Unknown(_)
    ));
}

/// A watch history: puts at revisions 2..=6 (keys a, b alternating), a final read at 6, and
/// the given watcher responses of p10 after it opened from revision 2.
fn watch_history(responses: &[Value]) -> History {
    let mut r = Recorder::default();
    for (i, revision) in (2..=6).enumerate() {
        let key = if i % 2 == 0 { "a" } else { "b" };
        let t = 10 * i as u64;
        r.invoke(1, "put", key, json!(revision * 10), t);
        r.ok(1, "put", key, Value::Null, t + 1);
        r.events.last_mut().expect("pushed").revision = Some(revision);
    }
    r.invoke(10, "watch-open", "", json!({"from": 2}), 0)
        .ok(10, "watch-open", "", Value::Null, 0);
    for (i, response) in responses.iter().enumerate() {
        let t = 100 + i as u64;
        r.invoke(10, "watch-events", "", Value::Null, t).ok(
            10,
            "watch-events",
            "",
            response.clone(),
            t,
        );
    }
    r.invoke(2, "read", "", Value::Null, 200)
        .ok(2, "read", "", json!([]), 201);
    r.events.last_mut().expect("pushed").revision = Some(6);
    r.history()
}

#[test]
fn watch_deliveries_in_order_once_and_complete_pass() {
    let history = watch_history(&[
        json!([[2, "a", 20], [3, "b", 30]]),
        json!([[4, "a", 40]]),
        json!([[5, "b", 50], [6, "a", 60]]),
    ]);
    assert_eq!(check_watch(&history).verdict, Verdict::Valid);
}

#[test]
fn watch_anomalies_are_each_named() {
    let cases = [
        // Revision 4 skipped.
        (
            vec![
                json!([[2, "a", 20], [3, "b", 30]]),
                json!([[5, "b", 50], [6, "a", 60]]),
            ],
            vec![AnomalyKind::Gap],
        ),
        // Stops short of the final revision.
        (
            vec![json!([
                [2, "a", 20],
                [3, "b", 30],
                [4, "a", 40],
                [5, "b", 50]
            ])],
            vec![AnomalyKind::Gap],
        ),
        // Revision 3 twice (a resume from the wrong revision).
        (
            vec![
                json!([[2, "a", 20], [3, "b", 30]]),
                json!([[3, "b", 30], [4, "a", 40], [5, "b", 50], [6, "a", 60]]),
            ],
            vec![AnomalyKind::Duplicate],
        ),
        // Revision 3 after 4.
        (
            vec![json!([
                [2, "a", 20],
                [4, "a", 40],
                [3, "b", 30],
                [5, "b", 50],
                [6, "a", 60]
            ])],
            vec![AnomalyKind::Reordered],
        ),
        // Revision 4 delivered with another value than was written.
        (
            vec![json!([
                [2, "a", 20],
                [3, "b", 30],
                [4, "a", 41],
                [5, "b", 50],
                [6, "a", 60]
            ])],
            vec![AnomalyKind::Unexpected],
        ),
    ];
    for (responses, expected) in cases {
        let verdict = check_watch(&watch_history(&responses)).verdict;
        assert_eq!(kinds(&verdict), expected, "{responses:?}");
    }
}

#[test]
fn a_revision_split_over_responses_is_rejected() {
    // A transaction's two events at revision 7 must arrive in one response.
    let mut history = watch_history(&[
        json!([
            [2, "a", 20],
            [3, "b", 30],
            [4, "a", 40],
            [5, "b", 50],
            [6, "a", 60],
            [7, "x", 1]
        ]),
        json!([[7, "y", 2]]),
    ]);
    for op in &mut history.ops {
        if op.f == "read" {
            op.revision = Some(7);
        }
    }
    assert_eq!(
        kinds(&check_watch(&history).verdict),
        vec![AnomalyKind::SplitRevision]
    );
}

#[test]
fn watch_without_a_final_read_is_unknown() {
    let mut history = watch_history(&[json!([[2, "a", 20]])]);
    history.ops.retain(|op| op.f != "read");
    assert!(matches!(check_watch(&history).verdict, Verdict::Unknown(_)));
}

/// A lock history of fenced writes `(process, hold, token, step, revision)`, in that order.
fn lock_history(writes: &[(u64, i64, i64, i64, i64)]) -> History {
    let mut r = Recorder::default();
    for (i, &(p, hold, token, step, revision)) in writes.iter().enumerate() {
        let t = 10 * i as u64;
        let value = json!({"hold": hold, "token": token, "step": step});
        r.invoke(p, "fenced-write", "", value, t);
        r.ok(p, "fenced-write", "", Value::Null, t + 1);
        r.events.last_mut().expect("pushed").revision = Some(revision);
    }
    r.history()
}

#[test]
fn fenced_writes_of_successive_holds_pass() {
    let history = lock_history(&[
        (1, 1, 5, 0, 6),
        (1, 1, 5, 1, 7),
        (2, 2, 8, 0, 9),
        (2, 2, 8, 1, 10),
        // A hold whose second write failed, then the next one.
        (3, 3, 11, 0, 12),
        (1, 4, 14, 0, 15),
        (1, 4, 14, 1, 16),
    ]);
    assert_eq!(check_lock(&history).verdict, Verdict::Valid);
}

#[test]
fn interleaved_holds_and_stale_tokens_are_rejected() {
    let interleaved = lock_history(&[
        (1, 1, 5, 0, 6),
        (2, 2, 8, 0, 7),
        (1, 1, 5, 1, 9),
        (2, 2, 8, 1, 10),
    ]);
    let verdict = check_lock(&interleaved).verdict;
    assert!(
        kinds(&verdict).contains(&AnomalyKind::MutualExclusion),
        "{verdict:?}"
    );
    assert!(
        kinds(&verdict).contains(&AnomalyKind::StaleToken),
        "{verdict:?}"
    );

    let stale = lock_history(&[
        (2, 2, 8, 0, 9),
        (2, 2, 8, 1, 10),
        (1, 1, 5, 0, 11),
        (1, 1, 5, 1, 12),
    ]);
    let found = kinds(&check_lock(&stale).verdict);
    assert!(
        !found.is_empty() && found.iter().all(|k| *k == AnomalyKind::StaleToken),
        "{found:?}"
    );
    assert!(matches!(
        check_lock(&lock_history(&[])).verdict,
        Verdict::Unknown(_)
    ));
}

/// Sets the revision of the last event.
fn at_revision(r: &mut Recorder, revision: i64) {
    r.events.last_mut().expect("pushed").revision = Some(revision);
}

#[test]
fn revisions_follow_real_time_and_writes_never_share_one() {
    let mut r = Recorder::default();
    r.invoke(1, "write", "a", json!(1), 0)
        .ok(1, "write", "a", Value::Null, 1);
    at_revision(&mut r, 2);
    r.invoke(2, "write", "b", json!(1), 2)
        .ok(2, "write", "b", Value::Null, 3);
    at_revision(&mut r, 3);
    // Concurrent with nothing after it: the read sees revision 3.
    r.invoke(1, "read", "a", Value::Null, 4)
        .ok(1, "read", "a", json!(1), 5);
    at_revision(&mut r, 3);
    assert_eq!(check_revisions(&r.history()).verdict, Verdict::Valid);

    // A later read answering from revision 2 after revision 3 was seen.
    r.invoke(2, "read", "b", Value::Null, 6)
        .ok(2, "read", "b", json!(1), 7);
    at_revision(&mut r, 2);
    // A second write claiming revision 3.
    r.invoke(3, "write", "c", json!(1), 8)
        .ok(3, "write", "c", Value::Null, 9);
    at_revision(&mut r, 3);
    let found = kinds(&check_revisions(&r.history()).verdict);
    assert!(found.contains(&AnomalyKind::RevisionOrder), "{found:?}");
    assert!(found.contains(&AnomalyKind::DuplicateRevision), "{found:?}");
}

/// One operation of a generated sequential run: what it did and where its window lies.
#[derive(Clone, Debug)]
struct Planned {
    process: u64,
    write: Option<i64>,
    /// How far the call lies before, and the return after, the linearization point.
    lead: u64,
    lag: u64,
}

fn planned() -> impl Strategy<Value = Vec<Planned>> {
    prop::collection::vec(
        (0u64..5, prop::option::of(0i64..4), 0u64..40, 0u64..40).prop_map(
            |(process, write, lead, lag)| Planned {
                process,
                write,
                lead,
                lag,
            },
        ),
        1..40,
    )
}

/// Runs the plan on a real register, each operation taking effect at time 100·i, with its
/// window stretched around that point; a process never overlaps itself. Returns the events
/// and, per read, the value it returned.
fn execute(plan: &[Planned]) -> Vec<Event> {
    let mut value = Value::Null;
    let mut busy_until = [0u64; 5];
    let mut timed: Vec<(u64, Event)> = Vec::new();
    for (i, op) in plan.iter().enumerate() {
        let point = 100 * (i as u64 + 1);
        let p = op.process as usize;
        let call = (point - op.lead).max(busy_until[p] + 1);
        let ret = point + op.lag;
        busy_until[p] = ret;
        let (f, input, output) = match op.write {
            Some(v) => {
                value = json!(v);
                ("write", json!(v), Value::Null)
            }
            None => ("read", Value::Null, value.clone()),
        };
        let proc_ = op.process;
        timed.push((
            call,
            Event::new(proc_, EventType::Invoke, f, Some("x"), input, call),
        ));
        timed.push((
            ret,
            Event::new(proc_, EventType::Ok, f, Some("x"), output, ret),
        ));
    }
    timed.sort_by_key(|(t, e)| (*t, e.event_type != EventType::Invoke));
    timed.into_iter().map(|(_, e)| e).collect()
}

proptest! {
    #[test]
    fn histories_of_a_sequential_register_always_pass(plan in planned()) {
        let events = execute(&plan);
        let history = History::from_events(&events).expect("one op at a time per process");
        let verdict = check_linearizable(&REGISTER, &history, Budget::default()).verdict;
        prop_assert_eq!(verdict, Verdict::Valid);
    }

    #[test]
    fn a_read_mutated_to_an_unwritten_value_never_passes(plan in planned(), pick in any::<prop::sample::Index>()) {
        let mut events = execute(&plan);
        let reads: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| e.f == "read" && e.event_type == EventType::Ok)
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!reads.is_empty());
        events[reads[pick.index(reads.len())]].value = json!(99);
        let history = History::from_events(&events).expect("one op at a time per process");
        let verdict = check_linearizable(&REGISTER, &history, Budget::default()).verdict;
        prop_assert!(matches!(verdict, Verdict::Invalid(_)), "{:?}", verdict);
    }
}

/// Milliseconds, in the history's nanoseconds.
const MS: u64 = 1_000_000;

#[test]
fn follower_reads_within_their_bound_pass_and_older_ones_are_stale() {
    use crate::staleness::{FOLLOWER_READ, check_staleness};
    // x = 1 acknowledged by 10 ms, x = 2 written from 20 to 30 ms.
    let writes = || {
        let mut r = Recorder::default();
        r.invoke(1, "write", "x", json!(1), 0)
            .ok(1, "write", "x", Value::Null, 10 * MS)
            .invoke(1, "write", "x", json!(2), 20 * MS)
            .ok(1, "write", "x", Value::Null, 30 * MS);
        r
    };
    let bound = json!({"staleness_ms": 100});
    // 100 ms after x = 2 was acknowledged, reading 1 is within a 100 ms bound...
    let mut r = writes();
    r.invoke(2, FOLLOWER_READ, "x", bound.clone(), 120 * MS)
        .ok(2, FOLLOWER_READ, "x", json!(1), 121 * MS)
        .invoke(2, FOLLOWER_READ, "x", bound.clone(), 125 * MS)
        .ok(2, FOLLOWER_READ, "x", Value::Null, 126 * MS);
    let report = check_staleness(&r.history());
    // ... but "absent" is not: x = 1 was acknowledged 115 ms before that read began.
    assert_eq!(kinds(&report.verdict), vec![AnomalyKind::StaleRead]);
    assert_eq!(report.ops_checked, 2);
    // 200 ms after, reading 1 is stale; 2 and a value never written are judged apart.
    let mut r = writes();
    r.invoke(2, FOLLOWER_READ, "x", bound.clone(), 200 * MS)
        .ok(2, FOLLOWER_READ, "x", json!(1), 201 * MS)
        .invoke(2, FOLLOWER_READ, "x", bound.clone(), 202 * MS)
        .ok(2, FOLLOWER_READ, "x", json!(2), 203 * MS)
        .invoke(2, FOLLOWER_READ, "x", bound.clone(), 204 * MS)
        .ok(2, FOLLOWER_READ, "x", json!(9), 205 * MS);
    let verdict = check_staleness(&r.history()).verdict;
    assert_eq!(
        kinds(&verdict),
        vec![AnomalyKind::StaleRead, AnomalyKind::Unexpected]
    );
    // A write of unknown outcome may take effect any time after it began: reading it is
    // explained, and it overwrites nothing for certain.
    let mut r = writes();
    r.invoke(3, "write", "x", json!(3), 40 * MS)
        .info(3, "write", "x", 50 * MS)
        .invoke(2, FOLLOWER_READ, "x", bound.clone(), 500 * MS)
        .ok(2, FOLLOWER_READ, "x", json!(3), 501 * MS)
        .invoke(2, FOLLOWER_READ, "x", bound, 502 * MS)
        .ok(2, FOLLOWER_READ, "x", json!(2), 503 * MS);
    assert_eq!(check_staleness(&r.history()).verdict, Verdict::Valid);
    // The register model leaves follower reads to this checker.
    assert_eq!(check(REGISTER, &r), Verdict::Valid);
}

/// The history a whole-cluster kill leaves on one key: `n` writes of 1..=n, each from its own
/// process and each cut off (indeterminate), then one read at the end finding the key absent.
fn killed_writes(n: u64) -> Recorder {
    let mut r = Recorder::default();
    for p in 1..=n {
        r.invoke(p, "write", "x", json!(p), p);
    }
    r.invoke(0, "read", "x", Value::Null, n + 1)
        .ok(0, "read", "x", Value::Null, n + 2);
    r
}

#[test]
fn lost_writes_of_a_killed_cluster_took_no_effect() {
    // Goal: the history of a whole-cluster kill (issue #37) is judged valid whatever its size,
    // where the search used to try every subset of the cut-off writes. Method: the synthetic
    // history for several sizes, up to a thousand writes.
    for n in [1, 2, 10, 20, 100, 1000] {
        assert_eq!(
            check(REGISTER, &killed_writes(n)),
            Verdict::Valid,
            "n = {n}"
        );
        assert_eq!(
            check(CAS_REGISTER, &killed_writes(n)),
            Verdict::Valid,
            "n = {n}"
        );
    }
}

#[test]
fn reads_after_a_kill_still_find_what_no_write_explains() {
    // Goal: leaving cut-off writes out never hides an anomaly. Method: the synthetic history
    // with a thousand writes, and reads appended that no order of them explains.
    let n = 1000;
    let mut unwritten = killed_writes(n);
    unwritten
        .invoke(0, "read", "x", Value::Null, n + 3)
        .ok(0, "read", "x", json!(0), n + 4);
    assert_eq!(
        kinds(&check(REGISTER, &unwritten)),
        vec![AnomalyKind::NotLinearizable]
    );

    // A failed comparison at the end could have seen any of the writes, so none is left out
    // before the search; the search still places one only right before what needs it.
    let mut compared = killed_writes(n);
    compared
        .invoke(0, "cas", "x", json!([0, 1]), n + 3)
        .fail(0, "cas", "x", COMPARE_FAILED, n + 4);
    assert_eq!(check(CAS_REGISTER, &compared), Verdict::Valid);
    compared
        .invoke(0, "read", "x", Value::Null, n + 5)
        .ok(0, "read", "x", json!(0), n + 6);
    assert_eq!(
        kinds(&check(CAS_REGISTER, &compared)),
        vec![AnomalyKind::NotLinearizable]
    );

    // A cut-off write seen, then the older absent value again.
    let mut back = Recorder::default();
    for p in 1..=n {
        back.invoke(p, "write", "x", json!(p), p);
    }
    back.invoke(0, "read", "x", Value::Null, n + 1)
        .ok(0, "read", "x", json!(7), n + 2)
        .invoke(0, "read", "x", Value::Null, n + 3)
        .ok(0, "read", "x", Value::Null, n + 4);
    assert_eq!(
        kinds(&check(REGISTER, &back)),
        vec![AnomalyKind::NotLinearizable]
    );

    // Seen, overwritten, seen again: one write cannot take effect twice.
    let mut twice = Recorder::default();
    for p in 1..=n {
        twice.invoke(p, "write", "x", json!(p), p);
    }
    for (i, value) in [7, 9, 7].into_iter().enumerate() {
        let t = n + 1 + 2 * i as u64;
        twice
            .invoke(0, "read", "x", Value::Null, t)
            .ok(0, "read", "x", json!(value), t + 1);
    }
    assert_eq!(
        kinds(&check(CAS_REGISTER, &twice)),
        vec![AnomalyKind::NotLinearizable]
    );
}

#[test]
fn a_cut_off_write_that_was_read_is_placed() {
    // Goal: a cut-off write whose value a read returned is kept and placed, before that read
    // and after its own call. Method: reads of two of a thousand cut-off writes' values, in
    // either order; and one of a write invoked only after the read returned.
    let n = 1000;
    let mut r = Recorder::default();
    for p in 1..=n {
        r.invoke(p, "write", "x", json!(p), p);
    }
    r.invoke(0, "read", "x", Value::Null, n + 1)
        .ok(0, "read", "x", json!(500), n + 2)
        .invoke(0, "read", "x", Value::Null, n + 3)
        .ok(0, "read", "x", json!(3), n + 4);
    assert_eq!(check(REGISTER, &r), Verdict::Valid);

    let mut late = Recorder::default();
    late.invoke(0, "read", "x", Value::Null, 0)
        .ok(0, "read", "x", json!(1), 1)
        .invoke(1, "write", "x", json!(1), 2);
    assert_eq!(
        kinds(&check(REGISTER, &late)),
        vec![AnomalyKind::NotLinearizable]
    );
}

#[test]
fn cut_off_compare_and_sets_are_placed_when_a_result_needs_them() {
    // Goal: chains of cut-off operations that explain a result are found, and compare-failed
    // answers count as observing every other value. Method: small histories, each valid only
    // through its cut-off operations, then the same without them or contradicted.
    let mut chain = Recorder::default();
    for p in 10..60 {
        chain.invoke(p, "write", "x", json!(p), p);
    }
    chain
        .invoke(1, "write", "x", json!(1), 0)
        .invoke(2, "cas", "x", json!([1, 2]), 1)
        .invoke(3, "cas", "x", json!([2, 3]), 2)
        .invoke(0, "read", "x", Value::Null, 100)
        .ok(0, "read", "x", json!(3), 101);
    assert_eq!(
        check(CAS_REGISTER, &chain),
        Verdict::Valid,
        "write, cas, cas"
    );

    // Without the write of 1 the swaps can never happen.
    let mut no_start = Recorder::default();
    no_start
        .invoke(2, "cas", "x", json!([1, 2]), 1)
        .invoke(3, "cas", "x", json!([2, 3]), 2)
        .invoke(0, "read", "x", Value::Null, 100)
        .ok(0, "read", "x", json!(3), 101);
    assert_eq!(
        kinds(&check(CAS_REGISTER, &no_start)),
        vec![AnomalyKind::NotLinearizable]
    );

    // A successful swap from the value of a cut-off write.
    let mut swap = Recorder::default();
    swap.invoke(1, "write", "x", json!(1), 0)
        .invoke(2, "cas", "x", json!([1, 2]), 1)
        .ok(2, "cas", "x", Value::Null, 2);
    assert_eq!(
        check(CAS_REGISTER, &swap),
        Verdict::Valid,
        "swap needs the write"
    );

    // A comparison that failed although only 1 was ever acknowledged: a cut-off write of 2
    // explains it, a cut-off compare-and-set from 1 as well; nothing explains it without them.
    let mismatch = |cut_off: Option<(&str, Value)>, read_after: Option<i64>| {
        let mut r = Recorder::default();
        r.invoke(1, "write", "x", json!(1), 0)
            .ok(1, "write", "x", Value::Null, 1);
        if let Some((f, input)) = cut_off {
            r.invoke(2, f, "x", input, 2);
        }
        r.invoke(3, "cas", "x", json!([1, 3]), 3)
            .fail(3, "cas", "x", COMPARE_FAILED, 4);
        if let Some(value) = read_after {
            r.invoke(3, "read", "x", Value::Null, 5)
                .ok(3, "read", "x", json!(value), 6);
        }
        check(CAS_REGISTER, &r)
    };
    assert_eq!(mismatch(Some(("write", json!(2))), None), Verdict::Valid);
    assert_eq!(mismatch(Some(("cas", json!([1, 5]))), None), Verdict::Valid);
    assert_eq!(mismatch(Some(("write", json!(2))), Some(2)), Verdict::Valid);
    for (cut_off, read_after) in [
        (None, None),
        (Some(("write", json!(1))), None),
        (Some(("write", json!(2))), Some(1)),
        (Some(("cas", json!([2, 5]))), None),
    ] {
        assert_eq!(
            kinds(&mismatch(cut_off.clone(), read_after)),
            vec![AnomalyKind::NotLinearizable],
            "{cut_off:?} then read {read_after:?}"
        );
    }
}

/// A monitor that stops the check after `keys_max` keys and records the progress reported.
struct StopAfter {
    keys_max: usize,
    reported: Vec<(usize, usize)>,
}

impl Monitor for StopAfter {
    fn should_stop(&mut self) -> bool {
        self.reported.len() >= self.keys_max
    }
    fn progress(&mut self, done: usize, total: usize) {
        self.reported.push((done, total));
    }
}

#[test]
fn a_stopped_check_is_unknown_and_names_the_keys_left() {
    // Goal: the caller's deadline ends the check as unknown naming the unjudged keys, while an
    // anomaly already found still makes it invalid. Method: three keys, a monitor that stops
    // after the first one; key a is valid or invalid.
    let history = |a_read: i64| {
        let mut r = Recorder::default();
        for key in ["a", "b", "c"] {
            r.invoke(1, "write", key, json!(1), 0)
                .ok(1, "write", key, Value::Null, 1);
        }
        r.invoke(1, "read", "a", Value::Null, 2)
            .ok(1, "read", "a", json!(a_read), 3);
        r.history()
    };
    let mut monitor = StopAfter {
        keys_max: 1,
        reported: Vec::new(),
    };
    let report =
        check_linearizable_monitored(&REGISTER, &history(1), Budget::default(), &mut monitor);
    assert_eq!(monitor.reported, vec![(1, 3)]);
    assert!(
        matches!(&report.verdict, Verdict::Unknown(reason) if reason.contains("2 of 3 keys unjudged: b, c")),
        "{:?}",
        report.verdict
    );

    let mut monitor = StopAfter {
        keys_max: 1,
        reported: Vec::new(),
    };
    let report =
        check_linearizable_monitored(&REGISTER, &history(9), Budget::default(), &mut monitor);
    assert_eq!(kinds(&report.verdict), vec![AnomalyKind::NotLinearizable]);

    // The monitor is asked inside a long search too: fourteen concurrent writes and a read of
    // a value none wrote make the search try every order of the writes.
    let mut r = Recorder::default();
    for p in 0..14 {
        r.invoke(p, "write", "x", json!(p), 0);
    }
    for p in 0..14 {
        r.ok(p, "write", "x", Value::Null, 1);
    }
    r.invoke(20, "read", "x", Value::Null, 2)
        .ok(20, "read", "x", json!(99), 3);
    struct SecondQuestion(usize);
    impl Monitor for SecondQuestion {
        fn should_stop(&mut self) -> bool {
            self.0 += 1;
            self.0 >= 2
        }
    }
    let mut second = SecondQuestion(0);
    let report =
        check_linearizable_monitored(&REGISTER, &r.history(), Budget::default(), &mut second);
    assert!(
        matches!(&report.verdict, Verdict::Unknown(reason) if reason.contains("1 of 1 keys unjudged: x")),
        "{:?}",
        report.verdict
    );
    assert_eq!(
        second.0, 2,
        "asked before the key and once inside its search"
    );
}

/// Whether some order of one key's operations is legal for `model`, by trying every order
/// of every subset that holds all completed operations: the definition, with no search
/// rule, for small histories only.
fn linearizable_by_brute_force(model: &Register, ops: &[Operation]) -> bool {
    fn extend(
        model: &Register,
        ops: &[(Operation, RegisterOp)],
        placed: &mut [bool],
        state: &Datum,
    ) -> bool {
        let pending = |placed: &[bool], j: usize| !placed[j] && ops[j].0.ret.is_some();
        if !(0..ops.len()).any(|j| pending(placed, j)) {
            return true;
        }
        for i in 0..ops.len() {
            let blocked = (0..ops.len()).any(|j| {
                j != i && pending(placed, j) && ops[j].0.ret.is_some_and(|ret| ret < ops[i].0.call)
            });
            if placed[i] || blocked {
                continue;
            }
            if let Some(next) = model.step(state, &ops[i].1) {
                placed[i] = true;
                if extend(model, ops, placed, &next) {
                    return true;
                }
                placed[i] = false;
            }
        }
        false
    }
    let converted: Vec<(Operation, RegisterOp)> = ops
        .iter()
        .filter_map(|op| Some((op.clone(), model.convert(op).expect("fits the model")?)))
        .collect();
    extend(
        model,
        &converted,
        &mut vec![false; converted.len()],
        &model.init(),
    )
}

/// One operation of a random small history: kind, two values, outcome, call, length.
type RandomOp = (u8, Option<i64>, Option<i64>, u8, u64, u64);

/// One operation of a random small history on one key.
fn random_op() -> impl Strategy<Value = RandomOp> {
    (
        0u8..3,
        prop::option::of(0i64..3),
        prop::option::of(0i64..3),
        0u8..10,
        0u64..16,
        0u64..8,
    )
}

/// A history of one key from `random_op`s, each from its own process: a read, write or
/// compare-and-set of small values, completed ok (half), cut off (a third) or compare-failed.
fn random_history(ops: &[RandomOp]) -> History {
    let mut r = Recorder::default();
    for (p, &(f, a, b, outcome, call, length)) in ops.iter().enumerate() {
        let p = p as u64;
        let (f, input) = match f {
            0 => ("read", Value::Null),
            1 => ("write", json!(a)),
            _ => ("cas", json!([a, b])),
        };
        r.invoke(p, f, "x", input, call);
        match outcome {
            0..5 if f == "read" => r.ok(p, f, "x", json!(a), call + length),
            0..5 => r.ok(p, f, "x", Value::Null, call + length),
            5..8 => &mut r,
            _ => r.fail(p, f, "x", COMPARE_FAILED, call + length),
        };
    }
    r.history()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn the_search_agrees_with_brute_force_on_cut_off_operations(ops in prop::collection::vec(random_op(), 1..8)) {
        // Goal: the rules that leave indeterminate operations out change no verdict. Method:
        // random small histories rich in cut-off writes and compare-and-sets, judged by the
        // search and by trying every order.
        let history = random_history(&ops);
        let expected = linearizable_by_brute_force(&CAS_REGISTER, &history.ops);
        let verdict = check_linearizable(&CAS_REGISTER, &history, Budget::default()).verdict;
        prop_assert_eq!(verdict.is_valid(), expected, "{:?}", verdict);
        prop_assert!(!matches!(verdict, Verdict::Unknown(_)));
    }
}
