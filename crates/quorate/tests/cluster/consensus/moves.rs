//! Replica and leader moves of consensus ranges on real members: a member that joins gets its
//! share of the replicas and leaders, and a member dead for longer than the dead-member
//! timeout has its replicas re-created on the others, a drained member hands everything
//! over before it is removed, and neighbours on different members are aligned, then merged;
//! writes go on throughout and every acknowledged write reads back.

use std::collections::BTreeMap;

use super::*;

/// Per member (hex id), how many ranges of `bucket` it holds a replica of and leads; `None`
/// while a range has a learner in flight or no leader.
fn spread(ranges: &[Value]) -> Option<(BTreeMap<String, usize>, BTreeMap<String, usize>)> {
    let mut replicas: BTreeMap<String, usize> = BTreeMap::new();
    let mut leaders: BTreeMap<String, usize> = BTreeMap::new();
    for range in ranges {
        if !range["learners"].as_array()?.is_empty() {
            return None;
        }
        for replica in range["replicas"].as_array()? {
            *replicas.entry(replica.as_str()?.to_owned()).or_default() += 1;
        }
        *leaders
            .entry(range["leader"].as_str()?.to_owned())
            .or_default() += 1;
    }
    Some((replicas, leaders))
}

/// Waits until `done` holds of `bucket`'s ranges (as `range list` through `endpoint` shows
/// them), writing one more key per round through `client` (`during-STAGE-N`); returns the
/// ranges and the keys written.
async fn write_until(
    stage: &str,
    endpoint: &str,
    client: &mut KvClient<Channel>,
    bucket: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> (Vec<Value>, Vec<String>) {
    let deadline = Instant::now() + DEADLINE * 3;
    let mut written = Vec::new();
    loop {
        let ranges = checked_ranges(endpoint, bucket);
        if done(&ranges) {
            return (ranges, written);
        }
        assert!(Instant::now() < deadline, "never {what}: {ranges:#?}");
        let key = format!("during-{stage}-{:04}", written.len());
        put_retrying(client, bucket, &key, value_of(&key, 64)).await;
        written.push(key);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads every key of `keys` back through `endpoint` and checks `kv scan` returns exactly
/// them, in order.
async fn all_read_back(
    endpoint: &str,
    bucket: &str,
    keys: &[String],
    len_of: impl Fn(&str) -> usize,
) {
    let mut client = kv(endpoint).await;
    for key in keys {
        let values = values_of(&mut client, bucket, key).await;
        assert_eq!(values, vec![value_of(key, len_of(key))], "{key}");
    }
    let mut expected = keys.to_vec();
    expected.sort();
    assert_eq!(scanned_keys(endpoint, bucket), expected);
}

/// Splits `bucket` by hand into eight ranges and writes 80 keys of 1 KiB over them.
async fn eight_ranges(endpoint: &str, bucket: &str) -> Vec<String> {
    create_bucket(endpoint, bucket, 64 << 20);
    for at in ["b", "c", "d", "e", "f", "g", "h"] {
        range_change_until_done(endpoint, "split", bucket, at);
    }
    let mut client = kv(endpoint).await;
    let keys: Vec<String> = (0..80)
        .map(|i| format!("{}{i:03}", (b'a' + (i % 8) as u8) as char))
        .collect();
    for key in &keys {
        put(&mut client, bucket, key, value_of(key, 1024)).await;
    }
    keys
}

fn len_of(key: &str) -> usize {
    if key.starts_with("during-") { 64 } else { 1024 }
}

#[tokio::test]
async fn a_member_that_joins_receives_its_share_of_replicas_and_leaders() {
    // Goal: a member added to a 3-member cluster gets about a quarter of the replicas and
    // leaders (learner, snapshot, promotion, an old replica removed), losing nothing. Method:
    // eight ranges of 3 replicas with 80 keys; add m4 and start it; write on until every
    // range has three voters and no learner in flight, every member holds 6 ± 1 replicas and
    // m4 leads at least one range;
    // every key reads back through m4 and a scan returns each once.
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().await;
    let endpoint = cluster.endpoint(0);
    let mut keys = eight_ranges(&endpoint, "spread").await;
    let joiner = cluster.add_slot();
    let peer_url = format!("http://127.0.0.1:{}", cluster.members[joiner].peer);
    let added = cluster
        .client(leader)
        .await
        .member_add([peer_url], None)
        .await
        .expect("member add");
    let new_id = format!("{:x}", added.member().expect("added member").id());
    cluster.spawn_with(joiner, &["--initial-cluster-state", "existing"]);
    let mut client = kv(&endpoint).await;
    let (ranges, written) = write_until(
        "join",
        &endpoint,
        &mut client,
        "spread",
        "balanced",
        |ranges| {
            let three = ranges
                .iter()
                .all(|r| r["replicas"].as_array().is_some_and(|v| v.len() == 3));
            three
                && spread(ranges).is_some_and(|(replicas, leaders)| {
                    replicas.len() == 4
                        && replicas.values().all(|&n| (5..=7).contains(&n))
                        && leaders.get(&new_id).is_some_and(|&n| n >= 1)
                })
        },
    )
    .await;
    assert_eq!(ranges.len(), 8, "{ranges:#?}");
    keys.extend(written);
    all_read_back(&cluster.endpoint(joiner), "spread", &keys, len_of).await;
}

#[tokio::test]
async fn a_member_dead_past_the_timeout_has_its_replicas_recreated_elsewhere() {
    // Goal: the replicas of a member unreachable for longer than --dead-member-timeout are
    // re-created on the live members; nothing acknowledged is lost. Method: four members
    // (timeout 2 s), eight ranges of 3 replicas spread over them; SIGKILL the member holding
    // the most replicas (not the metadata leader's, so the planner's view of it is from its
    // start); write on until no range lists it and every range has three voters; every key
    // reads back and a scan returns each once.
    let mut cluster = Cluster::start(4, &["--dead-member-timeout", "2s"]);
    let leader = cluster.leader().await;
    let endpoint = cluster.endpoint(leader);
    let mut keys = eight_ranges(&endpoint, "survive").await;
    let mut client = kv(&endpoint).await;
    let (ranges, written) = write_until(
        "spread",
        &endpoint,
        &mut client,
        "survive",
        "spread over four",
        |ranges| spread(ranges).is_some_and(|(replicas, _)| replicas.len() == 4),
    )
    .await;
    keys.extend(written);
    let (replicas, _) = spread(&ranges).expect("settled");
    let mut by_count: Vec<(&String, &usize)> = replicas.iter().collect();
    by_count.sort_by_key(|(id, n)| (std::cmp::Reverse(**n), (*id).clone()));
    let mut victim = None;
    for (id, _) in by_count {
        let index = cluster
            .index_of(u64::from_str_radix(id, 16).expect("hex id"))
            .await
            .expect("member of the id");
        if index != leader {
            victim = Some((id.clone(), index));
            break;
        }
    }
    let (dead_id, dead) = victim.expect("a member other than the metadata leader holds replicas");
    cluster.kill(dead);
    let (ranges, written) = write_until(
        "kill",
        &endpoint,
        &mut client,
        "survive",
        "re-created",
        |ranges| {
            ranges.iter().all(|r| {
                let replicas = r["replicas"].as_array().unwrap();
                replicas.len() == 3
                    && r["learners"].as_array().unwrap().is_empty()
                    && replicas
                        .iter()
                        .all(|m| m.as_str() != Some(dead_id.as_str()))
                    && r["leader"].is_string()
            })
        },
    )
    .await;
    assert_eq!(ranges.len(), 8, "{ranges:#?}");
    keys.extend(written);
    all_read_back(&endpoint, "survive", &keys, len_of).await;
}

#[tokio::test]
async fn a_drained_member_hands_everything_over_and_is_removed_without_losing_a_write() {
    // Goal: `quorate member drain` moves every range replica and leadership off a member —
    // the metadata leader itself, whose rebalancer must hand its own leadership over first —
    // and the member can then be removed with nothing lost. Method: four members, eight
    // ranges of 3 replicas spread over all four; drain the metadata leader; write on through
    // another member until no range lists it, drain reports nothing left and another member
    // leads the metadata (its metrics show it draining, then leading nothing); remove it;
    // every key reads back and a scan returns each once.
    let mut cluster = Cluster::start(4, &[]);
    let leader = cluster.leader().await;
    let other = (leader + 1) % 4;
    let endpoint = cluster.endpoint(other);
    let mut keys = eight_ranges(&endpoint, "drain").await;
    let mut client = kv(&endpoint).await;
    let (_, written) = write_until(
        "spread",
        &endpoint,
        &mut client,
        "drain",
        "spread over four",
        |ranges| spread(ranges).is_some_and(|(replicas, _)| replicas.len() == 4),
    )
    .await;
    keys.extend(written);
    let leader_id = cluster
        .client(leader)
        .await
        .status()
        .await
        .expect("status")
        .header()
        .expect("header")
        .member_id();
    let hex_id = format!("{leader_id:x}");
    let marked = quorate_json(&endpoint, &["member", "drain", &hex_id]);
    assert_eq!(marked["draining"], true, "{marked}");
    let drained_metrics = cluster.members[leader].metrics;
    assert_eq!(metric(drained_metrics, "quorate_range_draining"), 1);
    let (ranges, written) = write_until(
        "drain",
        &endpoint,
        &mut client,
        "drain",
        "drained",
        |ranges| {
            let moved = ranges.iter().all(|r| {
                let replicas = r["replicas"].as_array().unwrap();
                replicas.len() == 3
                    && r["learners"].as_array().unwrap().is_empty()
                    && replicas.iter().all(|m| m.as_str() != Some(hex_id.as_str()))
                    && r["leader"].is_string()
            });
            moved && {
                let left = quorate_json(&endpoint, &["member", "drain", &hex_id]);
                left["replicas_left"] == 0 && left["leaders_left"] == 0
            }
        },
    )
    .await;
    assert_eq!(ranges.len(), 8, "{ranges:#?}");
    keys.extend(written);
    assert_eq!(metric(drained_metrics, "quorate_range_leaders"), 0);
    let changes: i64 = (0..4)
        .map(|i| metric(cluster.members[i].metrics, "quorate_range_replica_changes"))
        .sum();
    assert!(changes >= 8, "replica changes counted: {changes}");
    let new_leader = cluster.leader().await;
    assert_ne!(
        new_leader, leader,
        "the drained member still leads the metadata"
    );
    cluster
        .client(new_leader)
        .await
        .member_remove(leader_id)
        .await
        .expect("member remove");
    cluster.kill(leader);
    all_read_back(&endpoint, "drain", &keys, len_of).await;
    let (ok, text) = quorate(&endpoint, &["member", "drain", &hex_id]);
    assert!(
        !ok && text.contains(&format!("member {hex_id} is not in the cluster")),
        "{text}"
    );
}

#[tokio::test]
async fn a_replica_moved_by_hand_lands_on_its_destination_and_leaves_its_source() {
    // Goal: `quorate range move BUCKET KEY --from A --to B` moves one replica — from the
    // range's leader, which must hand over first — and refuses moves that cannot be made,
    // losing nothing. Method: four members, a bucket of 3 replicas with 40 keys; move the
    // replica of its range from the range's leader to the member without one; the answer and
    // `range list` show the range on B and not A, with another leader; every key reads back;
    // moves to a member that holds a replica, or of an unknown member, are refused by name.
    let cluster = Cluster::start(4, &[]);
    cluster.leader().await;
    let endpoint = cluster.endpoint(0);
    create_bucket(&endpoint, "moved", 64 << 20);
    let mut client = kv(&endpoint).await;
    let keys: Vec<String> = (0..40).map(|i| format!("k{i:03}")).collect();
    for key in &keys {
        put_retrying(&mut client, "moved", key, value_of(key, 1024)).await;
    }
    let ids = crate::quorum::member_ids(&cluster);
    let (ranges, _) = write_until("lead", &endpoint, &mut client, "moved", "led", |r| {
        r[0]["leader"].is_string()
    })
    .await;
    let replicas: Vec<String> = ranges[0]["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .map(|v| v.as_str().expect("hex id").to_owned())
        .collect();
    let from = ranges[0]["leader"].as_str().expect("leader").to_owned();
    let to = ids
        .iter()
        .find(|id| !replicas.contains(id))
        .expect("a member without a replica")
        .clone();
    let moved = quorate_json(
        &endpoint,
        &[
            "range", "move", "moved", "k010", "--from", &from, "--to", &to,
        ],
    );
    let after: Vec<&str> = moved[0]["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        after.contains(&to.as_str()) && !after.contains(&from.as_str()) && after.len() == 3,
        "{moved}"
    );
    let (listed, written) = write_until("moved", &endpoint, &mut client, "moved", "led", |r| {
        r[0]["leader"].is_string() && r[0]["learners"].as_array().is_some_and(Vec::is_empty)
    })
    .await;
    assert_ne!(
        listed[0]["leader"].as_str(),
        Some(from.as_str()),
        "{listed:?}"
    );
    let listed_replicas = listed[0]["replicas"].as_array().expect("replicas");
    assert!(
        listed_replicas
            .iter()
            .any(|v| v.as_str() == Some(to.as_str()))
            && !listed_replicas
                .iter()
                .any(|v| v.as_str() == Some(from.as_str())),
        "{listed:?}"
    );
    let mut keys = keys;
    keys.extend(written);
    all_read_back(&endpoint, "moved", &keys, len_of).await;
    let holder = after[0];
    let (ok, text) = quorate(
        &endpoint,
        &[
            "range", "move", "moved", "k010", "--from", &from, "--to", holder,
        ],
    );
    assert!(!ok && text.contains("has no voting replica"), "{text}");
    let (ok, text) = quorate(
        &endpoint,
        &[
            "range", "move", "moved", "k010", "--from", holder, "--to", after[1],
        ],
    );
    assert!(!ok && text.contains("already has a replica"), "{text}");
    let (ok, text) = quorate(
        &endpoint,
        &[
            "range", "move", "moved", "k010", "--from", holder, "--to", "abc123",
        ],
    );
    assert!(
        !ok && text.contains("member abc123 is not in the cluster"),
        "{text}"
    );
}

#[tokio::test]
async fn neighbours_on_different_members_are_aligned_then_merged() {
    // Goal: `quorate range merge` of neighbours whose replicas are on different members moves
    // the right one's replicas onto the left one's members first (add, catch up, promote,
    // remove), then merges; nothing acknowledged is lost. Method: four members, eight ranges
    // spread over all four (at least one pair of neighbours must differ, or the test proves
    // nothing); merge at "a" until one range is left, writing between merges; every key reads
    // back and a scan returns each once.
    let cluster = Cluster::start(4, &[]);
    let endpoint = cluster.endpoint(cluster.leader().await);
    let mut keys = eight_ranges(&endpoint, "align").await;
    let mut client = kv(&endpoint).await;
    let (ranges, written) = write_until(
        "spread",
        &endpoint,
        &mut client,
        "align",
        "spread over four with neighbours on different members",
        |ranges| {
            let sets: Vec<Vec<&str>> = ranges
                .iter()
                .map(|r| {
                    let mut set: Vec<&str> = r["replicas"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter_map(Value::as_str)
                        .collect();
                    set.sort();
                    set
                })
                .collect();
            spread(ranges).is_some_and(|(replicas, _)| replicas.len() == 4)
                && sets.windows(2).any(|pair| pair[0] != pair[1])
        },
    )
    .await;
    assert_eq!(ranges.len(), 8);
    keys.extend(written);
    for round in 0..7 {
        range_change_until_done(&endpoint, "merge", "align", "a");
        let key = format!("between-merges-{round}");
        put_retrying(&mut client, "align", &key, value_of(&key, 64)).await;
        keys.push(key);
    }
    let ranges = checked_ranges(&endpoint, "align");
    assert_eq!(ranges.len(), 1, "{ranges:#?}");
    let len = |key: &str| {
        if key.starts_with("during-") || key.starts_with("between-") {
            64
        } else {
            1024
        }
    };
    all_read_back(&endpoint, "align", &keys, len).await;
}
