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
            QuorumError::BucketExists("bucket \"users\" already exists".into()),
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
