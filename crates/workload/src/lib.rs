//! Workloads and nemesis plans, shared by the tester (`quorate check`) and, later, the
//! whole-node simulator.
//!
//! The workloads of a check run, over the etcd v3 API with real TCP: `register` (linearizable
//! reads, writes and compare-and-set of small values on keys that rotate after a bounded number
//! of operations), `set` (unique adds as keys under one prefix, whole-prefix reads) and `bank`
//! (transfers between five accounts in compare-and-put transactions, snapshot reads of every
//! balance) and `watch` (writers put unique values under one prefix while watchers follow it,
//! re-opening from the next revision on another member after any failure). Every operation is recorded as an invocation before it is sent and one completion
//! after: `ok`, `fail` when it certainly had no effect, `info` when its outcome is unknown
//! (timeouts, lost connections). Each operation goes to a member drawn at random, so every
//! member's path is exercised, followers that just restarted or resumed included; a member
//! that did not answer is left alone for a moment, so one unavailable member does not stall
//! every client.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use check::model::COMPARE_FAILED;
use check::{Event, EventType};
use proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::request_op::Request as Op;
use proto::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::time::Instant;
use tonic::transport::Channel;

mod bank;
pub mod nemesis;
mod quorum_set;
pub mod ranges;
mod watch;

pub use quorum_set::{BUCKET as QUORUM_SET_BUCKET, create_bucket};

/// The workloads.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Reads, writes and compare-and-set on rotating keys; checked for linearizability.
    Register,
    /// Unique adds and whole-set reads; checked for lost, invented and duplicated elements.
    Set,
    /// Transfers between accounts; checked for conservation and non-negative balances.
    Bank,
    /// Puts under a prefix and watchers of it; checked for gaps, duplicates, order and values.
    Watch,
    /// Lock holders making fenced writes; checked for mutual exclusion and token order.
    Lock,
    /// Unique adds to sets kept in a quorum bucket (read, merge siblings, put with the
    /// context, at w=one or quorum); checked for lost, invented and duplicated elements.
    QuorumSet,
    /// Reads and writes on rotating keys of a consensus bucket, whose ranges split, merge and
    /// move under it; checked for linearizability.
    RangeRegister,
    /// Unique adds as keys of a consensus bucket and whole-bucket scans across its ranges;
    /// checked like set.
    RangeSet,
}

impl WorkloadKind {
    /// Every workload, in the order help lists them.
    pub const ALL: &'static [WorkloadKind] = &[
        WorkloadKind::Register,
        WorkloadKind::Set,
        WorkloadKind::Bank,
        WorkloadKind::Watch,
        WorkloadKind::Lock,
        WorkloadKind::QuorumSet,
        WorkloadKind::RangeRegister,
        WorkloadKind::RangeSet,
    ];

    /// What the workload does and how it is judged, in one line.
    pub fn help(self) -> &'static str {
        match self {
            WorkloadKind::Register => {
                "reads, writes and compare-and-set on rotating keys; checked for linearizability"
            }
            WorkloadKind::Set => {
                "unique adds and whole-set reads; checked for lost, invented and duplicated elements"
            }
            WorkloadKind::Bank => {
                "transfers between accounts; checked for conservation and non-negative balances"
            }
            WorkloadKind::Watch => {
                "puts under a prefix and watchers of it; checked for gaps, duplicates, order and values"
            }
            WorkloadKind::Lock => {
                "lock holders making fenced writes; checked for mutual exclusion and token order"
            }
            WorkloadKind::QuorumSet => {
                "unique adds to sets in a quorum bucket (read, merge siblings, put with the context); checked like set"
            }
            WorkloadKind::RangeRegister => {
                "reads, writes and follower reads on rotating keys of a consensus bucket (ranges split, merge, move); checked for linearizability and bounded staleness"
            }
            WorkloadKind::RangeSet => {
                "unique adds as keys of a consensus bucket and whole-bucket scans across ranges; checked like set"
            }
        }
    }

    /// The workload's name, as the command line and reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkloadKind::Register => "register",
            WorkloadKind::Set => "set",
            WorkloadKind::Bank => "bank",
            WorkloadKind::Watch => "watch",
            WorkloadKind::Lock => "lock",
            WorkloadKind::QuorumSet => "quorum-set",
            WorkloadKind::RangeRegister => "range-register",
            WorkloadKind::RangeSet => "range-set",
        }
    }

    /// Whether the workload runs on a consensus bucket (whose ranges the range nemeses
    /// split, merge and move).
    pub fn on_ranges(self) -> bool {
        matches!(self, WorkloadKind::RangeRegister | WorkloadKind::RangeSet)
    }
}

const REGISTER_PREFIX: &str = "check/register/";
const SET_PREFIX: &str = "check/set/";
pub(crate) const BANK_PREFIX: &str = "check/bank/";
pub(crate) const WATCH_PREFIX: &str = "check/watch/";
/// The lock of the lock workload and the key its fenced writes go to.
const LOCK_NAME: &str = "check/lock";
const LOCK_REGISTER: &str = "check/lock-register";
/// TTL of a lock holder's lease: a holder that crashes or is cut off loses the lock this
/// long after its last keep-alive (it sends none: one hold is short).
const LOCK_TTL_SECONDS: i64 = 3;
/// Keys the watch workload's writers spread their puts over.
pub(crate) const WATCH_KEYS: u64 = 8;
/// A watcher that hears nothing for this long re-opens its watch on another member.
pub(crate) const WATCH_SILENCE_MAX: Duration = Duration::from_secs(3);
/// Accounts of the bank workload and each one's opening balance.
pub const BANK_ACCOUNTS: usize = 5;
pub const BANK_OPENING_BALANCE: i64 = 100;
/// Register values are drawn from this many small integers, so compare-and-set often holds.
const REGISTER_VALUES: i64 = 5;

/// The history of a run as it is recorded: events in the order they happened, timed by one
/// monotonic clock started with the run.
pub struct Recorder {
    start: Instant,
    events: Mutex<Vec<Event>>,
}

impl Recorder {
    pub fn new(start: Instant) -> Recorder {
        Recorder {
            start,
            events: Mutex::new(Vec::new()),
        }
    }

    /// Nanoseconds since the run started.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn push(&self, event: Event) {
        self.events.lock().expect("recorder lock").push(event);
    }

    pub fn events_len(&self) -> usize {
        self.events.lock().expect("recorder lock").len()
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().expect("recorder lock").clone()
    }
}

/// What every client of a run shares.
pub struct Shared {
    pub kind: WorkloadKind,
    pub endpoints: Vec<String>,
    pub recorder: Arc<Recorder>,
    /// Deadline of one operation; past it the outcome is unknown.
    pub op_timeout: Duration,
    /// Register operations on one key before the clients move to the next.
    pub ops_per_key: u64,
    /// Operations started (rotates register keys; numbers set elements).
    pub(crate) started: AtomicU64,
    /// Register keys used, for the final reads.
    keys_used: Mutex<BTreeSet<u64>>,
    /// Slow keys of the range-register workload used, for the final reads.
    slow_keys_used: Mutex<BTreeSet<u64>>,
}

impl Shared {
    pub fn new(
        kind: WorkloadKind,
        endpoints: Vec<String>,
        recorder: Arc<Recorder>,
        op_timeout: Duration,
        ops_per_key: u64,
    ) -> Shared {
        Shared {
            kind,
            endpoints,
            recorder,
            op_timeout,
            ops_per_key: ops_per_key.max(1),
            started: AtomicU64::new(0),
            keys_used: Mutex::new(BTreeSet::new()),
            slow_keys_used: Mutex::new(BTreeSet::new()),
        }
    }
}

/// One logical client: one operation at a time, recorded under its process number.
pub struct Client {
    process: u64,
    pub(crate) shared: Arc<Shared>,
    /// One lazily connected channel per member.
    pub(crate) members: Vec<Channel>,
    /// The member of the current operation.
    pub(crate) kv: KvClient<Channel>,
    pub(crate) current: usize,
    /// Until when each member is avoided after it did not answer.
    avoid_until: Vec<Instant>,
    pub(crate) rng: StdRng,
}

/// How long a client avoids a member that did not answer.
const AVOID_UNANSWERING_MEMBER: Duration = Duration::from_secs(1);

/// A call's result as the history records it.
pub(crate) struct Completion {
    event_type: EventType,
    value: Value,
    error: Option<String>,
    header: Option<ResponseHeader>,
}

impl Completion {
    pub(crate) fn ok(value: Value, header: Option<ResponseHeader>) -> Self {
        Completion {
            event_type: EventType::Ok,
            value,
            error: None,
            header,
        }
    }

    fn failed(error: &str, header: Option<ResponseHeader>) -> Self {
        Completion {
            event_type: EventType::Fail,
            value: Value::Null,
            error: Some(error.to_owned()),
            header,
        }
    }

    /// A read's error: a read has no effect, so it certainly failed.
    pub(crate) fn read_error(status: &tonic::Status) -> Self {
        Completion::failed(&status_text(status), None)
    }

    /// A write's error: only a refusal before proposing is certain; anything else (a timeout,
    /// a lost connection, a leader change) may have committed.
    pub(crate) fn write_error(status: &tonic::Status) -> Self {
        let certain = client::fate::write_fate(status) == client::fate::WriteFate::NotApplied;
        Completion {
            event_type: if certain {
                EventType::Fail
            } else {
                EventType::Info
            },
            value: Value::Null,
            error: Some(status_text(status)),
            header: None,
        }
    }
}

/// An equality comparison of a Txn.
pub(crate) fn equals(key: &[u8], target: CompareTarget, union: TargetUnion) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: key.to_vec(),
        target_union: Some(union),
        ..Default::default()
    }
}

/// A put inside a Txn.
pub(crate) fn put_op(key: &[u8], value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.to_vec(),
            value,
            ..Default::default()
        })),
    }
}

fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

fn lazy_channel(endpoint: &str, timeout: Duration) -> Channel {
    client::channels::lazy(endpoint, Some(timeout)).expect("check endpoints are loopback host:port")
}

impl Client {
    /// Puts `puts` if every comparison holds: `ok` when it did, `fail` with
    /// `compare-failed` when a comparison did not, `info` when the outcome is unknown.
    async fn put_if(&mut self, compare: Vec<Compare>, puts: Vec<RequestOp>) -> Completion {
        let request = TxnRequest {
            compare,
            success: puts,
            failure: Vec::new(),
        };
        match self.kv.txn(request).await {
            Ok(response) => {
                let response = response.into_inner();
                if response.succeeded {
                    Completion::ok(Value::Null, response.header)
                } else {
                    Completion::failed(COMPARE_FAILED, response.header)
                }
            }
            Err(status) => Completion::write_error(&status),
        }
    }

    /// Client `process`, its choices of member, operation and value drawn from `seed`.
    pub fn new(process: u64, shared: Arc<Shared>, seed: u64) -> Client {
        let members: Vec<Channel> = shared
            .endpoints
            .iter()
            .map(|endpoint| lazy_channel(endpoint, shared.op_timeout))
            .collect();
        let current = process as usize % members.len();
        let kv = KvClient::new(members[current].clone());
        let avoid_until = vec![Instant::now(); members.len()];
        Client {
            process,
            shared,
            members,
            kv,
            current,
            avoid_until,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Sends the next operation to a member drawn at random among those not being avoided
    /// (among all when every one is).
    pub(crate) fn pick_member(&mut self) {
        let now = Instant::now();
        let open: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.avoid_until[i] <= now)
            .collect();
        self.current = if open.is_empty() {
            self.rng.random_range(0..self.members.len())
        } else {
            open[self.rng.random_range(0..open.len())]
        };
        self.kv = KvClient::new(self.members[self.current].clone());
    }

    /// Leaves the current member alone for a moment: it did not answer.
    pub(crate) fn avoid_current(&mut self) {
        self.avoid_until[self.current] = Instant::now() + AVOID_UNANSWERING_MEMBER;
    }

    /// Runs operations until `deadline`.
    pub async fn run(mut self, deadline: Instant) {
        while Instant::now() < deadline {
            self.pick_member();
            let completion_type = match self.shared.kind {
                WorkloadKind::Register => self.register_op().await,
                WorkloadKind::Set => self.set_op().await,
                WorkloadKind::Bank => self.bank_op().await,
                WorkloadKind::Watch => self.watch_put().await,
                WorkloadKind::Lock => self.lock_hold().await,
                WorkloadKind::QuorumSet => self.quorum_op().await,
                WorkloadKind::RangeRegister => self.range_register_op().await,
                WorkloadKind::RangeSet => self.range_set_op().await,
            };
            if completion_type != EventType::Ok {
                self.avoid_current();
                // A short pause keeps a client from spinning when every member is down.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    pub(crate) fn invoke(&self, f: &str, key: Option<&str>, value: Value) {
        let recorder = &self.shared.recorder;
        recorder.push(Event::new(
            self.process,
            EventType::Invoke,
            f,
            key,
            value,
            recorder.now(),
        ));
    }

    /// Records a completion; returns `Ok` when the member answered (a failed comparison is
    /// an answer), else the completion's type.
    pub(crate) fn complete(&self, f: &str, key: Option<&str>, completion: Completion) -> EventType {
        let recorder = &self.shared.recorder;
        let mut event = Event::new(
            self.process,
            completion.event_type,
            f,
            key,
            completion.value,
            recorder.now(),
        );
        event.error = completion.error;
        if let Some(header) = completion.header {
            event.revision = Some(header.revision);
            event.term = Some(header.raft_term);
            event.member = Some(format!("{:x}", header.member_id));
        }
        let answered = completion.event_type == EventType::Ok
            || event.error.as_deref() == Some(COMPARE_FAILED);
        recorder.push(event);
        if answered {
            EventType::Ok
        } else {
            completion.event_type
        }
    }

    async fn register_op(&mut self) -> EventType {
        let n = self.shared.started.fetch_add(1, Ordering::Relaxed);
        let k = n / self.shared.ops_per_key;
        self.shared.keys_used.lock().expect("keys lock").insert(k);
        let key = format!("{REGISTER_PREFIX}{k}");
        let roll = self.rng.random_range(0..4);
        match roll {
            0 | 1 => self.register_read(&key).await,
            2 => {
                let value = self.rng.random_range(0..REGISTER_VALUES);
                self.invoke("write", Some(&key), json!(value));
                let request = PutRequest {
                    key: key.clone().into_bytes(),
                    value: value.to_string().into_bytes(),
                    ..Default::default()
                };
                let completion = match self.kv.put(request).await {
                    Ok(response) => Completion::ok(Value::Null, response.into_inner().header),
                    Err(status) => Completion::write_error(&status),
                };
                self.complete("write", Some(&key), completion)
            }
            _ => {
                let expected = self.rng.random_range(0..REGISTER_VALUES);
                let new = self.rng.random_range(0..REGISTER_VALUES);
                self.invoke("cas", Some(&key), json!([expected, new]));
                let held = TargetUnion::Value(expected.to_string().into_bytes());
                let compare = vec![equals(key.as_bytes(), CompareTarget::Value, held)];
                let puts = vec![put_op(key.as_bytes(), new.to_string().into_bytes())];
                let completion = self.put_if(compare, puts).await;
                self.complete("cas", Some(&key), completion)
            }
        }
    }

    /// A linearizable read of one register: its value, or null when absent.
    pub async fn register_read(&mut self, key: &str) -> EventType {
        self.invoke("read", Some(key), Value::Null);
        let request = RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        };
        let completion = match self.kv.range(request).await {
            Ok(response) => {
                let response = response.into_inner();
                let value = match response.kvs.first() {
                    None => Value::Null,
                    Some(kv) => register_value(&kv.value),
                };
                Completion::ok(value, response.header)
            }
            Err(status) => Completion::read_error(&status),
        };
        self.complete("read", Some(key), completion)
    }

    async fn set_op(&mut self) -> EventType {
        if self.rng.random_range(0..10) == 0 {
            return self.set_read().await;
        }
        let element = self.shared.started.fetch_add(1, Ordering::Relaxed);
        self.invoke("add", None, json!(element));
        let request = PutRequest {
            key: format!("{SET_PREFIX}{element:010}").into_bytes(),
            value: element.to_string().into_bytes(),
            ..Default::default()
        };
        let completion = match self.kv.put(request).await {
            Ok(response) => Completion::ok(Value::Null, response.into_inner().header),
            Err(status) => Completion::write_error(&status),
        };
        self.complete("add", None, completion)
    }

    /// One hold of the lock: a lease, the lock, two fenced writes, the unlock. Returns `Ok`
    /// when the member answered each call.
    ///
    /// Long because the hold is one sequence of five calls whose every failure is recorded
    /// with where in the sequence it happened.
    async fn lock_hold(&mut self) -> EventType {
        use proto::etcdserverpb::lease_client::LeaseClient;
        use proto::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest};
        use proto::v3lockpb::lock_client::LockClient;
        use proto::v3lockpb::{LockRequest, UnlockRequest};
        let channel = self.members[self.current].clone();
        let hold = self.shared.started.fetch_add(1, Ordering::Relaxed) as i64;
        let granted = LeaseClient::new(channel.clone())
            .lease_grant(LeaseGrantRequest {
                ttl: LOCK_TTL_SECONDS,
                id: 0,
            })
            .await;
        let Ok(lease) = granted.map(|r| r.into_inner().id) else {
            return EventType::Fail;
        };
        let revoke = |channel: Channel| async move {
            let _ = LeaseClient::new(channel)
                .lease_revoke(LeaseRevokeRequest { id: lease })
                .await;
        };
        self.invoke("acquire", None, json!({ "hold": hold }));
        let request = LockRequest {
            name: LOCK_NAME.as_bytes().to_vec(),
            lease,
        };
        let locked = LockClient::new(channel.clone()).lock(request).await;
        let key = match locked {
            Ok(response) => response.into_inner().key,
            Err(status) => {
                self.complete("acquire", None, Completion::write_error(&status));
                revoke(channel).await;
                return EventType::Fail;
            }
        };
        // The fencing token: the creation revision of this holder's lock key.
        let token = match self
            .kv
            .range(RangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await
        {
            Ok(response) => response
                .into_inner()
                .kvs
                .first()
                .map(|kv| kv.create_revision),
            Err(_) => None,
        };
        let Some(token) = token else {
            // The lease ran out already; the hold is over before it began.
            self.complete("acquire", None, Completion::failed("lock lost", None));
            revoke(channel).await;
            return EventType::Ok;
        };
        self.complete(
            "acquire",
            None,
            Completion::ok(json!({ "hold": hold, "token": token }), None),
        );
        let mut answered = EventType::Ok;
        for step in 0..2 {
            let value = json!({ "hold": hold, "token": token, "step": step });
            self.invoke("fenced-write", Some(LOCK_REGISTER), value.clone());
            let fence = TargetUnion::CreateRevision(token);
            let compare = vec![equals(&key, CompareTarget::Create, fence)];
            let puts = vec![put_op(
                LOCK_REGISTER.as_bytes(),
                value.to_string().into_bytes(),
            )];
            let completion = self.put_if(compare, puts).await;
            answered = self.complete("fenced-write", Some(LOCK_REGISTER), completion);
            if answered != EventType::Ok {
                break;
            }
            // Widen the critical section so overlapping holders would show; one hold in
            // 32 lingers for half to two thirds of its lease, which a healthy lessor lets
            // it finish but a leader whose clock runs fast (or a pause) does not — then the
            // next holder's writes must fence this one's out.
            let linger = if self.rng.random_range(0..32) == 0 {
                Duration::from_millis(
                    self.rng
                        .random_range(LOCK_TTL_SECONDS as u64 * 500..LOCK_TTL_SECONDS as u64 * 667),
                )
            } else {
                Duration::from_millis(5)
            };
            tokio::time::sleep(linger).await;
        }
        self.invoke("release", None, json!({ "hold": hold }));
        let released = LockClient::new(channel.clone())
            .unlock(UnlockRequest { key })
            .await;
        let completion = match released {
            Ok(response) => Completion::ok(Value::Null, response.into_inner().header),
            Err(status) => Completion::write_error(&status),
        };
        self.complete("release", None, completion);
        revoke(channel).await;
        answered
    }

    /// A linearizable read of the whole set.
    pub async fn set_read(&mut self) -> EventType {
        self.prefix_read(SET_PREFIX).await
    }

    /// A linearizable read of every value under `prefix`, with the revision it was read at.
    async fn prefix_read(&mut self, prefix: &str) -> EventType {
        self.invoke("read", None, Value::Null);
        let completion = match self.kv.range(prefix_range(prefix)).await {
            Ok(response) => {
                let response = response.into_inner();
                let elements: Vec<Value> = response
                    .kvs
                    .iter()
                    .map(|kv| register_value(&kv.value))
                    .collect();
                Completion::ok(Value::Array(elements), response.header)
            }
            Err(status) => Completion::read_error(&status),
        };
        self.complete("read", None, completion)
    }

    /// The final read(s) after healing: every register key used, the set or the balances,
    /// retried (as new operations) until one succeeds or `deadline` passes.
    pub async fn final_reads(&mut self, deadline: Instant) -> bool {
        let keys: Vec<u64> = self
            .shared
            .keys_used
            .lock()
            .expect("keys lock")
            .iter()
            .copied()
            .collect();
        let mut pending: Vec<Option<String>> = match self.shared.kind {
            WorkloadKind::Register => keys
                .iter()
                .map(|k| Some(format!("{REGISTER_PREFIX}{k}")))
                .collect(),
            WorkloadKind::RangeRegister => {
                let slow = self
                    .shared
                    .slow_keys_used
                    .lock()
                    .expect("keys lock")
                    .clone();
                keys.iter()
                    .map(|&k| Some(ranges::key_of('r', k)))
                    .chain(slow.iter().map(|&k| Some(ranges::key_of('s', k))))
                    .collect()
            }
            WorkloadKind::Set
            | WorkloadKind::Bank
            | WorkloadKind::Watch
            | WorkloadKind::QuorumSet
            | WorkloadKind::RangeSet => vec![None],
            WorkloadKind::Lock => Vec::new(),
        };
        while let Some(key) = pending.last().cloned() {
            let read = match (&key, self.shared.kind) {
                (Some(key), WorkloadKind::RangeRegister) => self.range_read(key).await,
                (Some(key), _) => self.register_read(key).await,
                (None, WorkloadKind::RangeSet) => self.range_read_all().await,
                (None, WorkloadKind::Set) => self.set_read().await,
                (None, WorkloadKind::Watch) => self.prefix_read(WATCH_PREFIX).await,
                (None, WorkloadKind::QuorumSet) => self.quorum_read_all().await,
                (None, _) => self.bank_read().await.0,
            };
            if read == EventType::Ok {
                pending.pop();
            } else if Instant::now() >= deadline {
                return false;
            } else {
                self.avoid_current();
                self.pick_member();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        true
    }
}

/// A stored value as the history shows it: the integer it spells, else the text.
pub(crate) fn register_value(bytes: &[u8]) -> Value {
    let text = String::from_utf8_lossy(bytes);
    match text.parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(text),
    }
}

pub(crate) fn prefix_range(prefix: &str) -> RangeRequest {
    RangeRequest {
        key: prefix.as_bytes().to_vec(),
        range_end: base::keys::prefix_end(prefix.as_bytes()),
        ..Default::default()
    }
}
