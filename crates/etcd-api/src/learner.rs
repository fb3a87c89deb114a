//! The learner gate: a learner is an asynchronous read replica, so like etcd's it answers only
//! what it can answer from its own state without a quorum — Status, serializable Range (the KV
//! service checks the flag), MemberList, Hash and HashKV — and refuses everything else with
//! etcd's `rpc not supported for learner` (code Unavailable, so clients move to another
//! endpoint). New RPCs are refused on learners unless listed here.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use consensus::Replica;
use futures::future::{Either, Ready, ready};

/// The gRPC methods a learner serves (KV/Range only when serializable).
const SERVED_BY_LEARNERS: &[&str] = &[
    "/etcdserverpb.Maintenance/Status",
    "/etcdserverpb.Maintenance/Hash",
    "/etcdserverpb.Maintenance/HashKV",
    "/etcdserverpb.Cluster/MemberList",
    "/etcdserverpb.KV/Range",
];

/// Puts the learner gate in front of each client-facing service of a member.
#[derive(Clone)]
pub struct LearnerGates {
    replica: Arc<Replica>,
}

impl LearnerGates {
    pub fn new(replica: Arc<Replica>) -> LearnerGates {
        LearnerGates { replica }
    }

    /// Wraps one service (tonic's `add_service` takes named services one by one).
    pub fn wrap<S>(&self, inner: S) -> LearnerGate<S> {
        LearnerGate {
            inner,
            replica: self.replica.clone(),
        }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for LearnerGate<S> {
    const NAME: &'static str = S::NAME;
}

/// The gate's service (see the module documentation).
#[derive(Clone)]
pub struct LearnerGate<S> {
    inner: S,
    replica: Arc<Replica>,
}

impl<S, RequestBody, ResponseBody> tower_service::Service<http::Request<RequestBody>>
    for LearnerGate<S>
where
    S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    ResponseBody: Default,
{
    type Response = http::Response<ResponseBody>;
    type Error = S::Error;
    type Future = Either<Ready<Result<Self::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        if self.replica.is_learner() && !SERVED_BY_LEARNERS.contains(&request.uri().path()) {
            let status = crate::to_status(base::EtcdError::NotSupportedForLearner);
            return Either::Left(ready(Ok(status.into_http())));
        }
        Either::Right(self.inner.call(request))
    }
}
