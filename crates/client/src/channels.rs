//! How every caller of Quorate (the CLI, the tester, the bench) reaches a member: endpoints
//! given as etcdctl takes them (`host:port` or a URL), a bounded connect, and one deadline per
//! call unless the channel carries streams. The policy lives here so the three agree on it.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::ClientError;

/// How long a connection attempt may take before the endpoint counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The connect bound of lazily connected channels, whose callers pick another member soon.
const LAZY_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The endpoint a caller that named none talks to, as etcdctl does.
pub const DEFAULT_ENDPOINT: &str = "127.0.0.1:2379";

/// Returns `endpoint` with a scheme, as etcdctl accepts bare `host:port`.
pub fn with_scheme(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    }
}

fn endpoint(endpoint: &str) -> Result<Endpoint, ClientError> {
    let uri = with_scheme(endpoint);
    Endpoint::from_shared(uri.clone()).map_err(|e| ClientError::BadEndpoint {
        endpoint: uri,
        reason: e.to_string(),
    })
}

/// Connects to `endpoint`; every call on the channel gets `call_timeout` when one is given
/// (streams and calls that wait, such as Lock or Campaign, take none).
pub async fn connect(
    to: &str,
    connect_timeout: Duration,
    call_timeout: Option<Duration>,
) -> Result<Channel, ClientError> {
    let mut config = endpoint(to)?
        .tcp_nodelay(true)
        .connect_timeout(connect_timeout);
    if let Some(timeout) = call_timeout {
        config = config.timeout(timeout);
    }
    config
        .connect()
        .await
        .map_err(|e| ClientError::Unreachable(format!("{}: {e}", with_scheme(to))))
}

/// A channel to `endpoint` that connects on its first call (and again after it broke), each
/// call bounded by `call_timeout` when one is given (streams take none): for callers that
/// record every attempt as it happened and move to another member themselves, as the
/// tester's clients do.
pub fn lazy(to: &str, call_timeout: Option<Duration>) -> Result<Channel, ClientError> {
    let mut config = endpoint(to)?
        .tcp_nodelay(true)
        .connect_timeout(LAZY_CONNECT_TIMEOUT);
    if let Some(timeout) = call_timeout {
        config = config.timeout(timeout);
    }
    Ok(config.connect_lazy())
}

/// Opens `conns` connections spread over `endpoints` in turn (the default endpoint when none
/// is given), without a per-call deadline: a load generator measures latency itself.
pub async fn pool(endpoints: &[String], conns: usize) -> Result<Vec<Channel>, ClientError> {
    let default = [DEFAULT_ENDPOINT.to_string()];
    let endpoints = if endpoints.is_empty() {
        &default[..]
    } else {
        endpoints
    };
    let mut channels = Vec::with_capacity(conns.max(1));
    for i in 0..conns.max(1) {
        channels.push(connect(&endpoints[i % endpoints.len()], CONNECT_TIMEOUT, None).await?);
    }
    Ok(channels)
}
