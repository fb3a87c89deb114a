//! Unit and property tests of the crate: version-vector order laws, the merge laws and
//! write-preservation of objects on states made by simulated replicas (never arbitrary
//! junk), last-writer-wins order independence, and codec round trips and refusals.

use base::HlcTimestamp;
use proptest::prelude::*;

use crate::{
    Causality, Conflicts, DecodeError, Dot, Object, Sibling, VersionVector, decode_object,
    encode_object,
};

/// The actor id of each simulated replica (by index).
const ACTORS: [u64; 3] = [0xa, 0xb, 0xc];

fn ts(physical: u64) -> HlcTimestamp {
    HlcTimestamp {
        physical,
        logical: 0,
    }
}

/// Writes `value` through `actor` as a client that read `context`; the one place tests call
/// `update`.
fn put(
    object: &mut Object,
    context: &VersionVector,
    actor: u64,
    physical: u64,
    value: Option<&str>,
    conflicts: Conflicts,
) -> Dot {
    let value = value.map(|v| v.as_bytes().to_vec());
    object.update(context, actor, ts(physical), value, conflicts)
}

fn merged(left: &Object, right: &Object, conflicts: Conflicts) -> Object {
    let mut out = left.clone();
    out.merge(right, conflicts);
    out
}

fn values(object: &Object) -> Vec<&str> {
    object
        .live_values()
        .iter()
        .filter_map(|s| s.value.as_deref())
        .map(|v| std::str::from_utf8(v).expect("tests write UTF-8"))
        .collect()
}

fn lww_rank(sibling: &Sibling) -> (HlcTimestamp, u64, u64) {
    (sibling.timestamp, sibling.dot.actor, sibling.dot.counter)
}

// ---- Simulated replicas ----

#[derive(Clone, Debug)]
enum Step {
    /// Replica `at` coordinates a write whose client read history state `read` (modulo the
    /// history's length), at physical time `physical`; `delete` writes a tombstone.
    Write {
        at: usize,
        read: usize,
        physical: u64,
        delete: bool,
    },
    /// Replica `to` takes in replica `from`'s state.
    Sync { from: usize, to: usize },
    /// Replica `at` prunes tombstones older than `older_than`.
    Prune { at: usize, older_than: u64 },
}

/// Three replicas after a run, every state any of them passed through, and every write made
/// with the context its client had read.
struct Sim {
    replicas: [Object; 3],
    history: Vec<Object>,
    writes: Vec<(Dot, VersionVector)>,
}

fn simulate(steps: &[Step], conflicts: Conflicts) -> Sim {
    let mut sim = Sim {
        replicas: Default::default(),
        history: vec![Object::new()],
        writes: Vec::new(),
    };
    for step in steps {
        match *step {
            Step::Write {
                at,
                read,
                physical,
                delete,
            } => {
                let context = sim.history[read % sim.history.len()].context.clone();
                let replica = &mut sim.replicas[at];
                let counter = replica.context.get(ACTORS[at]) + 1;
                // The value names its dot, so one dot always carries one value.
                let value = format!("{:x}:{counter}", ACTORS[at]);
                let value = (!delete).then_some(value.as_str());
                let dot = put(replica, &context, ACTORS[at], physical, value, conflicts);
                assert_eq!(dot.counter, counter, "the value named the wrong dot");
                sim.writes.push((dot, context));
                sim.history.push(sim.replicas[at].clone());
            }
            Step::Sync { from, to } => {
                let from = sim.replicas[from].clone();
                sim.replicas[to].merge(&from, conflicts);
                sim.history.push(sim.replicas[to].clone());
            }
            Step::Prune { at, older_than } => {
                sim.replicas[at].prune_tombstones(ts(older_than));
                sim.history.push(sim.replicas[at].clone());
            }
        }
    }
    sim
}

/// Random runs of writes and syncs, and pruning when `prune` is set. Pruning early (before
/// every replica has the tombstone) is outside what lost-write freedom and LWW merge order
/// promise, so only the sibling-mode merge laws run with it.
fn steps_pruning(prune: bool) -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![
        3 => (0..3usize, any::<usize>(), 0..8u64, prop::bool::weighted(0.2)).prop_map(
            |(at, read, physical, delete)| Step::Write { at, read, physical, delete }
        ),
        2 => (0..3usize, 0..3usize).prop_map(|(from, to)| Step::Sync { from, to }),
        u32::from(prune) => (0..3usize, 0..10u64)
            .prop_map(|(at, older_than)| Step::Prune { at, older_than }),
    ];
    prop::collection::vec(step, 0..40)
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    steps_pruning(false)
}

fn conflicts() -> impl Strategy<Value = Conflicts> {
    prop_oneof![Just(Conflicts::Siblings), Just(Conflicts::Lww)]
}

fn vv() -> impl Strategy<Value = VersionVector> {
    prop::collection::btree_map(0u64..5, 0u64..5, 0..5).prop_map(|entries| {
        entries
            .into_iter()
            .map(|(actor, counter)| Dot { actor, counter })
            .collect()
    })
}

// ---- Version vectors ----

#[test]
fn compare_names_each_relation_and_zero_entries_are_not_stored() {
    // Goal: the four relations come out right, and a zero counter never makes two equal
    // vectors differ. Method: hand-picked vectors.
    let vv = |dots: &[(u64, u64)]| -> VersionVector {
        dots.iter()
            .map(|&(actor, counter)| Dot { actor, counter })
            .collect()
    };
    let a = vv(&[(1, 2)]);
    let b = vv(&[(1, 2), (2, 1)]);
    let c = vv(&[(1, 1), (2, 2)]);
    assert_eq!(a.compare(&a), Causality::Equal);
    assert_eq!(a.compare(&b), Causality::Before);
    assert_eq!(b.compare(&a), Causality::After);
    assert_eq!(a.compare(&c), Causality::Concurrent);
    assert_eq!(vv(&[(3, 0), (1, 2)]), a);
    assert_eq!(vv(&[(3, 0)]), VersionVector::new());
    assert!(VersionVector::new().is_empty());
    assert!(b.covers(&Dot {
        actor: 2,
        counter: 1
    }));
    assert!(!b.covers(&Dot {
        actor: 2,
        counter: 2
    }));
    assert_eq!(b.iter().collect::<Vec<_>>(), vec![(1, 2), (2, 1)]);
}

proptest! {
    /// Goal: join is a semilattice join (commutative, associative, idempotent) and its result
    /// is the least vector descending both. Method: random small vectors.
    #[test]
    fn join_is_commutative_associative_idempotent_and_least(a in vv(), b in vv(), c in vv()) {
        let join = |x: &VersionVector, y: &VersionVector| {
            let mut out = x.clone();
            out.join(y);
            out
        };
        prop_assert_eq!(join(&a, &b), join(&b, &a));
        prop_assert_eq!(join(&join(&a, &b), &c), join(&a, &join(&b, &c)));
        prop_assert_eq!(join(&a, &a), a.clone());
        let ab = join(&a, &b);
        prop_assert!(ab.descends(&a) && ab.descends(&b));
        if c.descends(&a) && c.descends(&b) {
            prop_assert!(c.descends(&ab));
        }
    }

    /// Goal: descends is a partial order and compare agrees with it. Method: random small
    /// vectors, every pair and triple.
    #[test]
    fn descends_is_a_partial_order_and_compare_agrees(a in vv(), b in vv(), c in vv()) {
        prop_assert!(a.descends(&a));
        if a.descends(&b) && b.descends(&a) {
            prop_assert_eq!(&a, &b);
        }
        if a.descends(&b) && b.descends(&c) {
            prop_assert!(a.descends(&c));
        }
        let expected = match (a.descends(&b), b.descends(&a)) {
            (true, true) => Causality::Equal,
            (true, false) => Causality::After,
            (false, true) => Causality::Before,
            (false, false) => Causality::Concurrent,
        };
        prop_assert_eq!(a.compare(&b), expected);
        let mirrored = match expected {
            Causality::Before => Causality::After,
            Causality::After => Causality::Before,
            other => other,
        };
        prop_assert_eq!(b.compare(&a), mirrored);
    }
}

// ---- Objects: unit cases ----

#[test]
fn a_put_with_a_read_context_replaces_exactly_the_siblings_that_read_saw() {
    // Goal: a put removes the siblings its read saw and nothing else. Method: two concurrent
    // writes a, b become siblings; a client reads them; a third write c lands after the read;
    // the client's put must leave c and its own value.
    let mut replica = Object::new();
    put(
        &mut replica,
        &VersionVector::new(),
        1,
        1,
        Some("a"),
        Conflicts::Siblings,
    );
    let mut other = Object::new();
    put(
        &mut other,
        &VersionVector::new(),
        2,
        1,
        Some("b"),
        Conflicts::Siblings,
    );
    replica.merge(&other, Conflicts::Siblings);
    assert_eq!(values(&replica), vec!["a", "b"]);
    let read = replica.context.clone();

    let mut alone = replica.clone();
    put(&mut alone, &read, 1, 2, Some("ab"), Conflicts::Siblings);
    assert_eq!(
        values(&alone),
        vec!["ab"],
        "a put that saw {{a, b}} leaves one sibling"
    );

    put(
        &mut replica,
        &VersionVector::new(),
        3,
        2,
        Some("c"),
        Conflicts::Siblings,
    );
    put(&mut replica, &read, 1, 3, Some("ab"), Conflicts::Siblings);
    assert_eq!(
        values(&replica),
        vec!["ab", "c"],
        "c was not seen, so it stays"
    );
}

#[test]
fn a_write_superseded_through_another_coordinator_does_not_come_back() {
    // Goal: the read context joins the coordinator's, so a replica that never held the
    // superseded write still refuses it on sync. Method: read x from replica 1, write through
    // replica 2, then sync replica 1 into 2 and 2 into 1.
    let mut first = Object::new();
    put(
        &mut first,
        &VersionVector::new(),
        1,
        1,
        Some("x"),
        Conflicts::Siblings,
    );
    let mut second = Object::new();
    put(
        &mut second,
        &first.context,
        2,
        2,
        Some("y"),
        Conflicts::Siblings,
    );
    let stale = first.clone();
    first.merge(&second, Conflicts::Siblings);
    second.merge(&stale, Conflicts::Siblings);
    assert_eq!(values(&first), vec!["y"]);
    assert_eq!(first, second);
}

#[test]
fn concurrent_writers_through_one_coordinator_leave_one_sibling_each() {
    // Goal: no sibling explosion and no lost write through a single coordinator. Method: five
    // clients read the same state and write through actor 1; then a client that read
    // everything writes once.
    let mut replica = Object::new();
    put(
        &mut replica,
        &VersionVector::new(),
        1,
        1,
        Some("base"),
        Conflicts::Siblings,
    );
    let read = replica.context.clone();
    for i in 0..5 {
        put(
            &mut replica,
            &read,
            1,
            2,
            Some(&format!("w{i}")),
            Conflicts::Siblings,
        );
    }
    assert_eq!(values(&replica), vec!["w0", "w1", "w2", "w3", "w4"]);
    let all = replica.context.clone();
    let dot = put(&mut replica, &all, 1, 3, Some("last"), Conflicts::Siblings);
    assert_eq!(values(&replica), vec!["last"]);
    assert_eq!(
        dot,
        Dot {
            actor: 1,
            counter: 7
        }
    );
}

#[test]
fn a_context_ahead_of_the_coordinator_still_gets_a_fresh_dot() {
    // Goal: a coordinator that lost its state does not reuse a dot a client has seen, and a
    // forged huge counter neither overflows nor poisons the counter. Method: write through
    // actor 1 with contexts claiming 5 and u64::MAX writes of actor 1.
    let mut amnesiac = Object::new();
    let seen: VersionVector = [Dot {
        actor: 1,
        counter: 5,
    }]
    .into_iter()
    .collect();
    let dot = put(&mut amnesiac, &seen, 1, 1, Some("x"), Conflicts::Siblings);
    assert_eq!(
        dot,
        Dot {
            actor: 1,
            counter: 6
        }
    );
    let forged: VersionVector = [Dot {
        actor: 1,
        counter: u64::MAX,
    }]
    .into_iter()
    .collect();
    let dot = put(&mut amnesiac, &forged, 1, 2, Some("y"), Conflicts::Siblings);
    assert_eq!(dot.counter, crate::CLAIMED_COUNTER_MAX + 1);
    let again = put(&mut amnesiac, &forged, 1, 3, Some("z"), Conflicts::Siblings);
    assert_eq!(again.counter, crate::CLAIMED_COUNTER_MAX + 2);
    assert_eq!(values(&amnesiac), vec!["y", "z"]);
}

#[test]
fn a_delete_hides_the_value_and_pruning_keeps_the_context() {
    // Goal: a tombstone supersedes what it saw, is pruned only when it is the last sibling and
    // old enough, and the kept context stops a stale copy from resurrecting the value.
    // Method: put on one replica, copy it to a second, delete on the first, prune, merge the
    // stale copy back.
    let mut replica = Object::new();
    put(
        &mut replica,
        &VersionVector::new(),
        1,
        1,
        Some("v"),
        Conflicts::Siblings,
    );
    let stale = replica.clone();
    let read = replica.context.clone();
    put(&mut replica, &read, 1, 10, None, Conflicts::Siblings);
    assert!(replica.is_deleted());
    assert!(replica.live_values().is_empty());
    assert_eq!(replica.siblings.len(), 1);

    let mut concurrent = replica.clone();
    put(
        &mut concurrent,
        &VersionVector::new(),
        2,
        5,
        Some("w"),
        Conflicts::Siblings,
    );
    assert!(
        !concurrent.prune_tombstones(ts(100)),
        "a live sibling keeps the tombstone"
    );
    assert_eq!(concurrent.siblings.len(), 2);

    assert!(
        !replica.prune_tombstones(ts(10)),
        "not older than the grace period"
    );
    assert!(replica.prune_tombstones(ts(11)));
    assert!(replica.siblings.is_empty());
    let two_writes: VersionVector = [Dot {
        actor: 1,
        counter: 2,
    }]
    .into_iter()
    .collect();
    assert_eq!(
        replica.context, two_writes,
        "the context outlives the tombstone"
    );
    replica.merge(&stale, Conflicts::Siblings);
    assert!(
        replica.is_deleted(),
        "the stale copy must not resurrect the value"
    );
}

#[test]
fn lww_keeps_the_greatest_timestamp_then_actor_then_counter() {
    // Goal: ties on timestamp are broken by actor, then counter, the same on every replica.
    // Method: concurrent writes with equal and unequal timestamps, merged both ways.
    let lww = Conflicts::Lww;
    let write = |actor, physical, value| {
        let mut object = Object::new();
        put(
            &mut object,
            &VersionVector::new(),
            actor,
            physical,
            Some(value),
            lww,
        );
        object
    };
    let (early, tie_low, tie_high) = (
        write(9, 1, "early"),
        write(1, 2, "low"),
        write(2, 2, "high"),
    );
    for (a, b) in [
        (&early, &tie_low),
        (&tie_low, &tie_high),
        (&early, &tie_high),
    ] {
        assert_eq!(merged(a, b, lww), merged(b, a, lww));
    }
    assert_eq!(values(&merged(&early, &tie_low, lww)), vec!["low"]);
    assert_eq!(values(&merged(&tie_low, &tie_high, lww)), vec!["high"]);
    let mut local = tie_high.clone();
    let ctx = local.context.clone();
    put(
        &mut local,
        &ctx,
        2,
        2,
        Some("same time, later counter"),
        lww,
    );
    assert_eq!(values(&local), vec!["same time, later counter"]);
}

#[test]
fn lww_merge_order_does_not_matter_when_a_later_write_has_an_earlier_clock() {
    // Goal: with clock skew, a write that read `w` but got a smaller timestamp than `w` must
    // not make the merge result depend on order. Had that write superseded `w` through its
    // context, (a+b)+c would give c and (a+c)+b would give a. Method: three replicas, every
    // merge order.
    let lww = Conflicts::Lww;
    let mut a = Object::new();
    put(&mut a, &VersionVector::new(), 1, 1, Some("a"), lww);
    let mut b = Object::new();
    put(&mut b, &VersionVector::new(), 2, 2, Some("w"), lww);
    let mut c = Object::new();
    put(&mut c, &b.context, 3, 0, Some("c"), lww);
    let orders = [
        [&a, &b, &c],
        [&a, &c, &b],
        [&b, &c, &a],
        [&b, &a, &c],
        [&c, &a, &b],
        [&c, &b, &a],
    ];
    for order in orders {
        let result = merged(&merged(order[0], order[1], lww), order[2], lww);
        assert_eq!(values(&result), vec!["w"], "order {order:?}");
    }
}

#[test]
fn supersedes_or_equals_finds_the_copies_read_repair_must_fix() {
    // Goal: an older or concurrent copy is stale, an equal or newer one is not. Method: a
    // write, a later write that read it, and a concurrent write.
    let mut old = Object::new();
    put(
        &mut old,
        &VersionVector::new(),
        1,
        1,
        Some("old"),
        Conflicts::Siblings,
    );
    let mut new = old.clone();
    let ctx = new.context.clone();
    put(&mut new, &ctx, 2, 2, Some("new"), Conflicts::Siblings);
    let mut concurrent = Object::new();
    put(
        &mut concurrent,
        &VersionVector::new(),
        3,
        2,
        Some("c"),
        Conflicts::Siblings,
    );
    assert!(new.supersedes_or_equals(&old));
    assert!(new.supersedes_or_equals(&new));
    assert!(!old.supersedes_or_equals(&new));
    assert!(!new.supersedes_or_equals(&concurrent));
    assert!(Object::new().supersedes_or_equals(&Object::new()));
    assert!(!Object::new().supersedes_or_equals(&old));

    // A copy that still holds a tombstone another replica pruned has the same context, yet
    // merging the pruned copy would drop the tombstone: it is stale.
    let mut deleted = new.clone();
    let ctx = deleted.context.clone();
    put(&mut deleted, &ctx, 2, 3, None, Conflicts::Siblings);
    let mut pruned = deleted.clone();
    assert!(pruned.prune_tombstones(ts(4)));
    assert!(pruned.supersedes_or_equals(&deleted));
    assert!(!deleted.supersedes_or_equals(&pruned));
}

// ---- Objects: properties over simulated replicas ----

proptest! {
    /// Goal: merge is commutative, associative and idempotent, as states, in both modes (and
    /// in sibling mode also with pruned replicas). Method: three states a simulated run passed
    /// through (so they share one history).
    #[test]
    fn merge_is_commutative_associative_and_idempotent(
        (conflicts, steps) in conflicts()
            .prop_flat_map(|c| (Just(c), steps_pruning(c == Conflicts::Siblings))),
        picks in any::<[usize; 3]>(),
    ) {
        let sim = simulate(&steps, conflicts);
        let [a, b, c] = picks.map(|i| &sim.history[i % sim.history.len()]);
        prop_assert_eq!(merged(a, b, conflicts), merged(b, a, conflicts));
        prop_assert_eq!(
            merged(&merged(a, b, conflicts), c, conflicts),
            merged(a, &merged(b, c, conflicts), conflicts)
        );
        prop_assert_eq!(&merged(a, a, conflicts), a);
    }

    /// Goal: no write is lost and none comes back: after all replicas merge, a write is still
    /// a sibling exactly when no later write's client read a context covering it (superseded
    /// by a writer that saw it). Method: random simulated runs in sibling mode.
    #[test]
    fn a_write_stands_exactly_when_no_later_writer_saw_it(steps in steps()) {
        let sim = simulate(&steps, Conflicts::Siblings);
        let mut all = Object::new();
        for replica in &sim.replicas {
            all.merge(replica, Conflicts::Siblings);
        }
        for (dot, _) in &sim.writes {
            prop_assert!(all.context.covers(dot), "{dot} was forgotten");
            let standing = all.dots().any(|d| d == *dot);
            let superseded = sim.writes.iter().any(|(later, read)| later != dot && read.covers(dot));
            prop_assert!(standing || superseded, "{dot} was lost: {all:?}");
            prop_assert!(!(standing && superseded), "{dot} came back: {all:?}");
        }
        for replica in &sim.replicas {
            prop_assert!(all.supersedes_or_equals(replica));
        }
    }

    /// Goal: k writers that read one state and write through one coordinator leave exactly
    /// the coordinator's unseen siblings plus k, and a write that read everything leaves one.
    /// Method: a simulated run, then the burst on one replica with an earlier state's context.
    #[test]
    fn a_burst_of_blind_writes_adds_one_sibling_each(
        steps in steps(), at in 0..3usize, read in any::<usize>(), k in 1..6usize,
    ) {
        let sim = simulate(&steps, Conflicts::Siblings);
        let read = sim.history[read % sim.history.len()].context.clone();
        let mut replica = sim.replicas[at].clone();
        let unseen = replica.siblings.iter().filter(|s| !read.covers(&s.dot)).count();
        let unseen_live = replica.live_values().iter().filter(|s| !read.covers(&s.dot)).count();
        for i in 0..k {
            put(&mut replica, &read, ACTORS[at], 100, Some(&format!("burst {i}")), Conflicts::Siblings);
        }
        prop_assert_eq!(replica.siblings.len(), unseen + k);
        prop_assert_eq!(replica.live_values().len(), unseen_live + k);
        let everything = replica.context.clone();
        put(&mut replica, &everything, ACTORS[at], 101, Some("after"), Conflicts::Siblings);
        prop_assert_eq!(values(&replica), vec!["after"]);
    }

    /// Goal: in LWW mode every merge order of the replicas ends at the one sibling with the
    /// greatest (timestamp, actor, counter) any replica holds. Method: simulated LWW runs,
    /// all six orders of the three final replicas.
    #[test]
    fn lww_merge_keeps_the_greatest_sibling_in_any_order(steps in steps()) {
        let sim = simulate(&steps, Conflicts::Lww);
        let best = sim.replicas.iter().flat_map(|r| &r.siblings).max_by_key(|s| lww_rank(s));
        for order in [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
            let mut all = Object::new();
            for i in order {
                all.merge(&sim.replicas[i], Conflicts::Lww);
            }
            prop_assert!(all.siblings.len() <= 1);
            prop_assert_eq!(all.siblings.first(), best, "order {:?}", order);
        }
    }

    /// Goal: supersedes_or_equals answers exactly "merging would change nothing". Method:
    /// pairs of states from simulated runs.
    #[test]
    fn supersedes_or_equals_agrees_with_merge(
        steps in steps(), conflicts in conflicts(), picks in any::<[usize; 2]>(),
    ) {
        let sim = simulate(&steps, conflicts);
        let [a, b] = picks.map(|i| &sim.history[i % sim.history.len()]);
        prop_assert_eq!(a.supersedes_or_equals(b), &merged(a, b, conflicts) == a);
    }
}

// ---- Codec ----

#[test]
fn the_encoding_is_pinned_byte_for_byte() {
    // Goal: format version 1 does not drift. Method: one object with a value and a tombstone,
    // compared with hand-written bytes.
    let mut object = Object::new();
    put(
        &mut object,
        &VersionVector::new(),
        1,
        300,
        Some("hi"),
        Conflicts::Siblings,
    );
    put(
        &mut object,
        &VersionVector::new(),
        2,
        5,
        None,
        Conflicts::Siblings,
    );
    let expected = [
        1, // version
        2, 1, 1, 2, 1, // context {1: 1, 2: 1}
        2, // siblings
        1, 1, 0xac, 0x02, 0, 1, 2, b'h', b'i', // (1, 1) at 300.0, value "hi"
        2, 1, 5, 0, 0, // (2, 1) at 5.0, tombstone
    ];
    assert_eq!(encode_object(&object), expected);
    assert_eq!(decode_object(&expected), Ok(object));
}

#[test]
fn broken_encodings_are_refused_with_the_reason() {
    // Goal: each kind of damage gets its own error. Method: hand-made inputs.
    use DecodeError::*;
    let dot = |actor, counter| Dot { actor, counter };
    let cases: &[(&[u8], DecodeError)] = &[
        (
            &[],
            Truncated {
                what: "format version",
                offset: 0,
            },
        ),
        (&[2, 0, 0], UnsupportedVersion { found: 2 }),
        (
            &[1, 0, 0, 7],
            TrailingBytes {
                offset: 3,
                count: 1,
            },
        ),
        (
            &[1, 1, 4, 0, 0],
            ZeroCounter {
                actor: 4,
                offset: 2,
            },
        ),
        (
            &[1, 2, 4, 1, 4, 2, 0],
            DuplicateActor {
                actor: 4,
                offset: 4,
            },
        ),
        (
            &[1, 2, 4, 1, 3, 2, 0],
            UnsortedActors {
                previous: 4,
                actor: 3,
                offset: 4,
            },
        ),
        (
            &[1, 1, 4, 2, 1, 4, 0, 0, 0, 0],
            ZeroCounter {
                actor: 4,
                offset: 5,
            },
        ),
        (
            &[1, 1, 4, 2, 2, 4, 1, 0, 0, 0, 4, 1, 0, 0, 0],
            DuplicateSibling {
                dot: dot(4, 1),
                offset: 10,
            },
        ),
        (
            &[1, 1, 4, 2, 2, 4, 2, 0, 0, 0, 4, 1, 0, 0, 0],
            UnsortedSiblings {
                previous: dot(4, 2),
                dot: dot(4, 1),
                offset: 10,
            },
        ),
        (
            &[1, 1, 4, 2, 1, 4, 3, 0, 0, 0],
            SiblingOutsideContext {
                dot: dot(4, 3),
                offset: 5,
            },
        ),
        (
            &[1, 1, 4, 1, 1, 4, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0],
            LogicalOverflow {
                value: 1 << 32,
                offset: 8,
            },
        ),
        (
            &[1, 1, 4, 1, 1, 4, 1, 0, 0, 9],
            UnknownSiblingKind { kind: 9, offset: 9 },
        ),
        (
            &[1, 1, 4, 1, 1, 4, 1, 0, 0, 1, 3, b'a'],
            Truncated {
                what: "value",
                offset: 12,
            },
        ),
        (&[1, 0x80, 0], VarintNotMinimal { offset: 1 }),
        (
            &[
                1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
            ],
            VarintOverflow { offset: 1 },
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            decode_object(bytes).as_ref(),
            Err(expected),
            "bytes {bytes:?}"
        );
    }
    assert_eq!(
        ZeroCounter {
            actor: 4,
            offset: 2
        }
        .to_string(),
        "actor 4 has counter 0 at byte 2; counters start at 1"
    );
}

#[test]
fn tokens_round_trip_and_garbage_is_refused() {
    // Goal: tokens are short, lowercase and strict. Method: the empty vector, a small one,
    // and damaged tokens.
    use DecodeError::*;
    assert_eq!(VersionVector::new().to_token(), "v1.00");
    let vv: VersionVector = [Dot {
        actor: 0xa,
        counter: 300,
    }]
    .into_iter()
    .collect();
    assert_eq!(vv.to_token(), "v1.010aac02");
    assert_eq!(VersionVector::from_token("v1.010aac02"), Ok(vv));
    let cases = [
        ("", TokenPrefix),
        ("v2.00", TokenPrefix),
        (
            "v1.",
            Truncated {
                what: "version vector length",
                offset: 0,
            },
        ),
        ("v1.0", TokenOddLength { digits: 1 }),
        (
            "v1.0A",
            TokenNotHex {
                position: 4,
                found: 'A',
            },
        ),
        (
            "v1.0é",
            TokenNotHex {
                position: 4,
                found: 'é',
            },
        ),
        (
            "v1.0000",
            TrailingBytes {
                offset: 1,
                count: 1,
            },
        ),
        (
            "v1.010a00",
            ZeroCounter {
                actor: 0xa,
                offset: 1,
            },
        ),
    ];
    for (token, expected) in cases {
        assert_eq!(
            VersionVector::from_token(token),
            Err(expected),
            "token {token:?}"
        );
    }
}

proptest! {
    /// Goal: every simulated state survives encode and decode unchanged, and every strict
    /// prefix of its encoding is refused as truncated (not accepted, not a panic). Method:
    /// states from simulated runs in both modes.
    #[test]
    fn objects_round_trip_and_every_truncation_is_refused(
        steps in steps(), conflicts in conflicts(), pick in any::<usize>(),
    ) {
        let sim = simulate(&steps, conflicts);
        let object = &sim.history[pick % sim.history.len()];
        let bytes = encode_object(object);
        prop_assert_eq!(&decode_object(&bytes), &Ok(object.clone()));
        for len in 0..bytes.len() {
            let refused = matches!(decode_object(&bytes[..len]), Err(DecodeError::Truncated { .. }));
            prop_assert!(refused, "prefix of {} bytes", len);
        }
    }

    /// Goal: the decoder never panics, and whatever it accepts is canonical (encodes back to
    /// the same bytes). Method: valid encodings with one byte changed, and raw bytes.
    #[test]
    fn damaged_or_random_bytes_never_panic_and_accepted_bytes_are_canonical(
        steps in steps(), at in any::<usize>(), byte in any::<u8>(),
        raw in prop::collection::vec(any::<u8>(), 0..48),
    ) {
        let sim = simulate(&steps, Conflicts::Siblings);
        let mut damaged = encode_object(sim.history.last().expect("history starts non-empty"));
        let at = at % damaged.len();
        damaged[at] = byte;
        let mut versioned = raw.clone();
        versioned.insert(0, 1);
        for bytes in [damaged, raw, versioned] {
            if let Ok(object) = decode_object(&bytes) {
                prop_assert_eq!(encode_object(&object), bytes);
            }
        }
    }

    /// Goal: tokens round trip for any vector, including huge ids and counters. Method:
    /// random vectors over the whole u64 range.
    #[test]
    fn tokens_round_trip(entries in prop::collection::btree_map(any::<u64>(), 1..=u64::MAX, 0..6)) {
        let vv: VersionVector = entries
            .into_iter()
            .map(|(actor, counter)| Dot { actor, counter })
            .collect();
        prop_assert_eq!(VersionVector::from_token(&vv.to_token()), Ok(vv));
    }

    /// Goal: any string is either refused or a canonical token. Method: random strings,
    /// half of them with the right prefix.
    #[test]
    fn random_tokens_never_panic_and_accepted_ones_are_canonical(
        body in "[0-9a-fA-F.xé]{0,24}", prefixed in any::<bool>(),
    ) {
        let token = if prefixed { format!("v1.{body}") } else { body };
        if let Ok(vv) = VersionVector::from_token(&token) {
            prop_assert_eq!(vv.to_token(), token);
        }
    }
}
