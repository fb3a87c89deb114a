//! The range-set workload's clients and their history, as the tester's `range-set` does it
//! over the wire: an add puts a unique element under its own key (spread over the bucket by a
//! hashed prefix); one operation in five reads the whole bucket page by page, each page a
//! linearizable scan on the leader of the range holding its first key, which ends the page at
//! its range's end. A client routes by its own `ranges::RangeCache`, refreshed from the
//! metadata when a replica refuses it (not the leader, range moved, frozen for a merge) or it
//! misses. One attempt is one step; a request or reply lost leaves an add's outcome unknown
//! (`info`) and fails a read (reads change nothing).

use std::collections::BTreeSet;

use base::{HlcTimestamp, NodeId};
use check::EventType;
use ranges::{RangeCache, RangeCommand, RangeId, RangeOpError};
use serde_json::{Value, json};

use super::{Canary, NEWEST, Sim};

/// Attempts an operation makes before it gives up (every attempt refused before proposing:
/// the operation certainly failed).
pub(super) const ATTEMPTS_MAX: u32 = 30;
/// Keys a scan page holds at most.
const PAGE_KEYS: usize = 1_000;
/// Requests and replies lost, per mille.
const LOSS_PER_MILLE: u64 = 20;

/// A client's operation in flight.
#[derive(Clone, Debug)]
pub(super) enum Op {
    Idle,
    /// A set add.
    Add {
        element: u64,
        key: Vec<u8>,
        attempts: u32,
    },
    /// A whole-bucket read of the set, at page `from`.
    Scan {
        from: Vec<u8>,
        elements: BTreeSet<u64>,
        attempts: u32,
    },
    /// A register write.
    Write {
        key: Vec<u8>,
        value: u64,
        attempts: u32,
    },
    /// A register read, linearizable or a follower read.
    Get {
        key: Vec<u8>,
        follower: bool,
        attempts: u32,
    },
}

/// One client: its routing cache and its operation in flight.
#[derive(Clone, Debug)]
pub(super) struct Client {
    id: u64,
    cache: RangeCache,
    pub(super) op: Op,
    /// Runs the final read (retried until it succeeds).
    is_final: bool,
    /// The register the final reads have reached (the register workload reads each once).
    pub(super) final_next: u64,
}

impl Client {
    pub(super) fn new(index: usize) -> Client {
        Client {
            id: index as u64,
            cache: RangeCache::new(),
            op: Op::Idle,
            is_final: false,
            final_next: 0,
        }
    }

    pub(super) fn is_final(&self) -> bool {
        self.is_final
    }

    pub(super) fn cache_lookup(&self, key: &[u8]) -> Option<ranges::CachedRange> {
        self.cache.lookup(key).cloned()
    }
}

/// The key of element `n`: spread over the bucket by a hashed prefix.
pub(super) fn key_of(n: u64) -> Vec<u8> {
    format!("{:03}-e{n}", n.wrapping_mul(7919) % 1000).into_bytes()
}

/// What one attempt at a replica came to.
pub(super) enum Attempt<T> {
    Done(T),
    /// Refused before anything was proposed: route again.
    Again,
    /// Proposed (or handed over) and no answer: unknown.
    Unknown,
}

impl Sim {
    /// One step of `client`: start an operation, or make the next attempt of its current one.
    pub(super) fn client_step(&mut self, client: usize) {
        match self.clients[client].op.clone() {
            Op::Idle if self.clients[client].is_final => self.start_final_op(client),
            Op::Idle if !self.healing() => self.start_op(client),
            Op::Idle => {}
            Op::Add {
                element,
                key,
                attempts,
            } => self.add_attempt(client, element, key, attempts),
            Op::Scan {
                from,
                elements,
                attempts,
            } => self.read_attempt(client, from, elements, attempts),
            Op::Write {
                key,
                value,
                attempts,
            } => self.write_attempt(client, key, value, attempts),
            Op::Get {
                key,
                follower,
                attempts,
            } => self.get_attempt(client, key, follower, attempts),
        }
    }

    fn start_op(&mut self, client: usize) {
        if self.workload == super::Workload::Register {
            return self.start_register_op(client);
        }
        if self.rng.chance(200) {
            self.start_read(client);
        } else {
            let element = self.next_element;
            self.next_element += 1;
            self.record(client, EventType::Invoke, "add", None, json!(element), None);
            self.clients[client].op = Op::Add {
                element,
                key: key_of(element),
                attempts: 0,
            };
        }
    }

    fn start_read(&mut self, client: usize) {
        self.record(client, EventType::Invoke, "read", None, Value::Null, None);
        self.clients[client].op = Op::Scan {
            from: Vec::new(),
            elements: BTreeSet::new(),
            attempts: 0,
        };
    }

    /// Client 0 reads the whole bucket after healing, until a read succeeds.
    pub(super) fn start_final_read(&mut self) {
        self.clients[0].is_final = true;
        if matches!(self.clients[0].op, Op::Idle) {
            self.start_final_op(0);
        }
    }

    /// The final read: the whole set, or the next register linearizably.
    fn start_final_op(&mut self, client: usize) {
        if self.workload == super::Workload::Register {
            let next = self.clients[client].final_next;
            self.start_register_read(client, next);
        } else {
            self.start_read(client);
        }
    }

    fn add_attempt(&mut self, client: usize, element: u64, key: Vec<u8>, attempts: u32) {
        let command = RangeCommand::Put {
            key: key.clone(),
            value: element.to_string().into_bytes(),
            ts: HlcTimestamp {
                physical: self.now(),
                logical: 0,
            },
        };
        let outcome = self.write(client, &key, command);
        match outcome {
            Attempt::Done(()) => {
                self.finish(client, EventType::Ok, "add", None, json!(element), None);
            }
            Attempt::Unknown => {
                let why = Some("no answer: it may have applied".to_owned());
                self.finish(client, EventType::Info, "add", None, json!(element), why);
            }
            Attempt::Again if attempts + 1 >= ATTEMPTS_MAX => {
                let why = Some("refused at every attempt".to_owned());
                self.finish(client, EventType::Fail, "add", None, json!(element), why);
            }
            Attempt::Again => {
                self.clients[client].op = Op::Add {
                    element,
                    key,
                    attempts: attempts + 1,
                };
            }
        }
    }

    fn read_attempt(
        &mut self,
        client: usize,
        from: Vec<u8>,
        mut elements: BTreeSet<u64>,
        attempts: u32,
    ) {
        let cached_end = self.clients[client]
            .cache
            .lookup(&from)
            .and_then(|c| c.descriptor.end.clone());
        let canary = self.canary;
        let page = self.attempt(client, &from, |sim, leader, id| {
            let replica = &sim.members[&leader].replicas[&id];
            match replica.scan(&from, None, NEWEST, PAGE_KEYS) {
                Ok(part) => Attempt::Done((part.entries, part.resume)),
                // The planted bug: a page from a key split away comes back empty, ending
                // where the asker thought the range did.
                Err(RangeOpError::KeyOutside { .. }) if canary == Some(Canary::SplitStaleRead) => {
                    Attempt::Done((Vec::new(), cached_end.clone()))
                }
                Err(_) => Attempt::Again,
            }
        });
        let (entries, resume) = match page {
            Attempt::Done(page) => page,
            Attempt::Unknown => {
                let why = Some("a page had no answer".to_owned());
                return self.finish(client, EventType::Fail, "read", None, Value::Null, why);
            }
            Attempt::Again if attempts + 1 >= ATTEMPTS_MAX => {
                let why = Some("a page was refused at every attempt".to_owned());
                return self.finish(client, EventType::Fail, "read", None, Value::Null, why);
            }
            Attempt::Again => {
                self.clients[client].op = Op::Scan {
                    from,
                    elements,
                    attempts: attempts + 1,
                };
                return;
            }
        };
        for (_, version) in entries {
            if let Some(element) = version
                .value
                .as_deref()
                .and_then(|value| std::str::from_utf8(value).ok())
                .and_then(|text| text.parse().ok())
            {
                elements.insert(element);
            }
        }
        match resume {
            Some(from) => {
                self.clients[client].op = Op::Scan {
                    from,
                    elements,
                    attempts: 0,
                };
            }
            None => {
                let list: Vec<Value> = elements.into_iter().map(|e| json!(e)).collect();
                self.finish(
                    client,
                    EventType::Ok,
                    "read",
                    None,
                    Value::Array(list),
                    None,
                );
            }
        }
    }

    /// Proposes a write on `key`'s range through its leader: done once applied there.
    pub(super) fn write(
        &mut self,
        client: usize,
        key: &[u8],
        command: RangeCommand,
    ) -> Attempt<()> {
        self.attempt(client, key, |sim, leader, id| {
            let Some(index) = sim.propose(id, leader, command) else {
                // No quorum: the proposal times out, and may still commit later.
                return Attempt::Unknown;
            };
            sim.catch_up(leader, id, Some(index));
            let applied = sim.members[&leader].replicas.get(&id).map(|r| r.applied());
            if applied != Some(index) {
                return Attempt::Unknown;
            }
            Attempt::Done(())
        })
    }

    /// One attempt on `key`: routed by the client's cache to the range's leader, which serves
    /// it with `serve` once it applied its whole log and holds the key; refusals before that
    /// teach the cache.
    pub(super) fn attempt<T>(
        &mut self,
        client: usize,
        key: &[u8],
        serve: impl FnOnce(&mut Sim, NodeId, RangeId) -> Attempt<T>,
    ) -> Attempt<T> {
        let Some(cached) = self.clients[client].cache.lookup(key).cloned() else {
            self.refresh(client);
            return Attempt::Again;
        };
        let id = cached.descriptor.id;
        let target = cached.leader.unwrap_or_else(|| {
            *self
                .rng
                .pick(&cached.descriptor.voters().collect::<Vec<_>>())
        });
        if self.rng.chance(LOSS_PER_MILLE) {
            // The request was lost on its way: nothing happened, but the client cannot know.
            return Attempt::Unknown;
        }
        let leads = self.members[&target].up
            && self
                .groups
                .get(&id)
                .is_some_and(|g| g.leader == Some(target) && !g.gone);
        if !leads || !self.catch_up(target, id, None) {
            self.refresh(client);
            return Attempt::Again;
        }
        let state = self.members[&target].replicas[&id].state();
        let serves = state.merging_into().is_none();
        let holds = state.descriptor().contains(key);
        let canary_read = self.canary == Some(Canary::SplitStaleRead);
        if !serves || (!holds && !canary_read) {
            self.refresh(client);
            return Attempt::Again;
        }
        let answer = serve(self, target, id);
        if matches!(answer, Attempt::Done(_)) && self.rng.chance(LOSS_PER_MILLE) {
            // Served, and the reply lost.
            return Attempt::Unknown;
        }
        answer
    }

    /// The client learns the metadata's descriptors and leaders (a gateway's metadata read).
    fn refresh(&mut self, client: usize) {
        let known: Vec<_> = self
            .meta
            .iter()
            .map(|r| (r.clone(), self.groups.get(&r.id).and_then(|g| g.leader)))
            .collect();
        let cache = &mut self.clients[client].cache;
        for (descriptor, leader) in known {
            cache.insert(descriptor, leader);
        }
    }

    pub(super) fn finish(
        &mut self,
        client: usize,
        event_type: EventType,
        f: &str,
        key: Option<&str>,
        value: Value,
        error: Option<String>,
    ) {
        self.record(client, event_type, f, key, value, error);
        self.clients[client].op = Op::Idle;
        if self.clients[client].is_final && f == "read" {
            if event_type == EventType::Ok {
                self.clients[client].final_next += 1;
                let registers_left = self.workload == super::Workload::Register
                    && self.clients[client].final_next < super::registers::REGISTERS;
                if !registers_left {
                    self.final_read_done = true;
                    return;
                }
            }
            self.start_final_op(client);
        }
    }

    pub(super) fn record(
        &mut self,
        client: usize,
        event_type: EventType,
        f: &str,
        key: Option<&str>,
        value: Value,
        error: Option<String>,
    ) {
        let id = self.clients[client].id;
        let mut event = check::Event::new(id, event_type, f, key, value, self.now() * 1_000);
        event.error = error;
        self.history.push(event);
    }
}
