//! Ring changes of quorum buckets on real members under writes: a fourth member joins the
//! ring and later a first one leaves it, while writers keep rewriting keys at w=quorum. After
//! each switch every acknowledged write is read back at r=quorum (the latest acknowledged
//! version or a later one), and once the members cleaned up, each key is on exactly N members
//! and the moved share of replicas is about a quarter (1/members).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use proto::quorate::v1 as pb;
use proto::quorate::v1::kv_client::KvClient;
use proto::quorate::v1::ring_client::RingClient;
use tonic::transport::Channel;

use super::*;

const KEYS: usize = 480;
const WRITERS: usize = 4;

/// Writes acknowledged by every writer so far.
static WRITES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn quorum() -> Option<pb::Level> {
    Some(pb::Level {
        kind: pb::LevelKind::LevelQuorum as i32,
        count: 0,
    })
}

async fn channel(endpoint: &str) -> Channel {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match Channel::from_shared(endpoint.to_owned())
            .expect("endpoint")
            .connect()
            .await
        {
            Ok(channel) => return channel,
            Err(error) => {
                assert!(Instant::now() < deadline, "connect {endpoint}: {error}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The highest version among a read's siblings ("v<version>").
fn version_of(reply: &pb::GetResponse) -> Option<u64> {
    reply
        .siblings
        .iter()
        .filter_map(|s| {
            std::str::from_utf8(&s.value)
                .ok()?
                .strip_prefix('v')?
                .parse()
                .ok()
        })
        .max()
}

/// The last acknowledged version of each key.
type Acked = Arc<Mutex<BTreeMap<usize, u64>>>;

/// Rewrites the keys `writer`, `writer + WRITERS`, ... in turn with rising versions through
/// the members at `endpoints` (round robin), each put with the context of its previous put of
/// that key, until `stop`; records each acknowledged version.
async fn rewrite(
    writer: usize,
    endpoints: Vec<String>,
    acked: Acked,
    stop: tokio::sync::watch::Receiver<bool>,
) -> usize {
    let mut clients = Vec::new();
    for endpoint in &endpoints {
        clients.push(KvClient::new(channel(endpoint).await));
    }
    let mut contexts: BTreeMap<usize, String> = BTreeMap::new();
    let mut version = 1_000;
    let mut writes = 0;
    for round in 0.. {
        for key in (writer..KEYS).step_by(WRITERS) {
            if *stop.borrow() {
                return writes;
            }
            version += 1;
            let client = &mut clients[(round + key) % endpoints.len()];
            let put = client
                .put(pb::PutRequest {
                    bucket: "moves".into(),
                    key: format!("k{key}").into_bytes(),
                    value: format!("v{version}").into_bytes(),
                    w: quorum(),
                    context: contexts.get(&key).cloned().unwrap_or_default(),
                    timeout_ms: 5_000,
                })
                .await;
            if let Ok(reply) = put {
                contexts.insert(key, reply.into_inner().context);
                acked.lock().unwrap().insert(key, version);
                WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                writes += 1;
            }
        }
    }
    unreachable!("the loop returns at stop")
}

/// Runs the writers until `change` is done (started once they have some writes
/// acknowledged); returns the writes acknowledged.
async fn under_writes<F: std::future::Future<Output = ()>>(
    endpoints: Vec<String>,
    acked: &Acked,
    change: F,
) -> usize {
    let before = WRITES.load(std::sync::atomic::Ordering::Relaxed);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            tokio::spawn(rewrite(
                w,
                endpoints.clone(),
                acked.clone(),
                stop_rx.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + DEADLINE;
    while WRITES.load(std::sync::atomic::Ordering::Relaxed) < before + 2 * WRITERS {
        assert!(
            Instant::now() < deadline,
            "the writers acknowledged nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    change.await;
    stop_tx.send(true).unwrap();
    let mut writes = 0;
    for writer in writers {
        writes += writer.await.expect("writer");
    }
    writes
}

/// Reads every key at r=quorum through `endpoints` in turn: each must hold its last
/// acknowledged version or a later one.
async fn check_acknowledged(endpoints: &[String], acked: &Acked) {
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), KEYS, "every key was written");
    let mut clients = Vec::new();
    for endpoint in endpoints {
        clients.push(KvClient::new(channel(endpoint).await));
    }
    for (key, version) in acked {
        let client = &mut clients[key % endpoints.len()];
        let reply = client
            .get(pb::GetRequest {
                bucket: "moves".into(),
                key: format!("k{key}").into_bytes(),
                r: quorum(),
                timeout_ms: 5_000,
                monotonic: false,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("read k{key}: {e}"))
            .into_inner();
        let read = version_of(&reply);
        assert!(
            read >= Some(version),
            "k{key}: read {read:?}, acknowledged v{version} (lost write)"
        );
    }
}

/// Each running member's handoff status.
async fn handoffs(endpoints: &[String]) -> Vec<pb::HandoffResponse> {
    let mut out = Vec::new();
    for endpoint in endpoints {
        let mut ring = RingClient::new(channel(endpoint).await);
        out.push(
            ring.handoff(pb::HandoffRequest {})
                .await
                .expect("handoff status")
                .into_inner(),
        );
    }
    out
}

/// Waits until the members at `endpoints` hold `KEYS * 3` objects together (every key on
/// exactly N = 3 members: streams done and cleanups finished); returns each one's count.
async fn await_clean(endpoints: &[String]) -> Vec<u64> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let counts: Vec<u64> = handoffs(endpoints)
            .await
            .iter()
            .map(|h| h.objects)
            .collect();
        if counts.iter().sum::<u64>() == (KEYS * 3) as u64 {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "objects per member stuck at {counts:?}, want {} in all",
            KEYS * 3
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs `quorate ring ARGS` at `endpoint` as a child process (the writers go on);
/// asserts success.
async fn ring_cli(endpoint: &str, args: &[&str]) -> String {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_quorate"));
    command
        .args(["--endpoints", endpoint, "--command-timeout", "10", "ring"])
        .args(args)
        .kill_on_drop(true);
    // `--wait` follows a ring change for as long as it takes; a change that never finishes
    // fails the test here instead of holding the suite.
    let output = tokio::time::timeout(DEADLINE * 4, command.output())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "quorate ring {args:?} did not finish within {:?}",
                DEADLINE * 4
            )
        })
        .expect("run quorate");
    let text = output_text(&output);
    assert!(output.status.success(), "quorate ring {args:?}: {text}");
    text
}

/// Three ring members with bucket `moves` (n=3) holding every key once, and a fourth member
/// in the cluster (a learner: it holds data, it does not vote) but not yet in the ring.
struct Setup {
    cluster: Cluster,
    acked: Acked,
    joiner: usize,
    m4_id: String,
}

async fn three_and_a_joiner(extra_args: &[&str]) -> Setup {
    let mut cluster = Cluster::start(3, extra_args);
    let leader = cluster.leader().await;
    let m1 = cluster.endpoint(0);
    let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(["--endpoints", &m1, "bucket", "create", "moves", "--n", "3"])
        .output()
        .expect("run quorate");
    assert!(output.status.success(), "{}", output_text(&output));
    let three: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
    let acked: Acked = Arc::new(Mutex::new(BTreeMap::new()));
    // Every key once, before any change.
    under_writes(three.clone(), &acked, async {
        let deadline = Instant::now() + DEADLINE;
        while acked.lock().unwrap().len() < KEYS {
            assert!(Instant::now() < deadline, "the first writes did not finish");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(await_clean(&three).await, vec![KEYS as u64; 3]);

    let joiner = cluster.add_slot();
    let mut client = cluster.client(leader).await;
    let peer_url = format!("http://127.0.0.1:{}", cluster.members[joiner].peer);
    let added = client
        .member_add(
            [peer_url],
            Some(etcd_client::MemberAddOptions::new().with_is_learner()),
        )
        .await
        .expect("member add");
    let m4_id = format!("{:x}", added.member().expect("added").id());
    cluster.spawn_with(joiner, &["--initial-cluster-state", "existing"]);
    let m4 = cluster.endpoint(joiner);
    // It has applied the bucket once its ring shows the three members.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
            .args(["--endpoints", &m4, "ring", "show"])
            .output()
            .expect("run quorate");
        if output.status.success() && output_text(&output).contains("epoch 0: members") {
            break;
        }
        assert!(Instant::now() < deadline, "m4 never learned the ring");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Setup {
        cluster,
        acked,
        joiner,
        m4_id,
    }
}

#[tokio::test]
async fn ring_changes_under_writes_move_a_quarter_of_the_replicas_and_lose_no_acknowledged_write() {
    // Goal: a ring change moves about 1/members of the replicas and loses no acknowledged
    // write while writes go on. Method: 3 members, bucket n=3, every key written once; add m4
    // to the cluster and then to the ring while 4 writers rewrite the keys at w=quorum; read
    // every key back; count objects per member once cleanups finished. Then remove m1 from
    // the ring under writes, and check the same.
    let Setup {
        cluster,
        acked,
        joiner,
        m4_id,
        ..
    } = three_and_a_joiner(&[]).await;
    let m1 = cluster.endpoint(0);
    let m4 = cluster.endpoint(joiner);

    let four: Vec<String> = (0..4).map(|i| cluster.endpoint(i)).collect();
    let writes = under_writes(four.clone(), &acked, async {
        let shown = ring_cli(&m1, &["add", &m4_id, "--wait"]).await;
        assert!(shown.contains("epoch 2: members"), "{shown}");
        assert!(shown.contains(&m4_id), "{shown}");
    })
    .await;
    assert!(writes > 0, "no write was acknowledged during the join");
    check_acknowledged(&four, &acked).await;
    let counts = await_clean(&four).await;
    let moved = counts[3] as f64 / (KEYS * 3) as f64;
    assert!(
        (0.17..=0.33).contains(&moved),
        "m4 holds {moved:.3} of the replicas ({counts:?}); about 1/4 expected"
    );
    eprintln!("join: {writes} writes acknowledged during it; objects per member {counts:?}");
    let statuses = handoffs(&four).await;
    let sent: u64 = statuses.iter().map(|h| h.sent).sum();
    assert!(
        statuses[3].created > 0 && sent >= statuses[3].created,
        "m4 got its copies by streaming: {statuses:?}"
    );

    // m1 leaves the ring under writes; its replicas move to the other three.
    let m1_id = super::quorum::member_ids(&cluster)[0].clone();
    let rest: Vec<String> = (1..4).map(|i| cluster.endpoint(i)).collect();
    under_writes(rest.clone(), &acked, async {
        let shown = ring_cli(&m4, &["remove", &m1_id, "--wait"]).await;
        assert!(shown.contains("epoch 4: members"), "{shown}");
    })
    .await;
    let shown: serde_json::Value =
        serde_json::from_str(ring_cli(&m4, &["show", "-w", "json"]).await.trim()).expect("json");
    let members: Vec<&str> = shown["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    assert_eq!(members.len(), 3, "{shown}");
    assert!(!members.contains(&m1_id.as_str()), "{shown}");
    check_acknowledged(&rest, &acked).await;
    let counts = await_clean(&four).await;
    assert_eq!(
        counts[0], 0,
        "m1 dropped every copy after leaving: {counts:?}"
    );
    assert_eq!(
        counts[1..],
        [KEYS as u64; 3],
        "each key on all of the three left"
    );
}

/// The ring as `endpoint` shows it (JSON).
async fn ring_show(endpoint: &str) -> serde_json::Value {
    let text = ring_cli(endpoint, &["show", "-w", "json"]).await;
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Polls `endpoint`'s ring until `done` holds; returns it.
async fn await_ring(
    endpoint: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let shown = ring_show(endpoint).await;
        if done(&shown) {
            return shown;
        }
        assert!(Instant::now() < deadline, "the ring never {what}: {shown}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_ring_change_waits_for_a_cut_off_member_outlives_restarts_and_can_be_aborted() {
    // Goal: a ring change under faults. Method: (1) with m4 down, `ring add m4` starts but
    // the streams to m4 fail and retry (`ring status` names the failure) and the ring does
    // not switch; `ring abort` keeps the old ring. (2) With m4 back and m3 cut off (fault
    // hook), writers rewrite keys through m1, m2 and m4 while m4 joins again: m3 cannot
    // stream, so the change stays pending, also across a restart of m2; healed, the ring
    // switches. Every acknowledged write is read back and every key ends on exactly N members.
    let Setup {
        mut cluster,
        acked,
        joiner,
        m4_id,
    } = three_and_a_joiner(&["--unsafe-fault-injection"]).await;
    let m1 = cluster.endpoint(0);

    // (1) The joiner is down: the change cannot finish; abort it.
    cluster.kill(joiner);
    let started = ring_cli(&m1, &["add", &m4_id]).await;
    assert!(
        started.contains(&format!("add member {m4_id}")),
        "{started}"
    );
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = ring_cli(&m1, &["status", "-w", "json"]).await;
        let retrying = status
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|h| {
                h["state"] == "retrying"
                    && h["error"]
                        .as_str()
                        .is_some_and(|e| e.contains(&format!("member {m4_id}")))
            });
        if retrying {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no stream failed on m4: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pending = ring_show(&m1).await;
    assert_eq!(pending["epoch"], 1, "{pending}");
    assert!(pending["pending"].is_object(), "{pending}");
    let aborted = ring_cli(&m1, &["abort", "-w", "json"]).await;
    let aborted: serde_json::Value = serde_json::from_str(aborted.trim()).expect("json");
    assert_eq!(aborted["epoch"], 2, "{aborted}");
    assert!(aborted["pending"].is_null(), "{aborted}");
    assert_eq!(aborted["members"].as_array().map(Vec::len), Some(3));
    cluster.spawn_with(joiner, &["--initial-cluster-state", "existing"]);

    // (2) m3 cut off from everyone while m4 joins under writes; m2 restarts meanwhile.
    // (Ids first: with m3 cut off the members may be electing a leader for a while.)
    let m3_id = {
        let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
            .args(["--endpoints", &m1, "member", "list", "-w", "json"])
            .output()
            .expect("run quorate");
        let list: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("member list json");
        list["members"]
            .as_array()
            .expect("members")
            .iter()
            .find(|m| m["name"] == "m3")
            .and_then(|m| m["id"].as_str())
            .expect("m3's id")
            .to_owned()
    };
    let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    // Retried while a member has not yet learned a peer's name (m4 publishes it on start).
    let fault = |cluster: &Cluster, i: usize, args: &[&str]| {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
                .args(["--endpoints", &cluster.endpoint(i), "fault"])
                .args(args)
                .output()
                .expect("run quorate");
            if output.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "{}", output_text(&output));
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let others = format!("{},{},{}", names[0], names[1], names[3]);
    fault(&cluster, 2, &["block", "--peers", &others]);
    for i in [0, 1, 3] {
        fault(&cluster, i, &["block", "--peers", &names[2]]);
    }
    let writers_at: Vec<String> = [0, 1, 3].iter().map(|i| cluster.endpoint(*i)).collect();
    let writes = under_writes(writers_at, &acked, async {
        let started = ring_cli(&m1, &["add", &m4_id]).await;
        assert!(started.contains("epoch 3"), "{started}");
        // Everyone but m3 streams and records its handoff; m3 cannot.
        let shown = await_ring(&m1, "got every handoff but m3's", |r| {
            r["pending"]["done"]
                .as_array()
                .is_some_and(|d| d.len() == 3)
        })
        .await;
        assert!(
            !shown["pending"]["done"]
                .as_array()
                .expect("done")
                .contains(&serde_json::Value::from(m3_id.clone())),
            "{shown}"
        );
        cluster.kill(1);
        cluster.spawn(1);
        // The change survives the restart and still waits for m3.
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            let shown = ring_show(&m1).await;
            assert_eq!(shown["epoch"], 3, "switched without m3: {shown}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        for i in 0..4 {
            fault(&cluster, i, &["heal"]);
        }
        await_ring(&m1, "switched", |r| {
            r["epoch"] == 4 && r["pending"].is_null()
        })
        .await;
    })
    .await;
    assert!(writes > 0, "no write was acknowledged during the change");
    let four: Vec<String> = (0..4).map(|i| cluster.endpoint(i)).collect();
    check_acknowledged(&four, &acked).await;
    let counts = await_clean(&four).await;
    assert!(counts[3] > 0, "m4 holds replicas after joining: {counts:?}");
}
