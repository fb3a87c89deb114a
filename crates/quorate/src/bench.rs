//! `quorate bench put`: a first load generator over the etcd v3 API (so it runs against etcd
//! too). Concurrent clients put random keys for a fixed duration; the report gives throughput
//! and latency percentiles. `quorate bench floor`: this machine's physical floor for one
//! durable write, one small fdatasync'd append plus one loopback round trip, so every report
//! states what it is measured against. The full bench (workloads, HDR histograms, comparison
//! with etcd) is the bench issue's.

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

#[derive(Args, Debug)]
pub struct FloorArgs {
    /// Samples of each measurement.
    #[arg(long, default_value_t = 500)]
    pub samples: usize,
    /// Directory on the disk to measure (put it where the data dirs live).
    #[arg(long, default_value = ".")]
    pub dir: std::path::PathBuf,
    /// Bytes appended before each fdatasync (about one small Raft entry).
    #[arg(long, default_value_t = 512)]
    pub append_size: usize,
}

/// Latencies of `samples` appends of `size` bytes to a scratch file in `dir`, each followed
/// by fdatasync (the file is removed afterwards).
fn fdatasync_latencies(
    dir: &std::path::Path,
    samples: usize,
    size: usize,
) -> anyhow::Result<Vec<Duration>> {
    use std::io::Write;
    let path = dir.join(format!(".quorate-bench-floor-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)?;
    let block = vec![0x5a_u8; size];
    let mut latencies = Vec::with_capacity(samples);
    let measured = (|| -> anyhow::Result<()> {
        for _ in 0..samples {
            let start = Instant::now();
            file.write_all(&block)?;
            file.sync_data()?;
            latencies.push(start.elapsed());
        }
        Ok(())
    })();
    drop(file);
    std::fs::remove_file(&path)?;
    measured?;
    Ok(latencies)
}

/// Latencies of `samples` 64-byte request/echo round trips over one loopback TCP connection
/// with Nagle off (as the members' connections).
fn loopback_latencies(samples: usize) -> anyhow::Result<Vec<Duration>> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut buffer = [0u8; 64];
        loop {
            match stream.read_exact(&mut buffer) {
                Ok(()) => stream.write_all(&buffer)?,
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    });
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_nodelay(true)?;
    let message = [0x42_u8; 64];
    let mut answer = [0u8; 64];
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        stream.write_all(&message)?;
        stream.read_exact(&mut answer)?;
        latencies.push(start.elapsed());
    }
    drop(stream);
    echo.join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    Ok(latencies)
}

/// `quorate bench floor`: prints one JSON line with fdatasync and loopback round-trip
/// percentiles (microseconds) and their sum at p50, the floor of a 1-client durable put.
pub fn floor(args: FloorArgs) -> anyhow::Result<()> {
    let samples = args.samples.max(1);
    let mut sync = fdatasync_latencies(&args.dir, samples, args.append_size)?;
    let mut rtt = loopback_latencies(samples)?;
    sync.sort_unstable();
    rtt.sort_unstable();
    let us = |d: Duration| (d.as_secs_f64() * 1e6 * 10.0).round() / 10.0;
    println!(
        "{}",
        json!({
            "workload": "floor", "samples": samples, "append_size": args.append_size,
            "dir": args.dir.display().to_string(),
            "fdatasync_p50_us": us(quantile(&sync, 0.5)), "fdatasync_p99_us": us(quantile(&sync, 0.99)),
            "fdatasync_max_us": us(*sync.last().expect("samples")),
            "loopback_rtt_p50_us": us(quantile(&rtt, 0.5)), "loopback_rtt_p99_us": us(quantile(&rtt, 0.99)),
            "floor_p50_us": us(quantile(&sync, 0.5) + quantile(&rtt, 0.5)),
        })
    );
    Ok(())
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
