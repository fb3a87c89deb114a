//! The command line: subcommands and the etcdctl-like client commands.

use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use client::Client;
use proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest};
use serde_json::json;

use crate::print::{
    delete_json, print_delete, print_put, print_range, print_txn, put_json, range_json, txn_json,
};
use crate::watch_cmd::{WatchArgs, watch};
use crate::{
    bench_cmd, check_cmd, coord, demo, fault_cmd, node_cmd, quorum_cmd, range_cmd, ring_cmd, txn,
};

/// Quorate: a distributed key-value database with consistency as an explicit choice.
#[derive(Parser, Debug)]
#[command(name = "quorate", version)]
pub struct Cli {
    /// Member client URLs, comma-separated.
    #[arg(
        long,
        global = true,
        env = "QUORATE_ENDPOINTS",
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Output format.
    #[arg(
        short = 'w',
        long = "write-out",
        global = true,
        value_enum,
        default_value = "simple"
    )]
    pub write_out: Output,
    /// Deadline of one client call, in seconds.
    #[arg(long, global = true, default_value_t = 10)]
    pub command_timeout: u64,
    /// Log format of `node`: text or json.
    #[arg(
        long,
        global = true,
        env = "QUORATE_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Simple,
    Json,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    Linearizable,
    Serializable,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a member.
    Node(Box<node_cmd::NodeArgs>),
    /// Run a local three-member cluster until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Write a key.
    Put {
        key: String,
        value: String,
        /// Return the previous key-value.
        #[arg(long)]
        prev_kv: bool,
    },
    /// Read a key or range.
    Get {
        key: String,
        /// End of the range (exclusive).
        range_end: Option<String>,
        /// Read every key with `key` as prefix.
        #[arg(long)]
        prefix: bool,
        /// Read at this revision.
        #[arg(long, default_value_t = 0)]
        rev: i64,
        #[arg(long, value_enum, default_value = "linearizable")]
        consistency: Consistency,
        /// Largest number of keys returned.
        #[arg(long, default_value_t = 0)]
        limit: i64,
        /// Return only keys.
        #[arg(long)]
        keys_only: bool,
        /// Return only the count.
        #[arg(long)]
        count_only: bool,
    },
    /// Delete a key or range.
    Del {
        key: String,
        range_end: Option<String>,
        #[arg(long)]
        prefix: bool,
        #[arg(long)]
        prev_kv: bool,
    },
    /// Run a transaction read from stdin in etcdctl's format: compares, a blank line, success
    /// requests, a blank line, failure requests.
    Txn {
        /// Prompt for each section.
        #[arg(short, long)]
        interactive: bool,
    },
    /// Print changes of a key or range as they happen (from `--rev` when given), resuming on
    /// another endpoint after a failure without losing or repeating an event.
    Watch {
        key: String,
        range_end: Option<String>,
        #[arg(long)]
        prefix: bool,
        /// First revision to print (0: from now).
        #[arg(long, default_value_t = 0)]
        rev: i64,
        /// Print each event's previous key-value.
        #[arg(long)]
        prev_kv: bool,
        /// Stop after this many events (0: never).
        #[arg(long, default_value_t = 0)]
        max_events: u64,
    },
    /// Compact the history up to a revision.
    Compaction { revision: i64 },
    /// Lease commands.
    Lease {
        #[command(subcommand)]
        command: coord::LeaseCommand,
    },
    /// Take a lock and hold it until Ctrl-C, or run a command while holding it (`-- CMD…`;
    /// the command gets QUORATE_LOCK_KEY and QUORATE_LOCK_TOKEN, the fencing token).
    Lock {
        name: String,
        /// Session lease TTL in seconds.
        #[arg(long, default_value_t = 10)]
        ttl: i64,
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Campaign with PROPOSAL and hold leadership until Ctrl-C, or --listen for leaders.
    Elect {
        name: String,
        proposal: Option<String>,
        #[arg(short, long)]
        listen: bool,
        /// Session lease TTL in seconds.
        #[arg(long, default_value_t = 10)]
        ttl: i64,
    },
    /// Snapshot commands.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Measure throughput and latency.
    Bench {
        #[command(subcommand)]
        command: bench_cmd::BenchCommand,
    },
    /// Run a workload under faults against members it starts and check the history;
    /// `analyze` rechecks a saved history file.
    Check(check_cmd::CheckArgs),
    /// Inject faults into members started with --unsafe-fault-injection (block, delay or
    /// drop their peer messages, heal, status).
    Fault {
        #[command(subcommand)]
        command: fault_cmd::FaultCommand,
    },
    /// Buckets (quorum or consensus): create, list, show, delete.
    Bucket {
        #[command(subcommand)]
        command: quorum_cmd::BucketCommand,
    },
    /// The token ring of quorum buckets: show it, add or remove a member, follow a change.
    Ring {
        #[command(subcommand)]
        command: ring_cmd::RingCommand,
    },
    /// Keys of buckets: put, get, del (per-request levels and contexts on quorum buckets),
    /// scan (consensus buckets).
    Kv {
        #[command(subcommand)]
        command: quorum_cmd::KvCommand,
    },
    /// The ranges of consensus buckets: list, split, merge.
    Range {
        #[command(subcommand)]
        command: range_cmd::RangeCommand,
    },
    /// Per-endpoint commands.
    Endpoint {
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// Hand leadership to member ID (hexadecimal); the leader must be among the endpoints.
    MoveLeader { id: String },
    /// Membership commands.
    Member {
        #[command(subcommand)]
        command: MemberCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum EndpointCommand {
    /// Status of every endpoint.
    Status,
    /// HashKV of every endpoint (equal on members that applied the same entries).
    Hashkv {
        #[arg(long, default_value_t = 0)]
        rev: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Stream a member's state into FILE.
    Save { file: std::path::PathBuf },
    /// Check a saved snapshot and print its hash (HashKV at its revision), revision, live
    /// keys and size.
    Status { file: std::path::PathBuf },
    /// Build the data dir of one member of a new cluster from a saved snapshot; run it for
    /// every member with the same --initial-cluster and token, then start each member.
    Restore(coord::RestoreArgs),
}

#[derive(Subcommand, Debug)]
pub enum MemberCommand {
    /// List the members.
    List,
    /// Add a member by its peer URLs (comma-separated); start it afterwards with
    /// `--initial-cluster-state existing`.
    Add {
        peer_urls: String,
        /// Add it as a learner (a non-voting replica; promote it once in sync).
        #[arg(long)]
        learner: bool,
    },
    /// Remove a member (hexadecimal id).
    Remove { id: String },
    /// Make a learner that is in sync a voter.
    Promote { id: String },
    /// Change a member's peer URLs.
    Update { id: String, peer_urls: String },
    /// Move every consensus-range replica and leadership off a member (hexadecimal id) before
    /// it is removed; it takes no new replicas while draining.
    Drain {
        id: String,
        /// Let the member take replicas again.
        #[arg(long)]
        undo: bool,
        /// Follow the moves until nothing is left on the member.
        #[arg(long)]
        wait: bool,
    },
}

use base::keys::prefix_end;

fn range_of(key: &str, range_end: Option<String>, prefix: bool) -> (Vec<u8>, Vec<u8>) {
    let key_bytes = if key.is_empty() && prefix {
        vec![0]
    } else {
        key.as_bytes().to_vec()
    };
    let end = match (prefix, range_end) {
        (true, _) => prefix_end(key.as_bytes()),
        (false, Some(end)) => end.into_bytes(),
        (false, None) => Vec::new(),
    };
    (key_bytes, end)
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a parsed command line.
///
/// Long because it is the dispatch of every subcommand, one arm each.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(cli.command_timeout);
    let json_out = cli.write_out == Output::Json;
    match cli.command {
        Command::Node(args) => node_cmd::run(*args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Bench { command } => Ok(bench_cmd::run(&cli.endpoints, command).await?),
        Command::Check(args) => Ok(check_cmd::run(args, json_out).await?),
        Command::Fault { command } => {
            fault_cmd::run(&cli.endpoints, command, timeout, json_out).await
        }
        Command::Bucket { command } => {
            quorum_cmd::run_bucket(&cli.endpoints, command, timeout, json_out).await
        }
        Command::Ring { command } => {
            ring_cmd::run(&cli.endpoints, command, timeout, json_out).await
        }
        Command::Kv { command } => {
            quorum_cmd::run_kv(&cli.endpoints, command, timeout, json_out).await
        }
        Command::Range { command } => {
            range_cmd::run(&cli.endpoints, command, timeout, json_out).await
        }
        Command::Put {
            key,
            value,
            prev_kv,
        } => {
            let mut client = Client::connect(&cli.endpoints, timeout).await?;
            let request = PutRequest {
                key: key.into_bytes(),
                value: value.into_bytes(),
                prev_kv,
                ..Default::default()
            };
            let response = client.put(request).await?;
            if json_out {
                println!("{}", put_json(&response));
            } else {
                print_put(&response);
            }
            Ok(())
        }
        Command::Get {
            key,
            range_end,
            prefix,
            rev,
            consistency,
            limit,
            keys_only,
            count_only,
        } => {
            let mut client = Client::connect(&cli.endpoints, timeout).await?;
            let (key, range_end) = range_of(&key, range_end, prefix);
            let request = RangeRequest {
                key,
                range_end,
                revision: rev,
                limit,
                keys_only,
                count_only,
                serializable: consistency == Consistency::Serializable,
                ..Default::default()
            };
            let response = client.range(request).await?;
            if json_out {
                println!("{}", range_json(&response));
            } else {
                print_range(&response, keys_only, count_only);
            }
            Ok(())
        }
        Command::Del {
            key,
            range_end,
            prefix,
            prev_kv,
        } => {
            let mut client = Client::connect(&cli.endpoints, timeout).await?;
            let (key, range_end) = range_of(&key, range_end, prefix);
            let response = client
                .delete_range(DeleteRangeRequest {
                    key,
                    range_end,
                    prev_kv,
                })
                .await?;
            if json_out {
                println!("{}", delete_json(&response));
            } else {
                print_delete(&response);
            }
            Ok(())
        }
        Command::Watch {
            key,
            range_end,
            prefix,
            rev,
            prev_kv,
            max_events,
        } => {
            let (key, range_end) = range_of(&key, range_end, prefix);
            let options = WatchArgs {
                key,
                range_end,
                rev,
                prev_kv,
                max_events,
            };
            watch(&cli.endpoints, timeout, options, json_out).await
        }
        Command::Txn { interactive } => {
            let request = txn::parse(&read_txn(interactive)?)?;
            let mut client = Client::connect(&cli.endpoints, timeout).await?;
            let response = client.txn(request).await?;
            if json_out {
                println!("{}", txn_json(&response));
            } else {
                print_txn(&response);
            }
            Ok(())
        }
        Command::Compaction { revision } => {
            let mut client = Client::connect(&cli.endpoints, timeout).await?;
            coord::compaction(&mut client, revision, json_out).await
        }
        Command::Lease { command } => {
            let mut client = Client::connect(&cli.endpoints, timeout).await?;
            coord::lease(&mut client, command, json_out).await
        }
        Command::Lock { name, ttl, command } => {
            let mut client = Client::connect(&cli.endpoints, timeout).await?;
            coord::lock(&mut client, name, ttl, command).await
        }
        Command::Elect {
            name,
            proposal,
            listen,
            ttl,
        } => {
            let mut client = Client::connect(&cli.endpoints, timeout).await?;
            coord::elect(&mut client, name, proposal, listen, ttl).await
        }
        Command::Snapshot {
            command: SnapshotCommand::Save { file },
        } => {
            let mut client = Client::connect(&cli.endpoints, timeout).await?;
            coord::snapshot_save(&mut client, file).await
        }
        Command::Snapshot {
            command: SnapshotCommand::Status { file },
        } => coord::snapshot_status(&file, json_out),
        Command::Snapshot {
            command: SnapshotCommand::Restore(args),
        } => coord::snapshot_restore(args, json_out),
        Command::MoveLeader { id } => {
            coord::move_leader(&cli.endpoints, timeout, member_id(&id)?).await
        }
        Command::Endpoint {
            command: EndpointCommand::Hashkv { rev },
        } => coord::endpoint_hashkv(&cli.endpoints, timeout, rev, json_out).await,
        Command::Endpoint {
            command: EndpointCommand::Status,
        } => {
            let ask = async |mut client: Client,
                             endpoint: &str|
                   -> anyhow::Result<serde_json::Value> {
                let status = client.status().await?;
                let header = status.header.unwrap_or_default();
                Ok(
                    json!({"endpoint": endpoint, "member_id": format!("{:x}", header.member_id),
                    "leader": format!("{:x}", status.leader), "raft_term": status.raft_term,
                    "raft_index": status.raft_index, "raft_applied_index": status.raft_applied_index,
                    "revision": header.revision, "is_learner": status.is_learner, "version": status.version,
                    "db_size": status.db_size, "db_size_in_use": status.db_size_in_use}),
                )
            };
            let line = |row: &serde_json::Value| {
                format!(
                    "{}, {}, {}, leader {}, term {}, index {}, revision {}",
                    row["endpoint"].as_str().unwrap_or(""),
                    row["member_id"].as_str().unwrap_or(""),
                    row["version"].as_str().unwrap_or(""),
                    row["leader"].as_str().unwrap_or(""),
                    row["raft_term"],
                    row["raft_index"],
                    row["revision"]
                )
            };
            coord::per_endpoint(&cli.endpoints, timeout, json_out, ask, line).await
        }
        Command::Member {
            command:
                command @ (MemberCommand::Add { .. }
                | MemberCommand::Remove { .. }
                | MemberCommand::Promote { .. }
                | MemberCommand::Update { .. }),
        } => {
            let client = Client::connect(&cli.endpoints, timeout).await?;
            member_change(&client, command).await
        }
        Command::Member {
            command: MemberCommand::Drain { id, undo, wait },
        } => {
            range_cmd::drain(
                &cli.endpoints,
                member_id(&id)?,
                undo,
                wait,
                timeout,
                json_out,
            )
            .await
        }
        Command::Member {
            command: MemberCommand::List,
        } => {
            let mut client = Client::connect(&cli.endpoints, timeout).await?;
            let response = client.member_list(true).await?;
            if json_out {
                // The answering member's failure detector: how suspect each member looks.
                let liveness = quorum_cmd::liveness(&cli.endpoints, timeout).await.ok();
                let members: Vec<_> = response
                    .members
                    .iter()
                    .map(|m| {
                        let mut member = json!({"id": format!("{:x}", m.id), "name": m.name,
                            "peer_urls": m.peer_ur_ls, "client_urls": m.client_ur_ls,
                            "is_learner": m.is_learner});
                        if let Some(seen) = liveness.as_ref().and_then(|l| l.get(&m.id)) {
                            member["liveness"] = seen.clone();
                        }
                        member
                    })
                    .collect();
                println!("{}", json!({"members": members}));
            } else {
                for m in response.members {
                    println!(
                        "{:x}, {}, {}, {}, {}, {}",
                        m.id,
                        // As etcdctl: a member that has not published its name yet.
                        if m.name.is_empty() {
                            "unstarted"
                        } else {
                            "started"
                        },
                        m.name,
                        m.peer_ur_ls.join(","),
                        m.client_ur_ls.join(","),
                        m.is_learner
                    );
                }
            }
            Ok(())
        }
    }
}

/// Reads a transaction from stdin; with `interactive`, prompts for each section on stderr.
fn read_txn(interactive: bool) -> anyhow::Result<String> {
    use std::io::{BufRead, Read, Write};
    let stdin = std::io::stdin();
    if !interactive {
        let mut text = String::new();
        stdin.lock().read_to_string(&mut text)?;
        return Ok(text);
    }
    let prompts = [
        "compares:",
        "success requests (get, put, del):",
        "failure requests (get, put, del):",
    ];
    let mut text = String::new();
    let mut lines = stdin.lock().lines();
    for prompt in prompts {
        eprintln!("{prompt}");
        std::io::stderr().flush()?;
        loop {
            let Some(line) = lines.next().transpose()? else {
                return Ok(text);
            };
            text.push_str(&line);
            text.push('\n');
            if line.trim().is_empty() {
                break;
            }
        }
        eprintln!();
    }
    Ok(text)
}

/// `quorate member add|remove|promote|update`, printed as etcdctl prints them.
async fn member_change(client: &Client, command: MemberCommand) -> anyhow::Result<()> {
    use proto::etcdserverpb::cluster_client::ClusterClient;
    use proto::etcdserverpb::{
        MemberAddRequest, MemberPromoteRequest, MemberRemoveRequest, MemberUpdateRequest,
    };
    let mut cluster = ClusterClient::new(client.channel());
    let urls = |text: &str| text.split(',').map(str::to_string).collect::<Vec<_>>();
    match command {
        MemberCommand::Add { peer_urls, learner } => {
            let response = cluster
                .member_add(MemberAddRequest {
                    peer_ur_ls: urls(&peer_urls),
                    is_learner: learner,
                })
                .await?
                .into_inner();
            let id = response.member.map_or(0, |m| m.id);
            let cluster_id = response.header.map_or(0, |h| h.cluster_id);
            println!("Member {id:x} added to cluster {cluster_id:x}");
        }
        MemberCommand::Remove { id } => {
            let id = member_id(&id)?;
            let response = cluster
                .member_remove(MemberRemoveRequest { id })
                .await?
                .into_inner();
            let cluster_id = response.header.map_or(0, |h| h.cluster_id);
            println!("Member {id:x} removed from cluster {cluster_id:x}");
        }
        MemberCommand::Promote { id } => {
            let id = member_id(&id)?;
            let response = cluster
                .member_promote(MemberPromoteRequest { id })
                .await?
                .into_inner();
            let cluster_id = response.header.map_or(0, |h| h.cluster_id);
            println!("Member {id:x} promoted in cluster {cluster_id:x}");
        }
        MemberCommand::Update { id, peer_urls } => {
            let id = member_id(&id)?;
            let response = cluster
                .member_update(MemberUpdateRequest {
                    id,
                    peer_ur_ls: urls(&peer_urls),
                })
                .await?
                .into_inner();
            let cluster_id = response.header.map_or(0, |h| h.cluster_id);
            println!("Member {id:x} updated in cluster {cluster_id:x}");
        }
        MemberCommand::List | MemberCommand::Drain { .. } => {
            unreachable!("listed and drained separately")
        }
    }
    Ok(())
}

pub(crate) fn member_id(text: &str) -> anyhow::Result<u64> {
    u64::from_str_radix(text.trim_start_matches("0x"), 16)
        .map_err(|_| anyhow::anyhow!("member id {text:?} is not hexadecimal"))
}
