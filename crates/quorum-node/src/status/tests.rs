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
