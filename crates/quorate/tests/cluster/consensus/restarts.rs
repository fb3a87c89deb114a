//! Range replicas after crashes (issue #37): a replica restarts from the state its log was
//! written for, so the writes a merge carried survive a whole-cluster kill and a rolling
//! restart, and every replica of a range holds the same data afterwards.

use super::*;

/// Every key of `bucket`, scanned once its ranges all have leaders again; a scan refused
/// while a range is still electing is tried again.
async fn scanned_after_restart(endpoint: &str, bucket: &str) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    // The member may still be starting: its range list answers once it serves.
    loop {
        let (ok, text) = quorate(endpoint, &["range", "list", bucket, "-w", "json"]);
        let led = ok
            && serde_json::from_str::<Value>(text.trim())
                .ok()
                .and_then(|v| v.as_array().cloned())
                .is_some_and(|ranges| ranges.iter().all(|r| r["leader"].is_string()));
        if led {
            break;
        }
        assert!(Instant::now() < deadline, "ranges never led again: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    loop {
        let (ok, text) = quorate(
            endpoint,
            &["kv", "scan", bucket, "--keys-only", "-w", "json"],
        );
        if ok {
            let scanned: Value = serde_json::from_str(text.trim()).expect("scan json");
            return scanned["kvs"]
                .as_array()
                .expect("kvs")
                .iter()
                .map(|kv| kv["key"].as_str().expect("key").to_owned())
                .collect();
        }
        assert!(Instant::now() < deadline, "scan never served: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `quorate range check BUCKET` passes: every range's replicas agree.
fn replicas_agree(endpoint: &str, bucket: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (ok, text) = quorate(endpoint, &["range", "check", bucket]);
        if ok {
            return;
        }
        assert!(
            !text.contains("diverge"),
            "replicas of {bucket} diverge: {text}"
        );
        assert!(Instant::now() < deadline, "range check never ran: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test]
async fn a_merge_survives_a_whole_cluster_kill_and_a_rolling_restart() {
    // Goal: the keys a range took from its right neighbour in a merge stay after every member
    // restarts. Method (issue #37's reproduction): split at k100 and k150, put k000..k199,
    // merge the first range (the merged range ends at k150, not where the first range ended
    // when its log began), SIGKILL all three members and start them again; then restart each
    // in turn. Each time a scan holds all 200 keys and every range's replicas agree. Before
    // the fix, k101..k149 were gone after the restart.
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let endpoint = cluster.endpoint(0);
    create_bucket(&endpoint, "merged", 64 * 1024 * 1024);
    range_change_until_done(&endpoint, "split", "merged", "k100");
    range_change_until_done(&endpoint, "split", "merged", "k150");
    led_ranges(&endpoint, "merged").await;
    let mut client = kv(&endpoint).await;
    let keys: Vec<String> = (0..200).map(|i| format!("k{i:03}")).collect();
    for key in &keys {
        put(&mut client, "merged", key, value_of(key, 64)).await;
    }
    range_change_until_done(&endpoint, "merge", "merged", "k000");
    assert_eq!(led_ranges(&endpoint, "merged").await.len(), 2);
    assert_eq!(scanned_keys(&endpoint, "merged"), keys);

    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    cluster.leader().await;
    assert_eq!(
        scanned_after_restart(&cluster.endpoint(1), "merged").await,
        keys,
        "after a whole-cluster kill"
    );
    replicas_agree(&cluster.endpoint(2), "merged");

    for i in 0..3 {
        cluster.kill(i);
        cluster.spawn(i);
        cluster.leader().await;
        // The restarted member serves every key again before the next goes down.
        assert_eq!(
            scanned_after_restart(&cluster.endpoint(i), "merged").await,
            keys,
            "after restarting member {i}"
        );
    }
    replicas_agree(&cluster.endpoint(0), "merged");
    for key in &keys {
        let mut client = kv(&cluster.endpoint(1)).await;
        assert_eq!(
            values_of(&mut client, "merged", key).await,
            vec![value_of(key, 64)],
            "{key}"
        );
    }
}

/// SIGKILLs every member of `cluster` and starts them again; then a scan of `bucket` through
/// member `via` must hold exactly `expected`, every range's replicas must agree, and the
/// bucket's ranges must be the `ranges` it had before.
async fn crash_all_and_verify(
    cluster: &mut Cluster,
    bucket: &str,
    expected: &[String],
    ranges: usize,
    after: &str,
) {
    let members = cluster.members.len();
    for i in 0..members {
        cluster.kill(i);
    }
    for i in 0..members {
        cluster.spawn(i);
    }
    cluster.leader().await;
    let via = cluster.endpoint(members - 1);
    assert_eq!(
        scanned_after_restart(&via, bucket).await,
        expected,
        "keys after a whole-cluster kill right after {after}"
    );
    assert_eq!(
        led_ranges(&via, bucket).await.len(),
        ranges,
        "ranges after a whole-cluster kill right after {after}"
    );
    replicas_agree(&via, bucket);
}

#[tokio::test]
async fn every_range_change_survives_a_whole_cluster_kill_right_after_it() {
    // Goal: each path that changes a range replica's state is crash-safe: after a split (and
    // its seed), a merge, a replica move (learner added with the leader's snapshot, promoted,
    // source removed and retired) and a version GC after deletes, SIGKILL every member at
    // once and start them again: every acknowledged key is there, no deleted key comes back,
    // the ranges are the same, and every range's replicas hold the same state.
    let mut cluster = Cluster::start(4, &["--consensus-version-ttl", "1s"]);
    cluster.leader().await;
    let endpoint = cluster.endpoint(0);
    create_bucket(&endpoint, "crashes", 64 << 20);
    let mut client = kv(&endpoint).await;
    let mut keys: Vec<String> = (0..120).map(|i| format!("k{i:03}")).collect();
    for key in &keys {
        put(&mut client, "crashes", key, value_of(key, 128)).await;
    }

    range_change_until_done(&endpoint, "split", "crashes", "k040");
    range_change_until_done(&endpoint, "split", "crashes", "k080");
    crash_all_and_verify(&mut cluster, "crashes", &keys, 3, "two splits").await;

    let endpoint = cluster.endpoint(1);
    range_change_until_done(&endpoint, "merge", "crashes", "k040");
    crash_all_and_verify(&mut cluster, "crashes", &keys, 2, "a merge").await;

    // Move the first range's replica from its leader to a member that has none. The
    // rebalancer may be moving replicas too (four members, three replicas): each try reads
    // the range again, and one with a learner in flight is waited for.
    let endpoint = cluster.endpoint(2);
    let ids = crate::quorum::member_ids(&cluster);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let ranges = led_ranges(&endpoint, "crashes").await;
        let listed = |field: &str| -> Vec<String> {
            ranges[0][field]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (replicas, learners) = (listed("replicas"), listed("learners"));
        let to = ids.iter().find(|id| !replicas.contains(id));
        let from = ranges[0]["leader"].as_str().map(str::to_owned);
        if let (true, Some(to), Some(from)) = (learners.is_empty(), to, from) {
            let (ok, text) = quorate(
                &endpoint,
                &[
                    "range", "move", "crashes", "k000", "--from", &from, "--to", to,
                ],
            );
            if ok {
                break;
            }
            eprintln!("range move refused, tried again: {text}");
        }
        assert!(
            Instant::now() < deadline,
            "range move never went through: {ranges:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    crash_all_and_verify(&mut cluster, "crashes", &keys, 2, "a replica move").await;

    // Delete a third of the keys; wait until the versions are collected (the ranges' bytes
    // shrink to what the live keys hold), then crash.
    let endpoint = cluster.endpoint(3);
    let mut client = kv(&endpoint).await;
    let bytes = |ranges: &[Value]| {
        ranges
            .iter()
            .map(|r| r["bytes"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let before = bytes(&led_ranges(&endpoint, "crashes").await);
    let deleted: Vec<String> = keys.iter().step_by(3).cloned().collect();
    for key in &deleted {
        client
            .delete(pb::DeleteRequest {
                bucket: "crashes".into(),
                key: key.clone().into_bytes(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("delete {key}: {s:?}"));
    }
    keys.retain(|k| !deleted.contains(k));
    let deadline = Instant::now() + DEADLINE * 2;
    loop {
        let now = bytes(&led_ranges(&endpoint, "crashes").await);
        if now < before * 3 / 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "versions never collected: {now} of {before} bytes left"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    crash_all_and_verify(&mut cluster, "crashes", &keys, 2, "a version GC").await;
}

#[tokio::test]
async fn a_merge_given_up_releases_its_range_and_survives_a_whole_cluster_kill() {
    // Goal: a merge that freezes the right range and is then given up (the right range holds
    // more than one Raft entry may carry) releases it, and the release is crash-safe: after a
    // whole-cluster kill the right range serves reads and writes again, nothing is lost, and
    // the replicas agree. Method: split at "m", 9 MiB under "m", a few keys before it;
    // `range merge` is refused for the size; SIGKILL every member and restart; every key is
    // there, the two ranges stay, a new write to the right range is acknowledged.
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let endpoint = cluster.endpoint(0);
    create_bucket(&endpoint, "bigright", 64 << 20);
    range_change_until_done(&endpoint, "split", "bigright", "m");
    let mut client = kv(&endpoint).await;
    let mut keys: Vec<String> = (0..5).map(|i| format!("a{i}")).collect();
    keys.extend((0..72).map(|i| format!("m{i:03}")));
    for key in &keys {
        let len = if key.starts_with('m') { 128 << 10 } else { 64 };
        put(&mut client, "bigright", key, value_of(key, len)).await;
    }
    let (ok, text) = quorate(&endpoint, &["range", "merge", "bigright", "a"]);
    assert!(!ok, "a merge of 9 MiB went through: {text}");
    assert!(text.contains("RANGE_MERGE_BYTES_MAX"), "{text}");
    crash_all_and_verify(&mut cluster, "bigright", &keys, 2, "a merge given up").await;
    let mut client = kv(&cluster.endpoint(0)).await;
    put(&mut client, "bigright", "m999", b"thawed".to_vec()).await;
    assert_eq!(
        values_of(&mut client, "bigright", "m999").await,
        vec![b"thawed".to_vec()]
    );
}

#[tokio::test]
async fn a_merge_cut_by_a_whole_cluster_kill_is_finished_or_released_and_loses_nothing() {
    // Goal: whatever step of a merge a whole-cluster kill lands on — the right range frozen,
    // its state fetched, the merge committed in the metadata, applied in the left range —
    // after the restart the merge is finished by whoever leads the left range, or the frozen
    // right range is released (its leader gives a stale freeze up after RANGE_FREEZE_MAX),
    // no acknowledged write is lost, and the replicas agree. Method: member 0 drives the merge
    // with its peer messages delayed by 150 ms, so that the merge's steps take a while; every
    // member is SIGKILLed 0.1 to 1.6 s into it (one merge each, the bucket split again
    // at "m" between them); after each restart the bucket ends as one range, or as two whose
    // right one takes writes again; every key is there.
    let mut cluster = Cluster::start(3, &["--unsafe-fault-injection"]);
    cluster.leader().await;
    let endpoint = cluster.endpoint(0);
    create_bucket(&endpoint, "cutall", 64 << 20);
    let mut client = kv(&endpoint).await;
    let mut keys: Vec<String> = (0..40)
        .flat_map(|i| [format!("a{i:03}"), format!("m{i:03}")])
        .collect();
    for key in &keys {
        put(&mut client, "cutall", key, value_of(key, 128)).await;
    }
    keys.sort();
    for (round, delay) in [100u64, 400, 800, 1200, 1600].into_iter().enumerate() {
        let endpoint = cluster.endpoint(0);
        // Member 0 serves again (after the previous round's restart) before it drives.
        scanned_after_restart(&endpoint, "cutall").await;
        if led_ranges(&endpoint, "cutall").await.len() == 1 {
            range_change_until_done(&endpoint, "split", "cutall", "m");
        }
        led_ranges(&endpoint, "cutall").await;
        let (ok, text) = super::super::faults::fault(&endpoint, &["delay", "--ms", "150"]);
        assert!(ok, "{text}");
        let driver = endpoint.clone();
        let cut = tokio::task::spawn_blocking(move || {
            quorate(&driver, &["range", "merge", "cutall", "a"])
        });
        // The fault's timing, not a synchronization: the kill lands while the merge runs.
        tokio::time::sleep(Duration::from_millis(delay)).await;
        for i in 0..3 {
            cluster.kill(i);
        }
        let (merged, text) = cut.await.expect("merge through member 0");
        eprintln!("round {round}: the cut merge: ok={merged}: {text}");
        for i in 0..3 {
            cluster.spawn(i);
        }
        cluster.leader().await;
        let via = cluster.endpoint(1);
        // Either finished (one range) or released (the right range takes writes again).
        let key = format!("m-after-{round}");
        let mut client = kv(&via).await;
        put_retrying(&mut client, "cutall", &key, value_of(&key, 128)).await;
        keys.push(key);
        keys.sort();
        assert_eq!(
            scanned_after_restart(&via, "cutall").await,
            keys,
            "keys after a whole-cluster kill {delay} ms into a merge"
        );
        replicas_agree(&via, "cutall");
        let ranges = led_ranges(&via, "cutall").await.len();
        let outcome = if ranges == 1 { "finished" } else { "released" };
        eprintln!("round {round}: the merge was {outcome} after the restart");
    }
}
