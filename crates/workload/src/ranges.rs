//! The workloads on a consensus bucket (range-sharded: each range its own Raft group), over
//! the native `quorate.v1` Kv API that every member serves as a gateway:
//!
//! - `range-register`: reads and writes of small integers on keys that rotate after a bounded
//!   number of operations, judged by the linearizable register checker (no compare-and-set:
//!   the native API has none on consensus buckets yet). A quarter of the operations go to
//!   slow keys that live many times the follower reads' bound: one in eight is a follower read
//!   of one, judged by the bounded-staleness checker.
//! - `range-set`: unique adds, each its own key, and whole-bucket reads by `Scan` paged across
//!   ranges (each page a linearizable read), judged by the set checker with real-time reads.
//!
//! Keys spread over the whole bucket (`NNN-…`, NNN from a multiplicative hash of the key's
//! number), so the splits that sizes and load cause, and the nemesis's own splits at
//! `split_key`, fall among the keys in use. The bucket starts as `RANGES_AT_START` ranges and
//! has the smallest range size (`RANGE_MAX_BYTES_MIN`), so it also splits by itself as the
//! run writes (and small neighbours merge by themselves).

use std::sync::atomic::Ordering;

use check::EventType;
use proto::quorate::v1 as pb;
use proto::quorate::v1::kv_client::KvClient;
use rand::Rng;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{Client, Completion, register_value};

/// The bucket of the range workloads.
pub const BUCKET: &str = "check-ranges";
/// Key spread: keys start with one of this many three-digit prefixes.
pub const SPREAD: u64 = 1000;
/// Register values are drawn from this many small integers.
const REGISTER_VALUES: i64 = 5;
/// Slow keys (`s…`, a quarter of the operations: follower reads, writes and linearizable
/// reads) rotate this many times slower than the others, so each lives for many times the
/// follower reads' bound and a replica answering from further back shows an overwritten
/// value.
const SLOW_KEY_FACTOR: u64 = 8;
/// The staleness follower reads allow.
pub const FOLLOWER_STALENESS_MS: u32 = 1000;
/// Pages one whole-bucket read may take before it gives up (a bound, far above what a run
/// writes: each page holds up to the member's page bound of keys).
const SCAN_PAGES_MAX: usize = 10_000;

/// The key of register or element number `n`: spread over the bucket by its prefix.
pub fn key_of(kind: char, n: u64) -> String {
    format!("{:03}-{kind}{n}", n.wrapping_mul(7919) % SPREAD)
}

/// A split point among the keys, from a nemesis pick.
pub fn split_key(pick: usize) -> Vec<u8> {
    format!("{:03}", pick as u64 % SPREAD).into_bytes()
}

/// Ranges the bucket starts with (split evenly over the key spread), so that its replicas
/// and leaders spread over the members from the start and a member that joins gets some.
const RANGES_AT_START: u64 = 8;

/// Creates the workload's bucket (3 replicas, the smallest range size) through any member and
/// splits it into `RANGES_AT_START` ranges, retrying until `deadline` while the cluster elects
/// leaders.
pub async fn create_bucket(client: &Client, deadline: Instant) -> Result<(), client::ClientError> {
    let bucket = pb::Bucket {
        name: BUCKET.to_owned(),
        r#type: pb::BucketType::Consensus as i32,
        n: 3.min(client.members.len() as u32),
        range_max_bytes: base::limits::RANGE_MAX_BYTES_MIN,
        ..Default::default()
    };
    client::buckets::ensure(&client.members, bucket, deadline.into_std()).await?;
    for i in 1..RANGES_AT_START {
        let key = format!("{:03}", i * SPREAD / RANGES_AT_START).into_bytes();
        split_at_start(client, key, deadline).await?;
    }
    Ok(())
}

/// Splits the bucket at `key` through any member, asking again while the range is busy or
/// between leaders; a range that starts there already counts as split.
async fn split_at_start(
    client: &Client,
    key: Vec<u8>,
    deadline: Instant,
) -> Result<(), client::ClientError> {
    use proto::quorate::v1::ranges_client::RangesClient;
    loop {
        let mut last = None;
        for channel in &client.members {
            let request = pb::SplitRangeRequest {
                bucket: BUCKET.to_owned(),
                key: key.clone(),
            };
            match RangesClient::new(channel.clone()).split(request).await {
                Ok(_) => return Ok(()),
                Err(status)
                    if client::fate::refusal(&status)
                        == Some(proto::quorate::v1::Refusal::AlreadySplit) =>
                {
                    return Ok(());
                }
                Err(status) => last = Some(status),
            }
        }
        if Instant::now() >= deadline {
            let status = last.unwrap_or_else(|| tonic::Status::unavailable("no member"));
            return Err(client::ClientError::Status(status));
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

impl Client {
    fn range_kv(&self) -> KvClient<tonic::transport::Channel> {
        KvClient::new(self.members[self.current].clone())
    }

    fn timeout_ms(&self) -> u32 {
        self.shared.op_timeout.as_millis() as u32
    }

    /// One register operation: a read (half of them) or a write.
    pub(crate) async fn range_register_op(&mut self) -> EventType {
        let n = self.shared.started.fetch_add(1, Ordering::Relaxed);
        let roll = self.rng.random_range(0..8);
        let key = if roll < 3 {
            let slow = n / (self.shared.ops_per_key * SLOW_KEY_FACTOR);
            self.shared
                .slow_keys_used
                .lock()
                .expect("keys lock")
                .insert(slow);
            key_of('s', slow)
        } else {
            let k = n / self.shared.ops_per_key;
            self.shared.keys_used.lock().expect("keys lock").insert(k);
            key_of('r', k)
        };
        match roll {
            0 => return self.range_follower_read(&key).await,
            2..5 => return self.range_read(&key).await,
            _ => {}
        }
        let value = self.rng.random_range(0..REGISTER_VALUES);
        self.invoke("write", Some(&key), json!(value));
        let completion = self.range_put(key.clone(), value.to_string()).await;
        self.complete("write", Some(&key), completion)
    }

    /// Puts `value` at `key` of the bucket: ok, or the write's error (certain or not).
    async fn range_put(&self, key: String, value: String) -> Completion {
        let written = self
            .range_kv()
            .put(pb::PutRequest {
                bucket: BUCKET.to_owned(),
                key: key.into_bytes(),
                value: value.into_bytes(),
                timeout_ms: self.timeout_ms(),
                ..Default::default()
            })
            .await;
        match written {
            Ok(_) => Completion::ok(Value::Null, None),
            Err(status) => Completion::write_error(&status),
        }
    }

    /// A linearizable read of one register: its value, or null when absent.
    pub(crate) async fn range_read(&mut self, key: &str) -> EventType {
        self.invoke("read", Some(key), Value::Null);
        let completion = self.range_get(key, None).await;
        self.complete("read", Some(key), completion)
    }

    /// A follower read of one register, allowing `FOLLOWER_STALENESS_MS` (judged by the
    /// bounded-staleness checker, not for linearizability).
    pub(crate) async fn range_follower_read(&mut self, key: &str) -> EventType {
        let f = check::staleness::FOLLOWER_READ;
        self.invoke(
            f,
            Some(key),
            json!({ "staleness_ms": FOLLOWER_STALENESS_MS }),
        );
        let completion = self.range_get(key, Some(FOLLOWER_STALENESS_MS)).await;
        self.complete(f, Some(key), completion)
    }

    /// Gets `key` of the bucket, linearizably or as a follower read allowing `staleness_ms`:
    /// its value, or null when absent.
    async fn range_get(&self, key: &str, staleness_ms: Option<u32>) -> Completion {
        let consistency = match staleness_ms {
            Some(_) => pb::ReadConsistency::ReadFollower,
            None => pb::ReadConsistency::ReadLinearizable,
        };
        let read = self
            .range_kv()
            .get(pb::GetRequest {
                bucket: BUCKET.to_owned(),
                key: key.as_bytes().to_vec(),
                timeout_ms: self.timeout_ms(),
                consistency: consistency as i32,
                max_staleness_ms: staleness_ms.unwrap_or(0),
                ..Default::default()
            })
            .await;
        match read {
            Ok(reply) => {
                let value = match reply.into_inner().siblings.as_slice() {
                    [] => Value::Null,
                    [only] => register_value(&only.value),
                    many => {
                        // A consensus bucket has one value per key: siblings are a bug, and
                        // recorded as what was read, so the checkers see it.
                        let all: Vec<Value> =
                            many.iter().map(|s| register_value(&s.value)).collect();
                        json!({ "siblings": all })
                    }
                };
                Completion::ok(value, None)
            }
            Err(status) => Completion::read_error(&status),
        }
    }

    /// One set operation: a whole-bucket read (one in ten) or an add.
    pub(crate) async fn range_set_op(&mut self) -> EventType {
        if self.rng.random_range(0..10) == 0 {
            return self.range_read_all().await;
        }
        let element = self.shared.started.fetch_add(1, Ordering::Relaxed);
        self.invoke("add", None, json!(element));
        let completion = self
            .range_put(key_of('e', element), element.to_string())
            .await;
        self.complete("add", None, completion)
    }

    /// A read of every element: a scan of the whole bucket, page after page.
    pub async fn range_read_all(&mut self) -> EventType {
        self.invoke("read", None, Value::Null);
        let mut kv = self.range_kv();
        let mut elements = Vec::new();
        let mut from = Vec::new();
        for _ in 0..SCAN_PAGES_MAX {
            let page = kv
                .scan(pb::ScanRequest {
                    bucket: BUCKET.to_owned(),
                    from: from.clone(),
                    timeout_ms: self.timeout_ms(),
                    ..Default::default()
                })
                .await;
            let page = match page {
                Ok(page) => page.into_inner(),
                Err(status) => {
                    return self.complete("read", None, Completion::read_error(&status));
                }
            };
            elements.extend(page.entries.iter().map(|e| register_value(&e.value)));
            match page.resume {
                Some(resume) if resume > from => from = resume,
                Some(_) => {
                    let stuck = tonic::Status::internal("a scan page resumed where it began");
                    return self.complete("read", None, Completion::read_error(&stuck));
                }
                None => return self.complete("read", None, Completion::ok(json!(elements), None)),
            }
        }
        let long = tonic::Status::resource_exhausted("the scan took more pages than its bound");
        self.complete("read", None, Completion::read_error(&long))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_every_prefix_and_split_keys_fall_among_them() {
        let prefixes: std::collections::BTreeSet<String> = (0..SPREAD)
            .map(|n| key_of('r', n)[..3].to_owned())
            .collect();
        assert_eq!(
            prefixes.len(),
            SPREAD as usize,
            "a thousand keys, a thousand prefixes"
        );
        let split = split_key(1234);
        assert_eq!(split, b"234");
        let below = (0..SPREAD).filter(|&n| key_of('e', n).as_bytes() < split.as_slice());
        assert_eq!(
            below.count(),
            234,
            "the split key cuts the keys by their prefix"
        );
    }
}
