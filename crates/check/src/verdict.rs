//! Verdicts: valid, invalid with the anomalies found, or unknown with the reason the check
//! could not finish. Unknown is never a pass.

use std::fmt;

/// The classes of anomaly the checkers report.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AnomalyKind {
    /// No order of the operations agrees with their real-time order and the model.
    NotLinearizable,
    /// An acknowledged write is missing from the final read.
    LostWrite,
    /// A read misses a write acknowledged before the read began.
    StaleRead,
    /// A read returns a value no operation wrote (or one whose write certainly failed).
    Unexpected,
    /// A read returns one value twice.
    Duplicate,
    /// The sum over all accounts differs from the initial total.
    TotalNotConserved,
    /// An account holds a negative balance.
    NegativeBalance,
    /// A read lacks an account or shows one that does not exist.
    WrongAccounts,
    /// A watcher skipped revisions that exist.
    Gap,
    /// A watcher delivered a revision after a later one.
    Reordered,
    /// A watcher split one revision's events over several responses.
    SplitRevision,
    /// Two holders of one lock both wrote inside one hold.
    MutualExclusion,
    /// A fenced write with an older token committed after one with a newer token.
    StaleToken,
    /// An operation answered from an older revision than one that completed before it began.
    RevisionOrder,
    /// Two writes created the same revision.
    DuplicateRevision,
    /// Replicas of one range hold different states at the same log index (the replica
    /// consistency check at the end of a range run).
    ReplicaDivergence,
}

impl AnomalyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::NotLinearizable => "not-linearizable",
            AnomalyKind::LostWrite => "lost-write",
            AnomalyKind::StaleRead => "stale-read",
            AnomalyKind::Unexpected => "unexpected-value",
            AnomalyKind::Duplicate => "duplicate",
            AnomalyKind::TotalNotConserved => "total-not-conserved",
            AnomalyKind::NegativeBalance => "negative-balance",
            AnomalyKind::WrongAccounts => "wrong-accounts",
            AnomalyKind::Gap => "gap",
            AnomalyKind::Reordered => "reordered",
            AnomalyKind::SplitRevision => "split-revision",
            AnomalyKind::MutualExclusion => "mutual-exclusion",
            AnomalyKind::StaleToken => "stale-token",
            AnomalyKind::RevisionOrder => "revision-order",
            AnomalyKind::DuplicateRevision => "duplicate-revision",
            AnomalyKind::ReplicaDivergence => "replica-divergence",
        }
    }
}

/// One anomaly: its class, where, the operations involved and a human explanation.
#[derive(Clone, Debug, PartialEq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub key: Option<String>,
    /// Ids of the operations involved.
    pub ops: Vec<usize>,
    pub explanation: String,
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(
                f,
                "{} on key {key}: {}",
                self.kind.as_str(),
                self.explanation
            ),
            None => write!(f, "{}: {}", self.kind.as_str(), self.explanation),
        }
    }
}

/// A checker's verdict.
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    Valid,
    Invalid(Vec<Anomaly>),
    /// The check could not finish (a budget ran out, the history lacks what it needs).
    Unknown(String),
}

impl Verdict {
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid(_) => "invalid",
            Verdict::Unknown(_) => "unknown",
        }
    }

    pub fn is_valid(&self) -> bool {
        matches!(self, Verdict::Valid)
    }

    /// Combines the verdicts of independent parts: any invalid part makes the whole invalid
    /// (anomalies are gathered), else any unknown part makes it unknown.
    pub fn combine(verdicts: impl IntoIterator<Item = Verdict>) -> Verdict {
        let mut anomalies = Vec::new();
        let mut unknown = Vec::new();
        for verdict in verdicts {
            match verdict {
                Verdict::Valid => {}
                Verdict::Invalid(found) => anomalies.extend(found),
                Verdict::Unknown(reason) => unknown.push(reason),
            }
        }
        if !anomalies.is_empty() {
            Verdict::Invalid(anomalies)
        } else if !unknown.is_empty() {
            Verdict::Unknown(unknown.join("; "))
        } else {
            Verdict::Valid
        }
    }
}

/// A verdict with what was checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The model or checker that judged.
    pub checker: String,
    pub verdict: Verdict,
    /// Operations that entered the check (after dropping those without effect).
    pub ops_checked: usize,
    /// Independent parts checked (keys, for per-key models).
    pub parts: usize,
}
