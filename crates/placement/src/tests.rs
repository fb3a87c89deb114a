//! Placement tests: frozen token functions, rejected inputs, hand-computed walks, ownership and
//! movement on tiny rings; property tests of preference lists, walks, join/leave round trips,
//! ownership sums and the join identities against a brute-force model; and the measured balance
//! and join movement of realistic rings.

use std::collections::{BTreeMap, BTreeSet};

use base::NodeId;
use proptest::prelude::*;
use xxhash_rust::xxh3::xxh3_64;

use crate::{
    Balance, Ring, RingError, TOKEN_SPACE, TokenRange, VNODES_PER_MEMBER_MAX, key_token,
    moved_fraction, moved_replica_fraction, placement_changes, vnode_token,
};

/// A quarter of the token circle.
const QUARTER: u64 = 1 << 62;

fn node(id: u64) -> NodeId {
    NodeId(id)
}

/// Builds a ring from `(token, member id)` pairs, which must be valid.
fn ring_of(tokens: &[(u64, u64)]) -> Ring {
    let map: BTreeMap<u64, NodeId> = tokens.iter().map(|(t, m)| (*t, node(*m))).collect();
    Ring::from_tokens(map).expect("test token map is valid")
}

/// Members with realistic ids: as `quorate` derives them from names.
fn named_members(count: usize) -> Vec<NodeId> {
    (0..count)
        .map(|i| NodeId::from_name(&format!("node-{i}"), "placement-test"))
        .collect()
}

/// The preference list by brute force: sort the tokens, scan for the first at or after
/// `token`, go round once and keep first occurrences.
fn model_walk(ring: &Ring, token: u64) -> Vec<NodeId> {
    let pairs: Vec<(u64, NodeId)> = ring.tokens().iter().map(|(t, m)| (*t, *m)).collect();
    let start = pairs.iter().position(|(t, _)| *t >= token).unwrap_or(0);
    let mut out = Vec::new();
    for step in 0..pairs.len() {
        let member = pairs[(start + step) % pairs.len()].1;
        if !out.contains(&member) {
            out.push(member);
        }
    }
    out
}

#[test]
fn key_token_separates_bucket_from_key() {
    // Goal: the length prefix keeps different (bucket, key) splits of the same bytes apart.
    // Method: hash splits of "abc" that concatenate identically.
    let splits = [
        key_token("ab", b"c"),
        key_token("a", b"bc"),
        key_token("abc", b""),
        key_token("", b"abc"),
    ];
    let distinct: BTreeSet<u64> = splits.iter().copied().collect();
    assert_eq!(distinct.len(), splits.len(), "tokens {splits:x?}");
}

#[test]
fn token_functions_follow_the_documented_encoding() {
    // Goal: key_token and vnode_token hash exactly the bytes their docs describe.
    // Method: hash the documented byte strings in one shot and compare with the functions.
    let mut key_bytes = Vec::new();
    key_bytes.extend_from_slice(&5u64.to_be_bytes());
    key_bytes.extend_from_slice(b"users");
    key_bytes.extend_from_slice(b"alice");
    assert_eq!(key_token("users", b"alice"), xxh3_64(&key_bytes));

    let mut vnode_bytes = Vec::new();
    vnode_bytes.extend_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
    vnode_bytes.extend_from_slice(&7u32.to_be_bytes());
    assert_eq!(
        vnode_token(node(0x0102_0304_0506_0708), 7),
        xxh3_64(&vnode_bytes)
    );
}

#[test]
fn token_functions_are_frozen() {
    // Goal: the token functions never change output; stored data depends on key_token and
    // joins computed by different versions depend on vnode_token.
    // Method: compare with values recorded when the functions were written. If this fails, the
    // hash or the encoding changed: that is a data-format break, not a test to update.
    assert_eq!(key_token("", b""), KEY_TOKEN_EMPTY);
    assert_eq!(key_token("users", b"alice"), KEY_TOKEN_USERS_ALICE);
    assert_eq!(vnode_token(node(1), 0), VNODE_TOKEN_1_0);
    assert_eq!(vnode_token(node(u64::MAX), u32::MAX), VNODE_TOKEN_MAX_MAX);
}

// Recorded from this crate and cross-checked with the reference C xxHash (through the Python
// `xxhash` 4.1 binding) hashing the documented encodings.
const KEY_TOKEN_EMPTY: u64 = 14_374_147_212_387_527_897;
const KEY_TOKEN_USERS_ALICE: u64 = 17_355_403_434_815_178_327;
const VNODE_TOKEN_1_0: u64 = 12_648_982_341_097_145_995;
const VNODE_TOKEN_MAX_MAX: u64 = 1_788_071_889_329_990_320;

#[test]
fn token_range_length_and_membership() {
    // Goal: ranges exclude their start, include their end, wrap, and start == end is the circle.
    // Method: check lengths and contains on a plain, a wrapping and a full range.
    let plain = TokenRange { start: 10, end: 20 };
    assert_eq!(plain.len(), 10);
    assert!(!plain.contains(10));
    assert!(plain.contains(11));
    assert!(plain.contains(20));
    assert!(!plain.contains(21));

    let wrapping = TokenRange {
        start: u64::MAX - 1,
        end: 1,
    };
    assert_eq!(wrapping.len(), 3);
    assert!(wrapping.contains(u64::MAX));
    assert!(wrapping.contains(0));
    assert!(wrapping.contains(1));
    assert!(!wrapping.contains(u64::MAX - 1));
    assert!(!wrapping.contains(2));

    let full = TokenRange { start: 5, end: 5 };
    assert_eq!(full.len(), TOKEN_SPACE);
    assert!(full.contains(5));
    assert!(full.contains(6));
    assert_eq!(full.fraction(), 1.0);
}

#[test]
fn new_rejects_bad_input() {
    // Goal: each invalid argument gets its own error and a message naming the values.
    // Method: call Ring::new with each kind of bad input.
    let members = [node(1), node(2)];
    assert_eq!(Ring::new(&[], 8), Err(RingError::NoMembers));
    assert_eq!(Ring::new(&members, 0), Err(RingError::ZeroVnodes));
    let too_many = Ring::new(&members, VNODES_PER_MEMBER_MAX + 1);
    assert_eq!(
        too_many,
        Err(RingError::TooManyVnodes {
            vnodes: 4097,
            max: 4096
        })
    );
    assert_eq!(
        too_many.map(|_| ()).unwrap_err().to_string(),
        "4097 vnodes per member is above the maximum of 4096"
    );
    let duplicate = Ring::new(&[node(3), node(0x1f), node(3)], 8);
    assert_eq!(
        duplicate,
        Err(RingError::DuplicateMember { member: node(3) })
    );
    assert!(Ring::new(&members, VNODES_PER_MEMBER_MAX).is_ok());
}

#[test]
fn new_gives_every_member_its_vnodes() {
    // Goal: Ring::new gives each member exactly the asked number of tokens, at the documented
    // token values (no collisions occur for these ids).
    // Method: count tokens per member and look each expected token up.
    let members = named_members(5);
    let ring = Ring::new(&members, 32).expect("valid ring");
    assert_eq!(ring.tokens().len(), 5 * 32);
    assert_eq!(ring.vnodes_per_member(), 32);
    for member in &members {
        for index in 0..32 {
            assert_eq!(
                ring.tokens().get(&vnode_token(*member, index)),
                Some(member),
                "vnode {index} of {member}"
            );
        }
    }
    let mut sorted = members.clone();
    sorted.sort();
    assert_eq!(ring.members(), sorted);
    assert_eq!(ring.member_count(), 5);
}

#[test]
fn colliding_vnode_moves_to_the_next_index() {
    // Goal: a vnode whose token is taken moves to the member's next index, deterministically.
    // Method: store a two-vnode ring where member 1 already holds member 7's first token, then
    // add member 7 and check it took indexes 1 and 2 instead of 0 and 1.
    let taken = vnode_token(node(7), 0);
    let ring = ring_of(&[(taken, 1), (taken.wrapping_add(1), 2), (5, 1), (6, 2)]);
    let joined = ring.with_member(node(7)).expect("member 7 joins");
    assert_eq!(joined.tokens().get(&taken), Some(&node(1)));
    assert_eq!(
        joined.tokens().get(&vnode_token(node(7), 1)),
        Some(&node(7))
    );
    assert_eq!(
        joined.tokens().get(&vnode_token(node(7), 2)),
        Some(&node(7))
    );
    assert!(!joined.tokens().contains_key(&vnode_token(node(7), 3)));
    assert_eq!(joined.tokens().len(), 6);
}

#[test]
fn ring_is_independent_of_member_order() {
    // Goal: the same members in any input order give the same ring.
    // Method: build from several rotations and reversals of the same list.
    let members = named_members(7);
    let reference = Ring::new(&members, 64).expect("valid ring");
    for rotation in 0..members.len() {
        let mut shuffled = members.clone();
        shuffled.rotate_left(rotation);
        assert_eq!(Ring::new(&shuffled, 64).as_ref(), Ok(&reference));
        shuffled.reverse();
        assert_eq!(Ring::new(&shuffled, 64).as_ref(), Ok(&reference));
    }
}

#[test]
fn from_tokens_round_trips_and_rejects_bad_maps() {
    // Goal: a stored token map rebuilds the same ring, and maps that break the ring's
    // invariants are refused with precise errors.
    // Method: round-trip a built ring; then try an empty and an uneven map.
    let ring = Ring::new(&named_members(4), 16).expect("valid ring");
    let rebuilt = Ring::from_tokens(ring.tokens().clone()).expect("stored ring is valid");
    assert_eq!(rebuilt, ring);

    assert_eq!(
        Ring::from_tokens(BTreeMap::new()),
        Err(RingError::NoMembers)
    );
    let uneven: BTreeMap<u64, NodeId> = [(1, node(5)), (2, node(5)), (3, node(9))]
        .into_iter()
        .collect();
    let error = Ring::from_tokens(uneven).map(|_| ()).unwrap_err();
    assert_eq!(
        error,
        RingError::UnevenVnodes {
            member: node(9),
            count: 1,
            first: node(5),
            expected: 2
        }
    );
    assert_eq!(
        error.to_string(),
        "member 9 holds 1 tokens but member 5 holds 2; every member must hold the same number"
    );
}

#[test]
fn membership_changes_reject_bad_requests() {
    // Goal: adding a present member, removing an absent one or removing the last are refused.
    // Method: try each on small rings.
    let ring = Ring::new(&[node(1), node(2)], 4).expect("valid ring");
    assert_eq!(
        ring.with_member(node(2)),
        Err(RingError::AlreadyMember { member: node(2) })
    );
    assert_eq!(
        ring.without_member(node(3)),
        Err(RingError::UnknownMember { member: node(3) })
    );
    let single = ring.without_member(node(1)).expect("one member remains");
    assert_eq!(single.members(), vec![node(2)]);
    let last = single.without_member(node(2));
    assert_eq!(last, Err(RingError::LastMember { member: node(2) }));
    assert_eq!(
        last.map(|_| ()).unwrap_err().to_string(),
        "cannot remove member 2: it is the last member of the ring"
    );
}

#[test]
fn walk_lists_preference_list_then_fallbacks() {
    // Goal: the walk starts at the first vnode at or after the token, wraps, skips repeated
    // members, and the preference list is its prefix.
    // Method: a hand-made ring of members 1, 2 and 3 with two vnodes each, at 10..=60.
    let ring = ring_of(&[(10, 1), (20, 2), (30, 1), (40, 3), (50, 2), (60, 3)]);
    let walk = |token| ring.walk(token).map(|m| m.0).collect::<Vec<_>>();
    assert_eq!(walk(0), vec![1, 2, 3]);
    assert_eq!(walk(10), vec![1, 2, 3]);
    assert_eq!(walk(11), vec![2, 1, 3]);
    assert_eq!(walk(31), vec![3, 2, 1]);
    assert_eq!(walk(55), vec![3, 1, 2]);
    assert_eq!(walk(61), vec![1, 2, 3]);
    assert_eq!(walk(u64::MAX), vec![1, 2, 3]);
    assert_eq!(ring.preference_list(11, 2), vec![node(2), node(1)]);
    assert_eq!(ring.preference_list(11, 0), Vec::<NodeId>::new());
    assert_eq!(ring.preference_list(11, 9).len(), 3);
}

#[test]
fn ownership_is_exact_on_a_hand_made_ring() {
    // Goal: ownership counts each range for every member of its preference list, including
    // the range that wraps past u64::MAX.
    // Method: A@1/4, B@1/2, C@3/4 of the circle: A's range wraps and is half the circle.
    let ring = ring_of(&[(QUARTER, 1), (2 * QUARTER, 2), (3 * QUARTER, 3)]);
    let primary = ring.ownership(1);
    assert_eq!(primary[&node(1)], 0.5);
    assert_eq!(primary[&node(2)], 0.25);
    assert_eq!(primary[&node(3)], 0.25);
    let two = ring.ownership(2);
    assert_eq!(two[&node(1)], 0.75);
    assert_eq!(two[&node(2)], 0.75);
    assert_eq!(two[&node(3)], 0.5);
    assert_eq!(
        ring.balance(1),
        Balance {
            max_over_mean: 1.5,
            min_over_mean: 0.75
        }
    );
    assert_eq!(
        ring.balance(0),
        Balance {
            max_over_mean: 1.0,
            min_over_mean: 1.0
        }
    );
    let single = ring_of(&[(7, 1)]);
    assert_eq!(single.ownership(3)[&node(1)], 1.0);
}

#[test]
fn movement_is_exact_on_a_hand_made_ring() {
    // Goal: placement_changes cuts ranges at both rings' tokens and reports who gains and who
    // loses; the two fractions follow from it.
    // Method: A@1/4, B@1/2, C@3/4, then D joins at 5/8; with n = 1 only (1/2, 5/8] moves,
    // from C to D; with n = 2 the ranges (1/4, 1/2] and (1/2, 5/8] change one replica each.
    let old = ring_of(&[(QUARTER, 1), (2 * QUARTER, 2), (3 * QUARTER, 3)]);
    let new = ring_of(&[
        (QUARTER, 1),
        (2 * QUARTER, 2),
        (2 * QUARTER + QUARTER / 2, 4),
        (3 * QUARTER, 3),
    ]);
    let changes = placement_changes(&old, &new, 1);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(
        changes[0].range,
        TokenRange {
            start: 2 * QUARTER,
            end: 2 * QUARTER + QUARTER / 2
        }
    );
    assert_eq!(changes[0].removed, vec![node(3)]);
    assert_eq!(changes[0].added, vec![node(4)]);
    assert_eq!(moved_fraction(&old, &new, 1), 0.125);
    assert_eq!(moved_replica_fraction(&old, &new, 1), 0.125);

    // n = 2: (1/4, 1/2] was {B, C} and is {B, D}; (1/2, 5/8] was {C, A} and is {D, C}.
    let changes = placement_changes(&old, &new, 2);
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(changes[0].removed, vec![node(3)]);
    assert_eq!(changes[0].added, vec![node(4)]);
    assert_eq!(changes[1].removed, vec![node(1)]);
    assert_eq!(changes[1].added, vec![node(4)]);
    assert_eq!(moved_fraction(&old, &new, 2), 0.375);
    assert_eq!(moved_replica_fraction(&old, &new, 2), 0.375 / 2.0);

    assert!(placement_changes(&old, &old, 2).is_empty());
    assert_eq!(moved_replica_fraction(&old, &new, 0), 0.0);
}

/// A ring of 1 to 11 members with random distinct ids and 1 to 48 vnodes each, plus a fresh
/// member id not in it.
fn ring_and_newcomer() -> impl Strategy<Value = (Ring, NodeId)> {
    (prop::collection::btree_set(any::<u64>(), 2..13), 1u32..=48).prop_map(|(ids, vnodes)| {
        let mut ids: Vec<NodeId> = ids.into_iter().map(NodeId).collect();
        let newcomer = ids.pop().expect("at least two ids were drawn");
        let ring = Ring::new(&ids, vnodes).expect("distinct ids and valid vnode count");
        (ring, newcomer)
    })
}

/// Tokens worth probing: random ones, the ring's own tokens (range ends) and their
/// neighbours (range starts).
fn probe_tokens(ring: &Ring, random: u64, pick: prop::sample::Index) -> [u64; 4] {
    let tokens: Vec<u64> = ring.tokens().keys().copied().collect();
    let chosen = tokens[pick.index(tokens.len())];
    [
        random,
        chosen,
        chosen.wrapping_add(1),
        chosen.wrapping_sub(1),
    ]
}

proptest! {
    #[test]
    fn preference_lists_are_distinct_and_match_the_model(
        (ring, _) in ring_and_newcomer(),
        random in any::<u64>(),
        pick in any::<prop::sample::Index>(),
        n in 0usize..15,
    ) {
        // Goal: a preference list holds min(n, members) distinct members, and the walk yields
        // every member exactly once, in the order of a brute-force scan of the sorted tokens.
        // Method: probe random tokens and tokens at and around vnode boundaries.
        for token in probe_tokens(&ring, random, pick) {
            let list = ring.preference_list(token, n);
            prop_assert_eq!(list.len(), n.min(ring.member_count()));
            let distinct: BTreeSet<NodeId> = list.iter().copied().collect();
            prop_assert_eq!(distinct.len(), list.len());

            let walk: Vec<NodeId> = ring.walk(token).collect();
            let mut sorted = walk.clone();
            sorted.sort();
            prop_assert_eq!(&sorted, &ring.members());
            prop_assert_eq!(&walk, &model_walk(&ring, token));
            prop_assert_eq!(&list[..], &walk[..list.len()]);
        }
    }

    #[test]
    fn join_then_leave_restores_the_tokens(
        (ring, newcomer) in ring_and_newcomer(),
    ) {
        // Goal: a join leaves others' tokens alone and a leave undoes it exactly.
        // Method: add then remove a fresh member and compare token maps.
        let joined = ring.with_member(newcomer).expect("fresh member joins");
        for (token, member) in ring.tokens() {
            prop_assert_eq!(joined.tokens().get(token), Some(member));
        }
        let newcomer_tokens = joined.tokens().values().filter(|m| **m == newcomer).count();
        prop_assert_eq!(newcomer_tokens, ring.vnodes_per_member() as usize);
        let left = joined.without_member(newcomer).expect("member leaves");
        prop_assert_eq!(left.tokens(), ring.tokens());
        prop_assert_eq!(&left, &ring);
    }

    #[test]
    fn ownership_sums_to_the_replica_count(
        (ring, _) in ring_and_newcomer(),
        n in 1usize..15,
    ) {
        // Goal: every range is counted once per replica, so ownership sums to min(n, members).
        // Method: sum the exact per-member fractions.
        let ownership = ring.ownership(n);
        prop_assert_eq!(ownership.len(), ring.member_count());
        let total: f64 = ownership.values().sum();
        let expected = n.min(ring.member_count()) as f64;
        prop_assert!((total - expected).abs() < 1e-9, "total {} expected {}", total, expected);
        let balance = ring.balance(n);
        prop_assert!(balance.min_over_mean <= 1.0 + 1e-12);
        prop_assert!(balance.max_over_mean >= 1.0 - 1e-12);
    }

    #[test]
    fn join_moves_exactly_the_newcomers_share(
        (ring, newcomer) in ring_and_newcomer(),
        n in 1usize..15,
    ) {
        // Goal: when a member joins, each range gains at most the newcomer and loses at most
        // one replica; so the changed share of the space equals the newcomer's ownership, and
        // the streamed share of replicas equals that divided by the new replica count. Leaving
        // mirrors it.
        // Method: compare placement_changes and both fractions with the newcomer's ownership.
        let joined = ring.with_member(newcomer).expect("fresh member joins");
        let changes = placement_changes(&ring, &joined, n);
        for change in &changes {
            prop_assert_eq!(&change.added, &vec![newcomer]);
            prop_assert!(change.removed.len() <= 1, "{:?}", change);
        }
        let owned = joined.ownership(n)[&newcomer];
        let replicas = n.min(joined.member_count()) as f64;
        prop_assert!((moved_fraction(&ring, &joined, n) - owned).abs() < 1e-12);
        prop_assert!(
            (moved_replica_fraction(&ring, &joined, n) - owned / replicas).abs() < 1e-12
        );
        // Leaving: the leaver's ranges lose it and gain at most one other member.
        for change in placement_changes(&joined, &ring, n) {
            prop_assert_eq!(&change.removed, &vec![newcomer]);
            prop_assert!(change.added.len() <= 1, "{:?}", change);
        }
        prop_assert!((moved_fraction(&joined, &ring, n) - owned).abs() < 1e-12);
    }
}

/// Balance of `members` rings with `vnodes` each at replica count `n`.
fn measured_balance(members: usize, vnodes: u32, n: usize) -> Balance {
    Ring::new(&named_members(members), vnodes)
        .expect("valid ring")
        .balance(n)
}

/// Returns the (max/mean, min/mean) bounds for a vnode count and replica count. Measured worst
/// of 1000 member sets x {3, 5, 10} members when written, max then min:
/// 16 vnodes: n=1 2.255 0.278, n=3 1.536 0.405; 64: n=1 1.524 0.578, n=3 1.285 0.738;
/// 256: n=1 1.276 0.806, n=3 1.140 0.841.
fn balance_bounds(vnodes: u32, n: usize) -> (f64, f64) {
    match (vnodes, n) {
        (16, 1) => (2.5, 0.2),
        (16, _) => (2.0, 0.35),
        (64, 1) => (1.6, 0.5),
        (64, _) => (1.4, 0.65),
        (_, 1) => (1.35, 0.75),
        _ => (1.25, 0.8),
    }
}

#[test]
fn balance_improves_with_vnodes() {
    // Goal: report replica-load balance for common sizes and hold it to honest bounds: the
    // worst member carries at most a bounded multiple of the mean, and more vnodes help.
    // Method: build deterministic rings of named members; print max/mean and min/mean for
    // n = 3 (replica load) and n = 1 (primary ranges only, the raw vnode spread). Rings are
    // deterministic, so these numbers are reproducible (see the table with --nocapture). The
    // bounds are not tuned to these rings: they lie beyond the worst of 1000 other member sets
    // of each size (ids from other cluster tokens), so renaming the members keeps them honest.
    println!("vnodes members | n=3 max/mean min/mean | n=1 max/mean min/mean");
    let mut worst_by_vnodes = BTreeMap::new();
    for vnodes in [16u32, 64, 256] {
        for members in [3usize, 5, 10] {
            let three = measured_balance(members, vnodes, 3);
            let one = measured_balance(members, vnodes, 1);
            println!(
                "{vnodes:>6} {members:>7} | {:>12.3} {:>8.3} | {:>12.3} {:>8.3}",
                three.max_over_mean, three.min_over_mean, one.max_over_mean, one.min_over_mean
            );
            for (n, balance) in [(3, three), (1, one)] {
                let (bound_max, bound_min) = balance_bounds(vnodes, n);
                assert!(
                    balance.max_over_mean < bound_max,
                    "{vnodes} vnodes, {members} members, n={n}: max/mean {}",
                    balance.max_over_mean
                );
                assert!(
                    balance.min_over_mean > bound_min,
                    "{vnodes} vnodes, {members} members, n={n}: min/mean {}",
                    balance.min_over_mean
                );
            }
            let worst = worst_by_vnodes.entry(vnodes).or_insert(0.0f64);
            *worst = worst.max(one.max_over_mean);
        }
    }
    // With 3 members and n = 3 every member stores everything: perfectly balanced.
    assert_eq!(measured_balance(3, 16, 3).max_over_mean, 1.0);
    assert!(
        worst_by_vnodes[&256] < worst_by_vnodes[&16],
        "worst primary imbalance by vnodes: {worst_by_vnodes:?}"
    );
}

#[test]
fn fourth_member_streams_about_a_quarter_of_replicas() {
    // Goal: adding a 4th member to 3 with n = 3 changes the replica set of about 3/4 of the
    // space but streams only about 1/4 of the replicas, one per changed range.
    // Derivation: the newcomer enters the preference list of every range where it is among
    // the first 3 distinct members clockwise, pushing out the old third replica, so each range
    // changes at most one replica. Balanced, each of the 4 members is in the list of n/(m+1) =
    // 3/4 of the space (moved_fraction), and the newcomer holds 3/4 of one range's worth out
    // of n = 3 replicas of every range: (n/(m+1))/n = 1/(m+1) = 1/4 of all replicas
    // (moved_replica_fraction). The tolerance comes from vnode imbalance: over 200 other member
    // sets moved_fraction had a standard deviation of about 0.35/sqrt(vnodes) (0.044 at 64,
    // 0.022 at 256); the tolerance is four of those.
    // Method: measure at 64 and 256 vnodes.
    let members = named_members(4);
    for vnodes in [64u32, 256] {
        let old = Ring::new(&members[..3], vnodes).expect("valid ring");
        let new = old.with_member(members[3]).expect("fourth member joins");
        let changes = placement_changes(&old, &new, 3);
        for change in &changes {
            assert_eq!(change.added, vec![members[3]], "{change:?}");
            assert_eq!(change.removed.len(), 1, "{change:?}");
        }
        let moved = moved_fraction(&old, &new, 3);
        let streamed = moved_replica_fraction(&old, &new, 3);
        println!(
            "{vnodes} vnodes: moved_fraction {moved:.4}, moved_replica_fraction {streamed:.4}"
        );
        let tolerance = 1.4 / f64::from(vnodes).sqrt();
        assert!(
            (moved - 0.75).abs() < tolerance,
            "{vnodes} vnodes: moved {moved}"
        );
        assert!(
            (streamed - 0.25).abs() < tolerance / 3.0,
            "{vnodes} vnodes: streamed {streamed}"
        );
        assert!((streamed * 3.0 - moved).abs() < 1e-12);
    }
}
