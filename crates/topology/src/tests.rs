//! The topology rules' transitions: ring changes step by step (switch after the last
//! required handoff, refusals that change nothing), bucket creation (idempotent, first ring
//! installed once) and deletion, and bucket names.

use proto::quorate::raft::v1 as pb;
use proto::quorate::v1::Refusal;

use crate::*;

fn tokens(members: &[u64]) -> Vec<pb::RingToken> {
    members
        .iter()
        .map(|m| pb::RingToken {
            token: m * 1000,
            member: *m,
        })
        .collect()
}

fn start(from_epoch: u64, next: &[u64], required: &[u64]) -> pb::RingChange {
    pb::RingChange {
        step: Some(pb::ring_change::Step::Start(pb::RingStart {
            from_epoch,
            next: tokens(next),
            required: required.to_vec(),
            description: "add member 4".into(),
        })),
    }
}

fn handed(epoch: u64, member: u64) -> pb::RingChange {
    pb::RingChange {
        step: Some(pb::ring_change::Step::HandedOff(pb::HandedOff {
            epoch,
            member,
        })),
    }
}

#[test]
fn a_ring_change_switches_after_every_required_handoff_and_refuses_out_of_turn_steps() {
    // Goal: the ring switches exactly when the last required member handed off, and stale
    // or duplicate steps change nothing. Method: walk a change through its steps.
    let mut topology = pb::Topology {
        ring: tokens(&[1, 2, 3]),
        vnodes: 1,
        ..Default::default()
    };
    let abort = pb::RingChange {
        step: Some(pb::ring_change::Step::Abort(true)),
    };
    assert!(!apply_ring_change(&mut topology, &abort).refusal.is_empty());
    assert!(
        !apply_ring_change(&mut topology, &handed(0, 1))
            .refusal
            .is_empty()
    );
    let started = apply_ring_change(&mut topology, &start(0, &[1, 2, 3, 4], &[1, 2, 3, 4]));
    assert_eq!((started.refusal.as_str(), started.epoch), ("", 1));
    let second = apply_ring_change(&mut topology, &start(1, &[1, 2], &[1, 2]));
    assert!(second.refusal.contains("in progress"), "{second:?}");
    assert_eq!(second.refusal_kind, Refusal::Busy as i32);
    // A handoff for another epoch or from a member not required is refused.
    assert!(
        !apply_ring_change(&mut topology, &handed(0, 1))
            .refusal
            .is_empty()
    );
    assert!(
        !apply_ring_change(&mut topology, &handed(1, 9))
            .refusal
            .is_empty()
    );
    for member in [1, 2, 2, 3] {
        let reply = apply_ring_change(&mut topology, &handed(1, member));
        assert_eq!((reply.refusal.as_str(), reply.epoch), ("", 1));
        assert_eq!(topology.ring, tokens(&[1, 2, 3]), "switched too early");
    }
    let last = apply_ring_change(&mut topology, &handed(1, 4));
    assert_eq!((last.refusal.as_str(), last.epoch), ("", 2));
    assert_eq!(topology.ring, tokens(&[1, 2, 3, 4]));
    assert_eq!(topology.pending, None);
    // A start computed from an older epoch is refused; an abort drops a pending change.
    let stale = apply_ring_change(&mut topology, &start(1, &[1, 2, 3], &[1, 2, 3, 4]));
    assert!(stale.refusal.contains("moved on"), "{stale:?}");
    assert_eq!(stale.refusal_kind, Refusal::Stale as i32);
    assert_eq!(
        apply_ring_change(&mut topology, &start(2, &[1, 2, 3], &[1, 2, 3, 4])).epoch,
        3
    );
    assert_eq!(apply_ring_change(&mut topology, &abort).epoch, 4);
    assert_eq!(topology.ring, tokens(&[1, 2, 3, 4]));
    assert_eq!(topology.pending, None);
}

fn bucket(name: &str, n: u32) -> proto::quorate::v1::Bucket {
    proto::quorate::v1::Bucket {
        name: name.to_owned(),
        n,
        ..Default::default()
    }
}

fn create(bucket: proto::quorate::v1::Bucket, ring: &[u64]) -> pb::BucketChange {
    pb::BucketChange {
        change: Some(pb::bucket_change::Change::Create(bucket)),
        initial_ring: tokens(ring),
        vnodes: 1,
        range_replicas: Vec::new(),
    }
}

#[test]
fn a_bucket_is_created_once_with_the_first_ring_and_refused_with_another_definition() {
    // Goal: creation is idempotent for one definition, the first create installs the ring and
    // later ones never replace it. Method: create, create again, create differently, delete.
    let mut topology = pb::Topology::default();
    let first = apply_bucket_change(&mut topology, &create(bucket("users", 3), &[1, 2, 3]));
    assert_eq!(first.refusal, "");
    assert_eq!(topology.ring, tokens(&[1, 2, 3]));
    let again = apply_bucket_change(&mut topology, &create(bucket("users", 3), &[7]));
    assert_eq!(
        (again.refusal.as_str(), again.bucket),
        ("", Some(bucket("users", 3)))
    );
    assert_eq!(
        topology.ring,
        tokens(&[1, 2, 3]),
        "the ring is installed once"
    );
    let other = apply_bucket_change(&mut topology, &create(bucket("users", 2), &[]));
    assert_eq!(
        other.refusal,
        "bucket \"users\" already exists with another definition"
    );
    assert_eq!(other.refusal_kind, Refusal::Exists as i32);
    apply_bucket_change(&mut topology, &create(bucket("carts", 1), &[]));
    let names: Vec<&str> = topology.buckets.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["carts", "users"], "kept sorted by name");
    let delete = |name: &str| pb::BucketChange {
        change: Some(pb::bucket_change::Change::Delete(name.to_owned())),
        ..Default::default()
    };
    assert_eq!(
        apply_bucket_change(&mut topology, &delete("users")).refusal,
        ""
    );
    let gone = apply_bucket_change(&mut topology, &delete("users"));
    assert_eq!(gone.refusal, "bucket \"users\" not found");
    assert_eq!(gone.refusal_kind, Refusal::NotFound as i32);
}

#[test]
fn a_consensus_bucket_gets_its_first_range_and_loses_its_ranges_with_it() {
    // Goal: a consensus bucket's create installs one range over all its keys on the proposed
    // replicas (and no ring); its delete drops them; a create with no replicas is refused
    // whole. Method: create, inspect, delete, create badly.
    let mut topology = pb::Topology::default();
    let orders = proto::quorate::v1::Bucket {
        r#type: proto::quorate::v1::BucketType::Consensus as i32,
        ..bucket("orders", 3)
    };
    let mut change = create(orders.clone(), &[]);
    change.range_replicas = vec![1, 2, 3];
    assert_eq!(apply_bucket_change(&mut topology, &change).refusal, "");
    assert!(topology.ring.is_empty(), "consensus buckets use no ring");
    let map = bucket_ranges(&topology, "orders").unwrap().unwrap();
    let first = map.lookup(b"any key");
    assert_eq!(
        (first.start.as_slice(), first.end.as_deref()),
        (&b""[..], None)
    );
    let members: Vec<u64> = first.replicas.iter().map(|r| r.member.0).collect();
    assert_eq!(members, [1, 2, 3]);
    assert_eq!(
        apply_bucket_change(&mut topology, &change).refusal,
        "",
        "idempotent"
    );
    assert_eq!(topology.ranges.len(), 1);
    let delete = pb::BucketChange {
        change: Some(pb::bucket_change::Change::Delete("orders".to_owned())),
        ..Default::default()
    };
    assert_eq!(apply_bucket_change(&mut topology, &delete).refusal, "");
    assert!(topology.ranges.is_empty());
    let empty = create(orders, &[]);
    let refused = apply_bucket_change(&mut topology, &empty);
    assert!(
        refused.refusal.starts_with("the first range of \"orders\""),
        "{}",
        refused.refusal
    );
    assert_eq!(refused.refusal_kind, Refusal::Invalid as i32);
    assert!(topology.buckets.is_empty() && topology.ranges.is_empty());
}

#[test]
fn bucket_names_are_short_and_plain() {
    assert_eq!(validate_bucket_name("users.v2_a-b"), Ok(()));
    assert_eq!(
        validate_bucket_name("").unwrap_err().to_string(),
        "bucket name must be 1 to 64 bytes, got 0"
    );
    assert!(validate_bucket_name(&"x".repeat(65)).is_err());
    assert_eq!(
        validate_bucket_name("a/b").unwrap_err().to_string(),
        "bucket name \"a/b\" contains '/'; use letters, digits, '.', '_' and '-'"
    );
}

#[test]
fn every_member_of_either_ring_hands_off_but_an_unreachable_one() {
    assert_eq!(
        required_handoffs([3, 1, 2], [4, 2, 1], None),
        vec![1, 2, 3, 4]
    );
    assert_eq!(required_handoffs([3, 1, 2], [1, 2], Some(3)), vec![1, 2]);
}

fn range_change(
    bucket: &str,
    range: u64,
    generation: u64,
    change: pb::range_change::Change,
) -> pb::RangeChange {
    pb::RangeChange {
        bucket: bucket.to_owned(),
        range,
        generation,
        change: Some(change),
    }
}

#[test]
fn a_consensus_bucket_starts_as_one_range_and_changes_by_generation() {
    use base::NodeId;
    use pb::range_change::Change;
    let mut topology = pb::Topology::default();
    let voters = [NodeId(1), NodeId(2), NodeId(3)];
    let first = create_bucket_ranges(&mut topology, "orders", &voters).expect("create");
    assert_eq!(
        (first.id, first.generation, first.end.clone()),
        (1, 1, None)
    );
    assert_eq!(first.replicas.len(), 3);
    // Applied twice (a replayed create), it keeps what it has.
    assert_eq!(
        create_bucket_ranges(&mut topology, "orders", &voters).expect("again"),
        first
    );
    let other = create_bucket_ranges(&mut topology, "users", &voters).expect("create");
    assert_eq!(other.id, 2, "range ids are cluster-wide");

    let split = apply_range_change(
        &mut topology,
        &range_change("orders", 1, 1, Change::SplitAt(b"m".to_vec())),
    );
    assert_eq!(split.refusal, "");
    let ids: Vec<(u64, u64)> = split.ranges.iter().map(|r| (r.id, r.generation)).collect();
    assert_eq!(ids, vec![(1, 2), (3, 2)]);
    assert_eq!(topology.next_range_id, 4);
    let map = bucket_ranges(&topology, "orders")
        .expect("valid")
        .expect("ranges");
    assert_eq!(map.lookup(b"z").id.0, 3);

    // Made for the old generation: refused, nothing changes.
    let before = topology.clone();
    let stale = apply_range_change(
        &mut topology,
        &range_change("orders", 1, 1, Change::SplitAt(b"c".to_vec())),
    );
    assert!(stale.refusal.contains("generation 2"), "{}", stale.refusal);
    assert_eq!(stale.refusal_kind, Refusal::Stale as i32);
    assert_eq!(topology, before);

    let learner = apply_range_change(
        &mut topology,
        &range_change("orders", 3, 2, Change::AddLearner(4)),
    );
    assert_eq!(learner.refusal, "");
    assert!(
        learner.ranges[0]
            .replicas
            .iter()
            .any(|r| r.member == 4 && r.learner)
    );
    let differ = apply_range_change(
        &mut topology,
        &range_change("orders", 1, 2, Change::MergeRightGeneration(3)),
    );
    assert!(
        differ.refusal.contains("different replicas"),
        "{}",
        differ.refusal
    );
    assert_eq!(differ.refusal_kind, Refusal::Invalid as i32);
    let removed = apply_range_change(
        &mut topology,
        &range_change("orders", 3, 3, Change::Remove(4)),
    );
    assert_eq!(removed.refusal, "");
    // A bump (a merge given up) moves the right range to its next generation, so a merge
    // proposed for the generation before is refused.
    let bumped = apply_range_change(
        &mut topology,
        &range_change("orders", 3, 4, Change::Bump(true)),
    );
    assert_eq!(bumped.refusal, "");
    assert_eq!(bumped.ranges[0].generation, 5);
    let stale = apply_range_change(
        &mut topology,
        &range_change("orders", 1, 2, Change::MergeRightGeneration(4)),
    );
    assert!(stale.refusal.contains("generation"), "{}", stale.refusal);
    let merged = apply_range_change(
        &mut topology,
        &range_change("orders", 1, 2, Change::MergeRightGeneration(5)),
    );
    assert_eq!(merged.refusal, "");
    assert_eq!((merged.ranges[0].id, merged.ranges[0].generation), (1, 6));
    assert_eq!(merged.ranges[0].end, None);
    // The other bucket was never touched; stored order is (bucket, start).
    let stored: Vec<(&str, u64)> = topology
        .ranges
        .iter()
        .map(|r| (r.bucket.as_str(), r.id))
        .collect();
    assert_eq!(stored, vec![("orders", 1), ("users", 2)]);
    // The merged range names the right neighbour's generation (what a leader finishing the
    // merge fetches), and keeps naming it through a replica change committed before its group
    // applied the merge (found by the range simulation: otherwise the merge could never
    // finish).
    let named = |topology: &pb::Topology| {
        topology
            .ranges
            .iter()
            .find(|r| r.bucket == "orders" && r.id == 1)
            .map(|r| r.merged_right_generation)
    };
    assert_eq!(named(&topology), Some(5));
    let learner = apply_range_change(
        &mut topology,
        &range_change("orders", 1, 6, Change::AddLearner(4)),
    );
    assert_eq!(learner.refusal, "");
    assert_eq!(named(&topology), Some(5));

    let unknown = apply_range_change(
        &mut topology,
        &range_change("nope", 1, 1, Change::Promote(1)),
    );
    assert!(
        unknown.refusal.contains("not a consensus bucket"),
        "{}",
        unknown.refusal
    );
    assert_eq!(unknown.refusal_kind, Refusal::WrongKind as i32);
    drop_bucket_ranges(&mut topology, "orders");
    assert!(bucket_ranges(&topology, "orders").expect("valid").is_none());
}

#[test]
fn corrupt_stored_ranges_are_refused_not_used() {
    use base::NodeId;
    let mut topology = pb::Topology::default();
    create_bucket_ranges(&mut topology, "orders", &[NodeId(1)]).expect("create");
    topology.ranges[0].start = b"a".to_vec();
    assert!(bucket_ranges(&topology, "orders").is_err());
    let change = apply_range_change(
        &mut topology,
        &range_change(
            "orders",
            1,
            1,
            pb::range_change::Change::SplitAt(b"m".to_vec()),
        ),
    );
    assert!(change.refusal.contains("partition"), "{}", change.refusal);
}

#[test]
fn a_drain_mark_is_set_once_cleared_on_undo_and_forgotten_with_its_member() {
    let mut topology = pb::Topology::default();
    let drain = |member, draining| pb::MemberDrain { member, draining };
    let refused = crate::apply_member_drain(&mut topology, &drain(7, true), false);
    assert!(refused.refusal.contains("not a member"), "{refused:?}");
    assert!(topology.draining.is_empty());
    for _ in 0..2 {
        let applied = crate::apply_member_drain(&mut topology, &drain(7, true), true);
        assert_eq!(applied.refusal, "");
    }
    crate::apply_member_drain(&mut topology, &drain(3, true), true);
    assert_eq!(topology.draining, vec![3, 7]);
    // Clearing needs no membership: the member may be gone already.
    crate::apply_member_drain(&mut topology, &drain(3, false), false);
    assert_eq!(topology.draining, vec![7]);
    assert!(!crate::forget_drained(&mut topology, &[1]));
    assert!(crate::forget_drained(&mut topology, &[7]));
    assert!(topology.draining.is_empty());
}
