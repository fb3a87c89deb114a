//! What a failed call means for the data, the same for every caller: a read has no effect, so
//! its failure is certain; a write's failure is certain only when the member refused it before
//! proposing it. Any other failure (a deadline, a lost connection, a leader change) may hide a
//! committed write: it is indeterminate, never retried blindly, and the tester records it as
//! unknown (`info`). A `quorate.v1` status says which in its typed `ErrorDetail`; the etcd API
//! (whose statuses are etcd's) is judged by the code alone.

use prost::Message;
use proto::quorate::v1::{ErrorDetail, Refusal, WriteOutcome};
use tonic::{Code, Status};

/// What a failed write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFate {
    /// Refused before it was proposed: it certainly had no effect.
    NotApplied,
    /// It may or may not have been applied.
    Indeterminate,
}

/// The typed detail a `quorate.v1` error status carries, if `status` has one.
pub fn detail(status: &Status) -> Option<ErrorDetail> {
    if status.details().is_empty() {
        return None;
    }
    ErrorDetail::decode(status.details()).ok()
}

/// Why the cluster metadata refused the change `status` answers, if it did.
pub fn refusal(status: &Status) -> Option<Refusal> {
    detail(status)
        .map(|d| d.refusal())
        .filter(|r| *r != Refusal::Unspecified)
}

/// The fate of a write that failed with `status`: what its detail says, or else what its code
/// says (a refusal before proposing is certain, anything else indeterminate).
pub fn write_fate(status: &Status) -> WriteFate {
    match detail(status).map(|d| d.outcome()) {
        Some(WriteOutcome::NotApplied) => return WriteFate::NotApplied,
        Some(WriteOutcome::Unknown) => return WriteFate::Indeterminate,
        Some(WriteOutcome::Unspecified) | None => {}
    }
    match status.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::ResourceExhausted
        | Code::PermissionDenied
        | Code::Unauthenticated
        | Code::NotFound
        | Code::AlreadyExists => WriteFate::NotApplied,
        _ => WriteFate::Indeterminate,
    }
}

/// Whether a read that failed with `status` may be sent to another member: only when this one
/// could not serve it at all.
pub fn read_retryable(status: &Status) -> bool {
    status.code() == Code::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_certain_and_everything_else_indeterminate() {
        assert_eq!(
            write_fate(&Status::invalid_argument("etcdserver: key is not provided")),
            WriteFate::NotApplied
        );
        assert_eq!(
            write_fate(&Status::failed_precondition("stale")),
            WriteFate::NotApplied
        );
        for status in [
            Status::deadline_exceeded("timed out"),
            Status::unavailable("leader changed"),
            Status::unknown("connection reset"),
            Status::internal("?"),
            Status::cancelled("gone"),
        ] {
            assert_eq!(write_fate(&status), WriteFate::Indeterminate, "{status:?}");
        }
    }

    fn with_detail(code: Code, outcome: WriteOutcome, refusal: Refusal) -> Status {
        let detail = ErrorDetail {
            outcome: outcome as i32,
            refusal: refusal as i32,
        };
        Status::with_details(code, "text no caller reads", detail.encode_to_vec().into())
    }

    #[test]
    fn a_typed_detail_decides_over_the_code() {
        // A consensus bucket's range that no replica could serve: nothing was proposed.
        let unserved = with_detail(
            Code::Unavailable,
            WriteOutcome::NotApplied,
            Refusal::Unspecified,
        );
        assert_eq!(write_fate(&unserved), WriteFate::NotApplied);
        assert_eq!(refusal(&unserved), None);
        // A quorum write short of its replicas: the ones that took it keep it.
        let short = with_detail(
            Code::Unavailable,
            WriteOutcome::Unknown,
            Refusal::Unspecified,
        );
        assert_eq!(write_fate(&short), WriteFate::Indeterminate);
        let exists = with_detail(
            Code::AlreadyExists,
            WriteOutcome::NotApplied,
            Refusal::Exists,
        );
        assert_eq!(refusal(&exists), Some(Refusal::Exists));
        assert_eq!(write_fate(&exists), WriteFate::NotApplied);
        // Details that are not an ErrorDetail leave the code to decide.
        let foreign = Status::with_details(Code::Unavailable, "x", vec![0xff, 0xff].into());
        assert_eq!(write_fate(&foreign), WriteFate::Indeterminate);
        assert_eq!(refusal(&foreign), None);
    }

    #[test]
    fn only_unavailable_reads_move_to_another_member() {
        assert!(read_retryable(&Status::unavailable("no leader")));
        assert!(!read_retryable(&Status::deadline_exceeded("slow")));
        assert!(!read_retryable(&Status::invalid_argument("bad")));
    }
}
