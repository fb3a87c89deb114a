//! The `quorum-set` workload: sets of unique integers kept in a quorum bucket over the native
//! `quorate.v1` API. An add reads a key (r=quorum), merges the sibling sets, adds its element and
//! puts the result with the read's context (w=quorum), so concurrent adds, and adds whose
//! outcome a partition left unknown, become siblings that the next add merges. One operation in
//! four reads every key at r=quorum and unions their siblings; the final read does so at r=all
//! after healing. The set checker then finds any acknowledged add missing from a read that
//! began after it (R + W > N promises it, faults or not: the bucket's quorum is strict), or an
//! element never added, or one twice.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use check::EventType;
use client::buckets::level;
use proto::quorate::v1 as pb;
use proto::quorate::v1::kv_client::KvClient;
use rand::Rng;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::{Client, Completion};

/// The bucket of the workload.
pub const BUCKET: &str = "check-set";
/// Keys the adds spread over.
const KEYS: u64 = 4;

/// The elements of every sibling of a reply, merged.
fn union(reply: &pb::GetResponse) -> Result<BTreeSet<u64>, String> {
    let mut all = BTreeSet::new();
    for sibling in &reply.siblings {
        let elements: Vec<u64> = serde_json::from_slice(&sibling.value)
            .map_err(|e| format!("a sibling is not a list of elements: {e}"))?;
        all.extend(elements);
    }
    Ok(all)
}

/// Creates the workload's bucket (n=3, siblings, strict) through any member, retrying until
/// `deadline` while the cluster elects a leader.
pub async fn create_bucket(client: &Client, deadline: Instant) -> Result<(), client::ClientError> {
    let bucket = pb::Bucket {
        name: BUCKET.to_owned(),
        r#type: pb::BucketType::Quorum as i32,
        n: 3.min(client.members.len() as u32),
        r: level(pb::LevelKind::LevelQuorum),
        w: level(pb::LevelKind::LevelQuorum),
        conflicts: pb::Conflicts::Siblings as i32,
        sloppy: false,
        ..Default::default()
    };
    client::buckets::ensure(&client.members, bucket, deadline.into_std()).await
}

impl Client {
    fn quorum_kv(&self) -> KvClient<tonic::transport::Channel> {
        KvClient::new(self.members[self.current].clone())
    }

    /// One add: read, merge, put with the context.
    pub async fn quorum_add(&mut self) -> EventType {
        let element = self.shared.started.fetch_add(1, Ordering::Relaxed);
        let key = format!("k{}", element % KEYS);
        let w = pb::LevelKind::LevelQuorum;
        self.invoke("add", Some(&key), json!(element));
        let mut kv = self.quorum_kv();
        let read = kv
            .get(pb::GetRequest {
                bucket: BUCKET.to_owned(),
                key: key.clone().into_bytes(),
                r: level(pb::LevelKind::LevelQuorum),
                timeout_ms: self.shared.op_timeout.as_millis() as u32,
                monotonic: false,
                ..Default::default()
            })
            .await;
        let read = match read {
            Ok(reply) => reply.into_inner(),
            // Nothing was written: the add certainly failed.
            Err(status) => {
                return self.complete("add", Some(&key), Completion::read_error(&status));
            }
        };
        let mut elements = match union(&read) {
            Ok(elements) => elements,
            Err(reason) => {
                let failed = Completion::read_error(&tonic::Status::data_loss(reason));
                return self.complete("add", Some(&key), failed);
            }
        };
        elements.insert(element);
        let value = serde_json::to_vec(&elements).expect("a set of integers encodes");
        let written = kv
            .put(pb::PutRequest {
                bucket: BUCKET.to_owned(),
                key: key.clone().into_bytes(),
                value,
                w: level(w),
                context: read.context,
                timeout_ms: self.shared.op_timeout.as_millis() as u32,
            })
            .await;
        let completion = match written {
            Ok(_) => Completion::ok(Value::Null, None),
            // "not enough replicas" is Unavailable: the replicas that stored it keep it, so
            // the outcome is unknown, as for any error after sending.
            Err(status) => Completion::write_error(&status),
        };
        self.complete("add", Some(&key), completion)
    }

    /// One operation: a read of every key (one in four) or an add.
    pub async fn quorum_op(&mut self) -> EventType {
        if self.rng.random_range(0..4) == 0 {
            self.quorum_read(pb::LevelKind::LevelQuorum).await
        } else {
            self.quorum_add().await
        }
    }

    /// The final read: every key at r=all, the union of all siblings, as one read.
    pub async fn quorum_read_all(&mut self) -> EventType {
        self.quorum_read(pb::LevelKind::LevelAll).await
    }

    /// A read of every key at level `r`, the union of all siblings, as one read.
    async fn quorum_read(&mut self, r: pb::LevelKind) -> EventType {
        self.invoke("read", None, Value::Null);
        let mut kv = self.quorum_kv();
        let mut all = BTreeSet::new();
        for k in 0..KEYS {
            let read = kv
                .get(pb::GetRequest {
                    bucket: BUCKET.to_owned(),
                    key: format!("k{k}").into_bytes(),
                    r: level(r),
                    timeout_ms: self.shared.op_timeout.as_millis() as u32,
                    monotonic: false,
                    ..Default::default()
                })
                .await;
            let elements = match read {
                Ok(reply) => union(&reply.into_inner()),
                Err(status) => {
                    return self.complete("read", None, Completion::read_error(&status));
                }
            };
            match elements {
                Ok(elements) => all.extend(elements),
                Err(reason) => {
                    let failed = Completion::read_error(&tonic::Status::data_loss(reason));
                    return self.complete("read", None, failed);
                }
            }
        }
        let list: Vec<Value> = all.into_iter().map(|e| json!(e)).collect();
        self.complete("read", None, Completion::ok(Value::Array(list), None))
    }
}
