//! The pure rules of the cluster topology that the metadata group replicates: quorum-bucket
//! definitions (`buckets`), token-ring changes with their epochs (`ring`), and the range
//! descriptors of consensus buckets (`ranges`, with the rules of the `ranges` crate) and the
//! members draining (`members`). The consensus
//! state machine calls these when it applies a bucket or ring command, so every member's
//! topology changes alike; drivers use the same rules to check a change before proposing it.
//!
//! Must never do I/O, read a clock or depend on a runtime: topology in, topology and reply
//! out.

mod buckets;
mod members;
mod ranges;
mod ring;

pub use buckets::{BadBucketName, apply_bucket_change, validate_bucket_name};
pub use members::{apply_member_drain, forget_drained};
pub use ranges::{
    apply_range_change, bucket_ranges, create_bucket_ranges, descriptor_from_pb, descriptor_to_pb,
    drop_bucket_ranges, refusal_of, replica_change_to_pb, replicas_on,
};
pub use ring::{apply_ring_change, required_handoffs};

#[cfg(test)]
mod tests;
