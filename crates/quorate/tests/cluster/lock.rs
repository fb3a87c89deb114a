//! Lock and Election through the `etcd-client` crate and etcdctl, and the fencing pattern
//! with a real paused holder: etcdctl holds a lock, is SIGSTOPped past its lease, the next
//! holder gets a larger token, and the stale holder's guarded write is refused.

use std::io::{BufRead, BufReader};

use etcd_client::{Compare, CompareOp, LockOptions, ProclaimOptions, ResignOptions, Txn, TxnOp};
use tonic::Code;

use super::*;

/// Writes `value` to `resource` only while `lock_key` still has create revision `token`.
async fn fenced_write(client: &mut Client, lock_key: &[u8], token: i64, value: &str) -> bool {
    let txn = Txn::new()
        .when([Compare::create_revision(
            lock_key.to_vec(),
            CompareOp::Equal,
            token,
        )])
        .and_then([TxnOp::put("fence/resource", value, None)]);
    client.txn(txn).await.expect("fenced txn").succeeded()
}

#[tokio::test]
async fn lock_excludes_others_until_unlocked_and_hands_over_with_a_larger_token() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let mut a = cluster.client(0).await;
    let mut b = cluster.client(1).await;
    let lease_a = a.lease_grant(30, None).await.expect("grant").id();
    let lease_b = b.lease_grant(30, None).await.expect("grant").id();
    let held = a
        .lock("ex/lock", Some(LockOptions::new().with_lease(lease_a)))
        .await
        .expect("lock a");
    let key_a = held.key().to_vec();
    assert_eq!(key_a, format!("ex/lock/{lease_a:x}").into_bytes());
    let token_a = a.get(key_a.clone(), None).await.unwrap().kvs()[0].create_revision();

    let waiter = tokio::spawn(async move {
        let held = b
            .lock("ex/lock", Some(LockOptions::new().with_lease(lease_b)))
            .await
            .expect("lock b");
        (b, held.key().to_vec())
    });
    // While A holds the lock, B must not get it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "B acquired a held lock");
    a.unlock(key_a.clone()).await.expect("unlock a");
    let (mut b, key_b) = tokio::time::timeout(DEADLINE, waiter)
        .await
        .expect("B acquires after the unlock")
        .expect("waiter");
    let token_b = b.get(key_b.clone(), None).await.unwrap().kvs()[0].create_revision();
    assert!(
        token_b > token_a,
        "tokens must grow: {token_a} then {token_b}"
    );
    assert!(!fenced_write(&mut a, &key_a, token_a, "a").await);
    assert!(fenced_write(&mut b, &key_b, token_b, "b").await);
}

#[tokio::test]
async fn a_paused_lock_holder_loses_the_lock_and_its_fenced_write_is_refused() {
    // Goal: the fencing pattern of docs/api.md under a real pause. Method: etcdctl (whose lock
    // recipe uses sessions, Txn and Watch) takes the lock with a 2 s session; SIGSTOP it; the
    // next holder gets the lock once the lease expires; the stale token is refused.
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let endpoint = format!("127.0.0.1:{}", cluster.members[0].client);
    let mut holder = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["lock", "--ttl=2", "fence/lock"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcdctl lock");
    let mut lines = BufReader::new(holder.stdout.take().expect("stdout")).lines();
    let key_a = tokio::task::spawn_blocking(move || lines.next())
        .await
        .expect("reader")
        .expect("etcdctl printed the lock key")
        .expect("utf-8 key");
    assert!(key_a.starts_with("fence/lock/"), "{key_a}");
    let mut client = cluster.client(1).await;
    let token_a = client.get(key_a.as_str(), None).await.unwrap().kvs()[0].create_revision();
    assert!(fenced_write(&mut client, key_a.as_bytes(), token_a, "a").await);

    // Pause the holder: its keep-alives stop.
    let pid = holder.id().to_string();
    let stopped = Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .expect("kill");
    assert!(stopped.success());
    let lease_b = client.lease_grant(30, None).await.expect("grant").id();
    let held = tokio::time::timeout(
        DEADLINE,
        client.lock("fence/lock", Some(LockOptions::new().with_lease(lease_b))),
    )
    .await
    .expect("the lock is released when the paused holder's lease expires")
    .expect("lock b");
    let key_b = held.key().to_vec();
    let token_b = client.get(key_b.clone(), None).await.unwrap().kvs()[0].create_revision();
    assert!(token_b > token_a);

    // The paused holder wakes up and writes with its stale token: refused.
    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    assert!(!fenced_write(&mut client, key_a.as_bytes(), token_a, "stale").await);
    assert!(fenced_write(&mut client, &key_b, token_b, "b").await);
    let value = client.get("fence/resource", None).await.unwrap();
    assert_eq!(value.kvs()[0].value(), b"b");
    let _ = holder.kill();
    let _ = holder.wait();
}

#[tokio::test]
async fn election_campaign_proclaim_leader_observe_and_resign() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let mut a = cluster.client(0).await;
    let mut b = cluster.client(2).await;
    let (code, message) = status_of(a.leader("el/none").await.unwrap_err());
    assert_eq!(
        (code, message.as_str()),
        (Code::Unknown, "election: no leader")
    );

    let lease_a = a.lease_grant(30, None).await.expect("grant").id();
    let lease_b = b.lease_grant(30, None).await.expect("grant").id();
    let campaign = a.campaign("el/x", "a1", lease_a).await.expect("campaign a");
    let leader_a = campaign.leader().expect("leader key").clone();
    assert_eq!(leader_a.lease(), lease_a);
    let mut observe = b.observe("el/x").await.expect("observe");
    let first = observe.message().await.expect("observe").expect("open");
    assert_eq!(first.kv().unwrap().value(), b"a1");

    let waiter = tokio::spawn(async move {
        let campaign = b.campaign("el/x", "b1", lease_b).await.expect("campaign b");
        (b, campaign.leader().expect("leader key").clone())
    });
    a.proclaim(
        "a2",
        Some(ProclaimOptions::new().with_leader(leader_a.clone())),
    )
    .await
    .expect("proclaim");
    let second = observe.message().await.expect("observe").expect("open");
    assert_eq!(second.kv().unwrap().value(), b"a2");
    assert_eq!(a.leader("el/x").await.unwrap().kv().unwrap().value(), b"a2");
    assert!(!waiter.is_finished(), "B leads while A does");

    a.resign(Some(ResignOptions::new().with_leader(leader_a.clone())))
        .await
        .expect("resign");
    let (_, leader_b) = tokio::time::timeout(DEADLINE, waiter)
        .await
        .expect("B leads after A resigned")
        .expect("waiter");
    assert!(leader_b.rev() > leader_a.rev());
    let third = observe.message().await.expect("observe").expect("open");
    assert_eq!(third.kv().unwrap().value(), b"b1");
    let (code, message) = status_of(
        a.proclaim("stale", Some(ProclaimOptions::new().with_leader(leader_a)))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (code, message.as_str()),
        (Code::Unknown, "election: not leader")
    );
}
