//! The tallies of one request's replica answers: when a write has its W durable
//! acknowledgements (in each replica set during a ring change) or can no longer get them
//! ([`WriteRound`]), when a read has R answers, their merge and the stale copies
//! ([`ReadRound`]).
//!
//! Invariant: a round counts each replica once, whatever is fed in twice, and an outcome once
//! reached does not change.

use std::collections::{BTreeMap, BTreeSet};

use base::NodeId;
use crdt::{Conflicts, Object};

use crate::ReplicaError;

/// Fewer replicas answered than the request required. For a write the outcome is unknown:
/// the replicas that did store it keep it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not enough replicas: {answered} of {replicas} answered, {required} required{}", failures_text(.failures))]
pub struct NotEnoughReplicas {
    pub required: usize,
    pub answered: usize,
    pub replicas: usize,
    /// Why each failed replica failed (in member order).
    pub failures: Vec<(NodeId, ReplicaError)>,
}

impl NotEnoughReplicas {
    /// Whether a replica refused the request's ring epoch: placed again by the newer ring, the
    /// request may succeed.
    pub fn has_stale_epoch(&self) -> bool {
        self.failures.iter().any(|(_, why)| why.is_stale_epoch())
    }
}

fn failures_text(failures: &[(NodeId, ReplicaError)]) -> String {
    if failures.is_empty() {
        return String::new();
    }
    let each: Vec<String> = failures
        .iter()
        .map(|(id, why)| format!("{id}: {why}"))
        .collect();
    format!(" ({})", each.join("; "))
}

/// Which replicas answered and which failed, shared by both rounds.
#[derive(Clone, Debug)]
struct Tally {
    replicas: BTreeSet<NodeId>,
    required: usize,
    failed: BTreeMap<NodeId, ReplicaError>,
}

impl Tally {
    fn new(replicas: &[NodeId], required: usize) -> Tally {
        Tally {
            replicas: replicas.iter().copied().collect(),
            required,
            failed: BTreeMap::new(),
        }
    }

    fn fail(&mut self, replica: NodeId, why: ReplicaError, answered: &impl Fn(NodeId) -> bool) {
        if self.replicas.contains(&replica) && !answered(replica) {
            self.failed.entry(replica).or_insert(why);
        }
    }

    fn shortfall(&self, answered: usize) -> NotEnoughReplicas {
        NotEnoughReplicas {
            required: self.required,
            answered,
            replicas: self.replicas.len(),
            failures: self
                .failed
                .iter()
                .map(|(id, why)| (*id, why.clone()))
                .collect(),
        }
    }

    /// Ok once enough answered; Err once too many failed to reach it; None while open.
    fn outcome(&self, answered: usize) -> Option<Result<usize, NotEnoughReplicas>> {
        if answered >= self.required {
            Some(Ok(answered))
        } else if self.replicas.len() - self.failed.len() < self.required {
            Some(Err(self.shortfall(answered)))
        } else {
            None
        }
    }
}

/// The acknowledgements of one write to its replicas. During a ring change a write has two
/// replica sets (the current ring's and the next one's) and needs W acknowledgements in each
/// ([`WriteRound::joint`]), so it is durable at W whichever ring serves the next read.
#[derive(Clone, Debug)]
pub struct WriteRound {
    tallies: Vec<Tally>,
    acked: BTreeSet<NodeId>,
}

impl WriteRound {
    /// A write to `replicas` that needs `w` durable acknowledgements.
    pub fn new(replicas: &[NodeId], w: usize) -> WriteRound {
        WriteRound::joint(&[replicas], w)
    }

    /// A write that needs `w` durable acknowledgements in each of `sets` (a replica in two
    /// sets counts in both). It fails as soon as one set can no longer reach `w`.
    pub fn joint(sets: &[&[NodeId]], w: usize) -> WriteRound {
        WriteRound {
            tallies: sets.iter().map(|set| Tally::new(set, w)).collect(),
            acked: BTreeSet::new(),
        }
    }

    fn counts(&self, replica: NodeId) -> bool {
        self.tallies.iter().any(|t| t.replicas.contains(&replica))
            && !self.tallies.iter().any(|t| t.failed.contains_key(&replica))
    }

    /// `replica` stored the write durably.
    pub fn ack(&mut self, replica: NodeId) {
        if self.counts(replica) {
            self.acked.insert(replica);
        }
    }

    /// `replica` did not store it (or cannot say).
    pub fn fail(&mut self, replica: NodeId, why: impl Into<ReplicaError>) {
        let why = why.into();
        let acked = &self.acked;
        for tally in &mut self.tallies {
            tally.fail(replica, why.clone(), &|r| acked.contains(&r));
        }
    }

    /// How many of `tally`'s replicas acknowledged.
    fn acked_in(&self, tally: &Tally) -> usize {
        tally.replicas.intersection(&self.acked).count()
    }

    /// The outcome once it is decided: the number of acknowledgements, or the shortfall (of
    /// the first replica set that can no longer reach W).
    pub fn outcome(&self) -> Option<Result<usize, NotEnoughReplicas>> {
        let mut open = false;
        for tally in &self.tallies {
            match tally.outcome(self.acked_in(tally)) {
                Some(Err(shortfall)) => return Some(Err(shortfall)),
                Some(Ok(_)) => {}
                None => open = true,
            }
        }
        (!open).then_some(Ok(self.acked.len()))
    }

    /// The outcome at the deadline: whatever did not answer counts as failed.
    pub fn at_deadline(&self) -> Result<usize, NotEnoughReplicas> {
        if let Some(outcome) = self.outcome() {
            return outcome;
        }
        let short = self
            .tallies
            .iter()
            .find(|t| self.acked_in(t) < t.required)
            .expect("an undecided round has a set short of W");
        Err(short.shortfall(self.acked_in(short)))
    }

    /// The replicas that acknowledged so far.
    pub fn acked(&self) -> &BTreeSet<NodeId> {
        &self.acked
    }
}

/// The answers of one read from its replicas.
#[derive(Clone, Debug)]
pub struct ReadRound {
    tally: Tally,
    conflicts: Conflicts,
    /// Each answering replica's copy (`None`: it has none).
    copies: BTreeMap<NodeId, Option<Object>>,
}

impl ReadRound {
    /// A read of `replicas` that needs `r` answers; copies merge by `conflicts`.
    pub fn new(replicas: &[NodeId], r: usize, conflicts: Conflicts) -> ReadRound {
        ReadRound {
            tally: Tally::new(replicas, r),
            conflicts,
            copies: BTreeMap::new(),
        }
    }

    /// `replica` answered with its copy.
    pub fn answer(&mut self, replica: NodeId, copy: Option<Object>) {
        if self.tally.replicas.contains(&replica) && !self.tally.failed.contains_key(&replica) {
            self.copies.entry(replica).or_insert(copy);
        }
    }

    /// `replica` could not answer.
    pub fn fail(&mut self, replica: NodeId, why: impl Into<ReplicaError>) {
        let answered: BTreeSet<NodeId> = self.copies.keys().copied().collect();
        self.tally
            .fail(replica, why.into(), &|r| answered.contains(&r));
    }

    /// The number of answers once decided, or the shortfall.
    pub fn outcome(&self) -> Option<Result<usize, NotEnoughReplicas>> {
        self.tally.outcome(self.copies.len())
    }

    /// The outcome at the deadline.
    pub fn at_deadline(&self) -> Result<usize, NotEnoughReplicas> {
        self.outcome()
            .unwrap_or_else(|| Err(self.tally.shortfall(self.copies.len())))
    }

    /// How many replicas answered so far.
    pub fn answered(&self) -> usize {
        self.copies.len()
    }

    /// The merge of every copy answered so far (empty when none had one).
    pub fn merged(&self) -> Object {
        let mut merged = Object::new();
        for copy in self.copies.values().flatten() {
            merged.merge(copy, self.conflicts);
        }
        merged
    }

    /// The answering replicas whose copy lacks something of `merged`: the targets of read
    /// repair.
    pub fn stale(&self, merged: &Object) -> Vec<NodeId> {
        self.copies
            .iter()
            .filter(|(_, copy)| match copy {
                Some(copy) => !copy.supersedes_or_equals(merged),
                None => merged != &Object::new(),
            })
            .map(|(id, _)| *id)
            .collect()
    }
}
