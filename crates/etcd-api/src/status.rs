//! etcd errors to gRPC statuses: the codes and message strings etcd clients match on.

use base::EtcdError;
use base::error::ErrorCode;
use tonic::{Code, Status};

/// Returns the gRPC status etcd answers `error` with.
pub fn to_status(error: EtcdError) -> Status {
    let code = match error.code() {
        ErrorCode::InvalidArgument => Code::InvalidArgument,
        ErrorCode::OutOfRange => Code::OutOfRange,
        ErrorCode::NotFound => Code::NotFound,
        ErrorCode::Unavailable => Code::Unavailable,
        ErrorCode::FailedPrecondition => Code::FailedPrecondition,
        ErrorCode::ResourceExhausted => Code::ResourceExhausted,
        ErrorCode::DataLoss => Code::DataLoss,
        ErrorCode::Internal => Code::Internal,
    };
    Status::new(code, error.to_string())
}
