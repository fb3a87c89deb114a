//! The range-register workload of the range simulation, as the tester's `range-register` does
//! it: writes of small integers to a few registers spread over the bucket, linearizable reads
//! on the range's leader, and follower reads (`follower-read`, allowed `STALENESS_MS`) on any
//! replica the client's cache names, served at the range's closed timestamp when
//! `ranges::follower_read` allows it and otherwise read on the leader, as the real gateway
//! does. Judged by the linearizable register checker and the bounded-staleness checker.

use base::HlcTimestamp;
use check::EventType;
use ranges::{RangeCommand, RangeOpError};
use serde_json::{Value, json};

use super::clients::{Attempt, Op};
use super::{Canary, NEWEST, Sim};

/// Registers the clients write and read.
pub(super) const REGISTERS: u64 = 6;
/// Values a write picks from.
const VALUES: u64 = 5;
/// The staleness a follower read allows.
pub(super) const STALENESS_MS: u32 = 100;

/// The key of register `k`: spread over the bucket by a hashed prefix.
fn register_key(k: u64) -> Vec<u8> {
    format!("{:03}-r{k}", k.wrapping_mul(7919) % 1000).into_bytes()
}

/// A register's value as the checkers take it.
fn value_of(stored: Option<&[u8]>) -> Value {
    match stored.and_then(|v| std::str::from_utf8(v).ok()) {
        Some(text) => text
            .parse::<i64>()
            .map_or_else(|_| json!(text), |n| json!(n)),
        None => Value::Null,
    }
}

impl Sim {
    /// Starts a linearizable read of register `k` (the final reads).
    pub(super) fn start_register_read(&mut self, client: usize, k: u64) {
        self.start_get(client, register_key(k), false);
    }

    /// Starts a read of `key`: linearizable, or a follower read allowing `STALENESS_MS`.
    fn start_get(&mut self, client: usize, key: Vec<u8>, follower: bool) {
        let name = String::from_utf8_lossy(&key).into_owned();
        let (f, input) = if follower {
            let input = json!({ "staleness_ms": STALENESS_MS });
            (check::staleness::FOLLOWER_READ, input)
        } else {
            ("read", Value::Null)
        };
        self.record(client, EventType::Invoke, f, Some(&name), input, None);
        self.clients[client].op = Op::Get {
            key,
            follower,
            attempts: 0,
        };
    }

    /// Starts a write, a linearizable read or a follower read of a random register.
    pub(super) fn start_register_op(&mut self, client: usize) {
        let key = register_key(self.rng.range(0, REGISTERS));
        let roll = self.rng.range(0, 100);
        if roll < 40 {
            self.start_get(client, key, roll < 15);
        } else {
            let name = String::from_utf8_lossy(&key).into_owned();
            let value = self.rng.range(0, VALUES);
            self.record(
                client,
                EventType::Invoke,
                "write",
                Some(&name),
                json!(value),
                None,
            );
            self.clients[client].op = Op::Write {
                key,
                value,
                attempts: 0,
            };
        }
    }

    pub(super) fn write_attempt(&mut self, client: usize, key: Vec<u8>, value: u64, attempts: u32) {
        let name = String::from_utf8_lossy(&key).into_owned();
        let command = RangeCommand::Put {
            key: key.clone(),
            value: value.to_string().into_bytes(),
            ts: HlcTimestamp {
                physical: self.now(),
                logical: 0,
            },
        };
        match self.write(client, &key, command) {
            Attempt::Done(()) => {
                self.finish(
                    client,
                    EventType::Ok,
                    "write",
                    Some(&name),
                    json!(value),
                    None,
                );
            }
            Attempt::Unknown => {
                let why = Some("no answer: it may have applied".to_owned());
                self.finish(
                    client,
                    EventType::Info,
                    "write",
                    Some(&name),
                    json!(value),
                    why,
                );
            }
            Attempt::Again if attempts + 1 >= super::clients::ATTEMPTS_MAX => {
                let why = Some("refused at every attempt".to_owned());
                self.finish(
                    client,
                    EventType::Fail,
                    "write",
                    Some(&name),
                    json!(value),
                    why,
                );
            }
            Attempt::Again => {
                self.clients[client].op = Op::Write {
                    key,
                    value,
                    attempts: attempts + 1,
                };
            }
        }
    }

    pub(super) fn get_attempt(
        &mut self,
        client: usize,
        key: Vec<u8>,
        follower: bool,
        attempts: u32,
    ) {
        let name = String::from_utf8_lossy(&key).into_owned();
        let f = if follower {
            check::staleness::FOLLOWER_READ
        } else {
            "read"
        };
        let served = if follower {
            self.follower_get(client, &key)
        } else {
            None
        };
        let answer = match served {
            Some(value) => Attempt::Done(value),
            None => self.leader_get(client, &key),
        };
        match answer {
            Attempt::Done(value) => self.finish(client, EventType::Ok, f, Some(&name), value, None),
            Attempt::Unknown => {
                let why = Some("no answer".to_owned());
                self.finish(client, EventType::Fail, f, Some(&name), Value::Null, why);
            }
            Attempt::Again if attempts + 1 >= super::clients::ATTEMPTS_MAX => {
                let why = Some("refused at every attempt".to_owned());
                self.finish(client, EventType::Fail, f, Some(&name), Value::Null, why);
            }
            Attempt::Again => {
                self.clients[client].op = Op::Get {
                    key,
                    follower,
                    attempts: attempts + 1,
                };
            }
        }
    }

    /// A linearizable read of `key` on its range's leader.
    fn leader_get(&mut self, client: usize, key: &[u8]) -> Attempt<Value> {
        let canary = self.canary;
        self.attempt(client, key, |sim, leader, id| {
            let replica = &sim.members[&leader].replicas[&id];
            match replica.get(key, NEWEST) {
                Ok(found) => Attempt::Done(value_of(found.and_then(|v| v.value).as_deref())),
                // The planted bug: a key split away reads as absent.
                Err(RangeOpError::KeyOutside { .. }) if canary == Some(Canary::SplitStaleRead) => {
                    Attempt::Done(Value::Null)
                }
                Err(_) => Attempt::Again,
            }
        })
    }

    /// A follower read of `key` on a replica the client's cache names, at its range's closed
    /// timestamp if `ranges::follower_read` allows; `None` when it does not (or the replica
    /// cannot serve), and the read goes to the leader.
    fn follower_get(&mut self, client: usize, key: &[u8]) -> Option<Value> {
        let cached = self.clients[client].cache_lookup(key)?;
        let voters: Vec<base::NodeId> = cached.descriptor.voters().collect();
        let target = *self.rng.pick(&voters);
        let member = self.members.get(&target).filter(|m| m.up)?;
        let replica = member.replicas.get(&cached.descriptor.id)?;
        let staleness = if self.canary == Some(Canary::FollowerReadUnbounded) {
            u32::MAX // The planted bug: no bound.
        } else {
            STALENESS_MS
        };
        let at = match ranges::follower_read(false, replica.state().closed(), self.now(), staleness)
        {
            ranges::FollowerRead::At(at) => at,
            ranges::FollowerRead::TooStale(_) | ranges::FollowerRead::NoState => return None,
        };
        let found = replica.get(key, at).ok()?;
        Some(value_of(found.and_then(|v| v.value).as_deref()))
    }
}
