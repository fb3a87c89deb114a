//! `quorate bench floor`: this machine's physical floor for one durable write, one small
//! fdatasync'd append plus one loopback round trip, so every bench report states what it is
//! measured against. It touches only a scratch file it removes and a loopback socket.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::error::BenchError;
use crate::stats::Recorder;

/// What `floor` measures.
#[derive(Clone, Debug)]
pub struct FloorOptions {
    /// Samples of each measurement.
    pub samples: usize,
    /// Directory on the disk to measure (put it where the data dirs live).
    pub dir: std::path::PathBuf,
    /// Bytes appended before each fdatasync (about one small Raft entry).
    pub append_size: usize,
}

/// Latencies of `samples` appends of `size` bytes to a scratch file in `dir`, each followed
/// by fdatasync (the file is removed afterwards).
fn fdatasync_latencies(
    dir: &std::path::Path,
    samples: usize,
    size: usize,
) -> std::io::Result<Vec<Duration>> {
    use std::io::Write;
    let path = dir.join(format!(".quorate-bench-floor-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)?;
    let block = vec![0x5a_u8; size];
    let mut latencies = Vec::with_capacity(samples);
    let measured = (|| -> std::io::Result<()> {
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
fn loopback_latencies(samples: usize) -> std::io::Result<Vec<Duration>> {
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
        .map_err(|_| std::io::Error::other("the echo thread panicked"))??;
    Ok(latencies)
}

/// `quorate bench floor`: prints one JSON line with fdatasync and loopback round-trip
/// percentiles (microseconds) and their sum at p50, the floor of a 1-client durable put.
pub fn floor(args: FloorOptions) -> Result<(), BenchError> {
    let samples = args.samples.max(1);
    let histogram = |latencies: Vec<Duration>| {
        let mut recorder = Recorder::new();
        for latency in latencies {
            recorder.record(latency, Duration::ZERO);
        }
        recorder
    };
    let sync = histogram(
        fdatasync_latencies(&args.dir, samples, args.append_size).map_err(BenchError::Floor)?,
    );
    let rtt = histogram(loopback_latencies(samples).map_err(BenchError::Floor)?);
    let us = |d: Duration| d.as_micros() as u64;
    println!(
        "{}",
        json!({
            "workload": "floor", "samples": samples, "append_size": args.append_size,
            "dir": args.dir.display().to_string(),
            "fdatasync_p50_us": us(sync.quantile(0.5)), "fdatasync_p99_us": us(sync.quantile(0.99)),
            "fdatasync_max_us": us(sync.quantile(1.0)),
            "loopback_rtt_p50_us": us(rtt.quantile(0.5)), "loopback_rtt_p99_us": us(rtt.quantile(0.99)),
            "floor_p50_us": us(sync.quantile(0.5) + rtt.quantile(0.5)),
        })
    );
    Ok(())
}
