//! KV semantics and errors through the `etcd-client` crate, as etcd documents them.

use super::*;

#[tokio::test]
async fn kv_operations_answer_as_etcd_does() {
    // Goal: every KV operation of the foundation returns etcd's documented result when driven
    // by a client we did not write. Method: one cluster, a scripted sequence, exact checks.
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let mut client = cluster.client(1).await;

    let put = client.put("a", "1", None).await.expect("put a");
    let header = put.header().expect("header");
    assert_eq!(header.revision(), 2, "a fresh cluster is at revision 1");
    assert_ne!(header.cluster_id(), 0);
    assert_ne!(header.member_id(), 0);
    assert!(header.raft_term() >= 1);
    let put = client
        .put("a", "2", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("put a again");
    assert_eq!(put.prev_key().expect("prev kv").value(), b"1");
    for (key, value) in [("b", "z"), ("c", "y"), ("d", "x")] {
        client.put(key, value, None).await.expect("put");
    }

    let got = client.get("a", None).await.expect("get a");
    let kv = &got.kvs()[0];
    assert_eq!(
        (
            kv.value(),
            kv.create_revision(),
            kv.mod_revision(),
            kv.version()
        ),
        (b"2".as_slice(), 2, 3, 2)
    );
    let old = client
        .get("a", Some(GetOptions::new().with_revision(2)))
        .await
        .expect("get at revision 2");
    assert_eq!(old.kvs()[0].value(), b"1");

    let sorted = client
        .get(
            "a",
            Some(
                GetOptions::new()
                    .with_range("e")
                    .with_sort(SortTarget::Value, SortOrder::Ascend)
                    .with_limit(2),
            ),
        )
        .await
        .expect("sorted range");
    let keys: Vec<&[u8]> = sorted.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(
        keys,
        vec![b"a".as_slice(), b"d"],
        "ascending by value: 2 < x < y < z"
    );
    assert_eq!(sorted.count(), 4);
    assert!(sorted.more());
    let counted = client
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_count_only()),
        )
        .await
        .expect("count");
    assert_eq!((counted.count(), counted.kvs().len()), (4, 0));
    let from_key = client
        .get(
            "c",
            Some(GetOptions::new().with_from_key().with_keys_only()),
        )
        .await
        .expect("from key");
    let keys: Vec<&[u8]> = from_key.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, vec![b"c".as_slice(), b"d"]);
    assert!(
        from_key.kvs().iter().all(|kv| kv.value().is_empty()),
        "keys_only drops values"
    );

    let txn = Txn::new()
        .when([Compare::version("a", CompareOp::Equal, 2)])
        .and_then([TxnOp::put("a", "3", None), TxnOp::get("a", None)])
        .or_else([TxnOp::put("failed", "1", None)]);
    let response = client.txn(txn).await.expect("txn");
    assert!(response.succeeded());
    let txn_revision = response.header().expect("header").revision();
    let a = client.get("a", None).await.expect("get a");
    assert_eq!(a.kvs()[0].mod_revision(), txn_revision);
    let txn = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "nope")])
        .or_else([TxnOp::put("failed", "1", None)]);
    assert!(!client.txn(txn).await.expect("txn").succeeded());
    assert_eq!(
        client.get("failed", None).await.expect("get").kvs().len(),
        1
    );

    let deleted = client
        .delete(
            "b",
            Some(
                etcd_client::DeleteOptions::new()
                    .with_range("d")
                    .with_prev_key(),
            ),
        )
        .await
        .expect("delete b..d");
    assert_eq!(deleted.deleted(), 2);
    assert_eq!(deleted.prev_kvs().len(), 2);
    assert!(client.get("b", None).await.expect("get b").kvs().is_empty());

    let status = client.status().await.expect("status");
    assert_ne!(status.leader(), 0);
    assert!(status.db_size() > 0, "db size {}", status.db_size());
    let members = client.member_list().await.expect("member list");
    assert_eq!(members.members().len(), 3);
}

#[tokio::test]
async fn bad_requests_get_etcds_codes_and_messages() {
    // Goal: each limit and error of the foundation reaches the client with etcd's exact gRPC
    // code and message. Method: provoke each one against a cluster with small limits.
    let cluster = Cluster::start(3, &["--max-request-bytes", "4096", "--max-txn-ops", "4"]);
    cluster.leader().await;
    let mut client = cluster.client(0).await;
    use tonic::Code;

    let empty = client.put("", "v", None).await.expect_err("empty key");
    assert_eq!(
        status_of(empty),
        (
            Code::InvalidArgument,
            "etcdserver: key is not provided".into()
        )
    );
    let large = client
        .put("big", vec![b'x'; 8192], None)
        .await
        .expect_err("too large");
    assert_eq!(
        status_of(large),
        (
            Code::InvalidArgument,
            "etcdserver: request is too large".into()
        )
    );
    let many = Txn::new().and_then(
        (0..5)
            .map(|i| TxnOp::put(format!("k{i}"), "v", None))
            .collect::<Vec<_>>(),
    );
    let many = client.txn(many).await.expect_err("too many ops");
    assert_eq!(
        status_of(many),
        (
            Code::InvalidArgument,
            "etcdserver: too many operations in txn request".into()
        )
    );
    let duplicate = Txn::new().and_then([TxnOp::put("k", "1", None), TxnOp::put("k", "2", None)]);
    let duplicate = client.txn(duplicate).await.expect_err("duplicate key");
    assert_eq!(
        status_of(duplicate),
        (
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request".into()
        )
    );
    let ignore = client
        .put("missing", "", Some(PutOptions::new().with_ignore_value()))
        .await
        .expect_err("missing key");
    assert_eq!(
        status_of(ignore),
        (Code::InvalidArgument, "etcdserver: key not found".into())
    );

    client.put("k", "1", None).await.expect("put");
    let revision = client
        .put("k", "2", None)
        .await
        .expect("put")
        .header()
        .expect("header")
        .revision();
    client.compact(revision, None).await.expect("compact");
    let compacted = client
        .get("k", Some(GetOptions::new().with_revision(revision - 1)))
        .await
        .expect_err("compacted");
    let compacted_message = "etcdserver: mvcc: required revision has been compacted";
    assert_eq!(
        status_of(compacted),
        (Code::OutOfRange, compacted_message.into())
    );
    let again = client
        .compact(revision - 1, None)
        .await
        .expect_err("compact twice");
    assert_eq!(
        status_of(again),
        (Code::OutOfRange, compacted_message.into())
    );
    let future = client
        .get("k", Some(GetOptions::new().with_revision(revision + 100)))
        .await
        .expect_err("future");
    let future_message = "etcdserver: mvcc: required revision is a future revision";
    assert_eq!(status_of(future), (Code::OutOfRange, future_message.into()));
}

#[tokio::test]
async fn every_member_publishes_its_client_urls_in_member_list() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let expected: std::collections::BTreeMap<String, Vec<String>> = (0..3)
        .map(|i| (cluster.members[i].name.clone(), vec![cluster.endpoint(i)]))
        .collect();
    let deadline = Instant::now() + DEADLINE;
    for i in 0..3 {
        let mut client = cluster.client(i).await;
        loop {
            let list = client.member_list().await.expect("member list");
            let published: std::collections::BTreeMap<String, Vec<String>> = list
                .members()
                .iter()
                .map(|m| (m.name().to_string(), m.client_urls().to_vec()))
                .collect();
            if published == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "member {i} lists {published:?}, expected {expected:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test]
async fn a_write_through_a_follower_is_visible_to_its_serializable_reads_at_once() {
    // Goal: read-your-writes on the member a client writes through, as etcd gives (the
    // follower answers only after applying the write itself). Method: write through a
    // follower, read serializably from it right away, many times.
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let mut client = cluster.client(follower).await;
    for i in 0..30 {
        let value = format!("v{i}");
        client.put("ryw", value.as_str(), None).await.expect("put");
        let read = client
            .get("ryw", Some(GetOptions::new().with_serializable()))
            .await
            .expect("serializable get");
        assert_eq!(
            read.kvs()[0].value(),
            value.as_bytes(),
            "write {i} not visible"
        );
    }
}
