//! `quorate bucket` and `quorate kv` over the native `quorate.v1` API, for both bucket kinds:
//! define buckets; put, get and delete keys (on quorum buckets with per-request read and write
//! levels and causal contexts; on consensus buckets linearizably); scan consensus buckets.

use std::time::Duration;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use proto::quorate::v1 as pb;
use proto::quorate::v1::buckets_client::BucketsClient;
use proto::quorate::v1::kv_client::KvClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

/// How concurrent writes are resolved in a bucket.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConflictsArg {
    /// Keep concurrent writes as siblings; a put with the context of a read resolves them.
    Siblings,
    /// The latest hybrid-logical-clock timestamp wins; concurrent writes are lost.
    Lww,
}

/// How a read of a consensus bucket is served.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReadMode {
    /// On the range's leader after it confirmed its leadership.
    Linearizable,
    /// From any replica (this member's own when it has one), at most --max-staleness old.
    Follower,
}

/// The read consistency options of `kv get` and `kv scan` (consensus buckets).
#[derive(clap::Args, Copy, Clone, Debug)]
pub struct ReadOptions {
    /// Consensus buckets: linearizable, or follower (any replica, bounded staleness).
    #[arg(long, value_enum, default_value_t = ReadMode::Linearizable)]
    pub consistency: ReadMode,
    /// Follower reads: how old the data may be (e.g. 500ms, 5s; default 5s).
    #[arg(long, value_parser = crate::node_cmd::parse_duration)]
    pub max_staleness: Option<Duration>,
}

impl ReadOptions {
    /// The request's `consistency` and `max_staleness_ms` fields.
    fn fields(self) -> (i32, u32) {
        match self.consistency {
            ReadMode::Linearizable => (pb::ReadConsistency::ReadLinearizable as i32, 0),
            ReadMode::Follower => (
                pb::ReadConsistency::ReadFollower as i32,
                self.max_staleness
                    .map_or(0, |d| d.as_millis().max(1) as u32),
            ),
        }
    }
}

/// Bucket types.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum BucketTypeArg {
    /// Leaderless replication with per-request R and W (available in a partition).
    Quorum,
    /// Keys in byte order split into ranges, each its own Raft group (linearizable).
    Consensus,
}

/// The bucket subcommands.
#[derive(Subcommand, Debug)]
pub enum BucketCommand {
    /// Define a bucket.
    Create {
        name: String,
        #[arg(long = "type", value_enum, default_value = "quorum")]
        bucket_type: BucketTypeArg,
        /// Replicas per key (of a quorum bucket) or per range (of a consensus bucket).
        #[arg(long, visible_alias = "replicas", default_value_t = 3)]
        n: u32,
        /// Quorum buckets: the default read level, one, quorum, all or a number (quorum).
        #[arg(long, value_parser = parse_level)]
        r: Option<pb::Level>,
        /// Quorum buckets: the default write level, one, quorum, all or a number (quorum).
        #[arg(long, value_parser = parse_level)]
        w: Option<pb::Level>,
        /// Quorum buckets: how concurrent writes are resolved (siblings).
        #[arg(long, value_enum)]
        conflicts: Option<ConflictsArg>,
        /// Quorum buckets: sloppy quorum — when a preferred replica is unreachable, the next
        /// member on the ring holds the write as a hint and it counts toward W.
        #[arg(long)]
        sloppy: bool,
        /// Consensus buckets: a range splits once its versions pass this many bytes
        /// (default 64 MiB).
        #[arg(long)]
        range_max_bytes: Option<u64>,
    },
    /// List the buckets.
    List,
    /// Show one bucket's definition.
    Show { name: String },
    /// Delete a bucket's definition.
    Delete { name: String },
}

/// The kv subcommands.
#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Write a value.
    Put {
        bucket: String,
        key: String,
        value: String,
        /// Write level for this request (default: the bucket's).
        #[arg(long, value_parser = parse_level)]
        w: Option<pb::Level>,
        /// The context of an earlier read: this write supersedes the siblings it returned.
        #[arg(long, default_value = "")]
        context: String,
    },
    /// Read a key: every sibling's value, then its context.
    Get {
        bucket: String,
        key: String,
        /// Read level for this request (default: the bucket's).
        #[arg(long, value_parser = parse_level)]
        r: Option<pb::Level>,
        /// Repair stale replicas before replying, so later reads at R never go back.
        #[arg(long)]
        monotonic: bool,
        #[command(flatten)]
        read: ReadOptions,
    },
    /// Show where a key lives: its replicas (preference list) and the fallbacks.
    Locate { bucket: String, key: String },
    /// Delete a key (a tombstone, superseding what the context saw).
    Del {
        bucket: String,
        key: String,
        #[arg(long, value_parser = parse_level)]
        w: Option<pb::Level>,
        #[arg(long, default_value = "")]
        context: String,
    },
    /// List the live keys of a consensus bucket in key order: all, a prefix, or [FROM, TO).
    Scan {
        bucket: String,
        /// Only keys that start with this.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        prefix: Option<String>,
        /// From this key (inclusive).
        #[arg(long)]
        from: Option<String>,
        /// To this key (exclusive).
        #[arg(long)]
        to: Option<String>,
        /// At most this many keys (default: all).
        #[arg(long)]
        limit: Option<u32>,
        /// Print only the keys.
        #[arg(long)]
        keys_only: bool,
        #[command(flatten)]
        read: ReadOptions,
    },
}

/// Parses `one`, `quorum`, `all` or a positive number.
pub fn parse_level(text: &str) -> Result<pb::Level, String> {
    let kind = match text {
        "one" => pb::LevelKind::LevelOne,
        "quorum" => pb::LevelKind::LevelQuorum,
        "all" => pb::LevelKind::LevelAll,
        number => {
            let count: u32 =
                number.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!("{text:?} is not one, quorum, all or a positive number")
                })?;
            return Ok(pb::Level {
                kind: pb::LevelKind::LevelCount as i32,
                count,
            });
        }
    };
    Ok(pb::Level {
        kind: kind as i32,
        count: 0,
    })
}

fn level_text(level: Option<&pb::Level>) -> String {
    let Some(level) = level else {
        return "default".into();
    };
    match pb::LevelKind::try_from(level.kind) {
        Ok(pb::LevelKind::LevelOne) => "one".into(),
        Ok(pb::LevelKind::LevelQuorum) => "quorum".into(),
        Ok(pb::LevelKind::LevelAll) => "all".into(),
        Ok(pb::LevelKind::LevelCount) => level.count.to_string(),
        _ => "default".into(),
    }
}

fn conflicts_text(value: i32) -> &'static str {
    match pb::Conflicts::try_from(value) {
        Ok(pb::Conflicts::Lww) => "lww",
        _ => "siblings",
    }
}

fn is_consensus(bucket: &pb::Bucket) -> bool {
    bucket.r#type == pb::BucketType::Consensus as i32
}

fn bucket_json(bucket: &pb::Bucket) -> Value {
    if is_consensus(bucket) {
        return json!({
            "name": bucket.name,
            "type": "consensus",
            "replicas": bucket.n,
            "range_max_bytes": bucket.range_max_bytes,
        });
    }
    json!({
        "name": bucket.name,
        "type": "quorum",
        "n": bucket.n,
        "r": level_text(bucket.r.as_ref()),
        "w": level_text(bucket.w.as_ref()),
        "conflicts": conflicts_text(bucket.conflicts),
        "quorum": if bucket.sloppy { "sloppy" } else { "strict" },
    })
}

fn bucket_text(bucket: &pb::Bucket) -> String {
    if is_consensus(bucket) {
        return format!(
            "{}: consensus, replicas={}, range-max-bytes={}",
            bucket.name, bucket.n, bucket.range_max_bytes
        );
    }
    format!(
        "{}: quorum, n={}, r={}, w={}, conflicts={}, {}",
        bucket.name,
        bucket.n,
        level_text(bucket.r.as_ref()),
        level_text(bucket.w.as_ref()),
        conflicts_text(bucket.conflicts),
        if bucket.sloppy { "sloppy" } else { "strict" }
    )
}

/// A channel to the first endpoint that accepts a connection (each call bounded by `timeout`).
async fn connect(endpoints: &[String], timeout: Duration) -> anyhow::Result<Channel> {
    Ok(client::Client::connect(endpoints, timeout).await?.channel())
}

/// Member ids as `member list` prints them (hexadecimal).
pub(crate) fn hex(ids: &[u64]) -> Vec<String> {
    ids.iter().map(|id| format!("{id:x}")).collect()
}

pub(crate) fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), status.message())
}

/// The bucket definition a `bucket create` command asks for, refusing flags of the other type.
fn bucket_to_create(command: BucketCommand) -> anyhow::Result<pb::Bucket> {
    let BucketCommand::Create {
        name,
        bucket_type,
        n,
        r,
        w,
        conflicts,
        sloppy,
        range_max_bytes,
    } = command
    else {
        unreachable!("called with a create command");
    };
    Ok(match bucket_type {
        BucketTypeArg::Quorum => {
            if range_max_bytes.is_some() {
                anyhow::bail!("--range-max-bytes is for consensus buckets");
            }
            let quorum = || parse_level("quorum").expect("a level name");
            pb::Bucket {
                name,
                r#type: pb::BucketType::Quorum as i32,
                n,
                r: Some(r.unwrap_or_else(quorum)),
                w: Some(w.unwrap_or_else(quorum)),
                conflicts: match conflicts.unwrap_or(ConflictsArg::Siblings) {
                    ConflictsArg::Siblings => pb::Conflicts::Siblings as i32,
                    ConflictsArg::Lww => pb::Conflicts::Lww as i32,
                },
                sloppy,
                ..Default::default()
            }
        }
        BucketTypeArg::Consensus => {
            if r.is_some() || w.is_some() || conflicts.is_some() || sloppy {
                anyhow::bail!("--r, --w, --conflicts and --sloppy are for quorum buckets");
            }
            pb::Bucket {
                name,
                r#type: pb::BucketType::Consensus as i32,
                n,
                range_max_bytes: range_max_bytes.unwrap_or(0),
                ..Default::default()
            }
        }
    })
}

/// Runs a bucket subcommand.
pub async fn run_bucket(
    endpoints: &[String],
    command: BucketCommand,
    timeout: Duration,
    json_out: bool,
) -> anyhow::Result<()> {
    let mut buckets = BucketsClient::new(connect(endpoints, timeout).await?);
    let print = |bucket: &pb::Bucket| {
        if json_out {
            println!("{}", bucket_json(bucket));
        } else {
            println!("{}", bucket_text(bucket));
        }
    };
    match command {
        create @ BucketCommand::Create { .. } => {
            let bucket = bucket_to_create(create)?;
            let created = buckets
                .create(pb::CreateBucketRequest {
                    bucket: Some(bucket),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            print(created.bucket.as_ref().context("no bucket in the reply")?);
        }
        BucketCommand::List => {
            let list = buckets
                .list(pb::ListBucketsRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            if json_out {
                let all: Vec<Value> = list.buckets.iter().map(bucket_json).collect();
                println!("{}", Value::Array(all));
            } else {
                for bucket in &list.buckets {
                    println!("{}", bucket_text(bucket));
                }
            }
        }
        BucketCommand::Show { name } => {
            let shown = buckets
                .get(pb::GetBucketRequest { name })
                .await
                .map_err(status_error)?
                .into_inner();
            print(shown.bucket.as_ref().context("no bucket in the reply")?);
        }
        BucketCommand::Delete { name } => {
            buckets
                .delete(pb::DeleteBucketRequest { name: name.clone() })
                .await
                .map_err(status_error)?;
            if json_out {
                println!("{}", json!({ "deleted": name }));
            } else {
                println!("bucket {name} deleted");
            }
        }
    }
    Ok(())
}

/// Runs a kv subcommand.
///
/// Long because it is one arm per kv subcommand (put, get, del, locate), each printing its
/// own reply.
pub async fn run_kv(
    endpoints: &[String],
    command: KvCommand,
    timeout: Duration,
    json_out: bool,
) -> anyhow::Result<()> {
    let mut kv = KvClient::new(connect(endpoints, timeout).await?);
    let timeout_ms = timeout.as_millis().min(u128::from(u32::MAX)) as u32;
    match command {
        KvCommand::Put {
            bucket,
            key,
            value,
            w,
            context,
        } => {
            let reply = kv
                .put(pb::PutRequest {
                    bucket,
                    key: key.into_bytes(),
                    value: value.into_bytes(),
                    w,
                    context,
                    timeout_ms,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let ts = (reply.timestamp_micros, reply.timestamp_logical);
            print_write(reply.acked, &reply.context, ts, json_out);
        }
        KvCommand::Del {
            bucket,
            key,
            w,
            context,
        } => {
            let reply = kv
                .delete(pb::DeleteRequest {
                    bucket,
                    key: key.into_bytes(),
                    w,
                    context,
                    timeout_ms,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            let ts = (reply.timestamp_micros, reply.timestamp_logical);
            print_write(reply.acked, &reply.context, ts, json_out);
        }
        KvCommand::Scan {
            bucket,
            prefix,
            from,
            to,
            limit,
            keys_only,
            read,
        } => {
            let (from, to) = match prefix {
                Some(prefix) => {
                    let end = base::keys::prefix_end(prefix.as_bytes());
                    (
                        prefix.into_bytes(),
                        (!end.is_empty() && end != [0]).then_some(end),
                    )
                }
                None => (
                    from.map(String::into_bytes).unwrap_or_default(),
                    to.map(String::into_bytes),
                ),
            };
            scan(
                &mut kv, bucket, from, to, limit, keys_only, json_out, timeout_ms, read,
            )
            .await?;
        }
        KvCommand::Locate { bucket, key } => {
            let reply = kv
                .locate(pb::LocateRequest {
                    bucket,
                    key: key.into_bytes(),
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json_out {
                println!(
                    "{}",
                    json!({
                        "token": reply.token,
                        "replicas": hex(&reply.replicas),
                        "fallbacks": hex(&reply.fallbacks),
                        "next_replicas": hex(&reply.next_replicas),
                    })
                );
            } else {
                println!("token {:016x}", reply.token);
                println!("replicas: {}", hex(&reply.replicas).join(" "));
                println!("fallbacks: {}", hex(&reply.fallbacks).join(" "));
                if !reply.next_replicas.is_empty() {
                    let next = hex(&reply.next_replicas).join(" ");
                    println!("replicas after the ring change: {next}");
                }
            }
        }
        KvCommand::Get {
            bucket,
            key,
            r,
            monotonic,
            read,
        } => {
            let (consistency, max_staleness_ms) = read.fields();
            let reply = kv
                .get(pb::GetRequest {
                    bucket,
                    key: key.into_bytes(),
                    r,
                    timeout_ms,
                    monotonic,
                    consistency,
                    max_staleness_ms,
                })
                .await
                .map_err(status_error)?
                .into_inner();
            if json_out {
                let siblings: Vec<Value> = reply
                    .siblings
                    .iter()
                    .map(|s| {
                        json!({
                            "value": String::from_utf8_lossy(&s.value),
                            "timestamp_micros": s.timestamp_micros,
                            "timestamp_logical": s.timestamp_logical,
                            "member": format!("{:x}", s.member),
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    json!({
                        "siblings": siblings,
                        "context": reply.context,
                        "replied": reply.replied,
                    })
                );
            } else {
                for sibling in &reply.siblings {
                    println!("{}", String::from_utf8_lossy(&sibling.value));
                }
                // Consensus buckets have no causal context.
                if !reply.context.is_empty() {
                    println!("context: {}", reply.context);
                }
            }
        }
    }
    Ok(())
}

/// The liveness of every member as the first answering endpoint's failure detector sees it,
/// by member id (the answering member itself is `self`).
pub async fn liveness(
    endpoints: &[String],
    timeout: Duration,
) -> anyhow::Result<std::collections::BTreeMap<u64, Value>> {
    let mut kv = KvClient::new(connect(endpoints, timeout).await?);
    let reply = kv
        .liveness(pb::LivenessRequest {})
        .await
        .map_err(status_error)?
        .into_inner();
    let mut seen: std::collections::BTreeMap<u64, Value> = reply
        .peers
        .iter()
        .map(|p| {
            (
                p.member,
                json!({ "status": p.status, "phi": p.phi, "threshold": reply.threshold, "swim": p.swim }),
            )
        })
        .collect();
    seen.insert(
        reply.member,
        json!({ "status": "self", "phi": 0.0, "swim": "self" }),
    );
    Ok(seen)
}

/// Prints a write's reply: a quorum bucket's acknowledgements and context, or a consensus
/// bucket's timestamp (its writes carry no context).
fn print_write(acked: u32, context: &str, ts: (u64, u32), json_out: bool) {
    let consensus = context.is_empty();
    match (json_out, consensus) {
        (true, false) => println!("{}", json!({ "acked": acked, "context": context })),
        (true, true) => println!(
            "{}",
            json!({ "timestamp_micros": ts.0, "timestamp_logical": ts.1 })
        ),
        (false, false) => {
            println!("OK (acknowledged by {acked})");
            println!("context: {context}");
        }
        (false, true) => println!("OK"),
    }
}

/// Pages through a scan of a consensus bucket (each page up to the member's bound) and
/// prints every key (and value) once, in order.
///
/// Long because it is the paging loop and both output formats.
#[allow(clippy::too_many_arguments)]
async fn scan(
    kv: &mut KvClient<Channel>,
    bucket: String,
    from: Vec<u8>,
    to: Option<Vec<u8>>,
    limit: Option<u32>,
    keys_only: bool,
    json_out: bool,
    timeout_ms: u32,
    read: ReadOptions,
) -> anyhow::Result<()> {
    let (consistency, max_staleness_ms) = read.fields();
    let mut next = Some(from);
    let mut entries = Vec::new();
    while let Some(from) = next.take() {
        let left = limit.map(|l| l - entries.len() as u32);
        if left == Some(0) {
            break;
        }
        let reply = kv
            .scan(pb::ScanRequest {
                bucket: bucket.clone(),
                from,
                to: to.clone(),
                limit: left.unwrap_or(0),
                timeout_ms,
                consistency,
                max_staleness_ms,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        if !json_out {
            for entry in &reply.entries {
                println!("{}", String::from_utf8_lossy(&entry.key));
                if !keys_only {
                    println!("{}", String::from_utf8_lossy(&entry.value));
                }
            }
        }
        entries.extend(reply.entries);
        next = reply.resume;
    }
    if json_out {
        let kvs: Vec<Value> = entries
            .iter()
            .map(|e| {
                let mut entry = json!({
                    "key": String::from_utf8_lossy(&e.key),
                    "timestamp_micros": e.timestamp_micros,
                    "timestamp_logical": e.timestamp_logical,
                });
                if !keys_only {
                    entry["value"] = json!(String::from_utf8_lossy(&e.value));
                }
                entry
            })
            .collect();
        println!("{}", json!({ "kvs": kvs, "count": kvs.len() }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_by_name_or_number_and_refuse_the_rest() {
        assert_eq!(level_text(Some(&parse_level("one").unwrap())), "one");
        assert_eq!(level_text(Some(&parse_level("quorum").unwrap())), "quorum");
        assert_eq!(level_text(Some(&parse_level("all").unwrap())), "all");
        assert_eq!(level_text(Some(&parse_level("2").unwrap())), "2");
        assert!(parse_level("0").is_err());
        assert!(parse_level("most").unwrap_err().contains("most"));
    }
}
