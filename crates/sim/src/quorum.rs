//! A quorum-bucket cluster in memory: 3 to 5 members, each a replica (an in-memory disk whose
//! writes become durable at a sync, one batch at a time, as the real group-committing writer
//! does) and a coordinator host running `quorum`'s real `WriteCoordinator` and
//! `ReadCoordinator` for the requests clients send it. Clients run the tester's quorum-set
//! workload (read a key, merge the sibling sets, add a unique element, put with the context;
//! one operation in four reads every key). A seeded plan drops, delays and reorders messages,
//! partitions members, crash-restarts them (a crash loses every unsynced write and every
//! request the member was coordinating) and moves the ring epoch on (members apply it at
//! different times, so replicas refuse calls placed at the older epoch and coordinators place
//! their requests again). Then everything heals, one final read at r=all
//! follows, and the set checker judges the history with the quorum-read model (R + W > N: a
//! read holds every add acknowledged before it began; with a sloppy quorum, one seed in four
//! where there are fallbacks, only the final read must); finally every key's replicas must hold
//! the same copy (hints delivered, read repair done).
//!
//! What this file owns is the event loop and the network; `member` is one member's replica and
//! coordinator driving, `clients` the workload and its history, `faults` the nemesis plan.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use base::NodeId;
use check::{EventType, Report};
use crdt::{Conflicts, Object, VersionVector};
use placement::Ring;
use quorum::{BucketDef, CallId, Level, Placer, ReplicaError};

use crate::SimRng;

mod clients;
mod faults;
mod member;

use clients::{Client, ClientReply, ClientRequest};
use faults::{Fault, FaultPlan};
use member::Member;

/// The bucket every key belongs to.
const BUCKET: &str = "sim";
/// Replicas of each key.
const N: usize = 3;
/// How long a request may take at its coordinator (virtual microseconds).
const REQUEST_TIMEOUT: u64 = 100_000;
/// Clients start operations until this time, then faults heal.
const OPS_UNTIL: u64 = 2_000_000;
/// The final read starts this long after healing (hints have been delivered by then).
const FINAL_READ_AFTER: u64 = 1_500_000;
/// The run ends this long after the final read began (background repairs are done).
const SETTLE_AFTER: u64 = 1_000_000;
/// Hint bytes a member keeps per target: small enough in some runs that hints are dropped.
const HINT_BYTES_MAX: [u64; 2] = [1024, 64 * 1024];
/// How often a member delivers its hints.
const HINT_INTERVAL: u64 = 50_000;
/// Events processed at most: a run that does not end by then is a livelock, and fails.
const EVENTS_MAX: u64 = 2_000_000;

/// A bug planted to prove the checkers catch it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Canary {
    /// The write coordinator counts a merge as acknowledged when it sends it.
    AckOnSend,
    /// Replicas acknowledge a merge before their disk synced it (a crash loses it).
    AckBeforeDurable,
}

/// What a run is asked to do.
#[derive(Copy, Clone, Debug)]
pub struct Settings {
    pub seed: u64,
    pub canary: Option<Canary>,
    /// Keep a line per event (for replaying one seed).
    pub trace: bool,
}

/// What a run did and how it was judged.
#[derive(Debug)]
pub struct Outcome {
    pub seed: u64,
    /// The history, one JSON line per event.
    pub history: Vec<String>,
    /// The set checker's report.
    pub report: Report,
    /// Whether every key's replicas converged once everything healed.
    pub converged: Result<(), String>,
    /// A hash of every event processed: the same seed gives the same hash.
    pub trace_hash: u64,
    pub trace: Vec<String>,
    /// The cluster and the faults of the run, in words.
    pub plan: String,
    pub events: u64,
    /// Requests placed again after a replica refused their ring epoch.
    pub replaced: u64,
}

impl Outcome {
    /// Whether the history was judged valid and the replicas converged.
    pub fn is_valid(&self) -> bool {
        matches!(self.report.verdict, check::Verdict::Valid) && self.converged.is_ok()
    }

    /// Whether the checker found an anomaly (not merely an unknown verdict).
    pub fn is_invalid(&self) -> bool {
        matches!(self.report.verdict, check::Verdict::Invalid(_)) || self.converged.is_err()
    }

    /// The verdict and the convergence in a few lines.
    pub fn summary(&self) -> String {
        let verdict = crate::verdict_text(&self.report.verdict);
        let converged = match &self.converged {
            Ok(()) => "converged".to_owned(),
            Err(why) => format!("did not converge: {why}"),
        };
        format!(
            "seed {}: {} ({} ops checked, {} events, {} placed again); {converged}\n  {}",
            self.seed, verdict, self.report.ops_checked, self.events, self.replaced, self.plan
        )
    }
}

/// A message between members.
#[derive(Clone, Debug)]
enum Msg {
    Coordinate {
        req: u64,
        call: CallId,
        key: String,
        value: Option<Vec<u8>>,
        context: VersionVector,
        epoch: u64,
    },
    Merge {
        req: u64,
        call: CallId,
        key: String,
        object: Object,
        epoch: u64,
    },
    Read {
        req: u64,
        call: CallId,
        key: String,
        epoch: u64,
    },
    Hint {
        req: u64,
        call: CallId,
        target: NodeId,
        key: String,
        object: Object,
    },
    /// A held hint, delivered to its target.
    Deliver { key: String, object: Object },
    Answer {
        req: u64,
        call: CallId,
        answer: Answer,
    },
    /// The target of a delivered hint stored it.
    Delivered {
        target: NodeId,
        key: String,
        object: Object,
    },
}

impl Msg {
    /// The request and call a call message belongs to (answered when it cannot be delivered).
    fn call(&self) -> Option<(u64, CallId)> {
        match self {
            Msg::Coordinate { req, call, .. }
            | Msg::Merge { req, call, .. }
            | Msg::Read { req, call, .. }
            | Msg::Hint { req, call, .. } => Some((*req, *call)),
            Msg::Deliver { .. } | Msg::Answer { .. } | Msg::Delivered { .. } => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Msg::Coordinate { .. } => "coordinate",
            Msg::Merge { .. } => "merge",
            Msg::Read { .. } => "read",
            Msg::Hint { .. } => "hint",
            Msg::Deliver { .. } => "deliver",
            Msg::Answer { .. } => "answer",
            Msg::Delivered { .. } => "delivered",
        }
    }
}

/// A replica's answer to a call.
#[derive(Clone, Debug)]
enum Answer {
    Coordinated(Object),
    Merged,
    Copy(Option<Object>),
    Hinted(bool),
    Failed(ReplicaError),
}

#[derive(Clone, Debug)]
enum Event {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: Msg,
    },
    Sync {
        member: NodeId,
        life: u64,
    },
    CallTimeout {
        member: NodeId,
        life: u64,
        req: u64,
        call: CallId,
    },
    Deadline {
        member: NodeId,
        life: u64,
        req: u64,
    },
    HintTick {
        member: NodeId,
        life: u64,
    },
    ClientStart {
        client: usize,
    },
    ClientRequest {
        client: usize,
        step: u64,
        member: NodeId,
        request: ClientRequest,
    },
    ClientReply {
        client: usize,
        step: u64,
        reply: ClientReply,
    },
    ClientTimeout {
        client: usize,
        step: u64,
    },
    Fault(Fault),
    /// `member` applied ring epoch `epoch`.
    LearnEpoch {
        member: NodeId,
        epoch: u64,
    },
    FinalRead,
}

impl Event {
    fn summary(&self) -> String {
        match self {
            Event::Deliver { from, to, msg } => format!("deliver {} {from}->{to}", msg.kind()),
            Event::Sync { member, .. } => format!("sync {member}"),
            Event::CallTimeout {
                member, req, call, ..
            } => format!("call timeout {member} req {req} call {}", call.0),
            Event::Deadline { member, req, .. } => format!("deadline {member} req {req}"),
            Event::HintTick { member, .. } => format!("hint tick {member}"),
            Event::ClientStart { client } => format!("client {client} starts"),
            Event::ClientRequest { client, member, .. } => format!("client {client} -> {member}"),
            Event::ClientReply { client, .. } => format!("client {client} reply"),
            Event::ClientTimeout { client, .. } => format!("client {client} timeout"),
            Event::Fault(fault) => format!("fault {fault:?}"),
            Event::LearnEpoch { member, epoch } => format!("{member} learns epoch {epoch}"),
            Event::FinalRead => "final read".to_owned(),
        }
    }
}

/// The network's state: who cannot reach whom, and how lossy and slow it is.
struct Net {
    /// Messages lost, per mille.
    drop_per_mille: u64,
    /// Delay of every message: the minimum, plus up to `jitter` (which reorders them).
    delay_min: u64,
    jitter: u64,
    /// (from, to) pairs whose messages are lost.
    blocked: BTreeSet<(NodeId, NodeId)>,
}

/// The whole simulated world.
struct Sim {
    now: u64,
    rng: SimRng,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Event>,
    seq: u64,
    processed: u64,
    members: BTreeMap<NodeId, Member>,
    ids: Vec<NodeId>,
    placer: Placer,
    bucket: BucketDef,
    net: Net,
    clients: Vec<Client>,
    next_element: u64,
    next_req: u64,
    history: Vec<check::Event>,
    canary: Option<Canary>,
    ops_open: bool,
    /// The latest ring epoch (members learn it one by one).
    epoch: u64,
    /// Requests placed again after a stale-epoch refusal.
    replaced: u64,
    final_read: Option<Result<(), String>>,
    trace: Option<Vec<String>>,
    hash: u64,
}

/// Runs one seed and judges it.
pub fn run(settings: Settings) -> Outcome {
    let mut rng = SimRng::new(settings.seed);
    let member_count = rng.range(3, 6) as usize;
    let ids: Vec<NodeId> = (1..=member_count as u64).map(NodeId).collect();
    let ring = Ring::new(&ids, 8).expect("a ring of distinct members");
    // A sloppy quorum needs fallbacks, so only with more members than replicas.
    let sloppy = member_count > N && rng.chance(250);
    let bucket = BucketDef {
        name: BUCKET.to_owned(),
        n: N,
        r: Level::Quorum,
        w: Level::Quorum,
        conflicts: Conflicts::Siblings,
        sloppy,
    };
    let hint_bytes_max = *rng.pick(&HINT_BYTES_MAX);
    let placer = Placer::new(1, Some(ring), None, [bucket.clone()]);
    let faults = FaultPlan::new(&mut rng, &ids, OPS_UNTIL);
    let net = Net {
        drop_per_mille: faults.drop_per_mille,
        delay_min: 50,
        jitter: rng.range(100, 3_000),
        blocked: BTreeSet::new(),
    };
    let client_count = rng.range(2, 5) as usize;
    let mut sim = Sim {
        now: 0,
        rng,
        queue: BinaryHeap::new(),
        events: BTreeMap::new(),
        seq: 0,
        processed: 0,
        members: ids
            .iter()
            .map(|id| (*id, Member::new(hint_bytes_max)))
            .collect(),
        ids: ids.clone(),
        placer,
        bucket,
        net,
        clients: (0..client_count).map(Client::new).collect(),
        next_element: 0,
        next_req: 0,
        history: Vec::new(),
        canary: settings.canary,
        ops_open: true,
        epoch: 1,
        replaced: 0,
        final_read: None,
        trace: settings.trace.then(Vec::new),
        hash: 0xcbf2_9ce4_8422_2325,
    };
    let plan = format!(
        "{member_count} members, {client_count} clients, n={N}, r=w=quorum{}, {hint_bytes_max} \
         hint bytes per target; {}",
        if sloppy { ", sloppy" } else { "" },
        faults.describe()
    );
    for id in &ids {
        sim.at(
            HINT_INTERVAL,
            Event::HintTick {
                member: *id,
                life: 0,
            },
        );
    }
    for client in 0..client_count {
        let start = sim.rng.range(0, 5_000);
        sim.at(start, Event::ClientStart { client });
    }
    for (time, fault) in faults.faults {
        sim.at(time, Event::Fault(fault));
    }
    sim.at(OPS_UNTIL, Event::Fault(Fault::HealAll));
    sim.at(OPS_UNTIL + FINAL_READ_AFTER, Event::FinalRead);
    let end = OPS_UNTIL + FINAL_READ_AFTER + SETTLE_AFTER;
    let mut livelock = None;
    while let Some(Reverse((time, seq))) = sim.queue.pop() {
        if time > end {
            break;
        }
        if sim.processed >= EVENTS_MAX {
            livelock = Some(format!("more than {EVENTS_MAX} events"));
            break;
        }
        let event = sim.events.remove(&seq).expect("a queued event is stored");
        sim.now = time;
        sim.processed += 1;
        sim.record(&event);
        sim.handle(event);
    }
    sim.judge(settings.seed, plan, livelock)
}

impl Sim {
    /// Queues `event` at `time` (never before now).
    fn at(&mut self, time: u64, event: Event) {
        let time = time.max(self.now);
        self.seq += 1;
        self.events.insert(self.seq, event);
        self.queue.push(Reverse((time, self.seq)));
    }

    fn after(&mut self, delay: u64, event: Event) {
        self.at(self.now + delay, event);
    }

    fn record(&mut self, event: &Event) {
        let summary = event.summary();
        self.hash = base::ids::stable_hash64(&[
            &self.hash.to_le_bytes(),
            &self.now.to_le_bytes(),
            summary.as_bytes(),
        ]);
        if let Some(trace) = &mut self.trace {
            trace.push(format!("{:>10} {summary}", self.now));
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Deliver { from, to, msg } => self.deliver(from, to, msg),
            Event::Sync { member, life } => {
                if self.member_life(member) == Some(life) {
                    self.sync(member);
                }
            }
            Event::CallTimeout {
                member,
                life,
                req,
                call,
            } => {
                if self.member_life(member) == Some(life) {
                    self.answer(member, req, call, Answer::Failed(ReplicaError::Timeout));
                }
            }
            Event::Deadline { member, life, req } => {
                if self.member_life(member) == Some(life) {
                    self.deadline(member, req);
                }
            }
            Event::HintTick { member, life } => {
                if self.member_life(member) == Some(life) {
                    self.deliver_hints(member);
                    self.after(HINT_INTERVAL, Event::HintTick { member, life });
                }
            }
            Event::ClientStart { client } => self.client_start(client),
            Event::ClientRequest {
                client,
                step,
                member,
                request,
            } => self.client_request(client, step, member, request),
            Event::ClientReply {
                client,
                step,
                reply,
            } => self.client_reply(client, step, reply),
            Event::ClientTimeout { client, step } => self.client_timeout(client, step),
            Event::Fault(fault) => self.fault(fault),
            Event::LearnEpoch { member, epoch } => self.learn_epoch(member, epoch),
            Event::FinalRead => self.start_final_read(),
        }
    }

    /// The life of `member` while it is up.
    fn member_life(&self, member: NodeId) -> Option<u64> {
        let m = &self.members[&member];
        m.up.then_some(m.life)
    }

    /// Sends `msg` from `from` to `to`: a call to this member itself is delivered at once; the
    /// network may lose, delay and reorder the others.
    fn send(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        if from == to {
            self.after(0, Event::Deliver { from, to, msg });
            return;
        }
        if self.net.blocked.contains(&(from, to)) || self.rng.chance(self.net.drop_per_mille) {
            if let Some(trace) = &mut self.trace {
                trace.push(format!("{:>10} lost {} {from}->{to}", self.now, msg.kind()));
            }
            return;
        }
        let delay = self.net.delay_min + self.rng.range(0, self.net.jitter);
        self.after(delay, Event::Deliver { from, to, msg });
    }

    fn deliver(&mut self, from: NodeId, to: NodeId, msg: Msg) {
        if self.member_life(to).is_none() {
            // Connection refused: the caller learns it at once (if it can still be reached).
            if let Some((req, call)) = msg.call() {
                let refused = ReplicaError::Unreachable(format!("member {to} is down"));
                let answer = Msg::Answer {
                    req,
                    call,
                    answer: Answer::Failed(refused),
                };
                self.send(to, from, answer);
            }
            return;
        }
        self.receive(to, from, msg);
    }

    fn start_final_read(&mut self) {
        self.final_read = Some(Err("the final read did not complete".to_owned()));
        self.client_final_read(0);
    }

    /// Judges the run: the set checker on the history, then convergence of every key.
    fn judge(self, seed: u64, plan: String, livelock: Option<String>) -> Outcome {
        let history_text: Vec<String> = self
            .history
            .iter()
            .map(check::codec::encode_event)
            .collect();
        let report = match check::History::from_events(&self.history) {
            // A sloppy quorum's fallbacks stand in for replicas that a read may not ask: only
            // the final read must hold every acknowledged add.
            Ok(history) if self.bucket.sloppy => {
                check::set::check_set_with(&history, check::set::Reads::FinalOnly)
            }
            Ok(history) => check::set::check_set_with(&history, check::set::Reads::Acknowledged),
            Err(error) => Report {
                checker: "set".to_owned(),
                verdict: check::Verdict::Unknown(format!("malformed history: {error}")),
                ops_checked: 0,
                parts: 1,
            },
        };
        let converged = match (livelock, &self.final_read) {
            (Some(why), _) => Err(why),
            (None, None) => Err("the run ended before the final read".to_owned()),
            (None, Some(Err(why))) => Err(why.clone()),
            (None, Some(Ok(()))) => self.convergence(),
        };
        Outcome {
            seed,
            history: history_text,
            report,
            converged,
            trace_hash: self.hash,
            trace: self.trace.unwrap_or_default(),
            plan,
            events: self.processed,
            replaced: self.replaced,
        }
    }

    /// Every key's replicas hold the same copy.
    fn convergence(&self) -> Result<(), String> {
        let keys: BTreeSet<&String> = self
            .members
            .values()
            .flat_map(|m| m.durable.keys())
            .collect();
        for key in keys {
            let plan = self
                .placer
                .plan(&self.bucket, key.as_bytes())
                .expect("the sim's bucket and ring exist");
            let copies: Vec<(NodeId, Option<&Object>)> = plan
                .replicas
                .iter()
                .map(|id| (*id, self.members[id].durable.get(key)))
                .collect();
            if copies.windows(2).any(|pair| pair[0].1 != pair[1].1) {
                let each: Vec<String> = copies
                    .iter()
                    .map(|(id, copy)| {
                        let values = copy.map_or(0, |c| c.live_values().len());
                        format!("{id}: {values} siblings")
                    })
                    .collect();
                return Err(format!("key {key} differs: {}", each.join(", ")));
            }
        }
        Ok(())
    }

    fn record_history(&mut self, event: check::Event) {
        self.history.push(event);
    }

    fn history_event(
        &self,
        client: usize,
        event_type: EventType,
        f: &str,
        key: Option<&str>,
        value: serde_json::Value,
    ) -> check::Event {
        check::Event::new(client as u64, event_type, f, key, value, self.now * 1_000)
    }
}
