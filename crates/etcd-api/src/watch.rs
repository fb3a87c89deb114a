//! The etcd Watch service: one task per stream multiplexes its watchers. Each watcher keeps
//! the next revision it owes the client and is served in bounded batches from the replica's
//! change feed (or from history when it is behind), so events are ordered, unique, without
//! gaps, and a revision is never split unless the watcher asked for fragments. A slow client
//! holds up only its own stream: the apply path publishes without waiting for any watcher. It
//! must never decide what a change is (that is `mvcc`) nor write anything.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use base::EtcdError;
use base::limits::{WATCH_BATCH_EVENTS_MAX, WATCH_STREAM_BUFFER, WATCHES_PER_STREAM_MAX};
use mvcc::WatchFilter;
use prost::Message;
use proto::etcdserverpb::watch_create_request::FilterType;
use proto::etcdserverpb::watch_request::RequestUnion;
use proto::etcdserverpb::watch_server::{Watch, WatchServer};
use proto::etcdserverpb::*;
use proto::mvccpb::Event;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::Context;

/// Control responses (created, canceled, progress) a stream may owe its client before it stops
/// reading the client's requests.
const OUTBOX_MAX: usize = 64;

/// The watch id of a stream-wide progress response (etcd's `InvalidWatchID`).
const STREAM_WIDE_ID: i64 = -1;

/// The Watch service of one member.
pub struct WatchService {
    context: Context,
    progress_interval: Duration,
}

impl WatchService {
    /// Returns the tonic server; idle watchers that asked for progress notifications get one
    /// every `progress_interval`.
    pub fn server(context: Context, progress_interval: Duration) -> WatchServer<WatchService> {
        let max = context.max_request_bytes + base::limits::GRPC_OVERHEAD_BYTES;
        WatchServer::new(WatchService {
            context,
            progress_interval,
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(usize::MAX)
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(WATCH_STREAM_BUFFER);
        let session = Session {
            revision: self.context.replica.subscribe_revision(),
            context: self.context.clone(),
            watchers: BTreeMap::new(),
            next_auto_id: 0,
            outbox: VecDeque::new(),
            deferred_progress: false,
            cursor: -1,
        };
        tokio::spawn(session.run(inbound, tx, self.progress_interval));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// One watcher of a stream.
struct Watcher {
    filter: WatchFilter,
    /// The first revision not yet delivered.
    next: i64,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// Whether anything was sent since the last progress tick.
    active: bool,
}

/// The state of one Watch stream.
struct Session {
    context: Context,
    revision: tokio::sync::watch::Receiver<i64>,
    watchers: BTreeMap<i64, Watcher>,
    next_auto_id: i64,
    outbox: VecDeque<WatchResponse>,
    /// A progress request waits for every watcher to be in sync.
    deferred_progress: bool,
    /// The watcher served last, for round-robin.
    cursor: i64,
}

impl Session {
    async fn run(
        mut self,
        mut inbound: Streaming<WatchRequest>,
        tx: mpsc::Sender<Result<WatchResponse, Status>>,
        progress_interval: Duration,
    ) {
        let mut ticker = tokio::time::interval(progress_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            let current = *self.revision.borrow_and_update();
            if self.outbox.is_empty() {
                self.step(current);
            }
            let pending = !self.outbox.is_empty();
            let reading = self.outbox.len() < OUTBOX_MAX;
            tokio::select! {
                biased;
                message = inbound.message(), if reading => match message {
                    Ok(Some(request)) => self.handle(request, current),
                    // The client closed its side or the connection broke.
                    Ok(None) | Err(_) => return,
                },
                permit = tx.reserve(), if pending => match permit {
                    Ok(permit) => {
                        let response = self.outbox.pop_front().expect("pending response");
                        permit.send(Ok(response));
                    }
                    Err(_) => return,
                },
                changed = self.revision.changed(), if !pending => {
                    if changed.is_err() {
                        // The replica stopped; end the stream so the client reconnects.
                        let _ = tx.send(Err(crate::to_status(EtcdError::Stopped))).await;
                        return;
                    }
                }
                _ = ticker.tick() => self.progress_tick(current),
            }
        }
    }

    fn header(&self, revision: i64) -> ResponseHeader {
        self.context.header(Some(revision))
    }

    fn handle(&mut self, request: WatchRequest, current: i64) {
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create, current),
            // As etcd: cancelling an unknown id answers nothing.
            Some(RequestUnion::CancelRequest(cancel))
                if self.watchers.remove(&cancel.watch_id).is_some() =>
            {
                self.outbox.push_back(WatchResponse {
                    header: Some(self.header(current)),
                    watch_id: cancel.watch_id,
                    canceled: true,
                    ..Default::default()
                });
            }
            Some(RequestUnion::CancelRequest(_)) => {}
            Some(RequestUnion::ProgressRequest(_)) => self.deferred_progress = true,
            None => {}
        }
    }

    fn create(&mut self, create: WatchCreateRequest, current: i64) {
        let header = self.header(current);
        let refuse = |id: i64, reason: &str| WatchResponse {
            header: Some(header),
            watch_id: id,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        };
        if self.watchers.len() >= WATCHES_PER_STREAM_MAX {
            let reason = format!("quorate: at most {WATCHES_PER_STREAM_MAX} watchers per stream");
            self.outbox.push_back(refuse(STREAM_WIDE_ID, &reason));
            return;
        }
        let id = if create.watch_id == 0 {
            while self.watchers.contains_key(&self.next_auto_id) {
                self.next_auto_id += 1;
            }
            self.next_auto_id += 1;
            self.next_auto_id - 1
        } else if self.watchers.contains_key(&create.watch_id) {
            let reason = "mvcc: duplicate watch ID provided on the WatchStream";
            self.outbox.push_back(refuse(STREAM_WIDE_ID, reason));
            return;
        } else {
            create.watch_id
        };
        // An empty key is the smallest key, as in etcd.
        let key = if create.key.is_empty() {
            vec![0]
        } else {
            create.key
        };
        let filter = WatchFilter {
            key,
            range_end: create.range_end,
            no_put: create.filters.contains(&(FilterType::Noput as i32)),
            no_delete: create.filters.contains(&(FilterType::Nodelete as i32)),
        };
        let next = if create.start_revision > 0 {
            create.start_revision
        } else {
            current + 1
        };
        self.watchers.insert(
            id,
            Watcher {
                filter,
                next,
                prev_kv: create.prev_kv,
                fragment: create.fragment,
                progress_notify: create.progress_notify,
                active: false,
            },
        );
        self.outbox.push_back(WatchResponse {
            header: Some(self.header(current)),
            watch_id: id,
            created: true,
            ..Default::default()
        });
    }

    /// Serves one batch to the next watcher that is behind (round-robin), or answers a
    /// deferred progress request once every watcher is in sync.
    fn step(&mut self, current: i64) {
        let behind: Vec<i64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.next <= current)
            .map(|(id, _)| *id)
            .collect();
        let order = behind
            .iter()
            .filter(|id| **id > self.cursor)
            .chain(behind.iter().filter(|id| **id <= self.cursor))
            .copied()
            .collect::<Vec<_>>();
        for id in order {
            self.cursor = id;
            if self.serve(id) {
                return;
            }
        }
        let synced = self.watchers.values().all(|w| w.next > current);
        if self.deferred_progress && synced {
            self.deferred_progress = false;
            self.outbox.push_back(WatchResponse {
                header: Some(self.header(current)),
                watch_id: STREAM_WIDE_ID,
                ..Default::default()
            });
        }
    }

    /// Reads one batch for watcher `id`; returns true when it queued a response.
    fn serve(&mut self, id: i64) -> bool {
        let replica = self.context.replica.clone();
        let watcher = self.watchers.get_mut(&id).expect("watcher exists");
        match replica.changes(&watcher.filter, watcher.next, WATCH_BATCH_EVENTS_MAX) {
            Ok(history) => {
                watcher.next = history.next;
                if history.changes.is_empty() {
                    return false;
                }
                let mut events = Vec::with_capacity(history.changes.len());
                for change in &history.changes {
                    let prev = match change.prev.filter(|_| watcher.prev_kv) {
                        Some(rev) => replica.key_value_at(rev).unwrap_or_else(|error| {
                            tracing::warn!(%error, "watch prev_kv");
                            None
                        }),
                        None => None,
                    };
                    events.push(change.to_event(prev));
                }
                watcher.active = true;
                let fragment = watcher.fragment;
                let revision = history.next - 1;
                let response = WatchResponse {
                    header: Some(self.header(revision)),
                    watch_id: id,
                    events,
                    ..Default::default()
                };
                if fragment {
                    let limit = self.context.max_request_bytes;
                    self.outbox.extend(fragments(response, limit));
                } else {
                    self.outbox.push_back(response);
                }
                true
            }
            Err(EtcdError::Compacted) => {
                self.watchers.remove(&id);
                let (current, compacted) = replica.revisions();
                self.outbox.push_back(WatchResponse {
                    header: Some(self.header(current)),
                    watch_id: id,
                    canceled: true,
                    compact_revision: compacted,
                    ..Default::default()
                });
                true
            }
            Err(error) => {
                tracing::warn!(%error, watch_id = id, "watch read failed; cancelling the watcher");
                self.watchers.remove(&id);
                self.outbox.push_back(WatchResponse {
                    header: Some(self.header(replica.revision())),
                    watch_id: id,
                    canceled: true,
                    cancel_reason: error.to_string(),
                    ..Default::default()
                });
                true
            }
        }
    }

    /// Sends a progress notification to every idle, in-sync watcher that asked for them.
    fn progress_tick(&mut self, current: i64) {
        let mut due = Vec::new();
        for (id, watcher) in &mut self.watchers {
            if watcher.progress_notify && !watcher.active && watcher.next > current {
                due.push(*id);
            }
            watcher.active = false;
        }
        for id in due {
            let response = WatchResponse {
                header: Some(self.header(current)),
                watch_id: id,
                ..Default::default()
            };
            self.outbox.push_back(response);
        }
    }
}

/// Splits a response larger than `limit` bytes into fragments of at most `limit` (but at least
/// one event each); every fragment but the last carries `fragment = true`, as etcd's do.
fn fragments(response: WatchResponse, limit: usize) -> Vec<WatchResponse> {
    if response.encoded_len() <= limit {
        return vec![response];
    }
    let mut out = Vec::new();
    let mut part: Vec<Event> = Vec::new();
    let mut size = 0;
    for event in response.events.iter().cloned() {
        let len = event.encoded_len() + 8;
        if !part.is_empty() && size + len > limit {
            out.push(std::mem::take(&mut part));
            size = 0;
        }
        size += len;
        part.push(event);
    }
    out.push(part);
    let count = out.len();
    out.into_iter()
        .enumerate()
        .map(|(i, events)| WatchResponse {
            events,
            fragment: i + 1 < count,
            ..response.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::mvccpb::KeyValue;

    #[test]
    fn large_responses_split_into_marked_fragments() {
        // Goal: fragments carry every event once, in order, and only the last is unmarked.
        let events: Vec<Event> = (0..10)
            .map(|i| Event {
                kv: Some(KeyValue {
                    key: format!("k{i}").into_bytes(),
                    value: vec![b'x'; 100],
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        let response = WatchResponse {
            watch_id: 7,
            events: events.clone(),
            ..Default::default()
        };
        let parts = fragments(response.clone(), 350);
        assert!(parts.len() > 1, "{} parts", parts.len());
        let flags: Vec<bool> = parts.iter().map(|p| p.fragment).collect();
        assert!(flags[..flags.len() - 1].iter().all(|f| *f), "{flags:?}");
        assert!(!flags[flags.len() - 1]);
        let joined: Vec<Event> = parts.iter().flat_map(|p| p.events.clone()).collect();
        assert_eq!(joined, events);
        assert!(parts.iter().all(|p| p.watch_id == 7));
        assert_eq!(fragments(response, 1 << 20).len(), 1);
    }
}
