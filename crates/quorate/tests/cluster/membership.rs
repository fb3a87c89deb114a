//! Membership changes against real processes with the `etcd-client` crate: a learner is added
//! and started with `--initial-cluster-state existing`, catches up, serves only serializable
//! reads, is promoted; a voter is removed and stops by itself (and refuses to restart); a
//! member's peer URL is updated and it keeps replicating; leadership is moved with etcdctl and
//! the leader removed; writes succeed throughout and nothing acknowledged is lost.

use etcd_client::MemberAddOptions;

use super::*;

#[tokio::test]
async fn add_a_learner_promote_it_remove_a_voter_and_update_a_peer_url() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().await;
    let mut client = cluster.client(leader).await;
    for i in 0..20 {
        client
            .put(format!("mb/{i:02}"), "before", None)
            .await
            .expect("put");
    }

    // Add m4 as a learner, then start it as a joiner.
    let joiner = cluster.add_slot();
    let peer_url = format!("http://127.0.0.1:{}", cluster.members[joiner].peer);
    let added = client
        .member_add(
            [peer_url.clone()],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .expect("member add");
    let new_id = added.member().expect("added member").id();
    assert!(added.member().unwrap().is_learner());
    assert_eq!(added.member_list().len(), 4);
    let (code, message) = status_of(
        client
            .member_add([peer_url.clone()], None)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, message.as_str()),
        (
            tonic::Code::FailedPrecondition,
            "etcdserver: Peer URLs already exists"
        )
    );
    cluster.spawn_with(joiner, &["--initial-cluster-state", "existing"]);
    await_local_value(&cluster, joiner, "mb/19", "before").await;

    // A learner answers serializable reads, Status and MemberList, and refuses the rest as
    // etcd's does (Unavailable, so clients try another endpoint).
    let mut at_learner = cluster.client(joiner).await;
    let refused = |error| {
        assert_eq!(
            status_of(error),
            (
                tonic::Code::Unavailable,
                "etcdserver: rpc not supported for learner".to_string()
            )
        )
    };
    refused(at_learner.get("mb/19", None).await.unwrap_err());
    refused(at_learner.put("mb/x", "1", None).await.unwrap_err());
    refused(at_learner.lease_grant(10, None).await.unwrap_err());
    let local = at_learner
        .get("mb/19", Some(GetOptions::new().with_serializable()))
        .await
        .expect("serializable read on a learner");
    assert_eq!(local.kvs()[0].value(), b"before");
    assert!(at_learner.status().await.expect("status").is_learner());
    assert_eq!(
        at_learner
            .member_list()
            .await
            .expect("list")
            .members()
            .len(),
        4
    );

    // It publishes its name and client URL; it is still a learner.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let list = client.member_list().await.expect("member list");
        let m4 = list
            .members()
            .iter()
            .find(|m| m.id() == new_id)
            .expect("m4 listed");
        if m4.name() == "m4" {
            assert!(m4.is_learner());
            assert_eq!(m4.client_urls(), [cluster.endpoint(joiner)]);
            break;
        }
        assert!(Instant::now() < deadline, "m4 never published: {m4:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Promote it (retrying while the leader finds it not yet in sync).
    let deadline = Instant::now() + DEADLINE;
    loop {
        match client.member_promote(new_id).await {
            Ok(response) => {
                let m4 = response
                    .members()
                    .iter()
                    .find(|m| m.id() == new_id)
                    .unwrap();
                assert!(!m4.is_learner());
                break;
            }
            Err(error) => {
                let (_, message) = status_of(error);
                assert!(message.contains("in sync"), "{message}");
                assert!(Instant::now() < deadline, "never in sync");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let (code, message) = status_of(client.member_promote(new_id).await.unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (
            tonic::Code::FailedPrecondition,
            "etcdserver: can only promote a learner member"
        )
    );

    // Remove a follower that is not m4; writes keep working with the rest.
    let removed = (0..3).find(|i| *i != leader).expect("a follower");
    let removed_id = client
        .member_list()
        .await
        .unwrap()
        .members()
        .iter()
        .find(|m| m.name() == cluster.members[removed].name)
        .expect("listed")
        .id();
    let after = client
        .member_remove(removed_id)
        .await
        .expect("member remove");
    assert_eq!(after.members().len(), 3);
    assert!(after.members().iter().all(|m| m.id() != removed_id));
    // The removed member learns it from its peers and stops by itself; its data dir remembers,
    // so a restart is refused instead of rejoining with stale data.
    let stopped = cluster.await_exit(removed).await;
    assert!(!stopped.success(), "a removed member exits with an error");
    cluster.spawn(removed);
    let again = cluster.await_exit(removed).await;
    assert!(!again.success());
    client
        .put("mb/after-remove", "1", None)
        .await
        .expect("put after remove");
    await_local_value(&cluster, joiner, "mb/after-remove", "1").await;
    let (code, _) = status_of(client.member_remove(removed_id).await.unwrap_err());
    assert_eq!(code, tonic::Code::NotFound);

    // Move m4 to a new peer port: update, restart it there, and it still replicates.
    let new_peer = free_port();
    let new_url = format!("http://127.0.0.1:{new_peer}");
    client
        .member_update(new_id, [new_url.clone()])
        .await
        .expect("member update");
    cluster.kill(joiner);
    cluster.members[joiner].peer = new_peer;
    cluster.spawn_with(joiner, &["--initial-cluster-state", "existing"]);
    client
        .put("mb/after-update", "2", None)
        .await
        .expect("put after update");
    await_local_value(&cluster, joiner, "mb/after-update", "2").await;
    let list = client.member_list().await.expect("member list");
    let m4 = list.members().iter().find(|m| m.id() == new_id).unwrap();
    assert_eq!(m4.peer_urls(), [new_url]);
}

#[tokio::test]
async fn leadership_moves_with_etcdctl_and_a_removed_leader_stops_by_itself() {
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().await;
    let mut client = cluster.client(leader).await;
    client.put("ml/0", "0", None).await.expect("put");
    let ids = member_ids(&mut client).await;
    let target = (0..3).find(|i| *i != leader).expect("a follower");

    // etcdctl finds the leader among the endpoints and moves leadership to the target.
    let bare: Vec<String> = (0..3)
        .map(|i| format!("127.0.0.1:{}", cluster.members[i].client))
        .collect();
    let output = etcdctl_at(&bare.join(","))
        .args(["move-leader", &format!("{:x}", ids[target])])
        .output()
        .expect("run etcdctl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // From whoever led when etcdctl asked: an election may have moved leadership since
    // `leader()` looked (a slow machine), so the source is any other member.
    let sources: Vec<String> = (0..3)
        .filter(|i| *i != target)
        .map(|i| {
            format!(
                "Leadership transferred from {:x} to {:x}",
                ids[i], ids[target]
            )
        })
        .collect();
    assert!(
        sources.iter().any(|s| s == stdout.trim()),
        "{stdout} is none of {sources:?}"
    );
    assert_eq!(cluster.leader().await, target);
    let mut client = cluster.client(target).await;
    client.put("ml/1", "1", None).await.expect("put after move");

    // Only the leader moves leadership, and only to a voter.
    let mut follower = cluster.client(leader).await;
    let (code, message) = status_of(follower.move_leader(ids[target]).await.unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (tonic::Code::FailedPrecondition, "etcdserver: not leader")
    );
    let (code, message) = status_of(client.move_leader(0xdead).await.unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (
            tonic::Code::FailedPrecondition,
            "etcdserver: bad leader transferee"
        )
    );

    // Remove the leader itself: the change commits, the others elect a new leader, and the
    // removed member stops by itself.
    client
        .member_remove(ids[target])
        .await
        .expect("remove the leader");
    let stopped = cluster.await_exit(target).await;
    assert!(!stopped.success());
    let rest = cluster.endpoints_except(Some(target));
    put_eventually(rest.clone(), "ml/2", "2").await;
    let mut client = Client::connect(rest, None).await.expect("connect");
    for (key, value) in [("ml/0", "0"), ("ml/1", "1"), ("ml/2", "2")] {
        let got = client.get(key, None).await.expect("get");
        assert_eq!(got.kvs()[0].value(), value.as_bytes(), "{key}");
    }
    assert_eq!(client.member_list().await.unwrap().members().len(), 2);
}

/// Returns each member's id, by index.
async fn member_ids(client: &mut Client) -> Vec<u64> {
    let list = client.member_list().await.expect("member list");
    let mut named: Vec<(String, u64)> = list
        .members()
        .iter()
        .map(|m| (m.name().to_string(), m.id()))
        .collect();
    named.sort();
    named.into_iter().map(|(_, id)| id).collect()
}

/// Writes unique keys through `endpoints` until `stop`, retrying after errors; returns the
/// acknowledged (key, value) pairs.
async fn write_until(
    writer: usize,
    endpoints: Vec<String>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<(String, String)> {
    let mut acked = Vec::new();
    let mut client: Option<Client> = None;
    let mut seq = 0u64;
    while !*stop.borrow() {
        if client.is_none() {
            client = Client::connect(endpoints.clone(), None).await.ok();
        }
        let Some(c) = client.as_mut() else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let key = format!("load/{writer}/{seq:05}");
        let value = format!("{writer}-{seq}");
        seq += 1;
        match tokio::time::timeout(
            Duration::from_secs(5),
            c.put(key.clone(), value.clone(), None),
        )
        .await
        {
            Ok(Ok(_)) => acked.push((key, value)),
            _ => {
                client = None;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    acked
}

#[tokio::test]
async fn membership_changes_under_write_load_and_a_member_kill_lose_no_acknowledged_write() {
    // Goal: joint-consensus changes while serving traffic, with a fault in the middle, lose
    // nothing acknowledged and leave every member with the same state. Method: four writers of
    // unique keys through every endpoint; meanwhile add m4 as a learner, start it, promote it,
    // SIGKILL a follower and restart it, remove the leader; stop the writers; read every
    // acknowledged key back linearizably; compare HashKV across the members.
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().await;
    let joiner = cluster.add_slot();
    let all: Vec<String> = cluster.endpoints_except(None);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writers: Vec<_> = (0..4)
        .map(|w| tokio::spawn(write_until(w, all.clone(), stop_rx.clone())))
        .collect();
    let mut client = cluster.client(leader).await;
    let ids = member_ids(&mut client).await;

    // Add and start a learner, then promote it once it is in sync.
    let peer_url = format!("http://127.0.0.1:{}", cluster.members[joiner].peer);
    let added = client
        .member_add([peer_url], Some(MemberAddOptions::new().with_is_learner()))
        .await
        .expect("member add under load");
    let new_id = added.member().expect("added").id();
    cluster.spawn_with(joiner, &["--initial-cluster-state", "existing"]);
    let deadline = Instant::now() + DEADLINE;
    loop {
        match client.member_promote(new_id).await {
            Ok(_) => break,
            Err(error) => {
                assert!(Instant::now() < deadline, "never promoted: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // SIGKILL a follower (not the leader, not the new voter) and restart it under load.
    let victim = (0..3).find(|i| *i != leader).expect("a follower");
    cluster.kill(victim);
    put_eventually(cluster.endpoints_except(Some(victim)), "fault/killed", "1").await;
    cluster.spawn(victim);
    await_local_value(&cluster, victim, "fault/killed", "1").await;

    // Remove the leader while the writers keep going.
    let mut removed = false;
    let deadline = Instant::now() + DEADLINE;
    while !removed {
        let endpoints = cluster.endpoints_except(Some(leader));
        if let Ok(mut c) = Client::connect(endpoints, None).await {
            removed = c.member_remove(ids[leader]).await.is_ok();
        }
        assert!(removed || Instant::now() < deadline, "leader never removed");
        if !removed {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let status = cluster.await_exit(leader).await;
    assert!(!status.success(), "the removed leader stops by itself");
    let rest: Vec<usize> = (0..cluster.members.len())
        .filter(|i| *i != leader)
        .collect();
    let last = put_eventually(cluster.endpoints_except(Some(leader)), "fault/done", "1").await;

    stop_tx.send(true).expect("stop writers");
    let mut acked = Vec::new();
    for writer in writers {
        acked.extend(writer.await.expect("writer"));
    }
    // The writers really ran through the changes (how many they managed depends on the
    // machine's load, so only a floor well below any healthy run is required).
    assert!(
        acked.len() >= 20,
        "only {} writes acknowledged",
        acked.len()
    );

    let mut reader = Client::connect(cluster.endpoints_except(Some(leader)), None)
        .await
        .expect("connect");
    let stored = reader
        .get("load/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("read back");
    let stored: std::collections::HashMap<String, String> = stored
        .kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
            )
        })
        .collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|(key, value)| stored.get(key) != Some(value))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );

    let mut hashes = Vec::new();
    for i in rest {
        let mut c = cluster.client(i).await;
        let deadline = Instant::now() + DEADLINE;
        let hash = loop {
            match c.hash_kv(last).await {
                Ok(response) => break response.hash(),
                Err(error) => assert!(Instant::now() < deadline, "hash_kv on {i}: {error}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        hashes.push(hash);
    }
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "members differ: {hashes:?}"
    );
}

#[tokio::test]
async fn changes_that_would_leave_no_quorum_of_started_members_are_refused() {
    // As etcd's strict reconfiguration check: with one of three members down, removing another
    // voter would leave one started voter of two, and adding anything needs every voter up.
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().await;
    let mut client = cluster.client(leader).await;
    let ids = member_ids(&mut client).await;
    let mut followers = (0..3).filter(|i| *i != leader);
    let (down, other) = (followers.next().unwrap(), followers.next().unwrap());
    // The probe: adding a learner (removed again at once) succeeds only while the leader
    // counts every voter as started. First all up, then with `down` killed until it notices.
    let probe = async |client: &mut Client| -> bool {
        let added = client
            .member_add(
                ["http://127.0.0.1:1".to_string()],
                Some(MemberAddOptions::new().with_is_learner()),
            )
            .await;
        match added {
            Ok(added) => {
                let id = added.member().expect("added").id();
                client.member_remove(id).await.expect("remove the probe");
                true
            }
            Err(error) => {
                assert_eq!(
                    status_of(error),
                    (
                        tonic::Code::Unavailable,
                        "etcdserver: unhealthy cluster".to_string()
                    )
                );
                false
            }
        }
    };
    let deadline = Instant::now() + DEADLINE;
    while !probe(&mut client).await {
        assert!(Instant::now() < deadline, "never healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.kill(down);
    while probe(&mut client).await {
        assert!(Instant::now() < deadline, "the leader never noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, message) = status_of(client.member_remove(ids[other]).await.unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (
            tonic::Code::FailedPrecondition,
            "etcdserver: re-configuration failed due to not enough started members"
        )
    );
    // Removing the member that is down is allowed: the other two still make a quorum.
    client
        .member_remove(ids[down])
        .await
        .expect("remove the member that is down");
    assert_eq!(client.member_list().await.unwrap().members().len(), 2);
}
