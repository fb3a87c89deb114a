//! `RangeNodeError`: every way a client request on a consensus bucket fails, and the one
//! place they become gRPC statuses: the code by the kind of failure, and the typed
//! `ErrorDetail` (what a write did, why the metadata refused) in the status details, by the
//! convention docs/api.md states for every `quorate.v1` service.

use base::EtcdError;
use prost::Message;
use proto::quorate::v1::{ErrorDetail, Refusal, WriteOutcome};
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
    /// The metadata refused a change: its kind, and why for people.
    #[error("{message}")]
    Refused { kind: Refusal, message: String },
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

impl RangeNodeError {
    pub(crate) fn refused(kind: Refusal, message: impl Into<String>) -> RangeNodeError {
        RangeNodeError::Refused {
            kind,
            message: message.into(),
        }
    }

    /// A metadata reply's refusal (`kind` as the wire carries it).
    pub(crate) fn from_reply(kind: i32, message: String) -> RangeNodeError {
        RangeNodeError::Refused {
            kind: Refusal::try_from(kind).unwrap_or(Refusal::Unspecified),
            message,
        }
    }

    /// What the failed request did to the data: only a write handed to a range's leader and
    /// lost, or a broken invariant, leaves it unknown.
    fn outcome(&self) -> WriteOutcome {
        match self {
            RangeNodeError::Indeterminate(_) | RangeNodeError::Internal(_) => WriteOutcome::Unknown,
            _ => WriteOutcome::NotApplied,
        }
    }
}

impl From<ranges::MoveRefusal> for RangeNodeError {
    fn from(refusal: ranges::MoveRefusal) -> RangeNodeError {
        let kind = if refusal.is_transient() {
            Refusal::Busy
        } else {
            Refusal::Invalid
        };
        RangeNodeError::refused(kind, refusal.to_string())
    }
}

/// The status code of a metadata refusal of `kind`.
fn refusal_code(kind: Refusal) -> Code {
    match kind {
        Refusal::Exists | Refusal::AlreadySplit => Code::AlreadyExists,
        Refusal::NotFound => Code::NotFound,
        Refusal::Stale | Refusal::Busy => Code::Aborted,
        Refusal::Invalid | Refusal::WrongKind | Refusal::Unspecified => Code::FailedPrecondition,
        Refusal::Corrupt => Code::Internal,
    }
}

impl From<RangeNodeError> for Status {
    fn from(error: RangeNodeError) -> Status {
        let code = match &error {
            RangeNodeError::NoBucket(_) | RangeNodeError::NoMember(_) => Code::NotFound,
            RangeNodeError::Refused { kind, .. } => refusal_code(*kind),
            RangeNodeError::NotConsensus { .. } => Code::FailedPrecondition,
            RangeNodeError::EmptyKey
            | RangeNodeError::KeyTooLarge { .. }
            | RangeNodeError::ValueTooLarge { .. }
            | RangeNodeError::Invalid(_) => Code::InvalidArgument,
            RangeNodeError::Unavailable { .. } => Code::Unavailable,
            RangeNodeError::Indeterminate(_) => Code::DeadlineExceeded,
            RangeNodeError::Unimplemented(_) => Code::Unimplemented,
            RangeNodeError::Internal(_) => Code::Internal,
        };
        let detail = ErrorDetail {
            outcome: error.outcome() as i32,
            refusal: match &error {
                RangeNodeError::Refused { kind, .. } => *kind as i32,
                RangeNodeError::NotConsensus { .. } => Refusal::WrongKind as i32,
                _ => Refusal::Unspecified as i32,
            },
        };
        Status::with_details(code, error.to_string(), detail.encode_to_vec().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detail(status: &Status) -> ErrorDetail {
        ErrorDetail::decode(status.details()).expect("every status carries an ErrorDetail")
    }

    #[test]
    fn each_failure_carries_its_code_its_outcome_and_its_refusal() {
        // Goal: a client tells a write certainly not applied from an indeterminate one, and a
        // refusal's kind, without reading the message. Method: turn each kind into a status.
        let cases = [
            (
                RangeNodeError::refused(Refusal::Exists, "bucket \"b\" already exists"),
                Code::AlreadyExists,
                WriteOutcome::NotApplied,
                Refusal::Exists,
            ),
            (
                RangeNodeError::refused(Refusal::AlreadySplit, "range 3 already starts there"),
                Code::AlreadyExists,
                WriteOutcome::NotApplied,
                Refusal::AlreadySplit,
            ),
            (
                RangeNodeError::from_reply(Refusal::Stale as i32, "moved on".into()),
                Code::Aborted,
                WriteOutcome::NotApplied,
                Refusal::Stale,
            ),
            (
                RangeNodeError::from(ranges::MoveRefusal::SameMember(base::NodeId(1))),
                Code::FailedPrecondition,
                WriteOutcome::NotApplied,
                Refusal::Invalid,
            ),
            (
                RangeNodeError::Unavailable {
                    bucket: "b".into(),
                    range: 2,
                    replicas: 3,
                    answered: 0,
                    why: "no leader".into(),
                },
                Code::Unavailable,
                WriteOutcome::NotApplied,
                Refusal::Unspecified,
            ),
            (
                RangeNodeError::Indeterminate("lost".into()),
                Code::DeadlineExceeded,
                WriteOutcome::Unknown,
                Refusal::Unspecified,
            ),
            (
                RangeNodeError::Internal("broken".into()),
                Code::Internal,
                WriteOutcome::Unknown,
                Refusal::Unspecified,
            ),
        ];
        for (error, code, outcome, refusal) in cases {
            let text = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{text}");
            assert_eq!(status.message(), text);
            let detail = detail(&status);
            assert_eq!(
                (detail.outcome(), detail.refusal()),
                (outcome, refusal),
                "{text}"
            );
        }
    }
}
