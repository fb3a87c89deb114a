//! Maintenance against real members: HashKV and Hash agree across members that applied the
//! same entries (and differ across revisions), Defragment is accepted, Snapshot streams a
//! consistent copy, and etcdctl's `endpoint hashkv` reads the hashes.

use super::*;

/// Asks member `i` for HashKV at `revision`, retrying while it has not applied it yet.
async fn hash_kv_at(cluster: &Cluster, i: usize, revision: i64) -> (u32, i64) {
    let deadline = Instant::now() + DEADLINE;
    let mut client = cluster.client(i).await;
    loop {
        match client.hash_kv(revision).await {
            Ok(response) => return (response.hash(), response.compact_version()),
            Err(error) => assert!(Instant::now() < deadline, "hash_kv on {i}: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn members_hash_equal_at_a_revision_and_snapshot_streams_the_state() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let mut client = cluster.client(0).await;
    for i in 0..20 {
        client
            .put(format!("h/{}", i % 5), format!("{i}"), None)
            .await
            .expect("put");
    }
    client.delete("h/0", None).await.expect("delete");
    let last = client
        .put("h/last", "x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    let hashes: Vec<(u32, i64)> =
        futures::future::join_all((0..3).map(|i| hash_kv_at(&cluster, i, last))).await;
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "members differ: {hashes:?}"
    );
    let earlier = hash_kv_at(&cluster, 0, last - 3).await;
    assert_ne!(
        earlier.0, hashes[0].0,
        "different revisions should hash differently"
    );

    client.compact(last - 5, None).await.expect("compact");
    // Each member answers once it has applied the compaction too.
    let mut after = Vec::new();
    for i in 0..3 {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let hash = hash_kv_at(&cluster, i, last).await;
            if hash.1 == last - 5 {
                after.push(hash);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "member {i} never applied the compaction"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(
        after.iter().all(|h| *h == after[0]),
        "members differ after compaction: {after:?}"
    );
    assert_eq!(after[0].1, last - 5, "compact revision");
    let (code, _) = status_of(client.hash_kv(last - 6).await.unwrap_err());
    assert_eq!(code, tonic::Code::OutOfRange);

    // Whole-state hashes agree once every member applied the compaction.
    for i in 0..3 {
        await_local_value(&cluster, i, "h/last", "x").await;
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut all = Vec::new();
        for i in 0..3 {
            all.push(cluster.client(i).await.hash().await.expect("hash").hash());
        }
        if all.iter().all(|h| *h == all[0]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "whole-state hashes differ: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    client.defragment().await.expect("defragment is accepted");

    let mut stream = client.snapshot().await.expect("snapshot");
    let mut data = Vec::new();
    let mut remaining = u64::MAX;
    while let Some(part) = stream.message().await.expect("snapshot stream") {
        data.extend_from_slice(part.blob());
        remaining = part.remaining_bytes();
    }
    assert_eq!(remaining, 0);
    assert!(data.starts_with(b"QSNAPv05"), "snapshot format");
    assert!(data.len() > 100, "{} bytes", data.len());

    let endpoints = (0..3)
        .map(|i| format!("127.0.0.1:{}", cluster.members[i].client))
        .collect::<Vec<_>>()
        .join(",");
    let output = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .args(["endpoint", "hashkv", "-w", "json"])
        .output()
        .expect("etcdctl endpoint hashkv");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    let hashes: Vec<&serde_json::Value> = rows
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| &r["HashKV"]["hash"])
        .collect();
    assert_eq!(hashes.len(), 3);
    assert!(
        hashes.iter().all(|h| *h == hashes[0] && h.is_u64()),
        "{rows}"
    );
}

#[tokio::test]
async fn the_backend_quota_raises_nospace_and_compaction_plus_disarm_recover() {
    // Goal: etcd's quota behaviour without a stop-the-world defrag. Method: a 400 kB quota,
    // 50 kB values until writes fail with NOSPACE; deletes still work; delete, compact, disarm;
    // writes work again.
    use etcd_client::{AlarmAction, AlarmOptions, AlarmType};
    let cluster = Cluster::start(3, &["--quota-backend-bytes", "400000"]);
    cluster.leader().await;
    let mut client = cluster.client(0).await;
    let value = "q".repeat(50_000);
    let deadline = Instant::now() + DEADLINE;
    let mut written = 0;
    let error = loop {
        match client
            .put(format!("quota/{written:03}"), value.as_str(), None)
            .await
        {
            Ok(_) => written += 1,
            Err(error) => break error,
        }
        assert!(written < 200, "the quota never applied");
        assert!(Instant::now() < deadline, "no NOSPACE in time");
    };
    let (code, message) = status_of(error);
    assert_eq!(
        (code, message.as_str()),
        (
            tonic::Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded"
        )
    );
    let alarms = client
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .expect("alarm list");
    assert!(
        alarms
            .alarms()
            .iter()
            .any(|a| a.alarm() == AlarmType::Nospace),
        "{alarms:?}"
    );
    let (code, _) = status_of(client.lease_grant(60, None).await.unwrap_err());
    assert_eq!(code, tonic::Code::ResourceExhausted);

    // Free space: deletes are allowed, then compaction removes the history.
    let deleted = client
        .delete(
            "quota/",
            Some(etcd_client::DeleteOptions::new().with_prefix()),
        )
        .await
        .expect("delete under NOSPACE");
    let revision = deleted.header().unwrap().revision();
    client
        .compact(revision, None)
        .await
        .expect("compact under NOSPACE");
    // Disarm every member's alarm; a member still over quota would raise it again.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let alarms = client
            .alarm(AlarmAction::Get, AlarmType::None, None)
            .await
            .expect("alarm list");
        for alarm in alarms.alarms() {
            let mut options = AlarmOptions::new();
            options.with_member(alarm.member_id());
            client
                .alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(options))
                .await
                .expect("disarm");
        }
        if client.put("quota/after", "small", None).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "writes never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the `quorate` binary and returns (success, stdout, stderr).
fn quorate(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_quorate"))
        .args(args)
        .output()
        .expect("run quorate");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn snapshot_restore_builds_a_new_cluster_with_the_source_hash_at_the_snapshot_revision() {
    // Goal: `snapshot save` + `snapshot restore` on every member of a new cluster gives the
    // state of the source at the snapshot revision (HashKV equal), which then serves reads and
    // writes and reaches a member added later. Method: history with overwrites, a delete, a
    // compaction and a lease; save; write more; compare hashes; restore three members; check;
    // add a learner; then damage the file and check it is refused.
    let source = Cluster::start(3, &[]);
    source.leader().await;
    let mut client = source.client(0).await;
    for i in 0..30 {
        client
            .put(format!("r/{}", i % 7), format!("v{i}"), None)
            .await
            .expect("put");
    }
    client.delete("r/0", None).await.expect("delete");
    let compact_at = client
        .put("r/c", "c", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    client.compact(compact_at - 5, None).await.expect("compact");
    let lease = client.lease_grant(600, None).await.expect("grant").id();
    client
        .put("r/leased", "l", Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("put with lease");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("source.snap");
    let file_text = file.to_str().expect("utf-8 path");
    let endpoint = source.endpoint(0);
    let (ok, out, err) = quorate(&["--endpoints", &endpoint, "snapshot", "save", file_text]);
    assert!(ok, "{out}{err}");
    let (ok, out, err) = quorate(&["-w", "json", "snapshot", "status", file_text]);
    assert!(ok, "{out}{err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("status json");
    let revision = status["revision"].as_i64().expect("revision");
    let hash = status["hash"].as_u64().expect("hash") as u32;
    client
        .put("r/after", "not in the snapshot", None)
        .await
        .expect("put");
    let (source_hash, _) = hash_kv_at(&source, 1, revision).await;
    assert_eq!(
        hash, source_hash,
        "snapshot status hash = source HashKV at {revision}"
    );

    let mut restored = Cluster::stopped(3, &[]);
    let initial_cluster = restored.initial_cluster();
    for i in 0..3 {
        let name = restored.members[i].name.clone();
        let data_dir = restored.members[i].dir.to_str().expect("utf-8").to_string();
        let (ok, out, err) = quorate(&[
            "-w",
            "json",
            "snapshot",
            "restore",
            file_text,
            "--name",
            &name,
            "--data-dir",
            &data_dir,
            "--initial-cluster",
            &initial_cluster,
        ]);
        assert!(ok, "{out}{err}");
        let printed: serde_json::Value = serde_json::from_str(&out).expect("restore json");
        assert_eq!(printed["hash"].as_u64(), Some(u64::from(source_hash)));
        assert_eq!(printed["revision"].as_i64(), Some(revision));
    }
    let (ok, _, err) = quorate(&[
        "snapshot",
        "restore",
        file_text,
        "--name",
        "m1",
        "--data-dir",
        restored.members[0].dir.to_str().unwrap(),
        "--initial-cluster",
        &initial_cluster,
    ]);
    assert!(!ok && err.contains("not empty"), "{err}");
    for i in 0..3 {
        restored.spawn(i);
    }
    restored.leader().await;
    for i in 0..3 {
        let (hash, _) = hash_kv_at(&restored, i, revision).await;
        assert_eq!(hash, source_hash, "restored member {i}");
    }
    let mut client = restored.client(1).await;
    let got = client.get("r/3", None).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"v24");
    assert!(client.get("r/0", None).await.unwrap().kvs().is_empty());
    assert!(client.get("r/after", None).await.unwrap().kvs().is_empty());
    let ttl = client.lease_time_to_live(lease, None).await.expect("ttl");
    assert!(ttl.ttl() > 0, "the lease survives the restore: {ttl:?}");
    let put = client.put("r/new", "n", None).await.expect("put");
    assert_eq!(put.header().unwrap().revision(), revision + 1);

    // A member added later receives the restored state (the log starts behind it).
    let joiner = restored.add_slot();
    let peer_url = format!("http://127.0.0.1:{}", restored.members[joiner].peer);
    client
        .member_add(
            [peer_url],
            Some(etcd_client::MemberAddOptions::new().with_is_learner()),
        )
        .await
        .expect("member add");
    restored.spawn_with(joiner, &["--initial-cluster-state", "existing"]);
    await_local_value(&restored, joiner, "r/new", "n").await;
    await_local_value(&restored, joiner, "r/3", "v24").await;
    let (hash, _) = hash_kv_at(&restored, joiner, revision).await;
    assert_eq!(hash, source_hash, "the joiner");

    // A damaged file is refused by status and restore.
    let mut bytes = std::fs::read(&file).expect("read snapshot");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    let damaged = dir.path().join("damaged.snap");
    std::fs::write(&damaged, &bytes).expect("write");
    let damaged = damaged.to_str().unwrap();
    let (ok, _, err) = quorate(&["snapshot", "status", damaged]);
    assert!(!ok && err.contains("SHA-256 mismatch"), "{err}");
    let fresh = dir.path().join("fresh");
    let (ok, _, err) = quorate(&[
        "snapshot",
        "restore",
        damaged,
        "--name",
        "m1",
        "--data-dir",
        fresh.to_str().unwrap(),
        "--initial-cluster",
        &initial_cluster,
    ]);
    assert!(!ok && err.contains("SHA-256 mismatch"), "{err}");
    assert!(!fresh.exists(), "nothing is written from a damaged file");
}
