//! Bucket definitions in the topology: creating (idempotent for the same definition) and
//! deleting buckets — a quorum bucket's first create installs the token ring, a consensus
//! bucket's gets its first range —, and the naming rule every bucket follows. Applied by the metadata group's state machine to every member's copy alike.

use base::NodeId;
use base::limits::BUCKET_NAME_BYTES_MAX;
use proto::quorate::raft::v1 as pb;
use proto::quorate::v1 as quorumpb;
use quorumpb::Refusal;

/// Why a bucket name is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadBucketName {
    Length(usize),
    Character(String, char),
}

impl std::fmt::Display for BadBucketName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BadBucketName::Length(len) => write!(
                f,
                "bucket name must be 1 to {BUCKET_NAME_BYTES_MAX} bytes, got {len}"
            ),
            BadBucketName::Character(name, bad) => write!(
                f,
                "bucket name {name:?} contains {bad:?}; use letters, digits, '.', '_' and '-'"
            ),
        }
    }
}

impl std::error::Error for BadBucketName {}

/// Checks a bucket name: 1 to 64 bytes of letters, digits, '.', '_' and '-'.
pub fn validate_bucket_name(name: &str) -> Result<(), BadBucketName> {
    if name.is_empty() || name.len() > BUCKET_NAME_BYTES_MAX {
        return Err(BadBucketName::Length(name.len()));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(BadBucketName::Character(name.to_owned(), bad));
    }
    Ok(())
}

/// Applies a bucket change to the topology: a create of an existing bucket with the same
/// definition succeeds unchanged, with another definition it is refused; a delete of an unknown
/// bucket is refused. The first create installs the proposed ring when there is none.
pub fn apply_bucket_change(
    topology: &mut pb::Topology,
    change: &pb::BucketChange,
) -> pb::BucketChangeResponse {
    use pb::bucket_change::Change;
    let refuse = |kind: Refusal, refusal: String| pb::BucketChangeResponse {
        refusal,
        refusal_kind: kind as i32,
        bucket: None,
    };
    match &change.change {
        Some(Change::Create(bucket)) => {
            if let Some(existing) = topology.buckets.iter().find(|b| b.name == bucket.name) {
                if existing != bucket {
                    return refuse(
                        Refusal::Exists,
                        format!(
                            "bucket {:?} already exists with another definition",
                            bucket.name
                        ),
                    );
                }
                return pb::BucketChangeResponse {
                    bucket: Some(existing.clone()),
                    ..Default::default()
                };
            }
            if bucket.r#type == quorumpb::BucketType::Consensus as i32 {
                let replicas: Vec<NodeId> =
                    change.range_replicas.iter().copied().map(NodeId).collect();
                if let Err(error) = crate::create_bucket_ranges(topology, &bucket.name, &replicas) {
                    return refuse(
                        // The proposer's replicas are what a new bucket's map is made of.
                        Refusal::Invalid,
                        format!("the first range of {:?}: {error}", bucket.name),
                    );
                }
            } else if topology.ring.is_empty() && !change.initial_ring.is_empty() {
                topology.ring = change.initial_ring.clone();
                topology.vnodes = change.vnodes;
            }
            topology.buckets.push(bucket.clone());
            topology.buckets.sort_by(|a, b| a.name.cmp(&b.name));
            pb::BucketChangeResponse {
                bucket: Some(bucket.clone()),
                ..Default::default()
            }
        }
        Some(Change::Delete(name)) => match topology.buckets.iter().position(|b| &b.name == name) {
            Some(at) => {
                crate::drop_bucket_ranges(topology, name);
                pb::BucketChangeResponse {
                    bucket: Some(topology.buckets.remove(at)),
                    ..Default::default()
                }
            }
            None => refuse(Refusal::NotFound, format!("bucket {name:?} not found")),
        },
        // A ring installation alone (after a restore into a new cluster cleared the ring).
        None if topology.ring.is_empty() && !change.initial_ring.is_empty() => {
            topology.ring = change.initial_ring.clone();
            topology.vnodes = change.vnodes;
            pb::BucketChangeResponse::default()
        }
        None => refuse(
            Refusal::Invalid,
            "the token ring is installed already".to_owned(),
        ),
    }
}
