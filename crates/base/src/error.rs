//! The etcd error catalogue. etcd clients match on the exact message strings and gRPC codes, so
//! these are part of the wire contract; the mapping to a gRPC status lives in `etcd-api`.

/// An error an etcd client can receive, with etcd's exact message in `Display`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: no leader")]
    NoLeader,
    #[error("etcdserver: not leader")]
    NotLeader,
    #[error("etcdserver: request timed out")]
    Timeout,
    #[error("etcdserver: server stopped")]
    Stopped,
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    #[error("etcdserver: member not found")]
    MemberNotFound,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner,
    #[error("etcdserver: corrupt cluster")]
    Corrupt,
    /// A fault inside this member (storage, codec); the message says which.
    #[error("etcdserver: {0}")]
    Internal(String),
}

/// The gRPC status code etcd uses for each error (numbers as in `google.rpc.Code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidArgument,
    OutOfRange,
    NotFound,
    Unavailable,
    FailedPrecondition,
    ResourceExhausted,
    DataLoss,
    Internal,
}

impl EtcdError {
    /// Returns the gRPC code etcd answers this error with.
    pub fn code(&self) -> ErrorCode {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | RequestTooLarge => ErrorCode::InvalidArgument,
            Compacted | FutureRevision => ErrorCode::OutOfRange,
            LeaseNotFound | MemberNotFound => ErrorCode::NotFound,
            LeaseExists => ErrorCode::FailedPrecondition,
            LeaseTtlTooLarge => ErrorCode::OutOfRange,
            NoLeader
            | Timeout
            | Stopped
            | LeaderTransferTimeout
            | NotSupportedForLearner
            | Unhealthy => ErrorCode::Unavailable,
            NotLeader
            | PeerUrlExists
            | MemberNotLearner
            | LearnerNotReady
            | BadLeaderTransferee
            | NotEnoughStartedMembers => ErrorCode::FailedPrecondition,
            TooManyRequests | NoSpace => ErrorCode::ResourceExhausted,
            Corrupt => ErrorCode::DataLoss,
            Internal(_) => ErrorCode::Internal,
        }
    }
}

impl EtcdError {
    /// Parses an error from its `Display` form, as carried in a forwarded reply. Unknown
    /// messages become `Internal` with the text kept.
    pub fn from_message(message: &str) -> EtcdError {
        use EtcdError::*;
        let known = [
            EmptyKey,
            KeyNotFound,
            ValueProvided,
            LeaseProvided,
            TooManyOps,
            DuplicateKey,
            RequestTooLarge,
            Compacted,
            FutureRevision,
            LeaseNotFound,
            LeaseExists,
            LeaseTtlTooLarge,
            NoSpace,
            NoLeader,
            NotLeader,
            Timeout,
            Stopped,
            TooManyRequests,
            MemberNotFound,
            PeerUrlExists,
            MemberNotLearner,
            LearnerNotReady,
            NotEnoughStartedMembers,
            Unhealthy,
            BadLeaderTransferee,
            LeaderTransferTimeout,
            NotSupportedForLearner,
            Corrupt,
        ];
        known
            .into_iter()
            .find(|error| error.to_string() == message)
            .unwrap_or_else(|| {
                Internal(
                    message
                        .strip_prefix("etcdserver: ")
                        .unwrap_or(message)
                        .to_string(),
                )
            })
    }
}
