//! One simulated member: its replica (an in-memory disk whose queued writes become durable
//! together at a sync; a crash loses the queue) with its hints, and the driving of the real
//! coordinators for the requests it coordinates. Like the member's real driver, it only sends
//! what the coordinators command, stores what the replica rules compute, and answers a call
//! only once its write is durable (except where a canary is planted).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base::{Hlc, NodeId};
use crdt::{Conflicts, Object, VersionVector};
use quorum::replica::{self, Coordinated};
use quorum::{
    CallId, HintBook, ReadCommand, ReadCoordinator, ReadInput, ReadSpec, WriteCommand,
    WriteCoordinator, WriteInput, WriteSpec,
};

use super::clients::ClientReply;
use super::{Answer, Canary, Event, Msg, REQUEST_TIMEOUT, Sim};

/// A write queued for the next sync, and what to send once it is durable.
enum Job {
    Object {
        key: String,
        change: Change,
        then: Then,
    },
    Hint {
        target: NodeId,
        key: String,
        object: Object,
        then: Then,
    },
    RemoveHint {
        target: NodeId,
        key: String,
        object: Object,
    },
}

enum Change {
    Coordinate(Coordinated),
    Merge(Object),
}

/// What a durable job answers.
enum Then {
    Answer {
        to: NodeId,
        req: u64,
        call: CallId,
        kind: Durable,
    },
    Delivered {
        to: NodeId,
        key: String,
        object: Object,
    },
    Nothing,
}

#[derive(Copy, Clone)]
enum Durable {
    Coordinated,
    Merged,
    Hinted,
}

/// Who sent a call to member `me`, and which call it is.
#[derive(Copy, Clone)]
struct Caller {
    me: NodeId,
    from: NodeId,
    req: u64,
    call: CallId,
}

impl Caller {
    fn answer_when_durable(self, kind: Durable) -> Then {
        Then::Answer {
            to: self.from,
            req: self.req,
            call: self.call,
            kind,
        }
    }
}

/// A request this member coordinates.
struct Request {
    client: usize,
    step: u64,
    key: String,
    value: Option<Vec<u8>>,
    context: VersionVector,
    deadline: u64,
    /// Calls sent and not yet answered (each gets exactly one answer).
    open: BTreeSet<CallId>,
    /// Waiting to be placed again by a ring epoch after this one.
    replacing_after: Option<u64>,
    core: Core,
}

enum Core {
    Write(Box<WriteCoordinator>),
    Read(Box<ReadCoordinator>),
}

pub(super) struct Member {
    pub(super) up: bool,
    /// Incremented by each crash: timers of an earlier life are void.
    pub(super) life: u64,
    /// The ring epoch this member has applied (from the metadata group, so it survives a
    /// crash); the ring itself never changes here, but its epoch moves on.
    pub(super) epoch: u64,
    /// What the disk holds.
    pub(super) durable: BTreeMap<String, Object>,
    hints: BTreeMap<(NodeId, String), Object>,
    book: HintBook,
    hint_bytes_max: u64,
    /// Writes not yet synced.
    jobs: Vec<Job>,
    hlc: Hlc,
    requests: BTreeMap<u64, Request>,
}

fn size(object: &Object) -> u64 {
    crdt::codec::encode_object(object).len() as u64
}

impl Member {
    pub(super) fn new(hint_bytes_max: u64) -> Member {
        Member {
            up: true,
            life: 0,
            epoch: 1,
            durable: BTreeMap::new(),
            hints: BTreeMap::new(),
            book: HintBook::new(hint_bytes_max, []),
            hint_bytes_max,
            jobs: Vec::new(),
            hlc: Hlc::new(Duration::from_secs(1)),
            requests: BTreeMap::new(),
        }
    }

    /// Stops the member: unsynced writes and coordinated requests are lost.
    pub(super) fn crash(&mut self) {
        self.up = false;
        self.life += 1;
        self.jobs.clear();
        self.requests.clear();
    }

    /// Starts it again from what its disk holds.
    pub(super) fn restart(&mut self) {
        self.up = true;
        let mut held: BTreeMap<NodeId, u64> = BTreeMap::new();
        for ((target, _), object) in &self.hints {
            *held.entry(*target).or_insert(0) += size(object);
        }
        self.book = HintBook::new(self.hint_bytes_max, held);
    }
}

impl Sim {
    fn member(&mut self, id: NodeId) -> &mut Member {
        self.members
            .get_mut(&id)
            .expect("a member of the simulation")
    }

    /// Queues a write on `id`'s disk; the first one of a batch schedules the sync.
    fn queue_job(&mut self, id: NodeId, job: Job) {
        let member = self.member(id);
        member.jobs.push(job);
        if member.jobs.len() == 1 {
            let life = member.life;
            let delay = self.rng.range(100, 2_000);
            self.after(delay, Event::Sync { member: id, life });
        }
    }

    /// A message arrived at member `me` (which is up).
    pub(super) fn receive(&mut self, me: NodeId, from: NodeId, msg: Msg) {
        let at = |req, call| Caller {
            me,
            from,
            req,
            call,
        };
        match msg {
            Msg::Coordinate {
                req,
                call,
                key,
                value,
                context,
                epoch,
            } => self.on_coordinate(at(req, call), key, value, context, epoch),
            Msg::Merge {
                req,
                call,
                key,
                object,
                epoch,
            } => self.on_merge(at(req, call), key, object, epoch),
            Msg::Read {
                req,
                call,
                key,
                epoch,
            } => {
                let answer = match replica::admit(epoch, self.member(me).epoch) {
                    Ok(()) => Answer::Copy(self.member(me).durable.get(&key).cloned()),
                    Err(error) => Answer::Failed(error),
                };
                self.reply(me, from, req, call, answer);
            }
            Msg::Hint {
                req,
                call,
                target,
                key,
                object,
            } => self.on_hint(at(req, call), target, key, object),
            Msg::Deliver { key, object } => {
                let then = Then::Delivered {
                    to: from,
                    key: key.clone(),
                    object: object.clone(),
                };
                let change = Change::Merge(object);
                self.queue_job(me, Job::Object { key, change, then });
            }
            Msg::Answer { req, call, answer } => self.answer(me, req, call, answer),
            Msg::Delivered {
                target,
                key,
                object,
            } => self.queue_job(
                me,
                Job::RemoveHint {
                    target,
                    key,
                    object,
                },
            ),
        }
    }

    /// The replica applies a client write with a new dot, answering once it is durable.
    fn on_coordinate(
        &mut self,
        at: Caller,
        key: String,
        value: Option<Vec<u8>>,
        context: VersionVector,
        epoch: u64,
    ) {
        if let Err(error) = replica::admit(epoch, self.member(at.me).epoch) {
            return self.reply(at.me, at.from, at.req, at.call, Answer::Failed(error));
        }
        let now = self.now;
        let timestamp = self.member(at.me).hlc.now(now);
        let write = Coordinated {
            context,
            actor: at.me.0,
            timestamp,
            value,
            conflicts: Conflicts::Siblings,
            reaped_floor: 0,
        };
        let then = at.answer_when_durable(Durable::Coordinated);
        let change = Change::Coordinate(write);
        self.queue_job(at.me, Job::Object { key, change, then });
    }

    /// The replica merges a copy, answering once it is durable (or at once, with the canary).
    fn on_merge(&mut self, at: Caller, key: String, object: Object, epoch: u64) {
        if let Err(error) = replica::admit(epoch, self.member(at.me).epoch) {
            return self.reply(at.me, at.from, at.req, at.call, Answer::Failed(error));
        }
        let then = if self.canary == Some(Canary::AckBeforeDurable) {
            self.reply(at.me, at.from, at.req, at.call, Answer::Merged);
            Then::Nothing
        } else {
            at.answer_when_durable(Durable::Merged)
        };
        let change = Change::Merge(object);
        self.queue_job(at.me, Job::Object { key, change, then });
    }

    /// A fallback holds a hint for `target` if its bound has room.
    fn on_hint(&mut self, at: Caller, target: NodeId, key: String, object: Object) {
        if !self.member(at.me).book.admit(target, size(&object)) {
            return self.reply(at.me, at.from, at.req, at.call, Answer::Hinted(false));
        }
        let then = at.answer_when_durable(Durable::Hinted);
        let job = Job::Hint {
            target,
            key,
            object,
            then,
        };
        self.queue_job(at.me, job);
    }

    fn reply(&mut self, me: NodeId, to: NodeId, req: u64, call: CallId, answer: Answer) {
        self.send(me, to, Msg::Answer { req, call, answer });
    }

    /// Makes every queued write of `id` durable, in order, then sends what they answer.
    pub(super) fn sync(&mut self, id: NodeId) {
        let jobs = std::mem::take(&mut self.member(id).jobs);
        let mut sends = Vec::new();
        for job in jobs {
            let member = self.member(id);
            match job {
                Job::Object { key, change, then } => {
                    let old = member.durable.get(&key).cloned();
                    let new = match &change {
                        Change::Coordinate(write) => replica::coordinate(old, write),
                        Change::Merge(object) => replica::merge(old, object, Conflicts::Siblings),
                    };
                    member.durable.insert(key, new.clone());
                    sends.push((then, Some(new)));
                }
                Job::Hint {
                    target,
                    key,
                    object,
                    then,
                } => {
                    let slot = (target, key);
                    let old = member.hints.get(&slot).cloned();
                    let before = old.as_ref().map_or(0, size);
                    let merged = replica::merge(old, &object, Conflicts::Siblings);
                    member.book.stored(target, before, size(&merged));
                    member.hints.insert(slot, merged);
                    sends.push((then, None));
                }
                Job::RemoveHint {
                    target,
                    key,
                    object,
                } => {
                    let slot = (target, key);
                    // A hint that changed since its delivery was read stays for the next one.
                    if member.hints.get(&slot) == Some(&object) {
                        member.hints.remove(&slot);
                        member.book.removed(target, size(&object), true);
                    }
                }
            }
        }
        for (then, stored) in sends {
            match then {
                Then::Answer {
                    to,
                    req,
                    call,
                    kind,
                } => {
                    let answer = match kind {
                        Durable::Coordinated => {
                            Answer::Coordinated(stored.expect("a coordinated write stores"))
                        }
                        Durable::Merged => Answer::Merged,
                        Durable::Hinted => Answer::Hinted(true),
                    };
                    self.reply(id, to, req, call, answer);
                }
                Then::Delivered { to, key, object } => {
                    let delivered = Msg::Delivered {
                        target: id,
                        key,
                        object,
                    };
                    self.send(id, to, delivered);
                }
                Then::Nothing => {}
            }
        }
    }

    /// Sends one held hint per target to it.
    pub(super) fn deliver_hints(&mut self, id: NodeId) {
        let mut first: BTreeMap<NodeId, (String, Object)> = BTreeMap::new();
        for ((target, key), object) in &self.member(id).hints {
            first
                .entry(*target)
                .or_insert_with(|| (key.clone(), object.clone()));
        }
        for (target, (key, object)) in first {
            self.send(id, target, Msg::Deliver { key, object });
        }
    }

    // ----- coordinating -----

    fn new_request(
        &mut self,
        me: NodeId,
        client: usize,
        step: u64,
        core: Core,
        key: String,
    ) -> u64 {
        self.next_req += 1;
        let req = self.next_req;
        let life = self.member(me).life;
        let deadline = self.now + REQUEST_TIMEOUT;
        self.at(
            deadline,
            Event::Deadline {
                member: me,
                life,
                req,
            },
        );
        let request = Request {
            client,
            step,
            key,
            value: None,
            context: VersionVector::new(),
            deadline,
            open: BTreeSet::new(),
            replacing_after: None,
            core,
        };
        self.member(me).requests.insert(req, request);
        req
    }

    /// Starts coordinating a put (`value`) or delete (`None`) of `key` at w=quorum.
    pub(super) fn start_write(
        &mut self,
        me: NodeId,
        client: usize,
        step: u64,
        key: String,
        value: Option<Vec<u8>>,
        context: VersionVector,
    ) {
        let plan = self.plan_at(me, &key);
        let w = self
            .bucket
            .w
            .required(self.bucket.n, "w")
            .expect("w fits n");
        let spec = WriteSpec {
            me,
            w,
            sloppy: self.bucket.sloppy,
            suspects: BTreeSet::new(),
        };
        let mut coordinator = WriteCoordinator::new(spec, plan);
        if self.canary == Some(Canary::AckOnSend) {
            coordinator.plant_ack_on_send();
        }
        let commands = coordinator.start();
        let core = Core::Write(Box::new(coordinator));
        let req = self.new_request(me, client, step, core, key);
        let request = self.member(me).requests.get_mut(&req).expect("just added");
        request.value = value;
        request.context = context;
        self.write_commands(me, req, commands);
    }

    /// Starts coordinating a read of `key` at level `r`.
    pub(super) fn start_read(
        &mut self,
        me: NodeId,
        client: usize,
        step: u64,
        key: String,
        r: usize,
    ) {
        let plan = self.plan_at(me, &key);
        let spec = ReadSpec {
            r,
            conflicts: Conflicts::Siblings,
            repair_before_reply: false,
        };
        let mut coordinator = ReadCoordinator::new(spec, plan);
        let commands = coordinator.start();
        let core = Core::Read(Box::new(coordinator));
        let req = self.new_request(me, client, step, core, key);
        self.read_commands(me, req, commands);
    }

    /// Sends one call of request `req` and arms its timeout.
    fn call(&mut self, me: NodeId, req: u64, call: CallId, to: NodeId, msg: Msg) {
        let life = self.member(me).life;
        let Some(request) = self.member(me).requests.get_mut(&req) else {
            return;
        };
        request.open.insert(call);
        let deadline = request.deadline;
        self.at(
            deadline,
            Event::CallTimeout {
                member: me,
                life,
                req,
                call,
            },
        );
        self.send(me, to, msg);
    }

    fn write_commands(&mut self, me: NodeId, req: u64, commands: Vec<WriteCommand>) {
        for command in commands {
            let Some(request) = self.member(me).requests.get(&req) else {
                return;
            };
            let key = request.key.clone();
            match command {
                WriteCommand::Coordinate {
                    call, to, epoch, ..
                } => {
                    let msg = Msg::Coordinate {
                        req,
                        call,
                        key,
                        value: request.value.clone(),
                        context: request.context.clone(),
                        epoch,
                    };
                    self.call(me, req, call, to, msg);
                }
                WriteCommand::Merge {
                    call,
                    to,
                    object,
                    epoch,
                    ..
                } => {
                    let msg = Msg::Merge {
                        req,
                        call,
                        key,
                        object,
                        epoch,
                    };
                    self.call(me, req, call, to, msg);
                }
                WriteCommand::Hint {
                    call,
                    at,
                    target,
                    object,
                } => {
                    let msg = Msg::Hint {
                        req,
                        call,
                        target,
                        key,
                        object,
                    };
                    self.call(me, req, call, at, msg);
                }
                WriteCommand::KeepHint { target, object } => {
                    if self.member(me).book.admit(target, size(&object)) {
                        let job = Job::Hint {
                            target,
                            key,
                            object,
                            then: Then::Nothing,
                        };
                        self.queue_job(me, job);
                    }
                }
                WriteCommand::PlaceAgain { after_epoch } => self.place_again(me, req, after_epoch),
                WriteCommand::Reply(reply) => {
                    let (client, step) = (request.client, request.step);
                    let reply = ClientReply::Write(reply.map_err(|e| e.to_string()));
                    self.after(
                        50,
                        Event::ClientReply {
                            client,
                            step,
                            reply,
                        },
                    );
                }
            }
        }
        self.drop_finished(me, req);
    }

    fn read_commands(&mut self, me: NodeId, req: u64, commands: Vec<ReadCommand>) {
        for command in commands {
            let Some(request) = self.member(me).requests.get(&req) else {
                return;
            };
            let key = request.key.clone();
            match command {
                ReadCommand::Read { call, to, epoch } => {
                    let msg = Msg::Read {
                        req,
                        call,
                        key,
                        epoch,
                    };
                    self.call(me, req, call, to, msg);
                }
                ReadCommand::Repair {
                    call,
                    to,
                    object,
                    epoch,
                } => {
                    let msg = Msg::Merge {
                        req,
                        call,
                        key,
                        object,
                        epoch,
                    };
                    self.call(me, req, call, to, msg);
                }
                ReadCommand::PlaceAgain { after_epoch } => self.place_again(me, req, after_epoch),
                ReadCommand::Reply(reply) => {
                    let (client, step) = (request.client, request.step);
                    let reply = ClientReply::Read(reply.map_err(|e| e.to_string()));
                    self.after(
                        50,
                        Event::ClientReply {
                            client,
                            step,
                            reply,
                        },
                    );
                }
            }
        }
        self.drop_finished(me, req);
    }

    /// `key`'s placement by member `me`: the ring's, at the epoch `me` has applied.
    fn plan_at(&mut self, me: NodeId, key: &str) -> quorum::Plan {
        let mut plan = self
            .placer
            .plan(&self.bucket, key.as_bytes())
            .expect("the sim's bucket and ring exist");
        plan.epoch = self.member(me).epoch;
        plan
    }

    /// A request refused for a stale epoch waits for `me` to apply a later one.
    fn place_again(&mut self, me: NodeId, req: u64, after_epoch: u64) {
        if self.member(me).epoch > after_epoch {
            self.placed(me, req);
        } else if let Some(request) = self.member(me).requests.get_mut(&req) {
            request.replacing_after = Some(after_epoch);
        }
    }

    /// Member `me` applied ring epoch `epoch`: requests waiting for it are placed again.
    pub(super) fn learn_epoch(&mut self, me: NodeId, epoch: u64) {
        let member = self.member(me);
        member.epoch = member.epoch.max(epoch);
        let epoch = member.epoch;
        let waiting: Vec<u64> = member
            .requests
            .iter()
            .filter(|(_, r)| r.replacing_after.is_some_and(|after| after < epoch))
            .map(|(req, _)| *req)
            .collect();
        for req in waiting {
            self.placed(me, req);
        }
    }

    /// Feeds a request its new placement.
    fn placed(&mut self, me: NodeId, req: u64) {
        let Some(request) = self.member(me).requests.get_mut(&req) else {
            return;
        };
        request.replacing_after = None;
        let key = request.key.clone();
        self.replaced += 1;
        let plan = self.plan_at(me, &key);
        let request = self
            .member(me)
            .requests
            .get_mut(&req)
            .expect("present above");
        match &mut request.core {
            Core::Write(core) => {
                let commands = core.handle(WriteInput::Placed(plan));
                self.write_commands(me, req, commands);
            }
            Core::Read(core) => {
                let commands = core.handle(ReadInput::Placed(plan));
                self.read_commands(me, req, commands);
            }
        }
    }

    fn drop_finished(&mut self, me: NodeId, req: u64) {
        let requests = &mut self.member(me).requests;
        let finished = requests.get(&req).is_some_and(|r| match &r.core {
            Core::Write(core) => core.is_finished(),
            Core::Read(core) => core.is_finished(),
        });
        if finished {
            requests.remove(&req);
        }
    }

    /// The one answer of an open call (later ones, and answers to lost requests, are void).
    pub(super) fn answer(&mut self, me: NodeId, req: u64, call: CallId, answer: Answer) {
        let Some(request) = self.member(me).requests.get_mut(&req) else {
            return;
        };
        if !request.open.remove(&call) {
            return;
        }
        match &mut request.core {
            Core::Write(core) => {
                let input = match answer {
                    Answer::Coordinated(object) => WriteInput::Coordinated { call, object },
                    Answer::Merged => WriteInput::Merged { call },
                    Answer::Hinted(stored) => WriteInput::Hinted { call, stored },
                    Answer::Failed(error) => WriteInput::Failed { call, error },
                    Answer::Copy(_) => panic!("a write got a read's answer"),
                };
                let commands = core.handle(input);
                self.write_commands(me, req, commands);
            }
            Core::Read(core) => {
                let input = match answer {
                    Answer::Copy(copy) => ReadInput::Copy { call, copy },
                    Answer::Merged => ReadInput::Repaired { call },
                    Answer::Failed(error) => ReadInput::Failed { call, error },
                    Answer::Coordinated(_) | Answer::Hinted(_) => {
                        panic!("a read got a write's answer")
                    }
                };
                let commands = core.handle(input);
                self.read_commands(me, req, commands);
            }
        }
    }

    pub(super) fn deadline(&mut self, me: NodeId, req: u64) {
        let Some(request) = self.member(me).requests.get_mut(&req) else {
            return;
        };
        match &mut request.core {
            Core::Write(core) => {
                let commands = core.handle(WriteInput::Deadline);
                self.write_commands(me, req, commands);
            }
            Core::Read(core) => {
                let commands = core.handle(ReadInput::Deadline);
                self.read_commands(me, req, commands);
            }
        }
    }
}
