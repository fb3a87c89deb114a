//! Fault tests with real SIGKILLs: leader loss, restart catch-up, whole-cluster crash, and
//! catch-up by snapshot after log compaction. Each checks that no acknowledged write is lost.

use super::*;

/// Reads every key `prefix{0..count}` through a linearizable read and checks its value.
async fn assert_all_present(cluster: &Cluster, prefix: &str, count: usize) {
    let deadline = Instant::now() + DEADLINE;
    let mut client = loop {
        if let Ok(client) = Client::connect(cluster.endpoints_except(None), None).await {
            break client;
        }
        assert!(Instant::now() < deadline, "no member reachable");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let response = loop {
        match client
            .get(prefix, Some(GetOptions::new().with_prefix()))
            .await
        {
            Ok(response) => break response,
            Err(error) => assert!(Instant::now() < deadline, "read never succeeded: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let found: std::collections::BTreeMap<String, String> = response
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into(),
                String::from_utf8_lossy(kv.value()).into(),
            )
        })
        .collect();
    for i in 0..count {
        let key = format!("{prefix}{i:04}");
        assert_eq!(
            found.get(&key).map(String::as_str),
            Some(format!("v{i}").as_str()),
            "acknowledged {key} lost"
        );
    }
}

#[tokio::test]
async fn leader_crash_elects_a_new_leader_and_the_crashed_member_catches_up() {
    // Goal: after SIGKILL of the leader, writes succeed through the others, and the restarted
    // member catches up. Method: kill, write through survivors, restart, poll its local reads.
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().await;
    for i in 0..20 {
        put_eventually(
            cluster.endpoints_except(None),
            &format!("before{i:04}"),
            &format!("v{i}"),
        )
        .await;
    }
    cluster.kill(leader);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader, "a killed member cannot lead");
    for i in 0..20 {
        put_eventually(
            cluster.endpoints_except(Some(leader)),
            &format!("after{i:04}"),
            &format!("v{i}"),
        )
        .await;
    }
    cluster.spawn(leader);
    await_local_value(&cluster, leader, "after0019", "v19").await;
    assert_all_present(&cluster, "before", 20).await;
    assert_all_present(&cluster, "after", 20).await;
}

#[tokio::test]
async fn crash_of_every_member_loses_no_acknowledged_write() {
    // Goal: acknowledged writes are durable (fsync'd on a majority). Method: write, SIGKILL all
    // three members at once, restart them, read everything back.
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    for i in 0..50 {
        put_eventually(
            cluster.endpoints_except(None),
            &format!("k{i:04}"),
            &format!("v{i}"),
        )
        .await;
    }
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    cluster.leader().await;
    assert_all_present(&cluster, "k", 50).await;
}

#[tokio::test]
async fn member_down_during_log_compaction_catches_up_by_snapshot() {
    const WRITES: usize = 400;
    // Goal: a member whose missing entries were compacted away is sent a snapshot. Method:
    // snapshot every 20 entries keeping 10 behind, keep one member down for 400 writes,
    // restart it, check its local state and that it installed a snapshot from the leader
    // (its metrics count them).
    let mut cluster = Cluster::start(
        3,
        &[
            "--snapshot-count",
            "20",
            "--experimental-snapshot-catchup-entries",
            "10",
        ],
    );
    let leader = cluster.leader().await;
    let down = (leader + 1) % 3;
    cluster.kill(down);
    // More than the purge batch (256 entries), so the log really is purged behind the
    // snapshots; eight writers in parallel.
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..8 {
        let endpoints = cluster.endpoints_except(Some(down));
        writers.spawn(async move {
            for i in (w..WRITES).step_by(8) {
                put_eventually(endpoints.clone(), &format!("s{i:04}"), &format!("v{i}")).await;
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    put_eventually(cluster.endpoints_except(Some(down)), "t-end", "done").await;
    // Restart only once the leader purged what the down member misses.
    let leader = cluster.leader().await;
    let deadline = Instant::now() + DEADLINE;
    while metric(cluster.members[leader].metrics, "quorate_raft_purged_index") < 100 {
        assert!(Instant::now() < deadline, "the leader never purged its log");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let snapshot_file = cluster.members[down].dir.join("snapshot");
    assert!(
        !snapshot_file.exists(),
        "the member went down before any snapshot was due"
    );
    cluster.spawn(down);
    await_local_value(&cluster, down, "t-end", "done").await;
    // The counter moves just after the installed state becomes readable: poll it.
    let deadline = Instant::now() + DEADLINE;
    while metric(
        cluster.members[down].metrics,
        "quorate_raft_snapshots_installed",
    ) < 1
    {
        assert!(
            Instant::now() < deadline,
            "the lagging member installed no snapshot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        snapshot_file.exists(),
        "an installed snapshot is kept on disk"
    );
    let mut client = cluster.client(down).await;
    let local = client
        .get(
            "s",
            Some(GetOptions::new().with_prefix().with_serializable()),
        )
        .await
        .expect("local read");
    assert_eq!(
        local.kvs().len(),
        WRITES,
        "the restarted member holds every write"
    );
}

#[tokio::test]
async fn without_a_quorum_writes_and_linearizable_reads_fail_with_etcds_unavailable_errors() {
    let mut cluster = Cluster::start(3, &["--request-timeout", "1500"]);
    let leader = cluster.leader().await;
    put_eventually(cluster.endpoints_except(None), "q/before", "1").await;
    // Leave one member alone: whether it led or followed, nothing can commit.
    let survivor = (leader + 1) % 3;
    await_local_value(&cluster, survivor, "q/before", "1").await;
    for i in 0..3 {
        if i != survivor {
            cluster.kill(i);
        }
    }
    let mut client = cluster.client(survivor).await;
    let unavailable = ["etcdserver: request timed out", "etcdserver: no leader"];
    let (code, message) = status_of(client.put("q/after", "2", None).await.unwrap_err());
    assert_eq!(code, tonic::Code::Unavailable, "{message}");
    assert!(unavailable.contains(&message.as_str()), "{message}");
    let (code, message) = status_of(client.get("q/before", None).await.unwrap_err());
    assert_eq!(code, tonic::Code::Unavailable, "{message}");
    assert!(unavailable.contains(&message.as_str()), "{message}");
    // A serializable read is still served from the survivor's own state.
    let local = client
        .get("q/before", Some(GetOptions::new().with_serializable()))
        .await
        .expect("serializable read without a quorum");
    assert_eq!(local.kvs()[0].value(), b"1");
}

/// Runs `quorate fault` against one endpoint; returns (success, stdout + stderr).
pub(super) fn fault(endpoint: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(["--endpoints", endpoint, "fault"])
        .args(args)
        .output()
        .expect("run quorate fault");
    (output.status.success(), output_text(&output))
}

#[tokio::test]
async fn an_isolated_leader_loses_leadership_and_never_serves_a_stale_linearizable_read() {
    // Goal: the fault-injection hook really partitions, and the partition shows what Raft
    // promises. Method: block the leader's messages to both followers and theirs to it with
    // `quorate fault`; the majority elects a new leader and takes a write; a linearizable
    // read at the old leader must not return the old value (it fails instead); after
    // `heal` the old member catches up and serves the new value.
    let cluster = Cluster::start(3, &["--unsafe-fault-injection"]);
    let old = cluster.leader().await;
    put_eventually(cluster.endpoints_except(None), "part/k", "before").await;
    let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let others_names = others
        .iter()
        .map(|&i| names[i].clone())
        .collect::<Vec<_>>()
        .join(",");
    let (ok, text) = fault(&cluster.endpoint(old), &["block", "--peers", &others_names]);
    assert!(ok, "{text}");
    assert!(text.contains("blocked [http://127.0.0.1:"), "{text}");
    for &i in &others {
        let (ok, text) = fault(&cluster.endpoint(i), &["block", "--peers", &names[old]]);
        assert!(ok, "{text}");
    }

    // The majority side elects a leader of its own and accepts a write.
    put_eventually(cluster.endpoints_except(Some(old)), "part/k", "after").await;
    let mut isolated = cluster.client(old).await;
    match isolated.get("part/k", None).await {
        Ok(response) => {
            let value = response.kvs().first().map(|kv| kv.value().to_vec());
            assert_eq!(
                value.as_deref(),
                Some(&b"after"[..]),
                "an isolated member answered a linearizable read with a stale value"
            );
        }
        Err(error) => {
            let (code, _) = status_of(error);
            assert_ne!(code, tonic::Code::Ok);
        }
    }
    let (ok, status) = fault(&cluster.endpoint(old), &["status", "-w", "json"]);
    assert!(ok, "{status}");
    let state: serde_json::Value = serde_json::from_str(status.trim()).expect("json");
    assert!(
        state[0]["blocked_messages"].as_u64().unwrap_or(0) > 0,
        "{state}"
    );

    for i in 0..3 {
        let (ok, text) = fault(&cluster.endpoint(i), &["heal"]);
        assert!(ok, "{text}");
        assert!(text.contains("blocked []"), "{text}");
    }
    await_local_value(&cluster, old, "part/k", "after").await;
    let read = isolated.get("part/k", None).await.expect("read after heal");
    assert_eq!(read.kvs()[0].value(), b"after");
}

#[tokio::test]
async fn fault_commands_are_refused_by_a_member_without_the_hook() {
    // Goal: the hook exists only on members started with --unsafe-fault-injection.
    let cluster = Cluster::start(1, &[]);
    cluster.leader().await;
    let (ok, text) = fault(&cluster.endpoint(0), &["heal"]);
    assert!(!ok);
    assert!(text.contains("--unsafe-fault-injection"), "{text}");
}

#[tokio::test]
async fn a_clock_step_never_expires_a_lease_and_a_fast_clock_expires_it_early() {
    // Goal: the clock fault acts on what the member times by its clock (lease deadlines),
    // and a step is not mistaken for elapsed time. Method: on a one-member cluster, step the
    // clock two minutes ahead of a 30 s lease: the lessor must re-arm the lease (its TTL
    // comes back above zero) instead of revoking it. Then run the clock 8 times fast: a 40 s
    // lease granted after that ends (in about 5 s) long before 40 s of host time. (Much
    // faster, one 100 ms tick would span more than the lessor's pause bound of a tick plus an
    // election timeout, and it would keep extending as after a pause.)
    // `heal` removes the skew.
    let cluster = Cluster::start(1, &["--unsafe-fault-injection"]);
    cluster.leader().await;
    let endpoint = cluster.endpoint(0);
    let mut client = cluster.client(0).await;
    let stepped = client.lease_grant(30, None).await.expect("grant").id();
    client
        .put(
            "clk/stepped",
            "v",
            Some(PutOptions::new().with_lease(stepped)),
        )
        .await
        .expect("put");
    let (ok, text) = fault(&endpoint, &["clock", "--offset-ms", "120000", "-w", "json"]);
    assert!(ok, "{text}");
    let state: serde_json::Value = serde_json::from_str(text.trim()).expect("json");
    assert!(
        state[0]["clock_offset_ms"].as_i64().unwrap_or(0) >= 119_000,
        "{state}"
    );
    // Right after the step the deadline lies in the past (TTL 0) until the lessor's next tick
    // decides: re-armed (TTL > 0) or revoked (TTL -1).
    let deadline = Instant::now() + DEADLINE;
    loop {
        let ttl = client
            .lease_time_to_live(stepped, None)
            .await
            .expect("ttl")
            .ttl();
        assert_ne!(ttl, -1, "a clock step expired a 30 s lease");
        if ttl > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the lease was never re-armed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = client.get("clk/stepped", None).await.expect("get");
    assert_eq!(kept.kvs().len(), 1, "the leased key survived the step");

    let (ok, text) = fault(&endpoint, &["clock", "--rate", "8"]);
    assert!(ok, "{text}");
    assert!(text.contains("at rate 8"), "{text}");
    let fast = client.lease_grant(40, None).await.expect("grant").id();
    client
        .put("clk/fast", "v", Some(PutOptions::new().with_lease(fast)))
        .await
        .expect("put");
    let granted = Instant::now();
    loop {
        let ttl = client
            .lease_time_to_live(fast, None)
            .await
            .expect("ttl")
            .ttl();
        if ttl == -1 {
            break;
        }
        assert!(
            granted.elapsed() < DEADLINE,
            "a 40 s lease on a clock running 8x fast outlived {DEADLINE:?} of host time"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = client.get("clk/fast", None).await.expect("get");
    assert!(gone.kvs().is_empty(), "the expired lease's key was deleted");

    let (ok, text) = fault(&endpoint, &["heal"]);
    assert!(ok, "{text}");
    assert!(text.contains("clock +0 ms at rate 1"), "{text}");
    let (ok, text) = fault(&endpoint, &["clock", "--rate", "1000"]);
    assert!(!ok, "an absurd rate is refused");
    assert!(text.contains("outside"), "{text}");
}
