//! Follower reads of consensus buckets on real members: served by the member's own replica at
//! the range's closed timestamp, also when it cannot reach the range's leader, and never
//! older than the staleness the read allows.

use super::*;

/// A follower read of `key` through `endpoint` allowing `staleness`: the values, or the status.
async fn follower_get(
    endpoint: &str,
    bucket: &str,
    key: &str,
    staleness: Duration,
) -> Result<Vec<Vec<u8>>, tonic::Status> {
    let mut client = kv(endpoint).await;
    let request = pb::GetRequest {
        bucket: bucket.into(),
        key: key.as_bytes().to_vec(),
        consistency: pb::ReadConsistency::ReadFollower as i32,
        max_staleness_ms: staleness.as_millis() as u32,
        ..Default::default()
    };
    let reply = client.get(request).await?.into_inner();
    Ok(reply.siblings.into_iter().map(|s| s.value).collect())
}

#[tokio::test]
async fn follower_reads_are_served_by_a_cut_off_replica_within_their_staleness_only() {
    // Goal: `--consistency follower` reads are served from the member's own replica — also
    // when it is cut off from the range's leader, where a linearizable read fails — and are
    // never older than `--max-staleness`. Method: three members, a one-range bucket (every
    // member a replica), k = v1; wait until a follower read on every member returns v1 (before,
    // it may return nothing: bounded staleness) and, on a member that does not lead the range,
    // until its own replica served one (`quorate_range_follower_reads_local`); cut it
    // off from the others; there a follower read allowing 30 s returns v1 and a linearizable
    // read fails; v2 is written through a connected member; the cut-off follower read still
    // returns v1, and once more than a second has passed one allowing 1 s is refused (it
    // cannot reach the leader either); after healing its follower reads come to return v2.
    let cluster = Cluster::start(3, &["--unsafe-fault-injection"]);
    cluster.leader().await;
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
    create_bucket(&endpoints[0], "fr", 64 << 20);
    let mut client = kv(&endpoints[0]).await;
    put_retrying(&mut client, "fr", "k", b"v1".to_vec()).await;
    let v1 = vec![b"v1".to_vec()];
    for endpoint in &endpoints {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let got = follower_get(endpoint, "fr", "k", Duration::from_secs(5)).await;
            match got {
                Ok(values) if values == v1 => break,
                Ok(values) => assert!(values.is_empty(), "neither v1 nor nothing: {values:?}"),
                Err(status) => panic!("follower read on {endpoint}: {status:?}"),
            }
            assert!(Instant::now() < deadline, "{endpoint} never read v1");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let ranges = quorate_json(&endpoints[0], &["range", "list", "fr"]);
    let leader = ranges[0]["leader"].as_str().expect("a leader").to_owned();
    let cut = crate::quorum::member_ids(&cluster)
        .iter()
        .position(|id| *id != leader)
        .expect("a member that does not lead");
    // Until the cut-off member's own replica has served v1 (its closed timestamp covers the
    // write): before, follower reads there may have gone to the leader.
    let local = |i: usize| {
        metric(
            cluster.members[i].metrics,
            "quorate_range_follower_reads_local",
        )
    };
    let deadline = Instant::now() + DEADLINE;
    loop {
        let before = local(cut);
        let got = follower_get(&endpoints[cut], "fr", "k", Duration::from_secs(30)).await;
        if got.as_ref().is_ok_and(|v| *v == v1) && local(cut) > before {
            break;
        }
        assert!(Instant::now() < deadline, "never served locally: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names: Vec<String> = cluster.members.iter().map(|m| m.name.clone()).collect();
    let others: Vec<usize> = (0..3).filter(|&i| i != cut).collect();
    let peers = others
        .iter()
        .map(|&i| names[i].clone())
        .collect::<Vec<_>>()
        .join(",");
    let (ok, text) = quorate(&endpoints[cut], &["fault", "block", "--peers", &peers]);
    assert!(ok, "{text}");
    for &i in &others {
        let (ok, text) = quorate(&endpoints[i], &["fault", "block", "--peers", &names[cut]]);
        assert!(ok, "{text}");
    }
    let started = Instant::now();
    let before = local(cut);
    let got = follower_get(&endpoints[cut], "fr", "k", Duration::from_secs(30)).await;
    assert_eq!(got.expect("a follower read while cut off"), v1);
    assert_eq!(
        local(cut),
        before + 1,
        "served by the cut-off member's own replica"
    );
    let mut cut_client = kv(&endpoints[cut]).await;
    let linearizable = cut_client
        .get(pb::GetRequest {
            bucket: "fr".into(),
            key: b"k".to_vec(),
            ..Default::default()
        })
        .await;
    assert!(
        linearizable.is_err(),
        "a cut-off member read linearizably: {linearizable:?}"
    );
    let mut connected = kv(&endpoints[others[0]]).await;
    put_retrying(&mut connected, "fr", "k", b"v2".to_vec()).await;
    let got = follower_get(&endpoints[cut], "fr", "k", Duration::from_secs(30)).await;
    assert_eq!(
        got.expect("still served"),
        v1,
        "the cut-off replica cannot know v2"
    );
    // The fault's timing, not a synchronization: the replica's closed timestamp is now more
    // than a second old.
    let waited = Duration::from_millis(1500).saturating_sub(started.elapsed());
    tokio::time::sleep(waited).await;
    let stale = follower_get(&endpoints[cut], "fr", "k", Duration::from_secs(1)).await;
    assert!(
        stale.is_err(),
        "a read older than its staleness bound: {stale:?}"
    );
    for endpoint in &endpoints {
        let (ok, text) = quorate(endpoint, &["fault", "heal"]);
        assert!(ok, "{text}");
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let got = follower_get(&endpoints[cut], "fr", "k", Duration::from_secs(5)).await;
        if got.as_ref().is_ok_and(|v| *v == vec![b"v2".to_vec()]) {
            break;
        }
        assert!(Instant::now() < deadline, "never caught up: {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
