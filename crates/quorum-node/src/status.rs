//! The one place where the quorum path's errors meet gRPC: a replica's failure becomes a
//! status whose details carry the typed `ReplicaFault` (so a coordinator decides on the reason,
//! never on the message text), a coordinator turns a peer's status back into a
//! `quorum::ReplicaError`, and a client request's `QuorumError` becomes the status the client
//! sees (the code by the kind of failure, the message the error's text, and the typed
//! `ErrorDetail` that every `quorate.v1` error carries: docs/api.md, "Errors").

use prost::Message;
use proto::quorate::replica::v1 as replicapb;
use proto::quorate::v1::{ErrorDetail, Refusal, WriteOutcome};
use quorum::ReplicaError;
use tonic::{Code, Status};

use crate::QuorumError;

use replicapb::replica_fault::Fault;

/// The status a replica answers a failed call with.
pub fn of_replica_error(error: &ReplicaError) -> Status {
    let (code, fault) = match error {
        ReplicaError::StaleEpoch { placed, current } => (
            Code::FailedPrecondition,
            Some(Fault::StaleEpoch(replicapb::StaleEpoch {
                placed: *placed,
                current: *current,
            })),
        ),
        ReplicaError::Corrupt(why) => (Code::DataLoss, Some(Fault::Corrupt(why.clone()))),
        ReplicaError::Storage(why) => (Code::Internal, Some(Fault::Storage(why.clone()))),
        ReplicaError::Unreachable(_) => (Code::Unavailable, None),
        ReplicaError::Timeout => (Code::DeadlineExceeded, None),
        ReplicaError::Failed(_) => (Code::Internal, None),
    };
    let details = fault
        .map(|fault| {
            replicapb::ReplicaFault { fault: Some(fault) }
                .encode_to_vec()
                .into()
        })
        .unwrap_or_default();
    Status::with_details(code, error.to_string(), details)
}

/// The replica error a coordinator sees in a peer's status: the typed fault where the replica
/// sent one, else what the code says (a transport failure before sending is unreachable, a
/// deadline a timeout).
pub fn to_replica_error(status: &Status) -> ReplicaError {
    if !status.details().is_empty()
        && let Ok(fault) = replicapb::ReplicaFault::decode(status.details())
    {
        match fault.fault {
            Some(Fault::StaleEpoch(stale)) => {
                return ReplicaError::StaleEpoch {
                    placed: stale.placed,
                    current: stale.current,
                };
            }
            Some(Fault::Corrupt(why)) => return ReplicaError::Corrupt(why),
            Some(Fault::Storage(why)) => return ReplicaError::Storage(why),
            None => {}
        }
    }
    let message = status.message().to_owned();
    match status.code() {
        Code::DeadlineExceeded | Code::Cancelled => ReplicaError::Timeout,
        Code::Unavailable => ReplicaError::Unreachable(message),
        Code::DataLoss => ReplicaError::Corrupt(message),
        _ => ReplicaError::Failed(message),
    }
}

impl From<QuorumError> for Status {
    /// The status a client gets for a failed request: its code by the kind of failure, its
    /// message the error's text.
    fn from(error: QuorumError) -> Status {
        use QuorumError as E;
        let code = match &error {
            E::KeyEmpty
            | E::KeyTooLarge { .. }
            | E::ValueTooLarge { .. }
            | E::BadContext(_)
            | E::UnknownLevelKind(_)
            | E::UnknownConflicts(_)
            | E::Level(_)
            | E::BucketName(_)
            | E::UnsupportedBucketType(_)
            | E::ReplicasOutOfRange(_)
            | E::Missing(_) => Code::InvalidArgument,
            E::NoBucket(_) => Code::NotFound,
            E::NotQuorumBucket(_)
            | E::NoRing
            | E::TooFewHolders { .. }
            | E::NotClusterMember(_)
            | E::RingTooSmall { .. }
            | E::RingRefused(_) => Code::FailedPrecondition,
            E::Refused { kind, .. } => match kind {
                Refusal::Exists | Refusal::AlreadySplit => Code::AlreadyExists,
                Refusal::NotFound => Code::NotFound,
                Refusal::Stale | Refusal::Busy => Code::Aborted,
                Refusal::Corrupt => Code::Internal,
                Refusal::Invalid | Refusal::WrongKind | Refusal::Unspecified => {
                    Code::FailedPrecondition
                }
            },
            // For a write the outcome is unknown: the replicas that stored it keep it.
            E::NotEnough(_) | E::Read(_) | E::NoMembershipYet | E::Proposal(_) => Code::Unavailable,
            E::Internal(_) => Code::Internal,
        };
        let detail = ErrorDetail {
            outcome: outcome(&error) as i32,
            refusal: match &error {
                E::Refused { kind, .. } => *kind as i32,
                E::NotQuorumBucket(_) => Refusal::WrongKind as i32,
                _ => Refusal::Unspecified as i32,
            },
        };
        Status::with_details(code, error.to_string(), detail.encode_to_vec().into())
    }
}

/// What a failed request did to the data: a write that reached fewer replicas than its level
/// needs may still be on those that took it, a metadata proposal that timed out may have
/// committed, and a broken invariant proves nothing; everything else was refused before any
/// replica changed.
fn outcome(error: &QuorumError) -> WriteOutcome {
    match error {
        QuorumError::NotEnough(_) | QuorumError::Proposal(_) | QuorumError::Internal(_) => {
            WriteOutcome::Unknown
        }
        _ => WriteOutcome::NotApplied,
    }
}

#[cfg(test)]
mod tests;
