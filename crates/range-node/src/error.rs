//! `RangeNodeError`: every way a client request on a consensus bucket fails, and the one
//! place they become gRPC statuses (the code by the kind of failure, so clients' `fate` rules
//! judge them: refusals before proposing are certain, the rest indeterminate).

use base::EtcdError;
use tonic::{Code, Status};

/// Why a request on a consensus bucket failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RangeNodeError {
    #[error("bucket {0:?} not found")]
    NoBucket(String),
    #[error("bucket {bucket:?} is a quorum bucket: {operation} needs a consensus bucket")]
    NotConsensus {
        bucket: String,
        operation: &'static str,
    },
    #[error("member {0:x} is not in the cluster")]
    NoMember(u64),
    #[error("key is empty")]
    EmptyKey,
    #[error("key is {len} bytes, over the limit of {max}")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value is {len} bytes, over the limit of {max}")]
    ValueTooLarge { len: usize, max: usize },
    #[error("{0}")]
    Invalid(String),
    /// A bucket of that name exists with another definition.
    #[error("{0}")]
    Exists(String),
    /// The metadata refused a change (it names why).
    #[error("{0}")]
    Refused(String),
    /// No replica of the range could serve the request before the deadline; nothing was
    /// proposed by this request unless `sent` says a replica took it.
    #[error(
        "range {range} of bucket {bucket:?} is unavailable: {answered} of its {replicas} replicas answered and none could serve ({why})"
    )]
    Unavailable {
        bucket: String,
        range: u64,
        replicas: usize,
        answered: usize,
        why: String,
    },
    /// The request was handed to a range's leader and no answer came: it may have applied.
    #[error("request timed out: it may or may not have been applied ({0})")]
    Indeterminate(String),
    #[error("{0}")]
    Unimplemented(&'static str),
    #[error("{0}")]
    Internal(String),
}

impl From<EtcdError> for RangeNodeError {
    fn from(error: EtcdError) -> RangeNodeError {
        match error {
            EtcdError::Timeout => RangeNodeError::Indeterminate(error.to_string()),
            other => RangeNodeError::Internal(other.to_string()),
        }
    }
}

impl From<RangeNodeError> for Status {
    fn from(error: RangeNodeError) -> Status {
        let code = match &error {
            RangeNodeError::NoBucket(_) | RangeNodeError::NoMember(_) => Code::NotFound,
            RangeNodeError::Exists(_) => Code::AlreadyExists,
            RangeNodeError::NotConsensus { .. } | RangeNodeError::Refused(_) => {
                Code::FailedPrecondition
            }
            RangeNodeError::EmptyKey
            | RangeNodeError::KeyTooLarge { .. }
            | RangeNodeError::ValueTooLarge { .. }
            | RangeNodeError::Invalid(_) => Code::InvalidArgument,
            RangeNodeError::Unavailable { .. } => Code::Unavailable,
            RangeNodeError::Indeterminate(_) => Code::DeadlineExceeded,
            RangeNodeError::Unimplemented(_) => Code::Unimplemented,
            RangeNodeError::Internal(_) => Code::Internal,
        };
        Status::new(code, error.to_string())
    }
}
