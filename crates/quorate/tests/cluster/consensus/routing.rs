//! Client-side routing (`client::ranges::RangeRouter`) on real members: requests go to the
//! member leading their key's range, and a stale route costs nothing but a hop.

use super::*;

#[tokio::test]
async fn the_client_router_sends_each_key_to_its_range_leader_and_survives_stale_routes() {
    // Goal: the client library routes a consensus-bucket request straight to the member that
    // leads its key's range, and a route gone stale (the leader moved) still gets an answer.
    // Method: three members, a bucket split into four ranges, all led; a router over the
    // three endpoints names, for a key in each range, the endpoint of the member `range list`
    // shows leading it; then the first range's leader is drained until it leads nothing, and
    // puts through the now stale routes still succeed and read back.
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let endpoints: Vec<String> = (0..3).map(|i| cluster.endpoint(i)).collect();
    create_bucket(&endpoints[0], "routed", 64 << 20);
    for at in ["g", "n", "t"] {
        range_change_until_done(&endpoints[0], "split", "routed", at);
    }
    let ids = crate::quorum::member_ids(&cluster);
    let channels = client::channels::pool(&endpoints, 3)
        .await
        .expect("connect");
    // The rebalancer may move a leadership between `range list` and the router's own read:
    // judge a round only when the leaderships were the same before and after it.
    let deadline = Instant::now() + DEADLINE;
    let (ranges, router) = loop {
        let before = led_ranges(&endpoints[0], "routed").await;
        let router = client::ranges::RangeRouter::new(&endpoints, channels.clone())
            .await
            .expect("router");
        let mut routed = Vec::new();
        for range in &before {
            let key = format!("{}0", range["start"].as_str().expect("start"));
            routed.push((
                key.clone(),
                router.endpoint_for("routed", key.as_bytes()).await,
            ));
        }
        let after = led_ranges(&endpoints[0], "routed").await;
        if leaders(&before) != leaders(&after) {
            assert!(Instant::now() < deadline, "leaderships never settled");
            continue;
        }
        for ((key, at), range) in routed.iter().zip(&before) {
            assert_eq!(
                Some(ids[*at].as_str()),
                range["leader"].as_str(),
                "{key} routed to {} but {range} leads",
                ids[*at]
            );
        }
        break (before, router);
    };
    let drained = ranges[0]["leader"].as_str().expect("leader").to_owned();
    let marked = quorate_json(&endpoints[0], &["member", "drain", &drained]);
    assert_eq!(marked["draining"], true, "{marked}");
    let deadline = Instant::now() + DEADLINE;
    while led_ranges(&endpoints[0], "routed")
        .await
        .iter()
        .any(|r| r["leader"].as_str() == Some(drained.as_str()))
    {
        assert!(Instant::now() < deadline, "{drained} kept its leaderships");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The routes still name the drained member for its former ranges: a hop, not an error.
    for (i, range) in ranges.iter().enumerate() {
        let start = range["start"].as_str().expect("start");
        let key = format!("{start}0");
        let mut kv = KvClient::new(router.channel_for("routed", key.as_bytes()).await);
        let request = pb::PutRequest {
            bucket: "routed".into(),
            key: key.clone().into_bytes(),
            value: value_of(&key, 32 + i),
            ..Default::default()
        };
        kv.put(request)
            .await
            .unwrap_or_else(|s| panic!("put {key} by a stale route: {s:?}"));
    }
    let _ = quorate(&endpoints[0], &["member", "drain", &drained, "--undo"]);
    let keys: Vec<String> = ranges
        .iter()
        .map(|r| format!("{}0", r["start"].as_str().expect("start")))
        .collect();
    let mut client = kv(&endpoints[1]).await;
    for (i, key) in keys.iter().enumerate() {
        let values = values_of(&mut client, "routed", key).await;
        assert_eq!(values, vec![value_of(key, 32 + i)], "{key}");
    }
}

/// Each range's start and leader, to tell whether leaderships moved between two reads.
fn leaders(ranges: &[Value]) -> Vec<(String, String)> {
    ranges
        .iter()
        .map(|r| (r["start"].to_string(), r["leader"].to_string()))
        .collect()
}
