//! The replica error survives the trip through a gRPC status: typed faults by their details,
//! the rest by their code.

use super::*;

#[test]
fn every_replica_error_comes_back_as_it_was_sent() {
    let errors = [
        ReplicaError::StaleEpoch {
            placed: 3,
            current: 4,
        },
        ReplicaError::Corrupt("checksum mismatch".into()),
        ReplicaError::Storage("disk full".into()),
        ReplicaError::Timeout,
    ];
    for error in errors {
        let status = of_replica_error(&error);
        assert_eq!(to_replica_error(&status), error, "{status:?}");
    }
    let status = of_replica_error(&ReplicaError::StaleEpoch {
        placed: 3,
        current: 4,
    });
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.message(),
        "stale ring epoch: the call was placed at epoch 3, this member is at 4"
    );
}

#[test]
fn a_status_without_details_is_judged_by_its_code_not_its_text() {
    // A message that merely looks like a stale epoch is not one.
    let lookalike = Status::failed_precondition("stale ring epoch: forged");
    assert_eq!(
        to_replica_error(&lookalike),
        ReplicaError::Failed("stale ring epoch: forged".into())
    );
    let refused = Status::unavailable("tcp connect error");
    assert_eq!(
        to_replica_error(&refused),
        ReplicaError::Unreachable("tcp connect error".into())
    );
    assert_eq!(
        to_replica_error(&Status::deadline_exceeded("Timeout expired")),
        ReplicaError::Timeout
    );
}

#[test]
fn a_request_error_becomes_the_status_its_kind_calls_for() {
    let cases = [
        (QuorumError::KeyEmpty, Code::InvalidArgument, "key is empty"),
        (
            QuorumError::NoBucket("users".into()),
            Code::NotFound,
            "bucket \"users\" not found",
        ),
        (
            QuorumError::NoRing,
            Code::FailedPrecondition,
            "the cluster has no token ring yet",
        ),
        (
            QuorumError::Refused {
                kind: proto::quorate::v1::Refusal::Exists,
                message: "bucket \"users\" already exists".into(),
            },
            Code::AlreadyExists,
            "bucket \"users\" already exists",
        ),
        (
            QuorumError::NotEnough(quorum::NotEnoughReplicas {
                required: 2,
                answered: 1,
                replicas: 3,
                failures: vec![(base::NodeId(2), ReplicaError::Timeout)],
            }),
            Code::Unavailable,
            "not enough replicas: 1 of 3 answered, 2 required (2: no answer in time)",
        ),
        (
            QuorumError::Internal("stored ring: empty".into()),
            Code::Internal,
            "stored ring: empty",
        ),
    ];
    for (error, code, message) in cases {
        let status = Status::from(error);
        assert_eq!((status.code(), status.message()), (code, message));
    }
}

#[test]
fn a_client_status_says_what_a_failed_write_did_and_why_the_metadata_refused() {
    // Goal: the typed ErrorDetail every quorate.v1 error carries: a write short of its
    // replicas is of unknown outcome (the replicas that took it keep it), a refusal is
    // certain and names its kind. Method: decode the details of each kind's status.
    use proto::quorate::v1::{ErrorDetail, Refusal, WriteOutcome};
    let detail = |error: QuorumError| {
        let status = Status::from(error);
        let detail = ErrorDetail::decode(status.details()).expect("an ErrorDetail");
        (status.code(), detail.outcome(), detail.refusal())
    };
    let short = QuorumError::NotEnough(quorum::NotEnoughReplicas {
        required: 2,
        answered: 1,
        replicas: 3,
        failures: vec![],
    });
    assert_eq!(
        detail(short),
        (
            Code::Unavailable,
            WriteOutcome::Unknown,
            Refusal::Unspecified
        )
    );
    let exists = QuorumError::refused(Refusal::Exists as i32, "exists".into());
    assert_eq!(
        detail(exists),
        (
            Code::AlreadyExists,
            WriteOutcome::NotApplied,
            Refusal::Exists
        )
    );
    let gone = QuorumError::refused(Refusal::NotFound as i32, "bucket \"b\" not found".into());
    assert_eq!(
        detail(gone),
        (Code::NotFound, WriteOutcome::NotApplied, Refusal::NotFound)
    );
    assert_eq!(
        detail(QuorumError::KeyEmpty),
        (
            Code::InvalidArgument,
            WriteOutcome::NotApplied,
            Refusal::Unspecified
        )
    );
}
