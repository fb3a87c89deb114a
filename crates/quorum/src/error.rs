//! Why one call from a coordinator to one replica did not succeed, as a closed enum: the
//! coordinators decide on it (a stale ring epoch places the request again; any other failure
//! of a write leaves a hint), so it is never a string to match. The driver turns wire
//! failures into it and it into gRPC statuses (`quorum-node`'s status module).

use std::fmt;

/// The failure of one replica call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaError {
    /// The replica is at a later ring epoch than the one the call was placed at: the request
    /// must be placed again by the newer ring.
    StaleEpoch { placed: u64, current: u64 },
    /// The call was not delivered (no connection, no peer address, blocked by fault
    /// injection): the replica certainly did not act on it.
    Unreachable(String),
    /// No answer within the call's time: the replica may or may not have acted.
    Timeout,
    /// The replica's copy of the key fails its checksum or does not decode.
    Corrupt(String),
    /// The replica could not store the change (its disk failed).
    Storage(String),
    /// The replica refused or failed the call for another reason, given by it.
    Failed(String),
}

impl ReplicaError {
    /// Whether a request placed again by a newer ring could succeed where this call failed.
    pub fn is_stale_epoch(&self) -> bool {
        matches!(self, ReplicaError::StaleEpoch { .. })
    }
}

impl fmt::Display for ReplicaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicaError::StaleEpoch { placed, current } => write!(
                f,
                "stale ring epoch: the call was placed at epoch {placed}, this member is at \
                 {current}"
            ),
            ReplicaError::Unreachable(why) => write!(f, "unreachable: {why}"),
            ReplicaError::Timeout => f.write_str("no answer in time"),
            ReplicaError::Corrupt(why) => write!(f, "corrupt copy: {why}"),
            ReplicaError::Storage(why) => write!(f, "storage failed: {why}"),
            ReplicaError::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ReplicaError {}

impl From<&str> for ReplicaError {
    fn from(why: &str) -> ReplicaError {
        ReplicaError::Failed(why.to_owned())
    }
}

impl From<String> for ReplicaError {
    fn from(why: String) -> ReplicaError {
        ReplicaError::Failed(why)
    }
}
