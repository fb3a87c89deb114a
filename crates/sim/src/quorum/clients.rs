//! The quorum-set workload's clients and the history they record, as the tester's
//! `quorum-set` workload does it over the wire: an add reads its key at r=quorum, merges the
//! sibling sets, adds a unique element and puts the result with the read's context at
//! w=quorum; one operation in four reads every key at r=quorum and unions their siblings; the
//! final read does so at r=all. A client sends each request to a member it picks at random
//! and gives up on it a little after the request's deadline (its coordinator may have
//! crashed). An add whose put failed or timed out has an unknown outcome (`info`).

use std::collections::BTreeSet;

use check::EventType;
use crdt::Object;
use quorum::{ReadDone, WriteDone};
use serde_json::{Value, json};

use super::{Event, REQUEST_TIMEOUT, Sim};

/// Keys the adds spread over.
const KEYS: u64 = 4;
/// A client waits this long past a request's deadline before it gives up.
const CLIENT_GRACE: u64 = 20_000;

/// A request from a client to a member.
#[derive(Clone, Debug)]
pub(super) enum ClientRequest {
    Get {
        key: String,
        r: usize,
    },
    Put {
        key: String,
        value: Vec<u8>,
        context: crdt::VersionVector,
    },
}

/// A coordinator's answer to a client.
#[derive(Clone, Debug)]
pub(super) enum ClientReply {
    Read(Result<ReadDone, String>),
    Write(Result<WriteDone, String>),
}

#[derive(Clone, Debug)]
enum Op {
    Idle,
    /// An add reading its key.
    AddRead {
        element: u64,
        key: String,
    },
    /// An add writing its key.
    AddWrite {
        key: String,
    },
    /// A read of every key: the next key to read and the union so far.
    ReadAll {
        next: u64,
        elements: BTreeSet<u64>,
        r: usize,
    },
}

pub(super) struct Client {
    id: usize,
    op: Op,
    /// Increments with each request, so a late reply or timeout of an earlier one is void.
    step: u64,
    /// The final read (retried until it succeeds).
    is_final: bool,
}

impl Client {
    pub(super) fn new(id: usize) -> Client {
        Client {
            id,
            op: Op::Idle,
            step: 0,
            is_final: false,
        }
    }
}

/// The elements of every sibling of `object`, merged.
fn union(object: &Object) -> BTreeSet<u64> {
    let mut all = BTreeSet::new();
    for sibling in object.live_values() {
        if let Some(value) = &sibling.value {
            let elements: Vec<u64> =
                serde_json::from_slice(value).expect("the workload writes lists of elements");
            all.extend(elements);
        }
    }
    all
}

impl Sim {
    fn quorum(&self) -> usize {
        self.bucket
            .r
            .required(self.bucket.n, "r")
            .expect("r fits n")
    }

    /// Starts the client's next operation, unless operations are over.
    pub(super) fn client_start(&mut self, client: usize) {
        if !self.ops_open || !matches!(self.clients[client].op, Op::Idle) {
            return;
        }
        if self.rng.chance(250) {
            self.invoke(client, "read", None, Value::Null);
            let r = self.quorum();
            self.clients[client].op = Op::ReadAll {
                next: 0,
                elements: BTreeSet::new(),
                r,
            };
            self.read_next_key(client);
        } else {
            let element = self.next_element;
            self.next_element += 1;
            let key = format!("k{}", element % KEYS);
            self.invoke(client, "add", Some(&key), json!(element));
            self.clients[client].op = Op::AddRead {
                element,
                key: key.clone(),
            };
            let r = self.quorum();
            self.request(client, ClientRequest::Get { key, r });
        }
    }

    /// Starts the final read on `client` (every other client is idle by then).
    pub(super) fn client_final_read(&mut self, client: usize) {
        let n = self.bucket.n;
        self.clients[client].is_final = true;
        self.invoke(client, "read", None, Value::Null);
        self.clients[client].op = Op::ReadAll {
            next: 0,
            elements: BTreeSet::new(),
            r: n,
        };
        self.read_next_key(client);
    }

    fn read_next_key(&mut self, client: usize) {
        let Op::ReadAll { next, r, .. } = &self.clients[client].op else {
            return;
        };
        let (key, r) = (format!("k{next}"), *r);
        self.request(client, ClientRequest::Get { key, r });
    }

    /// Sends a request to a member picked at random.
    fn request(&mut self, client: usize, request: ClientRequest) {
        let member = *self.rng.pick(&self.ids.clone());
        self.clients[client].step += 1;
        let step = self.clients[client].step;
        let delay = self.rng.range(20, 200);
        self.after(
            delay,
            Event::ClientRequest {
                client,
                step,
                member,
                request,
            },
        );
        self.after(
            REQUEST_TIMEOUT + CLIENT_GRACE,
            Event::ClientTimeout { client, step },
        );
    }

    /// A client's request reached a member; a member that is down never answers.
    pub(super) fn client_request(
        &mut self,
        client: usize,
        step: u64,
        member: base::NodeId,
        request: ClientRequest,
    ) {
        if self.member_life(member).is_none() {
            return;
        }
        match request {
            ClientRequest::Get { key, r } => self.start_read(member, client, step, key, r),
            ClientRequest::Put {
                key,
                value,
                context,
            } => self.start_write(member, client, step, key, Some(value), context),
        }
    }

    pub(super) fn client_reply(&mut self, client: usize, step: u64, reply: ClientReply) {
        if self.clients[client].step != step {
            return;
        }
        self.clients[client].step += 1;
        let op = std::mem::replace(&mut self.clients[client].op, Op::Idle);
        match (op, reply) {
            (Op::AddRead { element, key }, ClientReply::Read(Ok(done))) => {
                let mut elements = union(&done.object);
                elements.insert(element);
                let value = serde_json::to_vec(&elements).expect("a set of integers encodes");
                self.clients[client].op = Op::AddWrite { key: key.clone() };
                let context = done.object.context;
                self.request(
                    client,
                    ClientRequest::Put {
                        key,
                        value,
                        context,
                    },
                );
            }
            (Op::AddRead { key, .. }, ClientReply::Read(Err(why))) => {
                // Nothing was written: the add certainly failed.
                self.complete(
                    client,
                    EventType::Fail,
                    "add",
                    Some(&key),
                    Value::Null,
                    Some(why),
                );
            }
            (Op::AddWrite { key, .. }, ClientReply::Write(Ok(_))) => {
                self.complete(client, EventType::Ok, "add", Some(&key), Value::Null, None);
            }
            (Op::AddWrite { key, .. }, ClientReply::Write(Err(why))) => {
                // Not enough replicas: those that stored it keep it; the outcome is unknown.
                self.complete(
                    client,
                    EventType::Info,
                    "add",
                    Some(&key),
                    Value::Null,
                    Some(why),
                );
            }
            (
                Op::ReadAll {
                    next,
                    mut elements,
                    r,
                },
                ClientReply::Read(Ok(done)),
            ) => {
                elements.extend(union(&done.object));
                if next + 1 < KEYS {
                    self.clients[client].op = Op::ReadAll {
                        next: next + 1,
                        elements,
                        r,
                    };
                    self.read_next_key(client);
                } else {
                    let list: Vec<Value> = elements.into_iter().map(|e| json!(e)).collect();
                    self.complete(
                        client,
                        EventType::Ok,
                        "read",
                        None,
                        Value::Array(list),
                        None,
                    );
                }
            }
            (Op::ReadAll { .. }, ClientReply::Read(Err(why))) => {
                self.complete(
                    client,
                    EventType::Fail,
                    "read",
                    None,
                    Value::Null,
                    Some(why),
                );
            }
            (op, reply) => panic!("client {client} in {op:?} got {reply:?}"),
        }
    }

    pub(super) fn client_timeout(&mut self, client: usize, step: u64) {
        if self.clients[client].step != step {
            return;
        }
        self.clients[client].step += 1;
        let op = std::mem::replace(&mut self.clients[client].op, Op::Idle);
        let why = Some("timeout".to_owned());
        match op {
            Op::Idle => {}
            Op::AddRead { key, .. } => {
                self.complete(client, EventType::Fail, "add", Some(&key), Value::Null, why)
            }
            Op::AddWrite { key, .. } => {
                self.complete(client, EventType::Info, "add", Some(&key), Value::Null, why)
            }
            Op::ReadAll { .. } => {
                self.complete(client, EventType::Fail, "read", None, Value::Null, why)
            }
        }
    }

    fn invoke(&mut self, client: usize, f: &str, key: Option<&str>, value: Value) {
        let event = self.history_event(client, EventType::Invoke, f, key, value);
        self.record_history(event);
    }

    /// Records the completion of the client's operation and schedules its next one.
    fn complete(
        &mut self,
        client: usize,
        event_type: EventType,
        f: &str,
        key: Option<&str>,
        value: Value,
        error: Option<String>,
    ) {
        let mut event = self.history_event(client, event_type, f, key, value);
        event.error = error;
        self.record_history(event);
        if self.clients[client].is_final {
            if event_type == EventType::Ok {
                self.final_read = Some(Ok(()));
                self.clients[client].is_final = false;
            } else {
                // Everything has healed: a failed final read is retried.
                self.client_final_read(client);
            }
            return;
        }
        let think = self.rng.range(0, 10_000);
        let id = self.clients[client].id;
        self.after(think, Event::ClientStart { client: id });
    }
}
