//! The write coordinator of one quorum-bucket put or delete, as a state machine without I/O.
//!
//! An attempt first has one replica coordinate the write (this member when it is a replica,
//! else the others in ring order, suspected members last): it applies the client's context and
//! a new dot to its copy, durably, and returns the object. The object then goes to every other
//! replica of the current ring and of the pending ring during a ring change. A replica that
//! fails (other than by refusing the ring epoch) gets a hint: with a sloppy bucket the next
//! unused fallback is asked to hold it, which counts toward W; otherwise, or when no fallback
//! takes it, this member keeps it. The reply goes out at W acknowledgements (in each replica
//! set), or once W is out of reach; replication to the rest goes on after it. When W is out of
//! reach because a replica refused the ring epoch, the request is placed again by the newer
//! ring, keeping the coordinated object (a retry adds no sibling).
//!
//! The driver sends each command's call, feeds exactly one answer per call back (a success, a
//! failure or a timeout), places the request again when asked, and feeds `Deadline` when the
//! request's time is up. Answers to calls of an abandoned attempt are ignored.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use base::NodeId;
use crdt::Object;

use crate::{NotEnoughReplicas, Plan, ReplicaError, WriteRound};

/// Names one call a coordinator asked for; its answer carries it back.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

/// What a write needs besides its placement.
#[derive(Clone, Debug)]
pub struct WriteSpec {
    /// The coordinating member.
    pub me: NodeId,
    /// Acknowledgements required (in each replica set).
    pub w: usize,
    pub sloppy: bool,
    /// Members suspected down when the request began: tried last to coordinate, and given a
    /// short wait (their hint should not wait out the request).
    pub suspects: BTreeSet<NodeId>,
}

/// A write that reached W.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteDone {
    /// The object the coordinating replica stored (its context is the client's new context).
    pub object: Object,
    pub acked: usize,
}

/// What the driver must do for a write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteCommand {
    /// Ask `to` to apply the write to its copy (the request's key, value and context are the
    /// driver's) and return the object it stored.
    Coordinate {
        call: CallId,
        to: NodeId,
        epoch: u64,
        /// `to` is suspected: wait for it briefly.
        short: bool,
    },
    /// Ask `to` to merge `object` into its copy, durably.
    Merge {
        call: CallId,
        to: NodeId,
        object: Object,
        epoch: u64,
        short: bool,
    },
    /// Ask the fallback `at` to hold `object` as a hint for `target`.
    Hint {
        call: CallId,
        at: NodeId,
        target: NodeId,
        object: Object,
    },
    /// Keep `object` as a hint for `target` on this member (within its hint bound); nothing
    /// is answered.
    KeepHint { target: NodeId, object: Object },
    /// Wait until this member has applied a ring epoch after `after_epoch`, then feed
    /// `Placed` with the new placement (or `Deadline`).
    PlaceAgain { after_epoch: u64 },
    /// Answer the client; sent once.
    Reply(Result<WriteDone, NotEnoughReplicas>),
}

/// What happened to a write's calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteInput {
    /// A `Coordinate` call's replica stored the write durably; `object` is its copy.
    Coordinated { call: CallId, object: Object },
    /// A `Merge` call's replica stored the object durably.
    Merged { call: CallId },
    /// A `Hint` call's fallback answered; `stored` is false when its hint bound was full.
    Hinted { call: CallId, stored: bool },
    /// A call failed or timed out.
    Failed { call: CallId, error: ReplicaError },
    /// The placement asked for by `PlaceAgain`.
    Placed(Plan),
    /// The request's time is up.
    Deadline,
}

#[derive(Clone, Debug)]
enum Pending {
    Coordinate {
        to: NodeId,
    },
    Merge {
        to: NodeId,
    },
    /// A fallback holding a hint for `target`, which failed with `why`.
    Hint {
        target: NodeId,
        why: ReplicaError,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Running,
    /// W is out of reach because of a stale epoch: waiting to be placed again.
    Replacing(NotEnoughReplicas),
    Replied,
}

/// One write's coordination.
#[derive(Debug)]
pub struct WriteCoordinator {
    spec: WriteSpec,
    plan: Plan,
    round: WriteRound,
    /// The coordinated object, once a replica stored it (kept across attempts).
    coordinated: Option<Object>,
    /// Replicas still to ask to coordinate, in order.
    order: VecDeque<NodeId>,
    /// Fallbacks asked for a hint in this attempt.
    used: BTreeSet<NodeId>,
    pending: BTreeMap<CallId, Pending>,
    calls: u64,
    state: State,
    out: Vec<WriteCommand>,
    /// A planted bug for simulation canaries: merges count as acknowledged when sent.
    #[cfg(feature = "canary")]
    ack_on_send: bool,
}

fn round_of(plan: &Plan, w: usize) -> WriteRound {
    if plan.next.is_empty() {
        WriteRound::new(&plan.replicas, w)
    } else {
        WriteRound::joint(&[plan.replicas.as_slice(), plan.next.as_slice()], w)
    }
}

impl WriteCoordinator {
    /// A write placed by `plan`; `start` gives its first commands.
    pub fn new(spec: WriteSpec, plan: Plan) -> WriteCoordinator {
        WriteCoordinator {
            round: round_of(&plan, spec.w),
            spec,
            plan,
            coordinated: None,
            order: VecDeque::new(),
            used: BTreeSet::new(),
            pending: BTreeMap::new(),
            calls: 0,
            state: State::Running,
            out: Vec::new(),
            #[cfg(feature = "canary")]
            ack_on_send: false,
        }
    }

    /// Plants the canary bug: a merge counts as acknowledged as soon as it is sent, before
    /// the replica stored anything (simulation canaries only).
    #[cfg(feature = "canary")]
    pub fn plant_ack_on_send(&mut self) {
        self.ack_on_send = true;
    }

    /// The first commands of the write.
    pub fn start(&mut self) -> Vec<WriteCommand> {
        self.begin_attempt();
        self.settle();
        std::mem::take(&mut self.out)
    }

    /// Takes one input; returns the commands it leads to.
    pub fn handle(&mut self, input: WriteInput) -> Vec<WriteCommand> {
        match input {
            WriteInput::Coordinated { call, object } => {
                if let Some(Pending::Coordinate { to }) = self.pending.remove(&call) {
                    self.round.ack(to);
                    self.coordinated = Some(object);
                    self.order.clear();
                    self.send_merges(Some(to));
                }
            }
            WriteInput::Merged { call } => {
                if let Some(Pending::Merge { to }) = self.pending.remove(&call) {
                    self.round.ack(to);
                }
            }
            WriteInput::Hinted { call, stored } => {
                if let Some(Pending::Hint { target, why }) = self.pending.remove(&call) {
                    if stored {
                        self.round.ack(target);
                    } else {
                        self.hint_elsewhere(target, why);
                    }
                }
            }
            WriteInput::Failed { call, error } => match self.pending.remove(&call) {
                Some(Pending::Coordinate { to }) => {
                    self.round.fail(to, error);
                    self.coordinate_next();
                }
                Some(Pending::Merge { to }) if error.is_stale_epoch() => self.round.fail(to, error),
                Some(Pending::Merge { to }) => self.hint_elsewhere(to, error),
                Some(Pending::Hint { target, why }) => self.hint_elsewhere(target, why),
                None => {}
            },
            WriteInput::Placed(plan) => {
                if matches!(self.state, State::Replacing(_)) {
                    self.round = round_of(&plan, self.spec.w);
                    self.plan = plan;
                    self.state = State::Running;
                    self.begin_attempt();
                }
            }
            WriteInput::Deadline => match std::mem::replace(&mut self.state, State::Replied) {
                State::Running => {
                    let outcome = self.round.at_deadline();
                    self.reply(outcome);
                }
                State::Replacing(shortfall) => self.out.push(WriteCommand::Reply(Err(shortfall))),
                State::Replied => {}
            },
        }
        self.settle();
        std::mem::take(&mut self.out)
    }

    /// Whether the reply went out and no call is outstanding: the driver may drop it.
    pub fn is_finished(&self) -> bool {
        self.state == State::Replied && self.pending.is_empty()
    }

    /// The placement of the current attempt.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    fn call(&mut self, pending: Pending) -> CallId {
        self.calls += 1;
        let call = CallId(self.calls);
        self.pending.insert(call, pending);
        call
    }

    fn suspect(&self, member: NodeId) -> bool {
        member != self.spec.me && self.spec.suspects.contains(&member)
    }

    fn begin_attempt(&mut self) {
        self.pending.clear();
        self.used.clear();
        if self.coordinated.is_some() {
            self.send_merges(None);
            return;
        }
        let mut order = self.plan.replicas.clone();
        if let Some(at) = order.iter().position(|m| *m == self.spec.me) {
            order.rotate_left(at);
        }
        // A stable sort keeps ring order among the suspected and among the others.
        order.sort_by_key(|m| self.suspect(*m));
        self.order = order.into();
        self.coordinate_next();
    }

    /// Asks the next replica to coordinate; once none is left the round is decided (every
    /// replica of the current ring failed).
    fn coordinate_next(&mut self) {
        if let Some(to) = self.order.pop_front() {
            let call = self.call(Pending::Coordinate { to });
            let short = self.suspect(to);
            let epoch = self.plan.epoch;
            self.out.push(WriteCommand::Coordinate {
                call,
                to,
                epoch,
                short,
            });
        }
    }

    fn send_merges(&mut self, except: Option<NodeId>) {
        let object = self
            .coordinated
            .clone()
            .expect("merges are sent once a replica coordinated");
        for to in self.plan.write_targets() {
            if Some(to) == except {
                continue;
            }
            let call = self.call(Pending::Merge { to });
            let short = self.suspect(to);
            self.out.push(WriteCommand::Merge {
                call,
                to,
                object: object.clone(),
                epoch: self.plan.epoch,
                short,
            });
            #[cfg(feature = "canary")]
            if self.ack_on_send {
                self.round.ack(to);
            }
        }
    }

    /// `target` did not take the write: a fallback (sloppy buckets) or this member keeps a
    /// hint for it.
    fn hint_elsewhere(&mut self, target: NodeId, why: ReplicaError) {
        let object = self
            .coordinated
            .clone()
            .expect("hints are kept once a replica coordinated");
        if self.spec.sloppy {
            let unused = self
                .plan
                .fallbacks
                .iter()
                .copied()
                .find(|f| !self.used.contains(f));
            if let Some(at) = unused {
                self.used.insert(at);
                let call = self.call(Pending::Hint { target, why });
                self.out.push(WriteCommand::Hint {
                    call,
                    at,
                    target,
                    object,
                });
                return;
            }
        }
        self.out.push(WriteCommand::KeepHint { target, object });
        self.round.fail(target, why);
    }

    /// Replies (or asks to be placed again) once the round is decided.
    fn settle(&mut self) {
        if self.state != State::Running {
            return;
        }
        match self.round.outcome() {
            None => {}
            Some(Err(shortfall)) if shortfall.has_stale_epoch() => {
                self.pending.clear();
                self.out.push(WriteCommand::PlaceAgain {
                    after_epoch: self.plan.epoch,
                });
                self.state = State::Replacing(shortfall);
            }
            Some(outcome) => {
                self.state = State::Replied;
                self.reply(outcome);
            }
        }
    }

    fn reply(&mut self, outcome: Result<usize, NotEnoughReplicas>) {
        let reply = outcome.map(|acked| WriteDone {
            object: self
                .coordinated
                .clone()
                .expect("a write is acknowledged only once a replica coordinated it"),
            acked,
        });
        self.out.push(WriteCommand::Reply(reply));
    }
}
