//! Leases against real members with the `etcd-client` crate: grant, attach, keep-alive,
//! time-to-live, list, revoke, expiry deleting keys at one revision, errors, keep-alives across
//! a leader crash, and remaining TTLs that survive a restart of every member.

use etcd_client::{LeaseGrantOptions, LeaseTimeToLiveOptions, WatchOptions};
use tonic::Code;

use super::*;

#[tokio::test]
async fn lease_grant_attach_keep_alive_time_to_live_list_and_revoke() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let mut client = cluster.client(1).await;
    let granted = client.lease_grant(30, None).await.expect("grant");
    let id = granted.id();
    assert!(id > 0);
    assert_eq!(granted.ttl(), 30);
    client
        .put("l/a", "1", Some(PutOptions::new().with_lease(id)))
        .await
        .expect("put with lease");
    client
        .put("l/b", "2", Some(PutOptions::new().with_lease(id)))
        .await
        .expect("put with lease");
    let kv = client.get("l/a", None).await.expect("get");
    assert_eq!(kv.kvs()[0].lease(), id);

    let ttl = client
        .lease_time_to_live(id, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .expect("time to live");
    // At most the TTL, plus the extension (1 s here) if the leader armed its timers after
    // the grant (a leader that just took over extends every lease once).
    assert!((1..=31).contains(&ttl.ttl()), "ttl {}", ttl.ttl());
    assert_eq!(ttl.granted_ttl(), 30);
    let mut keys: Vec<&[u8]> = ttl.keys().iter().map(Vec::as_slice).collect();
    keys.sort();
    assert_eq!(keys, [&b"l/a"[..], b"l/b"]);
    let listed = client.leases().await.expect("leases");
    assert!(listed.leases().iter().any(|l| l.id() == id));

    let (mut keeper, mut responses) = client.lease_keep_alive(id).await.expect("keep alive");
    keeper.keep_alive().await.expect("send keep-alive");
    let renewed = responses
        .message()
        .await
        .expect("keep-alive reply")
        .expect("open");
    assert_eq!((renewed.id(), renewed.ttl()), (id, 30));

    let revoked = client.lease_revoke(id).await.expect("revoke");
    let revision = revoked.header().expect("header").revision();
    let left = client
        .get("l/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("get");
    assert!(left.kvs().is_empty(), "revoke must delete the lease's keys");
    // Both deletions happened at the revoke's revision.
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision);
    let mut stream = client.watch("l/", Some(options)).await.expect("watch");
    let mut deletes = Vec::new();
    while deletes.len() < 2 {
        let message = stream.message().await.expect("watch").expect("open");
        deletes.extend(
            message
                .events()
                .iter()
                .map(|e| e.kv().unwrap().mod_revision()),
        );
    }
    assert_eq!(deletes, [revision, revision]);
    let gone = client
        .lease_time_to_live(id, None)
        .await
        .expect("time to live");
    assert_eq!(gone.ttl(), -1);
    keeper.keep_alive().await.expect("send keep-alive");
    let after = responses
        .message()
        .await
        .expect("keep-alive reply")
        .expect("open");
    assert_eq!(
        after.ttl(),
        0,
        "keep-alive of a revoked lease answers TTL 0"
    );
}

#[tokio::test]
async fn lease_errors_answer_as_etcd_does() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let mut client = cluster.client(0).await;
    let (code, message) = status_of(
        client
            .put("x", "1", Some(PutOptions::new().with_lease(12345)))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, message.as_str()),
        (Code::NotFound, "etcdserver: requested lease not found")
    );
    let (code, message) = status_of(client.lease_revoke(12345).await.unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (Code::NotFound, "etcdserver: requested lease not found")
    );
    let (code, message) = status_of(client.lease_grant(9_000_000_001, None).await.unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (Code::OutOfRange, "etcdserver: too large lease TTL")
    );
    let options = LeaseGrantOptions::new().with_id(777);
    assert_eq!(
        client
            .lease_grant(60, Some(options.clone()))
            .await
            .expect("grant")
            .id(),
        777
    );
    let (code, message) = status_of(client.lease_grant(60, Some(options)).await.unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (Code::FailedPrecondition, "etcdserver: lease already exists")
    );
    // A TTL below the minimum (1.5 election timeouts) is raised to it.
    let short = client.lease_grant(0, None).await.expect("grant");
    assert!(short.ttl() >= 1, "ttl {}", short.ttl());
}

#[tokio::test]
async fn an_unrenewed_lease_expires_and_its_keys_are_deleted_at_one_revision() {
    // Goal: expiry goes through Raft and deletes the keys. Method: grant 2 s, attach two keys,
    // watch, and wait (with a deadline) for both deletions.
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let mut client = cluster.client(2).await;
    let id = client.lease_grant(2, None).await.expect("grant").id();
    for key in ["e/1", "e/2"] {
        client
            .put(key, "v", Some(PutOptions::new().with_lease(id)))
            .await
            .expect("put");
    }
    let mut stream = client
        .watch("e/", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    let mut deletes = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while deletes.len() < 2 {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(remaining, stream.message())
            .await
            .expect("the lease expired in time")
            .expect("watch")
            .expect("open");
        for event in message.events() {
            assert_eq!(event.event_type(), etcd_client::EventType::Delete);
            deletes.push(event.kv().unwrap().mod_revision());
        }
    }
    assert_eq!(deletes[0], deletes[1], "one revision for the whole expiry");
    let gone = client.lease_time_to_live(id, None).await.expect("ttl");
    assert_eq!(gone.ttl(), -1);
}

#[tokio::test]
async fn keep_alives_hold_a_lease_through_a_leader_crash() {
    // Goal: a lease kept alive is not expired by a leader change. Method: keep a 3 s lease
    // alive through a follower every 500 ms, SIGKILL the leader, keep going for 6 s; the key
    // must still be there.
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let mut client = cluster.client(follower).await;
    let id = client.lease_grant(3, None).await.expect("grant").id();
    client
        .put("ka/k", "v", Some(PutOptions::new().with_lease(id)))
        .await
        .expect("put");
    let endpoint = cluster.endpoint(follower);
    let keeper = tokio::spawn(async move {
        let stop = Instant::now() + Duration::from_secs(8);
        while Instant::now() < stop {
            // A fresh stream each time: a broken one (during the election) is simply replaced.
            if let Ok(mut client) = Client::connect([endpoint.clone()], None).await
                && let Ok((mut keeper, mut responses)) = client.lease_keep_alive(id).await
                && keeper.keep_alive().await.is_ok()
            {
                let _ = tokio::time::timeout(Duration::from_secs(1), responses.message()).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.kill(leader);
    keeper.await.expect("keeper");
    let got = client.get("ka/k", None).await.expect("get after the crash");
    assert_eq!(got.kvs().len(), 1, "a kept-alive lease expired");
}

#[tokio::test]
async fn remaining_ttl_survives_a_restart_of_every_member() {
    // Goal: checkpoints keep the remaining TTL across a full restart instead of restarting the
    // full TTL. Method: 1 s checkpoints, a 40 s lease, wait 7 s, SIGKILL all, restart, ask.
    let mut cluster = Cluster::start(3, &["--experimental-lease-checkpoint-interval", "1s"]);
    cluster.leader().await;
    let mut client = cluster.client(0).await;
    let id = client.lease_grant(40, None).await.expect("grant").id();
    let granted_at = Instant::now();
    let deadline = granted_at + DEADLINE;
    // Use the lease for 7 s: committed checkpoints then record at least 5 s of use (one
    // interval, plus slack for the commit of the last one).
    loop {
        let ttl = client
            .lease_time_to_live(id, None)
            .await
            .expect("ttl")
            .ttl();
        if ttl <= 34 && granted_at.elapsed() >= Duration::from_secs(7) {
            break;
        }
        assert!(Instant::now() < deadline, "ttl stuck at {ttl}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.spawn(i);
    }
    cluster.leader().await;
    let mut client = cluster.client(0).await;
    let ttl = loop {
        match client.lease_time_to_live(id, None).await {
            Ok(response) => break response.ttl(),
            Err(error) => assert!(Instant::now() < deadline, "ttl after restart: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // At most the checkpointed remaining (≤ 35) plus the new leader's extension (1 s).
    assert!(
        (1..=36).contains(&ttl),
        "remaining ttl after restart: {ttl}"
    );
}
