//! What can go wrong with a client's request on the quorum path, as one enum with the data a
//! reader needs; `status` turns it into the gRPC status clients see. Replica calls fail with
//! `quorum::ReplicaError` instead (they never reach a client as such).

use base::NodeId;
use base::limits::{BUCKET_REPLICAS_MAX, QUORUM_KEY_BYTES_MAX};
use proto::quorate::v1::Refusal;
use quorum::{LevelError, NotEnoughReplicas, PlaceError, ReadError};
use topology::BadBucketName;

/// A client request's failure.
#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    // ----- the request is malformed (invalid argument) -----
    #[error("key is empty")]
    KeyEmpty,
    #[error("key of {len} bytes exceeds the limit of {QUORUM_KEY_BYTES_MAX} bytes")]
    KeyTooLarge { len: usize },
    #[error("value of {len} bytes exceeds the limit of {max} bytes")]
    ValueTooLarge { len: usize, max: usize },
    #[error("bad context token: {0}")]
    BadContext(String),
    #[error("unknown level kind {0}")]
    UnknownLevelKind(i32),
    #[error("unknown conflict resolution {0}")]
    UnknownConflicts(i32),
    #[error(transparent)]
    Level(#[from] LevelError),
    #[error(transparent)]
    BucketName(#[from] BadBucketName),
    #[error("bucket type {0} is not supported; quorum is")]
    UnsupportedBucketType(i32),
    #[error("n={0} must be between 1 and {BUCKET_REPLICAS_MAX}")]
    ReplicasOutOfRange(u32),
    /// A required field of the request is missing (the message says which).
    #[error("{0}")]
    Missing(&'static str),

    // ----- what the request names does not exist -----
    #[error("bucket {0:?} not found")]
    NoBucket(String),

    // ----- the cluster is not in a state that allows it (failed precondition) -----
    #[error("bucket {0:?} is not a quorum bucket")]
    NotQuorumBucket(String),
    #[error("the cluster has no token ring yet")]
    NoRing,
    #[error("n={n} exceeds the {holders} {what}")]
    TooFewHolders {
        n: u32,
        holders: usize,
        what: &'static str,
    },
    #[error("member {0} is not a member of the cluster (add it with `member add` first)")]
    NotClusterMember(NodeId),
    #[error("bucket {bucket:?} has n={n} and the ring would keep {members} members")]
    RingTooSmall {
        bucket: String,
        n: usize,
        members: usize,
    },
    /// The ring cannot be changed so (its reason), or the metadata group refused the step.
    #[error("{0}")]
    RingRefused(String),

    // ----- the metadata group refused a change (its code by the kind) -----
    /// A bucket create or delete, or a ring step, refused: its kind, and why for people.
    #[error("{message}")]
    Refused { kind: Refusal, message: String },

    // ----- not now: retry may succeed (unavailable) -----
    #[error(transparent)]
    NotEnough(#[from] NotEnoughReplicas),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("this member has not learned the cluster's membership yet")]
    NoMembershipYet,
    /// Proposing through Raft failed (no leader, timeout).
    #[error("{0}")]
    Proposal(String),

    // ----- a broken invariant or a local failure (internal) -----
    #[error("{0}")]
    Internal(String),
}

impl From<PlaceError> for QuorumError {
    fn from(error: PlaceError) -> QuorumError {
        match error {
            PlaceError::NoBucket(name) => QuorumError::NoBucket(name),
            PlaceError::NoRing => QuorumError::NoRing,
        }
    }
}

impl QuorumError {
    /// A metadata reply's refusal (`kind` as the wire carries it).
    pub(crate) fn refused(kind: i32, message: String) -> QuorumError {
        QuorumError::Refused {
            kind: Refusal::try_from(kind).unwrap_or(Refusal::Unspecified),
            message,
        }
    }
}
