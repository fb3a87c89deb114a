//! The `watch` workload's clients: writers put unique values to a few keys while watchers
//! stream every change from revision 1 (reopening a broken stream from the revision after the
//! last one it delivered); the watch checker then finds gaps, duplicates or reordering.

use std::sync::atomic::Ordering;
use std::time::Duration;

use check::EventType;
use proto::etcdserverpb::PutRequest;
use rand::Rng;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{Client, Completion, WATCH_KEYS, WATCH_PREFIX, WATCH_SILENCE_MAX, register_value};

impl Client {
    /// A put of a unique value to one of the watched keys.
    pub(super) async fn watch_put(&mut self) -> EventType {
        let n = self.shared.started.fetch_add(1, Ordering::Relaxed);
        let key = format!("{WATCH_PREFIX}k{}", n % WATCH_KEYS);
        self.invoke("put", Some(&key), json!(n));
        let request = PutRequest {
            key: key.clone().into_bytes(),
            value: n.to_string().into_bytes(),
            ..Default::default()
        };
        let completion = match self.kv.put(request).await {
            Ok(response) => Completion::ok(Value::Null, response.into_inner().header),
            Err(status) => Completion::write_error(&status),
        };
        self.complete("put", Some(&key), completion)
    }

    /// Follows the watched prefix from revision 1 until `until` holds a revision this watcher
    /// has delivered (or `deadline` passes), recording every open and every response.
    pub async fn watch(
        mut self,
        mut until: tokio::sync::watch::Receiver<Option<i64>>,
        deadline: Instant,
    ) {
        let mut next = 1i64;
        loop {
            let done = |next: i64, until: &tokio::sync::watch::Receiver<Option<i64>>| {
                until.borrow().is_some_and(|last| next > last)
            };
            if done(next, &until) || Instant::now() >= deadline {
                return;
            }
            self.pick_member();
            let endpoint = self.shared.endpoints[self.current].clone();
            let opened = self.open_watch(&endpoint, next).await;
            let Some(mut stream) = opened else {
                self.avoid_current();
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            // Watchers also move on their own after a while, so resuming from a revision is
            // exercised even where no fault breaks the stream.
            let moves_at =
                Instant::now() + Duration::from_millis(self.rng.random_range(1000..4000));
            loop {
                if done(next, &until) || Instant::now() >= deadline {
                    return;
                }
                if Instant::now() >= moves_at {
                    break;
                }
                let message = tokio::select! {
                    message = tokio::time::timeout(WATCH_SILENCE_MAX, stream.message()) => message,
                    changed = until.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let response = match message {
                    Ok(Ok(Some(response))) => response,
                    // Silence, a broken stream or its end: re-open elsewhere from `next`.
                    _ => {
                        self.avoid_current();
                        break;
                    }
                };
                if response.canceled {
                    self.avoid_current();
                    break;
                }
                if response.events.is_empty() {
                    continue;
                }
                let events: Vec<Value> = response
                    .events
                    .iter()
                    .filter_map(|event| event.kv.as_ref())
                    .map(|kv| {
                        json!([
                            kv.mod_revision,
                            String::from_utf8_lossy(&kv.key),
                            register_value(&kv.value)
                        ])
                    })
                    .collect();
                if let Some(last) = response
                    .events
                    .iter()
                    .filter_map(|event| event.kv.as_ref())
                    .map(|kv| kv.mod_revision)
                    .max()
                {
                    next = next.max(last + 1);
                }
                self.invoke("watch-events", None, Value::Null);
                self.complete(
                    "watch-events",
                    None,
                    Completion::ok(Value::Array(events), response.header),
                );
            }
        }
    }

    /// Opens a watch of the prefix from `from` on `endpoint`, recorded as `watch-open`.
    pub(super) async fn open_watch(
        &mut self,
        endpoint: &str,
        from: i64,
    ) -> Option<tonic::Streaming<proto::etcdserverpb::WatchResponse>> {
        use proto::etcdserverpb::watch_client::WatchClient;
        use proto::etcdserverpb::{WatchCreateRequest, WatchRequest, watch_request};
        use tokio_stream::StreamExt;
        self.invoke("watch-open", None, json!({ "from": from }));
        let create = WatchCreateRequest {
            key: WATCH_PREFIX.as_bytes().to_vec(),
            range_end: base::keys::prefix_end(WATCH_PREFIX.as_bytes()),
            start_revision: from,
            ..Default::default()
        };
        let request = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        };
        // The request side stays open (and empty) for as long as the stream is read.
        let requests = tokio_stream::iter([request]).chain(tokio_stream::pending());
        let channel =
            client::channels::lazy(endpoint, None).expect("check endpoints are loopback host:port");
        let open = async {
            let mut stream = WatchClient::new(channel)
                .max_decoding_message_size(usize::MAX)
                .watch(requests)
                .await?
                .into_inner();
            // The first response confirms the watch was created.
            match stream.message().await? {
                Some(created) if created.created && !created.canceled => Ok(stream),
                _ => Err(tonic::Status::unavailable("the watch was not created")),
            }
        };
        match tokio::time::timeout(self.shared.op_timeout, open).await {
            Ok(Ok(stream)) => {
                self.complete("watch-open", None, Completion::ok(Value::Null, None));
                Some(stream)
            }
            Ok(Err(status)) => {
                self.complete("watch-open", None, Completion::read_error(&status));
                None
            }
            Err(_) => {
                let status = tonic::Status::deadline_exceeded("watch open timed out");
                self.complete("watch-open", None, Completion::read_error(&status));
                None
            }
        }
    }
}
