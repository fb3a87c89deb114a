//! The operations of each bench workload: over the etcd v3 API (so the same run works against
//! etcd) put, get, mixed reads and writes, compare-and-put transactions, lease churn, and the
//! writer side of watch fan-out; over the native `quorate.v1` API puts and gets of a quorum
//! bucket at a chosen level. It never decides timing or records results.

use std::collections::HashMap;

use proto::etcdserverpb::kv_client::KvClient;
use proto::etcdserverpb::lease_client::LeaseClient;
use proto::etcdserverpb::{
    Compare, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, compare, request_op,
};
use proto::quorate::v1 as qpb;
use proto::quorate::v1::kv_client::KvClient as QuorumKvClient;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tonic::transport::Channel;

/// Prefix of every key the bench writes, so a run can be cleaned up with one delete.
pub const KEY_PREFIX: &str = "bench/";

/// Keys written in one transaction while the key space is filled before a read workload
/// (etcd's default `--max-txn-ops` is 128).
pub const FILL_BATCH: usize = 64;

/// The workload a client runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    Put,
    Get {
        serializable: bool,
    },
    Mixed {
        read_ratio: f64,
        serializable: bool,
    },
    Txn,
    Lease,
    /// A put to the quorum bench bucket at this write level.
    QuorumPut(QuorumLevel),
    /// A get from the quorum bench bucket at this read level.
    QuorumGet(QuorumLevel),
    /// A put to the consensus bench bucket (split into ranges beforehand).
    RangePut,
    /// A get from the consensus bench bucket (filled first): linearizable, or a follower read
    /// (at most the default staleness old).
    RangeGet {
        follower: bool,
    },
}

/// The level of a quorum bench operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuorumLevel {
    One,
    Quorum,
    All,
}

impl QuorumLevel {
    /// Every level, in the order help lists them.
    pub const ALL: &'static [QuorumLevel] =
        &[QuorumLevel::One, QuorumLevel::Quorum, QuorumLevel::All];

    /// The level's name, as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            QuorumLevel::One => "one",
            QuorumLevel::Quorum => "quorum",
            QuorumLevel::All => "all",
        }
    }

    /// What the level waits for, in one line.
    pub fn help(self) -> &'static str {
        match self {
            QuorumLevel::One => "one replica answers",
            QuorumLevel::Quorum => "a majority of the bucket's n replicas answer",
            QuorumLevel::All => "every replica answers",
        }
    }

    fn to_pb(self) -> Option<qpb::Level> {
        client::buckets::level(match self {
            QuorumLevel::One => qpb::LevelKind::LevelOne,
            QuorumLevel::Quorum => qpb::LevelKind::LevelQuorum,
            QuorumLevel::All => qpb::LevelKind::LevelAll,
        })
    }
}

/// The quorum bucket the bench uses: n=3, last-writer-wins, so blind puts replace the value
/// instead of piling up siblings (the write path is the same as with siblings).
pub const QUORUM_BUCKET: &str = "bench-lww";

/// The consensus bucket the range bench uses: 3 replicas per range, split by hand.
pub const RANGE_BUCKET: &str = "bench-ranges";

impl Kind {
    /// Whether the workload reads keys that must exist first.
    pub fn needs_fill(self) -> bool {
        matches!(self, Kind::Get { .. } | Kind::Mixed { .. } | Kind::Txn)
    }

    /// Whether the workload uses the quorum bucket.
    pub fn is_quorum(self) -> bool {
        matches!(self, Kind::QuorumPut(_) | Kind::QuorumGet(_))
    }
}

/// What one operation did besides succeeding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// A compare-and-put whose compare failed (another client wrote the key first).
    pub conflict: bool,
}

/// One bench client: its connection, its random key choice, and for transactions the last
/// modification revision it saw of each key.
pub struct Worker {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    quorum: QuorumKvClient<Channel>,
    rng: SmallRng,
    key_space: u64,
    value: Vec<u8>,
    seen_mod_revision: HashMap<u64, i64>,
    /// Range loads: send each request to its range's leader by a client-side range cache.
    router: Option<std::sync::Arc<client::ranges::RangeRouter>>,
}

/// The key with number `n`.
pub fn key(n: u64) -> Vec<u8> {
    format!("{KEY_PREFIX}{n:08}").into_bytes()
}

impl Worker {
    /// A client over `channel` whose choices are fixed by `seed`; `seen` holds the
    /// modification revisions the fill wrote.
    pub fn new(
        channel: Channel,
        seed: u64,
        key_space: u64,
        value_size: usize,
        seen: HashMap<u64, i64>,
    ) -> Worker {
        Worker {
            kv: KvClient::new(channel.clone()),
            quorum: QuorumKvClient::new(channel.clone()),
            lease: LeaseClient::new(channel),
            rng: SmallRng::seed_from_u64(seed),
            key_space: key_space.max(1),
            value: vec![b'v'; value_size],
            seen_mod_revision: seen,
            router: None,
        }
    }

    /// Sends range loads' requests to their ranges' leaders through `router`.
    pub fn with_router(mut self, router: std::sync::Arc<client::ranges::RangeRouter>) -> Worker {
        self.router = Some(router);
        self
    }

    /// The client for a range request on `key`: routed to its range's leader when the worker
    /// routes, else this worker's connection.
    async fn range_kv(&self, key: &[u8]) -> QuorumKvClient<Channel> {
        match &self.router {
            Some(router) => QuorumKvClient::new(router.channel_for(RANGE_BUCKET, key).await),
            None => self.quorum.clone(),
        }
    }

    /// After a failed range request: the routes may be stale.
    fn range_failed(&self) {
        if let Some(router) = &self.router {
            router.invalidate(RANGE_BUCKET);
        }
    }

    /// Runs one operation of `kind`.
    pub async fn run(&mut self, kind: Kind) -> Result<Outcome, tonic::Status> {
        match kind {
            Kind::Put => self.put().await,
            Kind::Get { serializable } => self.get(serializable).await,
            Kind::Mixed {
                read_ratio,
                serializable,
            } => {
                if self.rng.random_bool(read_ratio.clamp(0.0, 1.0)) {
                    self.get(serializable).await
                } else {
                    self.put().await
                }
            }
            Kind::Txn => self.compare_and_put().await,
            Kind::Lease => self.lease_cycle().await,
            Kind::QuorumPut(level) => {
                let request = qpb::PutRequest {
                    bucket: QUORUM_BUCKET.to_owned(),
                    key: key(self.pick()),
                    value: self.value.clone(),
                    w: level.to_pb(),
                    ..Default::default()
                };
                self.quorum.put(request).await?;
                Ok(Outcome::default())
            }
            Kind::RangePut => {
                let key = key(self.pick());
                let request = qpb::PutRequest {
                    bucket: RANGE_BUCKET.to_owned(),
                    key: key.clone(),
                    value: self.value.clone(),
                    ..Default::default()
                };
                let answer = self.range_kv(&key).await.put(request).await;
                answer.inspect_err(|_| self.range_failed())?;
                Ok(Outcome::default())
            }
            Kind::RangeGet { follower } => {
                let consistency = if follower {
                    qpb::ReadConsistency::ReadFollower
                } else {
                    qpb::ReadConsistency::ReadLinearizable
                };
                let key = key(self.pick());
                let request = qpb::GetRequest {
                    bucket: RANGE_BUCKET.to_owned(),
                    key: key.clone(),
                    consistency: consistency as i32,
                    ..Default::default()
                };
                let answer = self.range_kv(&key).await.get(request).await;
                answer.inspect_err(|_| self.range_failed())?;
                Ok(Outcome::default())
            }
            Kind::QuorumGet(level) => {
                let request = qpb::GetRequest {
                    bucket: QUORUM_BUCKET.to_owned(),
                    key: key(self.pick()),
                    r: level.to_pb(),
                    ..Default::default()
                };
                self.quorum.get(request).await?;
                Ok(Outcome::default())
            }
        }
    }

    fn pick(&mut self) -> u64 {
        self.rng.random_range(0..self.key_space)
    }

    async fn put(&mut self) -> Result<Outcome, tonic::Status> {
        let request = PutRequest {
            key: key(self.pick()),
            value: self.value.clone(),
            ..Default::default()
        };
        self.kv.put(request).await?;
        Ok(Outcome::default())
    }

    async fn get(&mut self, serializable: bool) -> Result<Outcome, tonic::Status> {
        let request = RangeRequest {
            key: key(self.pick()),
            serializable,
            ..Default::default()
        };
        self.kv.range(request).await?;
        Ok(Outcome::default())
    }

    /// Puts a key only if its modification revision is still the one this client last saw;
    /// otherwise reads it (the failure branch), learning the current revision for next time.
    async fn compare_and_put(&mut self) -> Result<Outcome, tonic::Status> {
        let n = self.pick();
        let expected = self.seen_mod_revision.get(&n).copied().unwrap_or(0);
        let request = TxnRequest {
            compare: vec![Compare {
                result: compare::CompareResult::Equal as i32,
                target: compare::CompareTarget::Mod as i32,
                key: key(n),
                target_union: Some(compare::TargetUnion::ModRevision(expected)),
                ..Default::default()
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key(n),
                    value: self.value.clone(),
                    ..Default::default()
                })),
            }],
            failure: vec![RequestOp {
                request: Some(request_op::Request::RequestRange(RangeRequest {
                    key: key(n),
                    ..Default::default()
                })),
            }],
        };
        let response = self.kv.txn(request).await?.into_inner();
        let revision = response.header.map_or(0, |h| h.revision);
        if response.succeeded {
            self.seen_mod_revision.insert(n, revision);
            return Ok(Outcome::default());
        }
        let current = response
            .responses
            .into_iter()
            .find_map(|r| match r.response {
                Some(proto::etcdserverpb::response_op::Response::ResponseRange(range)) => {
                    range.kvs.into_iter().next().map(|kv| kv.mod_revision)
                }
                _ => None,
            })
            .unwrap_or(0);
        self.seen_mod_revision.insert(n, current);
        Ok(Outcome { conflict: true })
    }

    /// Grants a lease, attaches a key to it, and revokes it (which deletes the key).
    async fn lease_cycle(&mut self) -> Result<Outcome, tonic::Status> {
        let granted = self
            .lease
            .lease_grant(LeaseGrantRequest { ttl: 60, id: 0 })
            .await?
            .into_inner();
        let request = PutRequest {
            key: key(self.pick()),
            value: self.value.clone(),
            lease: granted.id,
            ..Default::default()
        };
        self.kv.put(request).await?;
        self.lease
            .lease_revoke(LeaseRevokeRequest { id: granted.id })
            .await?;
        Ok(Outcome::default())
    }
}

/// Writes every key of the key space (in transactions of [`FILL_BATCH`] puts) so reads find
/// values; `first..end` is this filler's share. Returns each key's modification revision.
pub async fn fill(
    channel: Channel,
    first: u64,
    end: u64,
    value_size: usize,
) -> Result<HashMap<u64, i64>, tonic::Status> {
    let mut revisions = HashMap::new();
    let mut kv = KvClient::new(channel);
    let value = vec![b'v'; value_size];
    let mut n = first;
    while n < end {
        let batch_end = (n + FILL_BATCH as u64).min(end);
        let success = (n..batch_end)
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: key(i),
                    value: value.clone(),
                    ..Default::default()
                })),
            })
            .collect();
        let response = kv
            .txn(TxnRequest {
                success,
                ..Default::default()
            })
            .await?
            .into_inner();
        let revision = response.header.map_or(0, |h| h.revision);
        revisions.extend((n..batch_end).map(|i| (i, revision)));
        n = batch_end;
    }
    Ok(revisions)
}

/// Writes every key of `first..end` of the quorum bench bucket once (at w=all), so gets find
/// values.
pub async fn bucket_fill(
    channel: Channel,
    bucket: &'static str,
    first: u64,
    end: u64,
    value_size: usize,
) -> Result<(), tonic::Status> {
    let mut kv = QuorumKvClient::new(channel);
    let value = vec![b'v'; value_size];
    // Every replica of a quorum bucket (a consensus bucket's writes ignore the level).
    let w = (bucket == QUORUM_BUCKET)
        .then(|| QuorumLevel::All.to_pb())
        .flatten();
    for n in first..end {
        let request = qpb::PutRequest {
            bucket: bucket.to_owned(),
            key: key(n),
            value: value.clone(),
            w,
            ..Default::default()
        };
        kv.put(request).await?;
    }
    Ok(())
}

/// Creates the consensus bench bucket if missing and splits it by hand into `ranges` ranges of
/// equal shares of the key space (`key(i * key_space / ranges)`); a split already made is
/// skipped, a range still settling is asked again. Returns how many ranges it has.
pub async fn range_bucket(
    channels: &[Channel],
    ranges: u64,
    key_space: u64,
    deadline: std::time::Instant,
) -> Result<usize, client::ClientError> {
    let bucket = qpb::Bucket {
        name: RANGE_BUCKET.to_owned(),
        r#type: qpb::BucketType::Consensus as i32,
        n: 3,
        ..Default::default()
    };
    client::buckets::ensure(channels, bucket, deadline).await?;
    let mut admin = qpb::ranges_client::RangesClient::new(channels[0].clone());
    for i in 1..ranges.max(1) {
        let at = key(i * key_space / ranges);
        loop {
            let request = qpb::SplitRangeRequest {
                bucket: RANGE_BUCKET.to_owned(),
                key: at.clone(),
            };
            match admin.split(request).await {
                Ok(_) => break,
                Err(status)
                    if client::fate::refusal(&status) == Some(qpb::Refusal::AlreadySplit) =>
                {
                    break;
                }
                Err(status)
                    if std::time::Instant::now() < deadline
                        && (status.code() == tonic::Code::Unavailable
                            || matches!(
                                client::fate::refusal(&status),
                                Some(qpb::Refusal::Stale | qpb::Refusal::Busy)
                            )) =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(status) => return Err(client::ClientError::Status(status)),
            }
        }
    }
    let listed = admin
        .list(qpb::ListRangesRequest {
            bucket: RANGE_BUCKET.to_owned(),
        })
        .await
        .map_err(client::ClientError::Status)?;
    Ok(listed.into_inner().ranges.len())
}

/// Creates the quorum bench bucket (n=3, lww) through any of `channels`, waiting until
/// `deadline` for the cluster to take it; an existing one with that definition is fine.
pub async fn quorum_bucket(
    channels: &[Channel],
    deadline: std::time::Instant,
) -> Result<(), client::ClientError> {
    let bucket = qpb::Bucket {
        name: QUORUM_BUCKET.to_owned(),
        r#type: qpb::BucketType::Quorum as i32,
        n: 3,
        r: QuorumLevel::Quorum.to_pb(),
        w: QuorumLevel::Quorum.to_pb(),
        conflicts: qpb::Conflicts::Lww as i32,
        sloppy: false,
        ..Default::default()
    };
    client::buckets::ensure(channels, bucket, deadline).await
}
