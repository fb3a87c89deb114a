//! Quorum buckets on real members through `quorate bucket` and `quorate kv`: definitions in the
//! Raft metadata, R+W>N reads that see the latest acknowledged write, writes on both sides of a
//! partition kept as siblings and resolved by a put with their context, and precise errors.

use serde_json::Value;

use super::*;

/// Runs `quorate ARGS` against `endpoint`; returns (success, stdout + stderr).
fn quorate(endpoint: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(["--endpoints", endpoint, "--command-timeout", "10"])
        .args(args)
        .output()
        .expect("run quorate");
    (output.status.success(), output_text(&output))
}

/// Runs a command that must succeed and print one JSON value.
fn quorate_json(endpoint: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-w", "json"]);
    let (ok, text) = quorate(endpoint, &all);
    assert!(ok, "quorate {args:?}: {text}");
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Reads `key` of `bucket` at `endpoint` with level `r`: (sorted sibling values, context).
fn read(endpoint: &str, bucket: &str, key: &str, r: &str) -> (Vec<String>, String) {
    let reply = quorate_json(endpoint, &["kv", "get", bucket, key, "--r", r]);
    let mut values: Vec<String> = reply["siblings"]
        .as_array()
        .expect("siblings")
        .iter()
        .map(|s| s["value"].as_str().expect("value").to_owned())
        .collect();
    values.sort();
    (
        values,
        reply["context"].as_str().expect("context").to_owned(),
    )
}

fn write(endpoint: &str, bucket: &str, key: &str, value: &str, w: &str, context: &str) -> Value {
    quorate_json(
        endpoint,
        &[
            "kv",
            "put",
            bucket,
            key,
            value,
            "--w",
            w,
            "--context",
            context,
        ],
    )
}

#[tokio::test]
async fn quorum_reads_see_the_latest_acknowledged_write_and_a_partition_makes_siblings() {
    // Goal: the quorum path on real processes. Method: define a bucket (n=3) in the Raft
    // metadata; write 12 values in sequence, each with the context of a quorum read through a
    // different member, and check each read returns exactly the previous write (R+W>N). Then
    // cut m1 off, write at w=one on both sides with the same context, heal: an r=all read
    // returns both as siblings, and a put with that read's context resolves them to one.
    let cluster = Cluster::start(3, &["--unsafe-fault-injection"]);
    cluster.leader().await;
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
    let created = quorate_json(
        &endpoints[0],
        &[
            "bucket",
            "create",
            "users",
            "--n",
            "3",
            "--conflicts",
            "siblings",
        ],
    );
    assert_eq!(created["n"], 3, "{created}");
    assert_eq!(created["r"], "quorum", "{created}");
    // The definition is in the metadata every member applies.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (ok, text) = quorate(&endpoints[2], &["bucket", "show", "users"]);
        if ok {
            assert!(text.contains("users: quorum, n=3"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "m3 never learned the bucket: {text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut previous: Vec<String> = Vec::new();
    for i in 0..12 {
        let at = &endpoints[i % 3];
        let (values, context) = read(at, "users", "alice", "quorum");
        assert_eq!(
            values, previous,
            "read {i} through {at} is not the latest write"
        );
        let value = format!("v{i}");
        let reply = write(
            &endpoints[(i + 1) % 3],
            "users",
            "alice",
            &value,
            "quorum",
            &context,
        );
        assert!(reply["acked"].as_u64().unwrap_or(0) >= 2, "{reply}");
        previous = vec![value];
    }

    // Partition {m1} | {m2, m3}: writes at w=one succeed on both sides.
    let (_, context) = read(&endpoints[1], "users", "alice", "all");
    let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    let block = |i: usize, peers: &str| {
        let (ok, text) = quorate(&endpoints[i], &["fault", "block", "--peers", peers]);
        assert!(ok, "{text}");
    };
    block(0, &format!("{},{}", names[1], names[2]));
    block(1, &names[0]);
    block(2, &names[0]);
    write(&endpoints[0], "users", "alice", "left", "one", &context);
    write(&endpoints[1], "users", "alice", "right", "one", &context);
    // The majority side reads its own write; a quorum write on the minority side fails with
    // how many answered.
    let (values, _) = read(&endpoints[2], "users", "alice", "quorum");
    assert_eq!(values, vec!["right".to_owned()]);
    let (ok, text) = quorate(
        &endpoints[0],
        &["kv", "put", "users", "alice", "x", "--w", "quorum"],
    );
    assert!(!ok, "a quorum write on the minority side succeeded: {text}");
    assert!(
        text.contains("Unavailable") && text.contains("1 of 3 answered, 2 required"),
        "{text}"
    );
    for endpoint in &endpoints {
        let (ok, text) = quorate(endpoint, &["fault", "heal"]);
        assert!(ok, "{text}");
    }

    // Both writes survive as siblings (the failed quorum write on m1 may have stored "x" on
    // m1 too: its outcome is unknown, not failed).
    let (values, context) = read(&endpoints[2], "users", "alice", "all");
    assert!(
        values.contains(&"left".to_owned()) && values.contains(&"right".to_owned()),
        "{values:?}"
    );
    write(&endpoints[2], "users", "alice", "merged", "all", &context);
    for endpoint in &endpoints {
        let (values, _) = read(endpoint, "users", "alice", "all");
        assert_eq!(values, vec!["merged".to_owned()], "through {endpoint}");
    }
}

#[tokio::test]
async fn quorum_errors_are_precise_and_a_dead_replica_fails_only_what_needs_it() {
    // Goal: bad requests and unmet levels get precise gRPC statuses. Method: unknown bucket,
    // n above the members, a conflicting redefinition, a level above n, an oversized key; then
    // SIGKILL one member: w=quorum succeeds, w=all fails naming the shortfall; a delete hides
    // the value.
    let mut cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let at = cluster.endpoint(0);
    let (ok, text) = quorate(&at, &["kv", "get", "nope", "k"]);
    assert!(
        !ok && text.contains("NotFound") && text.contains("bucket \"nope\" not found"),
        "{text}"
    );
    let (ok, text) = quorate(&at, &["bucket", "create", "big", "--n", "5"]);
    assert!(
        !ok && text.contains("n=5 exceeds the 3 voting members"),
        "{text}"
    );
    let (ok, text) = quorate(&at, &["bucket", "create", "bad name"]);
    assert!(!ok && text.contains("InvalidArgument"), "{text}");
    quorate_json(&at, &["bucket", "create", "b", "--n", "3", "--w", "2"]);
    quorate_json(&at, &["bucket", "create", "b", "--n", "3", "--w", "2"]);
    let (ok, text) = quorate(&at, &["bucket", "create", "b", "--n", "2"]);
    assert!(!ok && text.contains("AlreadyExists"), "{text}");
    let (ok, text) = quorate(&at, &["kv", "put", "b", "k", "v", "--w", "4"]);
    assert!(
        !ok && text.contains("w=4 exceeds the bucket's n=3"),
        "{text}"
    );
    let long_key = "k".repeat(5000);
    let (ok, text) = quorate(&at, &["kv", "put", "b", &long_key, "v"]);
    assert!(
        !ok && text.contains("exceeds the limit of 4096 bytes"),
        "{text}"
    );
    let listed = quorate_json(&at, &["bucket", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    cluster.kill(2);
    let reply = write(&at, "b", "k", "v1", "quorum", "");
    assert_eq!(reply["acked"], 2, "{reply}");
    let (ok, text) = quorate(&at, &["kv", "put", "b", "k", "v2", "--w", "all"]);
    assert!(!ok, "{text}");
    // Decided as soon as the dead replica failed, whether or not the live one had answered.
    assert!(
        text.contains("Unavailable") && text.contains("of 3 answered, 3 required ("),
        "{text}"
    );
    let (values, context) = read(&at, "b", "k", "quorum");
    // The w=all put stored on the two live replicas although it failed: unknown, not failed.
    assert!(
        values.contains(&"v1".to_owned()) || values.contains(&"v2".to_owned()),
        "{values:?}"
    );
    let deleted = quorate_json(&at, &["kv", "del", "b", "k", "--context", &context]);
    assert_eq!(deleted["acked"], 2, "{deleted}");
    let (values, _) = read(&at, "b", "k", "quorum");
    assert!(values.is_empty(), "a deleted key still reads {values:?}");
    let (ok, text) = quorate(&at, &["bucket", "delete", "b"]);
    assert!(ok, "{text}");
    let (ok, text) = quorate(&at, &["bucket", "delete", "b"]);
    assert!(!ok && text.contains("NotFound"), "{text}");
}

/// Member ids (hex, as `quorate` prints them) by index.
pub(super) fn member_ids(cluster: &Cluster) -> Vec<String> {
    let list = quorate_json(&cluster.endpoint(0), &["member", "list"]);
    cluster
        .members
        .iter()
        .map(|m| {
            list["members"]
                .as_array()
                .expect("members")
                .iter()
                .find(|e| e["name"] == m.name.as_str())
                .and_then(|e| e["id"].as_str())
                .unwrap_or_else(|| panic!("{} not in {list}", m.name))
                .to_owned()
        })
        .collect()
}

/// Polls a member's metric until `done` holds.
async fn await_metric(port: u16, name: &str, done: impl Fn(i64) -> bool) -> i64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let value = metric(port, name);
        if done(value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{name} stuck at {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls until member `i`'s applied metadata holds `bucket` (`bucket show` reads the member's
/// own copy). A restarted member learns how far the log is committed from the leader, so a
/// test that then leaves it alone must wait for this first.
async fn await_bucket_known(cluster: &Cluster, i: usize, bucket: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (ok, text) = quorate(&cluster.endpoint(i), &["bucket", "show", bucket]);
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {i} never knew {bucket}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn hints_reach_a_replica_that_was_down_and_a_full_hint_bound_fails_no_write() {
    // Goal: hinted handoff. Method: SIGKILL m3; write 5 keys at w=quorum through m1 (m1
    // keeps a hint for m3 each), then 40 larger ones: the 2 KiB hint bound fills and hints
    // are dropped, yet every write succeeds. Restart m3: m1's hints drain. Then kill m1 and
    // m2 and read the first 5 keys from m3 alone at r=one: its copies came by handoff, since
    // no read touched those keys in between.
    let mut cluster = Cluster::start(3, &["--quorum-hint-bytes-max", "2048"]);
    cluster.leader().await;
    let m1 = cluster.endpoint(0);
    quorate_json(&m1, &["bucket", "create", "h", "--n", "3"]);
    cluster.kill(2);
    for i in 0..5 {
        let reply = write(&m1, "h", &format!("k{i}"), &format!("v{i}"), "quorum", "");
        assert_eq!(reply["acked"], 2, "{reply}");
    }
    let big = "x".repeat(200);
    for i in 0..40 {
        let reply = write(&m1, "h", &format!("big{i}"), &big, "quorum", "");
        assert_eq!(
            reply["acked"], 2,
            "a write failed because of hints: {reply}"
        );
    }
    let metrics = cluster.members[0].metrics;
    assert!(metric(metrics, "quorate_quorum_hints_dropped") > 0);
    let held = metric(metrics, "quorate_quorum_hint_bytes");
    assert!((1..=2048).contains(&held), "{held} hint bytes held");

    cluster.spawn(2);
    await_metric(metrics, "quorate_quorum_hint_bytes", |bytes| bytes == 0).await;
    assert!(metric(metrics, "quorate_quorum_hints_delivered") >= 5);
    assert_eq!(metric(metrics, "quorate_quorum_read_repairs"), 0);
    // m3 must have applied the bucket's definition before it is left alone: hints need no
    // definition, reads do.
    await_bucket_known(&cluster, 2, "h").await;
    let m3 = cluster.endpoint(2);
    cluster.kill(0);
    cluster.kill(1);
    for i in 0..5 {
        let (values, _) = read(&m3, "h", &format!("k{i}"), "one");
        assert_eq!(values, vec![format!("v{i}")], "m3 lacks k{i}");
    }
}

#[tokio::test]
async fn a_sloppy_quorum_writes_through_a_fallback_and_hands_the_write_back() {
    // Goal: sloppy vs strict quorum. Method: 4 members, n=3; find a key whose replicas include
    // m4 and SIGKILL m4. A strict bucket's w=all write fails naming the shortfall; a sloppy
    // bucket's succeeds (the fallback holds a hint). Restart m4: the fallback hands the write
    // over; then with only m4 running, an r=one read returns the value.
    let mut cluster = Cluster::start(4, &[]);
    cluster.leader().await;
    let at = cluster.endpoint(0);
    let ids = member_ids(&cluster);
    quorate_json(&at, &["bucket", "create", "strict", "--n", "3"]);
    quorate_json(&at, &["bucket", "create", "sloppy", "--n", "3", "--sloppy"]);
    let shown = quorate_json(&at, &["bucket", "show", "sloppy"]);
    assert_eq!(shown["quorum"], "sloppy", "{shown}");
    let replicas_of = |bucket: &str, key: &str| -> Vec<String> {
        let located = quorate_json(&at, &["kv", "locate", bucket, key]);
        let replicas: Vec<String> = located["replicas"]
            .as_array()
            .expect("replicas")
            .iter()
            .map(|id| id.as_str().expect("id").to_owned())
            .collect();
        assert_eq!(replicas.len(), 3, "{located}");
        assert_eq!(located["fallbacks"].as_array().map(Vec::len), Some(1));
        replicas
    };
    let with_m4 = |bucket: &str| {
        (0..100)
            .map(|i| format!("key{i}"))
            .find(|key| replicas_of(bucket, key).contains(&ids[3]))
            .expect("some key is on m4")
    };
    let strict_key = with_m4("strict");
    let sloppy_key = with_m4("sloppy");
    cluster.kill(3);
    let (ok, text) = quorate(
        &at,
        &["kv", "put", "strict", &strict_key, "v", "--w", "all"],
    );
    assert!(!ok && text.contains("3 required"), "{text}");
    let reply = write(&at, "sloppy", &sloppy_key, "handed", "all", "");
    assert_eq!(reply["acked"], 3, "{reply}");

    cluster.spawn(3);
    // The fallback is the one member that is not a replica of the key.
    let fallback = (0..3)
        .find(|&i| !replicas_of("sloppy", &sloppy_key).contains(&ids[i]))
        .expect("a fallback among m1..m3");
    let metrics = cluster.members[fallback].metrics;
    await_metric(metrics, "quorate_quorum_hints_delivered", |n| n >= 1).await;
    await_bucket_known(&cluster, 3, "sloppy").await;
    for i in 0..3 {
        cluster.kill(i);
    }
    let (values, _) = read(&cluster.endpoint(3), "sloppy", &sloppy_key, "one");
    assert_eq!(values, vec!["handed".to_owned()]);
}

/// The liveness `observer`'s failure detector reports for member `of` (by id); None when the
/// member list could not be read (it is linearizable: during an election it may time out).
fn liveness_of(cluster: &Cluster, observer: usize, of: &str) -> Option<Value> {
    let (ok, text) = quorate(
        &cluster.endpoint(observer),
        &["member", "list", "-w", "json"],
    );
    if !ok {
        return None;
    }
    let list: Value = serde_json::from_str(text.trim()).ok()?;
    list["members"]
        .as_array()?
        .iter()
        .find(|m| m["id"] == of)
        .map(|m| m["liveness"].clone())
}

/// Polls until `observer` reports `of` with `status` (the phi detector's).
async fn await_liveness(cluster: &Cluster, observer: usize, of: &str, status: &str) -> Value {
    await_liveness_field(cluster, observer, of, "status", status).await
}

/// Polls until `observer` reports `of` with `field` (`status`: phi; `swim`: SWIM) at `status`.
async fn await_liveness_field(
    cluster: &Cluster,
    observer: usize,
    of: &str,
    field: &str,
    status: &str,
) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let seen = liveness_of(cluster, observer, of);
        if let Some(seen) = &seen
            && seen[field] == status
        {
            return seen.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{of} never became {status}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_failure_detector_suspects_a_cut_off_member_and_clears_it_after_healing() {
    // Goal: SWIM gossip and phi-accrual liveness on real members. Method: members gossip;
    // m1 sees m2 and m3 alive (phi and SWIM). Cut m3 off (both directions, fault hook): m1's
    // phi for m3 climbs past the threshold (suspect) and SWIM declares it down, while m2
    // stays alive. A quorum write through m1 still succeeds (m1 and m2). Heal: m3 is alive
    // again to both.
    let cluster = Cluster::start(3, &["--unsafe-fault-injection"]);
    cluster.leader().await;
    let ids = member_ids(&cluster);
    await_liveness(&cluster, 0, &ids[0], "self").await;
    await_liveness(&cluster, 0, &ids[1], "alive").await;
    await_liveness(&cluster, 0, &ids[2], "alive").await;
    await_liveness_field(&cluster, 0, &ids[1], "swim", "alive").await;
    await_liveness_field(&cluster, 0, &ids[2], "swim", "alive").await;
    let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    let fault = |i: usize, args: &[&str]| {
        let (ok, text) = quorate(&cluster.endpoint(i), &[&["fault"][..], args].concat());
        assert!(ok, "{text}");
    };
    fault(
        2,
        &["block", "--peers", &format!("{},{}", names[0], names[1])],
    );
    fault(0, &["block", "--peers", &names[2]]);
    fault(1, &["block", "--peers", &names[2]]);
    let suspect = await_liveness(&cluster, 0, &ids[2], "suspect").await;
    assert!(suspect["phi"].as_f64().unwrap_or(0.0) >= 8.0, "{suspect}");
    await_liveness_field(&cluster, 0, &ids[2], "swim", "down").await;
    let swim_metric = |of: &str| {
        metric(
            cluster.members[0].metrics,
            &format!("quorate_peer_swim{{peer=\"{of}\"}}"),
        )
    };
    assert_eq!(swim_metric(&ids[2]), 2, "m3 down in m1's metrics");
    assert_eq!(swim_metric(&ids[1]), 0, "m2 alive in m1's metrics");
    await_liveness(&cluster, 0, &ids[1], "alive").await;
    let m2 = liveness_of(&cluster, 0, &ids[1]).expect("m2's liveness");
    assert_eq!(m2["swim"], "alive", "{m2}");
    // Defining the bucket goes through Raft, which may be electing a leader after the cut.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (ok, text) = quorate(
            &cluster.endpoint(0),
            &["bucket", "create", "live", "--n", "3"],
        );
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "bucket never created: {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reply = write(&cluster.endpoint(0), "live", "k", "v", "quorum", "");
    assert_eq!(reply["acked"], 2, "{reply}");
    for i in 0..3 {
        fault(i, &["heal"]);
    }
    await_liveness(&cluster, 0, &ids[2], "alive").await;
    await_liveness_field(&cluster, 0, &ids[2], "swim", "alive").await;
    await_liveness_field(&cluster, 2, &ids[0], "swim", "alive").await;
}

#[tokio::test]
async fn a_monotonic_read_repairs_the_replicas_it_read_before_replying() {
    // Goal: blocking read repair. Method: m1 cannot send to anyone, so a w=one put through it
    // stays on m1 alone (its hint cannot be delivered either). A monotonic r=all read through
    // m2 finds it; the read repairs m2 and m3 before replying. Then SIGKILL m1: a read at
    // r=one, which can only reach m2 or m3, still returns the value.
    let mut cluster = Cluster::start(3, &["--unsafe-fault-injection"]);
    cluster.leader().await;
    let (m1, m2, m3) = (
        cluster.endpoint(0),
        cluster.endpoint(1),
        cluster.endpoint(2),
    );
    quorate_json(&m2, &["bucket", "create", "mono", "--n", "3"]);
    let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    let (ok, text) = quorate(
        &m1,
        &[
            "fault",
            "block",
            "--peers",
            &format!("{},{}", names[1], names[2]),
        ],
    );
    assert!(ok, "{text}");
    let reply = write(&m1, "mono", "k", "fresh", "one", "");
    assert_eq!(reply["acked"], 1, "{reply}");
    let repaired = quorate_json(
        &m2,
        &["kv", "get", "mono", "k", "--r", "all", "--monotonic"],
    );
    assert_eq!(repaired["siblings"][0]["value"], "fresh", "{repaired}");
    cluster.kill(0);
    let (values, _) = read(&m3, "mono", "k", "one");
    assert_eq!(values, vec!["fresh".to_owned()]);
}

/// Objects member `i` stores (its ring-change status reports them).
fn stored_objects(cluster: &Cluster, i: usize) -> u64 {
    let me = member_ids(cluster)[i].clone();
    // `ring status -w json` prints one JSON value per member.
    let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args([
            "--endpoints",
            &cluster.endpoint(i),
            "ring",
            "status",
            "-w",
            "json",
        ])
        .output()
        .expect("run quorate");
    output_text(&output)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|v| v["member"] == me.as_str())
        .and_then(|v| v["objects"].as_u64())
        .unwrap_or_else(|| panic!("no status of member {i}"))
}

#[tokio::test]
async fn tombstones_are_reaped_only_once_every_replica_holds_the_delete_and_nothing_resurrects() {
    // Goal: a deleted key's entry goes after the grace period, but not while a replica that
    // may hold the old value is cut off; nothing comes back after healing; a write after the
    // reap is not taken for one the delete superseded. Method: grace 1 s on m1 and m2, 1 h on
    // m3; write k at w=all; cut m3 off; delete k at w=quorum through m1 (m3 keeps the value);
    // wait four grace periods: nothing is reaped; heal: m3 gets the delete, m1 and m2 reap
    // (m3 keeps its tombstone: its grace is long); a new put of k through m1 — whose dot must
    // stay above what m3's tombstone has seen — reads back alone ("old" does not come back)
    // from every member.
    let mut cluster = Cluster::stopped(3, &["--unsafe-fault-injection"]);
    for (i, grace) in [(0, "1s"), (1, "1s"), (2, "1h")] {
        cluster.spawn_with(i, &["--quorum-tombstone-grace", grace]);
    }
    cluster.leader().await;
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
    quorate_json(&endpoints[0], &["bucket", "create", "t", "--n", "3"]);
    write(&endpoints[0], "t", "k", "old", "all", "");
    let (_, context) = read(&endpoints[0], "t", "k", "all");
    let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    let fault = |i: usize, args: &[&str]| {
        let mut all = vec!["fault"];
        all.extend(args);
        let (ok, text) = quorate(&endpoints[i], &all);
        assert!(ok, "{text}");
    };
    fault(
        2,
        &["block", "--peers", &format!("{},{}", names[0], names[1])],
    );
    fault(0, &["block", "--peers", &names[2]]);
    fault(1, &["block", "--peers", &names[2]]);
    let deleted = quorate_json(
        &endpoints[0],
        &[
            "kv",
            "del",
            "t",
            "k",
            "--w",
            "quorum",
            "--context",
            &context,
        ],
    );
    assert_eq!(deleted["acked"], 2, "{deleted}");
    let reaped = |i: usize| {
        metric(
            cluster.members[i].metrics,
            "quorate_quorum_tombstones_reaped",
        )
    };
    // Four grace periods with a replica unreachable: the delete stays where it is.
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!(
            (0..3).map(reaped).sum::<i64>(),
            0,
            "reaped while m3 was cut off"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        stored_objects(&cluster, 2),
        1,
        "m3 still holds the old value"
    );
    for i in 0..3 {
        fault(i, &["heal"]);
    }
    let deadline = Instant::now() + DEADLINE;
    while stored_objects(&cluster, 0) + stored_objects(&cluster, 1) > 0 {
        assert!(
            Instant::now() < deadline,
            "m1 and m2 never reaped the entry"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(reaped(0) >= 1 && reaped(1) >= 1);
    assert_eq!(reaped(2), 0, "m3's grace is an hour");
    assert_eq!(stored_objects(&cluster, 2), 1, "m3 keeps its tombstone");
    // No read in between: its read repair would hand m3's tombstone back to m1 and m2.
    write(&endpoints[0], "t", "k", "new", "all", "");
    for endpoint in &endpoints {
        let (values, _) = read(endpoint, "t", "k", "all");
        assert_eq!(values, vec!["new".to_owned()], "through {endpoint}");
    }
}
