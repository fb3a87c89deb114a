//! Routing: a cold cache asks the metadata, `not leader` hints are followed, a stale range
//! after a split is corrected by the replica's descriptor, unavailable replicas are skipped in
//! turn, and attempts are bounded.

use base::NodeId;

use crate::cache::RangeCache;
use crate::descriptor::{RangeId, RangeMap};
use crate::route::{Next, Route, RouteFailure};

fn map() -> RangeMap {
    RangeMap::new(RangeId(1), &[NodeId(1), NodeId(2), NodeId(3)])
}

fn send(next: Next) -> (RangeId, u64, NodeId) {
    match next {
        Next::Send {
            range,
            generation,
            member,
        } => (range, generation, member),
        other => panic!("expected a send, got {other:?}"),
    }
}

#[test]
fn a_cold_cache_asks_the_metadata_then_follows_the_leader_hint() {
    let map = map();
    let mut cache = RangeCache::new();
    let mut route = Route::new(b"k", 10);
    assert_eq!(route.next(&cache), Next::AskMetadata);
    cache.insert(map.lookup(b"k").clone(), None);
    let (range, generation, member) = send(route.next(&cache));
    assert_eq!(member, NodeId(1), "no leader known: the first voter");
    route.failed(
        &mut cache,
        range,
        generation,
        member,
        RouteFailure::NotLeader(Some(NodeId(3))),
    );
    assert_eq!(send(route.next(&cache)).2, NodeId(3));
    // The cache keeps the leader for the next request.
    assert_eq!(cache.lookup(b"k").and_then(|c| c.leader), Some(NodeId(3)));
}

#[test]
fn a_range_split_under_the_cache_is_corrected_by_the_replicas_descriptor() {
    let mut map = map();
    let mut cache = RangeCache::new();
    cache.insert(map.lookup(b"").clone(), Some(NodeId(2)));
    let (left, _right) = map.split(RangeId(1), 1, b"m", RangeId(2)).expect("split");
    let mut route = Route::new(b"x", 10);
    let (range, generation, member) = send(route.next(&cache));
    assert_eq!((range, generation, member), (RangeId(1), 1, NodeId(2)));
    // The left half's replica no longer holds "x" and says so with its descriptor.
    route.failed(
        &mut cache,
        range,
        generation,
        member,
        RouteFailure::RangeMoved(Some(left)),
    );
    assert_eq!(
        route.next(&cache),
        Next::AskMetadata,
        "the key's range is unknown now"
    );
    cache.insert(map.lookup(b"x").clone(), None);
    let (range, generation, _) = send(route.next(&cache));
    assert_eq!((range, generation), (RangeId(2), 2));
    // A replica without a newer view makes the cache forget the range.
    route.failed(
        &mut cache,
        range,
        generation,
        NodeId(1),
        RouteFailure::RangeMoved(None),
    );
    assert!(cache.lookup(b"x").is_none());
}

#[test]
fn unavailable_replicas_are_tried_in_turn_and_attempts_are_bounded() {
    let map = map();
    let mut cache = RangeCache::new();
    cache.insert(map.lookup(b"k").clone(), Some(NodeId(2)));
    let mut route = Route::new(b"k", 5);
    let mut sent = Vec::new();
    loop {
        match route.next(&cache) {
            Next::Send {
                range,
                generation,
                member,
            } => {
                sent.push(member.0);
                route.failed(
                    &mut cache,
                    range,
                    generation,
                    member,
                    RouteFailure::Unavailable,
                );
            }
            Next::GiveUp => break,
            Next::AskMetadata => panic!("the range is cached"),
        }
    }
    // The leader first, then the other voters, then around again; five attempts in all.
    assert_eq!(sent, vec![2, 1, 3, 1, 2]);
}

#[test]
fn a_leader_hint_is_followed_even_to_a_replica_that_refused_before_its_election() {
    // Member 1 refused while no one led; then member 2 says member 1 leads now. The hint
    // must send the request to 1 again, not back to 2 forever (seen on a real cluster).
    let map = map();
    let mut cache = RangeCache::new();
    cache.insert(map.lookup(b"k").clone(), None);
    let mut route = Route::new(b"k", 10);
    let (range, generation, member) = send(route.next(&cache));
    assert_eq!(member, NodeId(1));
    route.failed(
        &mut cache,
        range,
        generation,
        member,
        RouteFailure::NotLeader(None),
    );
    let (_, _, member) = send(route.next(&cache));
    assert_eq!(member, NodeId(2));
    route.failed(
        &mut cache,
        range,
        generation,
        member,
        RouteFailure::NotLeader(Some(NodeId(1))),
    );
    assert_eq!(send(route.next(&cache)).2, NodeId(1), "the hinted leader");
    route.failed(
        &mut cache,
        range,
        generation,
        NodeId(1),
        RouteFailure::NotLeader(None),
    );
    assert_eq!(
        send(route.next(&cache)).2,
        NodeId(3),
        "both refused: the untried voter"
    );
}

#[test]
fn a_range_frozen_for_a_merge_is_forgotten_and_the_metadata_names_the_merged_one() {
    let mut map = map();
    let (left, right) = map.split(RangeId(1), 1, b"m", RangeId(2)).expect("split");
    let mut cache = RangeCache::new();
    cache.insert(left.clone(), None);
    cache.insert(right.clone(), Some(NodeId(1)));
    let mut route = Route::new(b"x", 10);
    let (range, generation, member) = send(route.next(&cache));
    assert_eq!(range, right.id);
    route.failed(&mut cache, range, generation, member, RouteFailure::Stale);
    assert_eq!(
        route.next(&cache),
        Next::AskMetadata,
        "the frozen range is forgotten"
    );
    let merged = map
        .merge(left.id, left.generation, right.generation)
        .expect("merge");
    cache.insert(merged.clone(), None);
    let (range, generation, _) = send(route.next(&cache));
    assert_eq!((range, generation), (merged.id, merged.generation));
}
