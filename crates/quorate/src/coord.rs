//! Client commands for coordination and maintenance, printed as etcdctl prints them:
//! `compaction`, `lease …`, `lock`, `elect`, `endpoint hashkv`, `snapshot save`. Holding
//! commands (`lock`, `elect`, `lease keep-alive`) keep their lease alive until Ctrl-C or until
//! the command they run exits, then release it.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use client::Client;
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::maintenance_client::MaintenanceClient;
use proto::etcdserverpb::*;
use proto::v3electionpb::election_client::ElectionClient;
use proto::v3electionpb::{CampaignRequest, LeaderRequest, ResignRequest};
use proto::v3lockpb::lock_client::LockClient;
use proto::v3lockpb::{LockRequest, UnlockRequest};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Grant a lease with a TTL in seconds.
    Grant { ttl: i64 },
    /// Revoke a lease (deleting its keys).
    Revoke { id: String },
    /// Show a lease's remaining TTL (and keys with --keys).
    Timetolive {
        id: String,
        #[arg(long)]
        keys: bool,
    },
    /// List every lease.
    List,
    /// Keep a lease alive until Ctrl-C (or once with --once).
    KeepAlive {
        id: String,
        #[arg(long)]
        once: bool,
    },
}

fn parse_lease_id(text: &str) -> anyhow::Result<i64> {
    let digits = text.trim_start_matches("0x");
    let id = u64::from_str_radix(digits, 16)
        .with_context(|| format!("lease id {text:?} is not hexadecimal"))?;
    Ok(id as i64)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `quorate compaction REV`.
pub async fn compaction(client: &mut Client, revision: i64, json_out: bool) -> anyhow::Result<()> {
    let request = CompactionRequest {
        revision,
        physical: false,
    };
    let response = proto::etcdserverpb::kv_client::KvClient::new(client.channel())
        .compact(request)
        .await?
        .into_inner();
    if json_out {
        let current = response.header.map_or(0, |h| h.revision);
        println!("{}", json!({"compacted": revision, "revision": current}));
    } else {
        println!("compacted revision {revision}");
    }
    Ok(())
}

/// `quorate lease …`.
pub async fn lease(
    client: &mut Client,
    command: LeaseCommand,
    json_out: bool,
) -> anyhow::Result<()> {
    let mut leases = LeaseClient::new(client.channel());
    match command {
        LeaseCommand::Grant { ttl } => {
            let response = leases
                .lease_grant(LeaseGrantRequest { ttl, id: 0 })
                .await?
                .into_inner();
            if json_out {
                println!(
                    "{}",
                    json!({"id": format!("{:x}", response.id), "ttl": response.ttl})
                );
            } else {
                println!(
                    "lease {:x} granted with TTL({}s)",
                    response.id, response.ttl
                );
            }
        }
        LeaseCommand::Revoke { id } => {
            let id = parse_lease_id(&id)?;
            leases.lease_revoke(LeaseRevokeRequest { id }).await?;
            println!("lease {id:x} revoked");
        }
        LeaseCommand::Timetolive { id, keys } => {
            let id = parse_lease_id(&id)?;
            let response = leases
                .lease_time_to_live(LeaseTimeToLiveRequest { id, keys })
                .await?
                .into_inner();
            if json_out {
                let keys: Vec<String> = response.keys.iter().map(|k| text(k)).collect();
                println!(
                    "{}",
                    json!({"id": format!("{id:x}"), "ttl": response.ttl, "granted_ttl": response.granted_ttl, "keys": keys})
                );
            } else if response.ttl == -1 {
                println!("lease {id:x} already expired");
            } else {
                let mut line = format!(
                    "lease {id:x} granted with TTL({}s), remaining({}s)",
                    response.granted_ttl, response.ttl
                );
                if keys {
                    let keys: Vec<String> = response.keys.iter().map(|k| text(k)).collect();
                    line.push_str(&format!(", attached keys([{}])", keys.join(" ")));
                }
                println!("{line}");
            }
        }
        LeaseCommand::List => {
            let response = leases
                .lease_leases(LeaseLeasesRequest {})
                .await?
                .into_inner();
            if json_out {
                let ids: Vec<String> = response
                    .leases
                    .iter()
                    .map(|l| format!("{:x}", l.id))
                    .collect();
                println!("{}", json!({"leases": ids}));
            } else {
                println!("found {} leases", response.leases.len());
                for lease in response.leases {
                    println!("{:x}", lease.id);
                }
            }
        }
        LeaseCommand::KeepAlive { id, once } => {
            let id = parse_lease_id(&id)?;
            let channel = client.stream_channel().await?;
            let (tx, mut answers) = keep_alive(channel, id).await?;
            loop {
                let Some(answer) = answers.message().await? else {
                    bail!("keep-alive stream ended");
                };
                if answer.ttl <= 0 {
                    bail!("lease {id:x} expired or revoked");
                }
                println!("lease {id:x} keepalived with TTL({})", answer.ttl);
                if once {
                    return Ok(());
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs((answer.ttl as u64 / 3).max(1))) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
                tx.send(LeaseKeepAliveRequest { id }).await?;
            }
        }
    }
    Ok(())
}

/// Opens a keep-alive stream and sends the first renewal.
async fn keep_alive(
    channel: tonic::transport::Channel,
    id: i64,
) -> anyhow::Result<(
    mpsc::Sender<LeaseKeepAliveRequest>,
    tonic::Streaming<LeaseKeepAliveResponse>,
)> {
    let (tx, rx) = mpsc::channel(4);
    tx.send(LeaseKeepAliveRequest { id }).await?;
    let answers = LeaseClient::new(channel)
        .lease_keep_alive(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((tx, answers))
}

/// A lease granted for a holding command and kept alive in the background until dropped.
struct Session {
    id: i64,
    keeper: tokio::task::JoinHandle<()>,
}

impl Session {
    async fn start(client: &Client, ttl: i64) -> anyhow::Result<Session> {
        let channel = client.stream_channel().await?;
        let granted = LeaseClient::new(channel.clone())
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await?
            .into_inner();
        let id = granted.id;
        let period = Duration::from_millis((granted.ttl as u64 * 1000 / 3).max(200));
        let keeper = tokio::spawn(async move {
            let Ok((tx, mut answers)) = keep_alive(channel, id).await else {
                return;
            };
            loop {
                match answers.message().await {
                    Ok(Some(answer)) if answer.ttl > 0 => {}
                    _ => {
                        eprintln!("session lease {id:x} lost");
                        return;
                    }
                }
                tokio::time::sleep(period).await;
                if tx.send(LeaseKeepAliveRequest { id }).await.is_err() {
                    return;
                }
            }
        });
        Ok(Session { id, keeper })
    }

    async fn close(self, client: &Client) {
        self.keeper.abort();
        let _ = LeaseClient::new(client.channel())
            .lease_revoke(LeaseRevokeRequest { id: self.id })
            .await;
    }
}

/// Waits for Ctrl-C or, when `command` is given, runs it and returns its success.
async fn hold(command: &[String], env: &[(&str, String)]) -> anyhow::Result<bool> {
    if command.is_empty() {
        tokio::signal::ctrl_c().await?;
        return Ok(true);
    }
    let status = tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .envs(env.iter().map(|(k, v)| (*k, v.clone())))
        .status()
        .await
        .with_context(|| format!("run {:?}", command[0]))?;
    Ok(status.success())
}

/// `quorate lock NAME [-- COMMAND…]`: prints the lock key, then holds the lock until Ctrl-C or
/// while COMMAND runs (with `QUORATE_LOCK_KEY` and `QUORATE_LOCK_TOKEN`, the fencing token,
/// in its environment).
pub async fn lock(
    client: &mut Client,
    name: String,
    ttl: i64,
    command: Vec<String>,
) -> anyhow::Result<()> {
    let session = Session::start(client, ttl).await?;
    let channel = client.stream_channel().await?;
    let held = LockClient::new(channel)
        .lock(LockRequest {
            name: name.into_bytes(),
            lease: session.id,
        })
        .await;
    let held = match held {
        Ok(held) => held.into_inner(),
        Err(status) => {
            session.close(client).await;
            return Err(status.into());
        }
    };
    let key = held.key;
    let token = client
        .range(RangeRequest {
            key: key.clone(),
            ..Default::default()
        })
        .await?
        .kvs
        .first()
        .map_or(0, |kv| kv.create_revision);
    if command.is_empty() {
        println!("{}", text(&key));
    }
    let env = [
        ("QUORATE_LOCK_KEY", text(&key)),
        ("QUORATE_LOCK_TOKEN", token.to_string()),
    ];
    let ok = hold(&command, &env).await;
    let _ = LockClient::new(client.channel())
        .unlock(UnlockRequest { key })
        .await;
    session.close(client).await;
    if !ok? {
        bail!("the command run under the lock failed");
    }
    Ok(())
}

/// `quorate elect NAME [PROPOSAL]`: campaigns with PROPOSAL and prints the leader key and value
/// once elected, holding leadership until Ctrl-C; with `--listen`, prints each leader value.
pub async fn elect(
    client: &mut Client,
    name: String,
    proposal: Option<String>,
    listen: bool,
    ttl: i64,
) -> anyhow::Result<()> {
    let channel = client.stream_channel().await?;
    let mut elections = ElectionClient::new(channel);
    if listen {
        let mut leaders = elections
            .observe(LeaderRequest {
                name: name.into_bytes(),
            })
            .await?
            .into_inner();
        while let Some(leader) = leaders.message().await? {
            if let Some(kv) = leader.kv {
                println!("{}\n{}", text(&kv.key), text(&kv.value));
            }
        }
        return Ok(());
    }
    let Some(proposal) = proposal else {
        bail!("elect needs a PROPOSAL to campaign with, or --listen");
    };
    let session = Session::start(client, ttl).await?;
    let campaign = elections
        .campaign(CampaignRequest {
            name: name.into_bytes(),
            lease: session.id,
            value: proposal.clone().into_bytes(),
        })
        .await;
    let leader = match campaign {
        Ok(response) => response.into_inner().leader,
        Err(status) => {
            session.close(client).await;
            return Err(status.into());
        }
    };
    if let Some(leader) = &leader {
        println!("{}\n{}", text(&leader.key), proposal);
    }
    let _ = tokio::signal::ctrl_c().await;
    let _ = elections.resign(ResignRequest { leader }).await;
    session.close(client).await;
    Ok(())
}

/// Asks every endpoint in turn with `ask`, then prints the rows as one JSON array or one
/// `line` each; endpoints that fail are reported on stderr and make the command fail.
pub async fn per_endpoint(
    endpoints: &[String],
    timeout: Duration,
    json_out: bool,
    ask: impl AsyncFn(Client, &str) -> anyhow::Result<serde_json::Value>,
    line: impl Fn(&serde_json::Value) -> String,
) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut failed = false;
    for (endpoint, client) in Client::each(endpoints, timeout).await {
        let answer = match client {
            Ok(client) => ask(client, &endpoint).await,
            Err(error) => Err(error.into()),
        };
        match answer {
            Ok(row) => rows.push(row),
            Err(error) => {
                failed = true;
                eprintln!("{endpoint}: {error:#}");
            }
        }
    }
    if json_out {
        println!("{}", serde_json::Value::Array(rows));
    } else {
        for row in &rows {
            println!("{}", line(row));
        }
    }
    if failed {
        bail!("some endpoints did not answer");
    }
    Ok(())
}

/// `quorate endpoint hashkv [--rev N]`: one line per endpoint.
pub async fn endpoint_hashkv(
    endpoints: &[String],
    timeout: Duration,
    revision: i64,
    json_out: bool,
) -> anyhow::Result<()> {
    let ask = async |client: Client, endpoint: &str| -> anyhow::Result<serde_json::Value> {
        let response = MaintenanceClient::new(client.channel())
            .hash_kv(HashKvRequest { revision })
            .await?
            .into_inner();
        Ok(json!({"endpoint": endpoint, "hash": response.hash,
            "compact_revision": response.compact_revision, "hash_revision": response.hash_revision}))
    };
    let line = |row: &serde_json::Value| {
        format!(
            "{}, {}",
            row["endpoint"].as_str().unwrap_or(""),
            row["hash"]
        )
    };
    per_endpoint(endpoints, timeout, json_out, ask, line).await
}

/// `quorate move-leader ID`: finds the leader among the endpoints (MoveLeader must be sent to
/// it) and asks it to hand leadership to member ID; printed as etcdctl prints it.
pub async fn move_leader(endpoints: &[String], timeout: Duration, to: u64) -> anyhow::Result<()> {
    for (endpoint, client) in Client::each(endpoints, timeout).await {
        let Ok(mut client) = client else { continue };
        let Ok(status) = client.status().await else {
            continue;
        };
        let member = status.header.map_or(0, |h| h.member_id);
        if status.leader == 0 || status.leader != member {
            continue;
        }
        MaintenanceClient::new(client.channel())
            .move_leader(MoveLeaderRequest { target_id: to })
            .await
            .with_context(|| format!("move leader at {endpoint}"))?;
        println!("Leadership transferred from {member:x} to {to:x}");
        return Ok(());
    }
    bail!("no leader endpoint given at {endpoints:?}")
}

/// `quorate snapshot save FILE`: streams a member's state to FILE (written whole, fsync'd,
/// then renamed into place).
pub async fn snapshot_save(client: &mut Client, path: PathBuf) -> anyhow::Result<()> {
    use std::io::Write;
    let channel = client.stream_channel().await?;
    let mut stream = MaintenanceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .snapshot(SnapshotRequest {})
        .await?
        .into_inner();
    let partial = path.with_extension("part");
    let mut file =
        std::fs::File::create(&partial).with_context(|| format!("create {}", partial.display()))?;
    let mut total = 0u64;
    let mut remaining = u64::MAX;
    let mut revision = 0;
    while let Some(part) = stream.message().await? {
        file.write_all(&part.blob)?;
        total += part.blob.len() as u64;
        remaining = part.remaining_bytes;
        revision = part.header.map_or(revision, |h| h.revision);
    }
    if remaining != 0 {
        bail!("snapshot stream ended with {remaining} bytes missing");
    }
    file.sync_all()?;
    drop(file);
    let saved = std::fs::read(&partial)?;
    if let Err(error) = node::verify_snapshot(&saved) {
        let _ = std::fs::remove_file(&partial);
        bail!("{error}");
    }
    std::fs::rename(&partial, &path)?;
    println!(
        "Snapshot saved at {} ({total} bytes, revision {revision})",
        path.display()
    );
    Ok(())
}

/// Reads and verifies a saved snapshot file.
fn read_snapshot(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let file = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let body = node::verify_snapshot(&file).with_context(|| format!("{}", path.display()))?;
    Ok(body.to_vec())
}

fn summary_json(summary: &node::SnapshotSummary, size: usize) -> serde_json::Value {
    json!({"hash": summary.hash, "revision": summary.revision,
        "compact_revision": summary.compacted_revision, "total_keys": summary.keys,
        "records": summary.records, "total_size": size})
}

/// `quorate snapshot status FILE`: `hash, revision, total keys, total size` as etcdctl's, the
/// hash being HashKV at the snapshot's revision (compare with `endpoint hashkv --rev`).
pub fn snapshot_status(path: &std::path::Path, json_out: bool) -> anyhow::Result<()> {
    let body = read_snapshot(path)?;
    let summary = node::inspect_snapshot(&body)?;
    if json_out {
        println!("{}", summary_json(&summary, body.len()));
    } else {
        println!(
            "{}, {}, {}, {}",
            summary.hash,
            summary.revision,
            summary.keys,
            body.len()
        );
    }
    Ok(())
}

/// Flags of `quorate snapshot restore` (names as etcdctl's).
#[derive(clap::Args, Debug)]
pub struct RestoreArgs {
    /// The snapshot file (from `snapshot save`).
    pub file: PathBuf,
    /// The member this data dir is for.
    #[arg(long)]
    pub name: String,
    /// Where to write it (must not exist or be empty); default NAME.quorate.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Every member of the new cluster as name=peer_url, comma-separated.
    #[arg(long)]
    pub initial_cluster: String,
    #[arg(long, default_value = "quorate-cluster")]
    pub initial_cluster_token: String,
    /// This member's peer URL; checked against --initial-cluster when given.
    #[arg(long)]
    pub initial_advertise_peer_urls: Option<String>,
}

/// `quorate snapshot restore FILE --name … --initial-cluster …`: verifies the file, builds the
/// member's data dir and prints the restored revision and HashKV, which must equal the
/// source's `endpoint hashkv --rev REVISION` and every other restored member's.
pub fn snapshot_restore(args: RestoreArgs, json_out: bool) -> anyhow::Result<()> {
    let members = crate::node_cmd::parse_initial_cluster(&args.initial_cluster)?;
    if let Some(own) = &args.initial_advertise_peer_urls {
        let listed = members.iter().find(|(name, _)| *name == args.name);
        if listed.is_some_and(|(_, url)| url != own) {
            bail!(
                "--initial-advertise-peer-urls {own} differs from --initial-cluster's URL for {}",
                args.name
            );
        }
    }
    let body = read_snapshot(&args.file)?;
    let data_dir = args
        .data_dir
        .unwrap_or_else(|| PathBuf::from(format!("{}.quorate", args.name)));
    let summary = node::restore(
        &args.name,
        &data_dir,
        &members,
        &args.initial_cluster_token,
        &body,
    )?;
    if json_out {
        println!("{}", summary_json(&summary, body.len()));
    } else {
        println!(
            "Restored {} at revision {} into {}: {} keys, hash {}",
            args.file.display(),
            summary.revision,
            data_dir.display(),
            summary.keys,
            summary.hash
        );
    }
    Ok(())
}
