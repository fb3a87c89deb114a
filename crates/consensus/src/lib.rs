//! The consensus layer: openraft's type config, a Raft log store and a state machine over our
//! `storage` and `mvcc`, the network adapter over a [`Peers`] transport, and [`Replica`], the
//! handle services use to propose writes and read at a chosen consistency. It must never open
//! sockets itself (the `transport` crate implements [`Peers`]) nor decide etcd semantics (that is
//! `mvcc`).

#[cfg(feature = "canary")]
mod canary;
pub mod codec;
mod feed;
mod lessor;
mod log_store;
mod network;
mod peer_messages;
pub mod range;
mod replica;
mod restore;
mod state_machine;
mod types;

#[cfg(feature = "canary")]
pub use canary::Canary;
pub use codec::CodecError;
pub use log_store::{LogStore, LogWriter, MAIN_GROUP};
pub use network::{PeerError, Peers};
pub use range::{RangeFiles, RangeGroup, RangeGroupOptions, RangeGroups};
pub use replica::{RaftOptions, Replica, ReplicaStatus};
pub use restore::{SnapshotSummary, inspect, restore_member};
pub use types::{Member, NodeId, Request, TypeConfig};
