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

/// Runs `quorate ring ARGS` at `endpoint` off the runtime's thread (the writers go on);
/// asserts success.
async fn ring_cli(endpoint: &str, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quorate"));
    command
        .args(["--endpoints", endpoint, "--command-timeout", "10", "ring"])
        .args(args);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run quorate");
    let text = output_text(&output);
    assert!(output.status.success(), "quorate ring {args:?}: {text}");
    text
}

#[tokio::test]
async fn ring_changes_under_writes_move_a_quarter_of_the_replicas_and_lose_no_acknowledged_write() {
    // Goal: a ring change moves about 1/members of the replicas and loses no acknowledged
    // write while writes go on. Method: 3 members, bucket n=3, every key written once; add m4
    // to the cluster and then to the ring while 4 writers rewrite the keys at w=quorum; read
    // every key back; count objects per member once cleanups finished. Then remove m1 from
    // the ring under writes, and check the same.
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().await;
    let m1 = cluster.endpoint(0);
    let (ok, text) = {
        let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
            .args(["--endpoints", &m1, "bucket", "create", "moves", "--n", "3"])
            .output()
            .expect("run quorate");
        (output.status.success(), output_text(&output))
    };
    assert!(ok, "{text}");
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

    // m4 joins the cluster (a learner is enough: it holds data, it does not vote).
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
