//! Identifier newtypes shared by storage, consensus and the services.

use std::fmt;

/// A member of a cluster, as etcd's `member_id`. Derived from the member name and the
/// cluster token so every member computes the same ids from the same `--initial-cluster`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A cluster, as etcd's `cluster_id`: a hash of the sorted member ids and the cluster token.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct ClusterId(pub u64);

impl fmt::Display for ClusterId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// An etcd revision: the cluster-wide logical clock of the MVCC keyspace. Every write
/// transaction that changes something increments it by one.
pub type Revision = i64;

/// FNV-1a, 64 bits: a stable hash for ids. Stable across versions and platforms, unlike
/// `std`'s `DefaultHasher`, because the ids it makes are stored and exchanged.
pub fn stable_hash64(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // A separator so ("ab","c") and ("a","bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

impl NodeId {
    /// Returns the id a member named `name` gets in the cluster named by `token`.
    pub fn from_name(name: &str, token: &str) -> NodeId {
        // Zero is reserved by etcd clients to mean "no member".
        NodeId(stable_hash64(&[name.as_bytes(), token.as_bytes()]).max(1))
    }
}

impl ClusterId {
    /// Returns the cluster id for the given member ids (order does not matter) and token.
    pub fn from_members(members: &[NodeId], token: &str) -> ClusterId {
        let mut sorted: Vec<u64> = members.iter().map(|id| id.0).collect();
        sorted.sort_unstable();
        let bytes: Vec<u8> = sorted.iter().flat_map(|id| id.to_be_bytes()).collect();
        ClusterId(stable_hash64(&[&bytes, token.as_bytes()]).max(1))
    }
}
