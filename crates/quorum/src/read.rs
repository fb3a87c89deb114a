//! The read coordinator of one quorum-bucket get, as a state machine without I/O.
//!
//! An attempt asks every replica of the current ring for its copy and decides at R answers
//! (their merge by dotted version vectors) or once R is out of reach. A blocking read
//! (`repair_before_reply`) first sends the merge to the stale replicas among those that
//! answered and replies only once R replicas hold it. After the reply the coordinator waits
//! for the late answers, then repairs every replica that answered with less than the merge of
//! all answers (except those the blocking repair already gave that same merge). A refused ring
//! epoch places the read again, as for writes.
//!
//! The driver's contract is the write coordinator's: one answer per call, `Deadline` when the
//! request's time is up.

use std::collections::BTreeMap;

use base::NodeId;
use crdt::{Conflicts, Object};

use crate::{CallId, NotEnoughReplicas, Plan, ReadRound, ReplicaError};

/// What a read needs besides its placement.
#[derive(Copy, Clone, Debug)]
pub struct ReadSpec {
    /// Answers required.
    pub r: usize,
    pub conflicts: Conflicts,
    /// Repair the stale replicas that answered before replying (monotonic reads).
    pub repair_before_reply: bool,
}

/// A read that reached R.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadDone {
    /// The merge of the answers (empty when no replica had a copy).
    pub object: Object,
    pub answered: usize,
}

/// Why a read failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    NotEnough(#[from] NotEnoughReplicas),
    /// The blocking read repair left fewer than R replicas holding the value read.
    #[error("blocking read repair: {holding} replicas hold the value read, {required} required ({})", failures_text(.failures))]
    RepairShort {
        holding: usize,
        required: usize,
        failures: Vec<(NodeId, ReplicaError)>,
    },
}

fn failures_text(failures: &[(NodeId, ReplicaError)]) -> String {
    let each: Vec<String> = failures
        .iter()
        .map(|(id, why)| format!("{id}: {why}"))
        .collect();
    each.join("; ")
}

/// What the driver must do for a read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadCommand {
    /// Ask `to` for its copy of the key.
    Read {
        call: CallId,
        to: NodeId,
        epoch: u64,
    },
    /// Ask `to` to merge `object` into its copy (read repair).
    Repair {
        call: CallId,
        to: NodeId,
        object: Object,
        epoch: u64,
    },
    /// As for writes: wait for a newer ring epoch, then feed `Placed` (or `Deadline`).
    PlaceAgain { after_epoch: u64 },
    /// Answer the client; sent once.
    Reply(Result<ReadDone, ReadError>),
}

/// What happened to a read's calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadInput {
    /// A `Read` call's replica answered with its copy (`None`: it holds none).
    Copy {
        call: CallId,
        copy: Option<Object>,
    },
    /// A `Repair` call's replica stored the merge durably.
    Repaired {
        call: CallId,
    },
    Failed {
        call: CallId,
        error: ReplicaError,
    },
    Placed(Plan),
    Deadline,
}

#[derive(Clone, Debug)]
enum Pending {
    Read {
        to: NodeId,
    },
    /// `blocking`: the reply waits for it.
    Repair {
        to: NodeId,
        blocking: bool,
    },
}

#[derive(Clone, Debug)]
enum Phase {
    Reading,
    /// The blocking repair of `object` is under way.
    Repairing {
        object: Object,
        answered: usize,
        holding: usize,
        repaired: Vec<NodeId>,
        failures: Vec<(NodeId, ReplicaError)>,
    },
    Replacing(NotEnoughReplicas),
    /// Replied with `object`; late answers are collected for the background repair, which
    /// skips the replicas in `repaired` if the final merge is still `object`.
    Replied {
        object: Object,
        repaired: Vec<NodeId>,
    },
    /// Replied, and the background repairs (if any) are sent.
    Done,
}

/// One read's coordination.
#[derive(Debug)]
pub struct ReadCoordinator {
    spec: ReadSpec,
    plan: Plan,
    round: ReadRound,
    pending: BTreeMap<CallId, Pending>,
    calls: u64,
    phase: Phase,
    out: Vec<ReadCommand>,
}

impl ReadCoordinator {
    /// A read placed by `plan`; `start` gives its first commands.
    pub fn new(spec: ReadSpec, plan: Plan) -> ReadCoordinator {
        ReadCoordinator {
            round: ReadRound::new(&plan.replicas, spec.r, spec.conflicts),
            spec,
            plan,
            pending: BTreeMap::new(),
            calls: 0,
            phase: Phase::Reading,
            out: Vec::new(),
        }
    }

    /// The first commands of the read.
    pub fn start(&mut self) -> Vec<ReadCommand> {
        self.begin_attempt();
        self.settle();
        std::mem::take(&mut self.out)
    }

    /// Takes one input; returns the commands it leads to.
    pub fn handle(&mut self, input: ReadInput) -> Vec<ReadCommand> {
        match input {
            ReadInput::Copy { call, copy } => {
                if let Some(Pending::Read { to }) = self.pending.remove(&call) {
                    self.round.answer(to, copy);
                }
            }
            ReadInput::Repaired { call } => {
                if let Some(Pending::Repair { to, blocking }) = self.pending.remove(&call)
                    && blocking
                    && let Phase::Repairing {
                        holding, repaired, ..
                    } = &mut self.phase
                {
                    *holding += 1;
                    repaired.push(to);
                }
            }
            ReadInput::Failed { call, error } => match self.pending.remove(&call) {
                Some(Pending::Read { to }) => self.round.fail(to, error),
                Some(Pending::Repair { to, blocking }) => {
                    if blocking && let Phase::Repairing { failures, .. } = &mut self.phase {
                        failures.push((to, error));
                    }
                }
                None => {}
            },
            ReadInput::Placed(plan) => {
                if matches!(self.phase, Phase::Replacing(_)) {
                    self.round = ReadRound::new(&plan.replicas, self.spec.r, self.spec.conflicts);
                    self.plan = plan;
                    self.phase = Phase::Reading;
                    self.begin_attempt();
                }
            }
            ReadInput::Deadline => match &self.phase {
                Phase::Reading => {
                    let outcome = self.round.at_deadline();
                    self.fail(outcome.err().map(ReadError::NotEnough));
                }
                Phase::Replacing(shortfall) => {
                    let error = ReadError::NotEnough(shortfall.clone());
                    self.fail(Some(error));
                }
                // The outstanding calls end by their own timeouts.
                Phase::Repairing { .. } | Phase::Replied { .. } | Phase::Done => {}
            },
        }
        self.settle();
        std::mem::take(&mut self.out)
    }

    /// Whether the reply went out and no call is outstanding.
    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Done) && self.pending.is_empty()
    }

    fn call(&mut self, pending: Pending) -> CallId {
        self.calls += 1;
        let call = CallId(self.calls);
        self.pending.insert(call, pending);
        call
    }

    fn begin_attempt(&mut self) {
        self.pending.clear();
        for to in self.plan.replicas.clone() {
            let call = self.call(Pending::Read { to });
            let epoch = self.plan.epoch;
            self.out.push(ReadCommand::Read { call, to, epoch });
        }
    }

    fn repair(&mut self, to: NodeId, object: Object, blocking: bool) {
        let call = self.call(Pending::Repair { to, blocking });
        let epoch = self.plan.epoch;
        self.out.push(ReadCommand::Repair {
            call,
            to,
            object,
            epoch,
        });
    }

    /// Replies with an error; a failed read repairs nothing and its late answers are dropped.
    fn fail(&mut self, error: Option<ReadError>) {
        let error = error.unwrap_or_else(|| {
            ReadError::NotEnough(NotEnoughReplicas {
                required: self.spec.r,
                answered: self.round.answered(),
                replicas: self.plan.replicas.len(),
                failures: Vec::new(),
            })
        });
        self.pending.clear();
        self.phase = Phase::Done;
        self.out.push(ReadCommand::Reply(Err(error)));
    }

    fn reading(&self) -> bool {
        self.pending
            .values()
            .any(|p| matches!(p, Pending::Read { .. }))
    }

    fn blocking_repairs(&self) -> bool {
        self.pending
            .values()
            .any(|p| matches!(p, Pending::Repair { blocking: true, .. }))
    }

    fn settle(&mut self) {
        match &self.phase {
            Phase::Reading => match self.round.outcome() {
                None => {}
                Some(Err(shortfall)) if shortfall.has_stale_epoch() => {
                    self.pending.clear();
                    self.out.push(ReadCommand::PlaceAgain {
                        after_epoch: self.plan.epoch,
                    });
                    self.phase = Phase::Replacing(shortfall);
                }
                Some(Err(shortfall)) => self.fail(Some(ReadError::NotEnough(shortfall))),
                Some(Ok(answered)) => {
                    let object = self.round.merged();
                    let stale = self.round.stale(&object);
                    if self.spec.repair_before_reply && !stale.is_empty() {
                        for to in &stale {
                            self.repair(*to, object.clone(), true);
                        }
                        self.phase = Phase::Repairing {
                            holding: answered - stale.len(),
                            object,
                            answered,
                            repaired: Vec::new(),
                            failures: Vec::new(),
                        };
                    } else {
                        self.replied(object, answered, Vec::new());
                    }
                }
            },
            Phase::Repairing { .. } if self.blocking_repairs() => {}
            Phase::Repairing {
                object,
                answered,
                holding,
                repaired,
                failures,
            } => {
                if *holding >= self.spec.r {
                    let (object, answered, repaired) =
                        (object.clone(), *answered, repaired.clone());
                    self.replied(object, answered, repaired);
                } else {
                    let error = ReadError::RepairShort {
                        holding: *holding,
                        required: self.spec.r,
                        failures: failures.clone(),
                    };
                    self.fail(Some(error));
                }
            }
            Phase::Replied { .. } if self.reading() => {}
            Phase::Replied { object, repaired } => {
                let done = self.round.merged();
                let skip = if &done == object {
                    repaired.clone()
                } else {
                    Vec::new()
                };
                for to in self.round.stale(&done) {
                    if !skip.contains(&to) {
                        self.repair(to, done.clone(), false);
                    }
                }
                self.phase = Phase::Done;
            }
            Phase::Replacing(_) | Phase::Done => {}
        }
    }

    fn replied(&mut self, object: Object, answered: usize, repaired: Vec<NodeId>) {
        self.out.push(ReadCommand::Reply(Ok(ReadDone {
            object: object.clone(),
            answered,
        })));
        self.phase = Phase::Replied { object, repaired };
        // The late answers may all be in already.
        self.settle();
    }
}
