//! Membership changes against real processes with the `etcd-client` crate: a learner is added
//! and started with `--initial-cluster-state existing`, catches up, is promoted; a voter is
//! removed; a member's peer URL is updated and it keeps replicating; writes succeed throughout
//! and nothing acknowledged is lost.

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
    cluster.kill(removed);
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
