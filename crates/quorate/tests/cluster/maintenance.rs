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
    assert!(data.starts_with(b"QSNAPv02"), "snapshot format");
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
