//! The one place where the quorum path's errors meet gRPC: a replica's failure becomes a
//! status whose details carry the typed `ReplicaFault` (so a coordinator decides on the reason,
//! never on the message text), a coordinator turns a peer's status back into a
//! `quorum::ReplicaError`, and the coordinators' outcomes (not enough replicas, a short
//! blocking repair, a placement that cannot be made, a level N cannot meet) become the
//! statuses clients see.

use prost::Message;
use proto::quorate::replica::v1 as replicapb;
use quorum::{LevelError, NotEnoughReplicas, PlaceError, ReadError, ReplicaError};
use storage::StorageError;
use tonic::{Code, Status};

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

/// Fewer replicas answered than the level required: unavailable (for a write, the outcome is
/// unknown: the replicas that stored it keep it).
pub fn of_shortfall(shortfall: &NotEnoughReplicas) -> Status {
    Status::unavailable(shortfall.to_string())
}

pub fn of_read_error(error: &ReadError) -> Status {
    Status::unavailable(error.to_string())
}

pub fn of_place_error(error: &PlaceError) -> Status {
    match error {
        PlaceError::NoBucket(_) => Status::not_found(error.to_string()),
        PlaceError::NoRing => Status::failed_precondition(error.to_string()),
    }
}

pub fn of_level_error(error: &LevelError) -> Status {
    Status::invalid_argument(error.to_string())
}

/// A stored copy that fails its checksum is data loss; other storage failures are internal.
pub fn of_storage_error(error: StorageError) -> Status {
    match error {
        StorageError::Corrupt { what, detail } => {
            Status::data_loss(format!("corrupt {what}: {detail}"))
        }
        other => Status::internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests;
