//! Watch against real members with the `etcd-client` crate: replay from a revision, live events,
//! filters, prev_kv, cancel, progress, compaction, a slow watcher that must not hold up writes,
//! catch-up from storage after a restart, a leader change under a watch, exact resume, and
//! fragments of a large revision. Every event list is checked whole: order, no gap, no
//! duplicate, revisions never split.

use etcd_client::{EventType, WatchFilterType, WatchOptions, WatchStream};

use super::*;

/// One delivered event, reduced to what the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    revision: i64,
    deleted: bool,
    key: String,
    value: String,
    prev_value: Option<String>,
}

/// Reads responses until `count` events arrived (failing on a cancel or the deadline).
async fn events(stream: &mut WatchStream, count: usize) -> Vec<Seen> {
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while out.len() < count {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(remaining, stream.message())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} events arrived: {out:?}", out.len()))
            .expect("watch stream")
            .expect("watch stream ended");
        assert!(!message.canceled(), "watch cancelled: {message:?}");
        for event in message.events() {
            let kv = event.kv().expect("event kv");
            out.push(Seen {
                revision: kv.mod_revision(),
                deleted: event.event_type() == EventType::Delete,
                key: String::from_utf8_lossy(kv.key()).into(),
                value: String::from_utf8_lossy(kv.value()).into(),
                prev_value: event
                    .prev_kv()
                    .map(|p| String::from_utf8_lossy(p.value()).into()),
            });
        }
    }
    assert_eq!(out.len(), count, "more events than expected: {out:?}");
    out
}

/// Opens a watch and checks the created response; returns the stream and watch id.
async fn open(client: &mut Client, key: &str, options: WatchOptions) -> (WatchStream, i64) {
    let mut stream = client.watch(key, Some(options)).await.expect("watch");
    let created = stream
        .message()
        .await
        .expect("created response")
        .expect("stream open");
    assert!(
        created.created(),
        "first response must be created: {created:?}"
    );
    assert!(!created.canceled(), "{created:?}");
    (stream, created.watch_id())
}

fn put(revision: i64, key: &str, value: &str, prev: Option<&str>) -> Seen {
    Seen {
        revision,
        deleted: false,
        key: key.into(),
        value: value.into(),
        prev_value: prev.map(Into::into),
    }
}

fn del(revision: i64, key: &str, prev: Option<&str>) -> Seen {
    Seen {
        revision,
        deleted: true,
        key: key.into(),
        value: String::new(),
        prev_value: prev.map(Into::into),
    }
}

/// Checks that a watcher of every change saw each revision from `first` to `last` once, in
/// order: a revision's events adjacent, revisions increasing without a gap.
fn assert_contiguous(seen: &[Seen], first: i64, last: i64) {
    let mut revisions: Vec<i64> = seen.iter().map(|s| s.revision).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] <= w[1]),
        "revisions out of order"
    );
    revisions.dedup();
    let expected: Vec<i64> = (first..=last).collect();
    assert_eq!(revisions, expected, "gap or duplicate revision");
}

#[tokio::test]
async fn watch_replays_history_then_follows_live_changes_with_filters_and_prev_kv() {
    // Goal: etcd's documented watch answers. Method: a known history, then watchers with each
    // option, checked event by event.
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let mut client = cluster.client(0).await;
    let r1 = client
        .put("w/a", "1", None)
        .await
        .expect("put")
        .header()
        .unwrap()
        .revision();
    client.put("w/b", "1", None).await.expect("put");
    client.put("w/a", "2", None).await.expect("put");
    client.delete("w/b", None).await.expect("delete");
    let txn = Txn::new().and_then([TxnOp::put("w/c", "3", None), TxnOp::put("w/d", "4", None)]);
    client.txn(txn).await.expect("txn");
    let expected = vec![
        put(r1, "w/a", "1", None),
        put(r1 + 1, "w/b", "1", None),
        put(r1 + 2, "w/a", "2", Some("1")),
        del(r1 + 3, "w/b", Some("1")),
        put(r1 + 4, "w/c", "3", None),
        put(r1 + 4, "w/d", "4", None),
    ];

    // Replay from r1 on another member, with prev_kv.
    let mut other = cluster.client(1).await;
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(r1)
        .with_prev_key();
    let (mut stream, _) = open(&mut other, "w/", options).await;
    assert_eq!(events(&mut stream, 6).await, expected);

    // Without prev_kv the previous values are absent.
    let options = WatchOptions::new().with_prefix().with_start_revision(r1);
    let (mut plain, _) = open(&mut other, "w/", options).await;
    let got = events(&mut plain, 6).await;
    assert!(got.iter().all(|s| s.prev_value.is_none()), "{got:?}");

    // Filters: no deletes, then no puts.
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(r1)
        .with_filters([WatchFilterType::NoDelete]);
    let (mut puts_only, _) = open(&mut other, "w/", options).await;
    let got = events(&mut puts_only, 5).await;
    assert!(got.iter().all(|s| !s.deleted), "{got:?}");
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(r1)
        .with_filters([WatchFilterType::NoPut]);
    let (mut deletes_only, _) = open(&mut other, "w/", options).await;
    assert_eq!(
        events(&mut deletes_only, 1).await,
        vec![del(r1 + 3, "w/b", None)]
    );

    // A single-key watch from now sees only later changes of that key, written elsewhere.
    let (mut live, _) = open(&mut other, "w/a", WatchOptions::new()).await;
    let mut writer = cluster.client(2).await;
    writer.put("w/zzz", "x", None).await.expect("put");
    let r = writer
        .put("w/a", "3", None)
        .await
        .expect("put")
        .header()
        .unwrap()
        .revision();
    assert_eq!(events(&mut live, 1).await, vec![put(r, "w/a", "3", None)]);
}

#[tokio::test]
async fn watch_cancel_progress_and_compaction_answer_as_etcd_does() {
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let mut client = cluster.client(0).await;
    for i in 0..5 {
        client.put("c/k", format!("v{i}"), None).await.expect("put");
    }
    let current = client
        .get("c/k", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    // Progress request: a stream-wide response (watch id -1) at the current revision.
    let (mut stream, id) = open(&mut client, "c/other", WatchOptions::new()).await;
    stream.request_progress().await.expect("progress request");
    let progress = stream.message().await.expect("progress").expect("open");
    assert_eq!(progress.watch_id(), -1, "{progress:?}");
    assert!(progress.events().is_empty());
    assert_eq!(progress.header().unwrap().revision(), current);

    // Cancel: acknowledged with the watch id.
    stream.cancel(id).await.expect("cancel");
    let canceled = stream.message().await.expect("cancel reply").expect("open");
    assert!(canceled.canceled(), "{canceled:?}");
    assert_eq!(canceled.watch_id(), id);

    // Compact, then watch from before the compacted revision: created, then cancelled with
    // the compacted revision. From the compacted revision itself, the watch is served.
    client.compact(current - 1, None).await.expect("compact");
    let options = WatchOptions::new().with_start_revision(current - 3);
    let (mut old, id) = open(&mut client, "c/k", options).await;
    let message = old.message().await.expect("compacted reply").expect("open");
    assert!(message.canceled(), "{message:?}");
    assert_eq!(message.watch_id(), id);
    assert_eq!(message.compact_revision(), current - 1);
    let options = WatchOptions::new().with_start_revision(current - 1);
    let (mut at, _) = open(&mut client, "c/k", options).await;
    let got = events(&mut at, 2).await;
    assert_eq!(
        got.iter().map(|s| s.value.as_str()).collect::<Vec<_>>(),
        ["v3", "v4"]
    );
}

#[tokio::test]
async fn progress_notifications_reach_idle_watchers_that_ask() {
    let cluster = Cluster::start(
        3,
        &["--experimental-watch-progress-notify-interval", "200ms"],
    );
    cluster.leader().await;
    let mut client = cluster.client(0).await;
    let revision = client
        .put("p/k", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let options = WatchOptions::new().with_progress_notify();
    let (mut stream, id) = open(&mut client, "p/idle", options).await;
    let notice = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .expect("a progress notification in time")
        .expect("stream")
        .expect("open");
    assert_eq!(notice.watch_id(), id);
    assert!(notice.events().is_empty());
    assert!(notice.header().unwrap().revision() >= revision);
}

#[tokio::test]
async fn a_slow_watcher_holds_up_no_write_and_later_receives_every_event_in_order() {
    // Goal: watchers never block the apply path; a lagging watcher catches up without gaps.
    // Method: a watcher that reads nothing while 40 concurrent writers commit 2000 events
    // (single puts and 100-key Txns), then read it all and check order and completeness.
    let cluster = Cluster::start(3, &[]);
    cluster.leader().await;
    let mut client = cluster.client(0).await;
    let start = client
        .put("s/start", "0", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(start + 1);
    let (mut slow, _) = open(&mut client, "s/", options).await;

    let endpoints = cluster.endpoints_except(None);
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..40 {
        let endpoints = endpoints.clone();
        writers.spawn(async move {
            let mut writer = Client::connect(endpoints, None).await.expect("connect");
            if w < 10 {
                // One Txn of 100 keys: one revision with 100 events.
                let ops: Vec<TxnOp> = (0..100)
                    .map(|i| TxnOp::put(format!("s/t{w:02}/{i:03}"), "x", None))
                    .collect();
                writer.txn(Txn::new().and_then(ops)).await.expect("txn");
            } else {
                for i in 0..(1000 / 30 + 1) {
                    writer
                        .put(format!("s/p{w:02}/{i:03}"), "y", None)
                        .await
                        .expect("put while a watcher lags");
                }
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.expect("writer");
    }
    let last = client
        .get("s/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let total = 10 * 100 + 30 * (1000 / 30 + 1);
    let seen = events(&mut slow, total).await;
    assert_contiguous(&seen, start + 1, last);
    let unique: std::collections::BTreeSet<&str> = seen.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        unique.len(),
        total,
        "a key was delivered twice or not at all"
    );
    // A Txn's 100 events arrive as one revision, adjacent.
    for txn in 0..10 {
        let prefix = format!("s/t{txn:02}/");
        let revisions: std::collections::BTreeSet<i64> = seen
            .iter()
            .filter(|s| s.key.starts_with(&prefix))
            .map(|s| s.revision)
            .collect();
        assert_eq!(revisions.len(), 1, "txn {txn} split over revisions");
    }
}

#[tokio::test]
async fn history_served_after_a_restart_matches_the_live_feed_and_survives_a_leader_change() {
    // Goal: catch-up from storage equals what the in-memory feed delivered, a watch keeps
    // running while the leader changes, and a resume at last revision + 1 is exact.
    // Method: record a live watch on member A; restart member B (its feed is then empty) and
    // replay from B's storage; kill the leader (not A) mid-way; compare the lists.
    let mut cluster = Cluster::start(3, &[]);
    let leader = cluster.leader().await;
    let a = (leader + 1) % 3;
    let b = (leader + 2) % 3;
    let mut client_a = cluster.client(a).await;
    let start = client_a
        .put("r/0", "0", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(start)
        .with_prev_key();
    let (mut live, _) = open(&mut client_a, "r/", options).await;
    for i in 1..50 {
        client_a
            .put(format!("r/{}", i % 7), format!("{i}"), None)
            .await
            .expect("put");
    }
    let first = events(&mut live, 50).await;

    cluster.kill(b);
    cluster.spawn(b);
    await_local_value(&cluster, b, "r/0", "49").await;
    let mut client_b = cluster.client(b).await;
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(start)
        .with_prev_key();
    let (mut replay, _) = open(&mut client_b, "r/", options).await;
    assert_eq!(
        events(&mut replay, 50).await,
        first,
        "storage replay differs from the feed"
    );

    // The leader dies; A's watch continues with writes through the survivors.
    cluster.kill(leader);
    cluster.leader().await;
    let mut after = Vec::new();
    for i in 50..60 {
        client_b
            .put(format!("r/{}", i % 7), format!("{i}"), None)
            .await
            .expect("put after the leader change");
        after.push(i);
    }
    let second = events(&mut live, 10).await;
    let values: Vec<String> = second.iter().map(|s| s.value.clone()).collect();
    let expected: Vec<String> = after.iter().map(|i| i.to_string()).collect();
    assert_eq!(values, expected);
    let mut all = first.clone();
    all.extend(second.clone());
    assert!(
        all.windows(2).all(|w| w[0].revision < w[1].revision),
        "order"
    );

    // Resume on B from the revision after the fifth of those events: exactly the rest.
    let resume_at = second[4].revision + 1;
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(resume_at)
        .with_prev_key();
    let (mut resumed, _) = open(&mut client_b, "r/", options).await;
    assert_eq!(events(&mut resumed, 5).await, second[5..].to_vec());
}

#[tokio::test]
async fn a_large_revision_is_fragmented_only_for_watchers_that_ask() {
    // Goal: fragments carry one revision's events in order and only the last is unmarked.
    // Method: a 100 kB request limit, 10 keys of 50 kB deleted at one revision, watched with
    // prev_kv through the raw gRPC API (the events total 500 kB).
    use proto::etcdserverpb::watch_client::WatchClient;
    use proto::etcdserverpb::{WatchCreateRequest, WatchRequest, watch_request};

    let cluster = Cluster::start(3, &["--max-request-bytes", "100000"]);
    cluster.leader().await;
    let mut client = cluster.client(0).await;
    let value = "v".repeat(50_000);
    for i in 0..10 {
        client
            .put(format!("f/{i}"), value.as_str(), None)
            .await
            .expect("put");
    }
    let deleted = client
        .delete("f/", Some(etcd_client::DeleteOptions::new().with_prefix()))
        .await
        .expect("delete");
    let revision = deleted.header().unwrap().revision();

    let channel = tonic::transport::Endpoint::from_shared(cluster.endpoint(0))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    for fragment in [true, false] {
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: b"f/".to_vec(),
                    range_end: b"f0".to_vec(),
                    start_revision: revision,
                    prev_kv: true,
                    fragment,
                    ..Default::default()
                },
            )),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(create).await.expect("send create");
        let mut responses = WatchClient::new(channel.clone())
            .max_decoding_message_size(16 << 20)
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .expect("watch")
            .into_inner();
        let created = responses.message().await.expect("created").expect("open");
        assert!(created.created);
        let mut parts = Vec::new();
        let mut count = 0;
        while count < 10 {
            let part = responses.message().await.expect("events").expect("open");
            count += part.events.len();
            parts.push(part);
        }
        assert_eq!(count, 10);
        let flags: Vec<bool> = parts.iter().map(|p| p.fragment).collect();
        if fragment {
            assert!(parts.len() > 1, "expected fragments, got one response");
            assert!(flags[..flags.len() - 1].iter().all(|f| *f), "{flags:?}");
        } else {
            assert_eq!(
                parts.len(),
                1,
                "an unfragmented watcher gets the revision whole"
            );
        }
        assert!(!flags[flags.len() - 1], "the last part ends the revision");
        let keys: Vec<Vec<u8>> = parts
            .iter()
            .flat_map(|p| p.events.iter().map(|e| e.kv.as_ref().unwrap().key.clone()))
            .collect();
        let expected: Vec<Vec<u8>> = (0..10).map(|i| format!("f/{i}").into_bytes()).collect();
        assert_eq!(keys, expected);
        assert!(parts.iter().flat_map(|p| &p.events).all(|e| {
            e.prev_kv
                .as_ref()
                .is_some_and(|kv| kv.value.len() == 50_000)
        }));
        drop(tx);
    }
}
