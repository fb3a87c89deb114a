//! What a failed call means for the data, the same for every caller: a read has no effect, so
//! its failure is certain; a write's failure is certain only when the member refused it before
//! proposing it. Any other failure (a deadline, a lost connection, a leader change) may hide a
//! committed write: it is indeterminate, never retried blindly, and the tester records it as
//! unknown (`info`).

use tonic::{Code, Status};

/// What a failed write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteFate {
    /// Refused before it was proposed: it certainly had no effect.
    NotApplied,
    /// It may or may not have been applied.
    Indeterminate,
}

/// The fate of a write that failed with `status`.
pub fn write_fate(status: &Status) -> WriteFate {
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

    #[test]
    fn only_unavailable_reads_move_to_another_member() {
        assert!(read_retryable(&Status::unavailable("no leader")));
        assert!(!read_retryable(&Status::deadline_exceeded("slow")));
        assert!(!read_retryable(&Status::invalid_argument("bad")));
    }
}
