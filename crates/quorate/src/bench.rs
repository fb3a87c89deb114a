//! `quorate bench put`: a first load generator over the etcd v3 API (so it runs against etcd
//! too). Concurrent clients put random keys for a fixed duration; the report gives throughput
//! and latency percentiles. The full bench (workloads, HDR histograms, comparison with etcd)
//! is the bench issue's.

use std::time::{Duration, Instant};

use clap::Args;
use proto::etcdserverpb::PutRequest;
use proto::etcdserverpb::kv_client::KvClient;
use serde_json::json;

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Concurrent clients (each one request at a time).
    #[arg(long, default_value_t = 1)]
    pub clients: usize,
    /// gRPC connections shared by the clients.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Distinct keys written.
    #[arg(long, default_value_t = 10_000)]
    pub key_space: u64,
}

/// Returns the `q`-quantile (0..=1) of sorted latencies.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub async fn run(endpoints: &[String], args: BenchArgs) -> anyhow::Result<()> {
    let endpoint = endpoints
        .first()
        .map(String::as_str)
        .unwrap_or("127.0.0.1:2379");
    let uri = if endpoint.contains("://") {
        endpoint.to_string()
    } else {
        format!("http://{endpoint}")
    };
    let mut channels = Vec::new();
    for _ in 0..args.conns.max(1) {
        channels.push(
            tonic::transport::Endpoint::from_shared(uri.clone())?
                .tcp_nodelay(true)
                .connect()
                .await?,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let mut tasks = tokio::task::JoinSet::new();
    for client_index in 0..args.clients.max(1) {
        let mut kv = KvClient::new(channels[client_index % channels.len()].clone());
        let value = vec![b'v'; args.value_size];
        let key_space = args.key_space.max(1);
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut i = client_index as u64;
            while Instant::now() < deadline {
                let key =
                    format!("bench/{:08}", i.wrapping_mul(2_654_435_761) % key_space).into_bytes();
                i += 1;
                let request = PutRequest {
                    key,
                    value: value.clone(),
                    ..Default::default()
                };
                let start = Instant::now();
                match kv.put(request).await {
                    Ok(_) => latencies.push(start.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(joined) = tasks.join_next().await {
        let (mut part, part_errors) = joined?;
        latencies.append(&mut part);
        errors += part_errors;
    }
    latencies.sort_unstable();
    let seconds = args.duration.max(1) as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{}",
        json!({
            "workload": "put", "clients": args.clients, "conns": args.conns, "value_size": args.value_size,
            "ops": latencies.len(), "errors": errors,
            "ops_per_sec": (latencies.len() as f64 / seconds).round(),
            "p50_ms": ms(quantile(&latencies, 0.50)), "p90_ms": ms(quantile(&latencies, 0.90)),
            "p99_ms": ms(quantile(&latencies, 0.99)), "max_ms": ms(latencies.last().copied().unwrap_or_default()),
        })
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_picks_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&sorted, 0.5), Duration::from_millis(51));
        assert_eq!(quantile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&sorted, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
