//! `quorate demo`: three members n1, n2, n3 as child processes on etcd's demo ports, data in
//! `./quorate-data` (kept across runs unless `--fresh`), until Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::process::{Child, Command};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Directory holding the three members' data.
    #[arg(long, default_value = "quorate-data")]
    pub data_dir: PathBuf,
    /// Wipe the data directory first.
    #[arg(long)]
    pub fresh: bool,
}

const MEMBERS: [(&str, u16); 3] = [("n1", 2379), ("n2", 22379), ("n3", 32379)];

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    if args.fresh && args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("wipe {}", args.data_dir.display()))?;
    }
    let exe = std::env::current_exe().context("find the quorate executable")?;
    let initial_cluster = MEMBERS
        .iter()
        .map(|(name, client)| format!("{name}=http://127.0.0.1:{}", client + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut children: Vec<Child> = Vec::new();
    for (name, client) in MEMBERS {
        let child = Command::new(&exe)
            .arg("node")
            .args(["--name", name])
            .arg("--data-dir")
            .arg(args.data_dir.join(name))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", client + 1),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", client + 1),
            ])
            .args([
                "--listen-metrics-urls",
                &format!("http://127.0.0.1:{}", client + 2),
            ])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", "new"])
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("start member {name}"))?;
        children.push(child);
    }
    let endpoints: Vec<String> = MEMBERS
        .iter()
        .map(|(_, c)| format!("127.0.0.1:{c}"))
        .collect();
    let leader = wait_for_leader(&endpoints, Duration::from_secs(30)).await;
    match leader {
        Ok(leader) => {
            println!("Quorate demo cluster is up: 3 members, leader {leader:x}.");
            println!("Connect with:");
            println!(
                "  etcdctl --endpoints={} put hello world",
                endpoints.join(",")
            );
            println!(
                "  cargo run --release -- --endpoints={} get hello",
                endpoints.join(",")
            );
            println!("Press Ctrl-C to stop.");
        }
        Err(error) => {
            stop(&mut children).await;
            return Err(error);
        }
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        exited = wait_any(&mut children) => eprintln!("a member exited: {exited}"),
    }
    stop(&mut children).await;
    println!("Stopped.");
    Ok(())
}

async fn wait_any(children: &mut [Child]) -> String {
    loop {
        for child in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                return status.to_string();
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_leader(endpoints: &[String], timeout: Duration) -> anyhow::Result<u64> {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        for endpoint in endpoints {
            if let Ok(mut client) =
                client::Client::connect(std::slice::from_ref(endpoint), Duration::from_secs(1))
                    .await
                && let Ok(status) = client.status().await
                && status.leader != 0
            {
                return Ok(status.leader);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("no leader elected within {timeout:?}")
}

async fn stop(children: &mut [Child]) {
    for child in children.iter() {
        if let Some(pid) = child.id() {
            // SIGTERM asks each member for a graceful shutdown.
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status();
        }
    }
    for child in children.iter_mut() {
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}
