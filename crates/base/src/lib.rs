//! Shared vocabulary of every Quorate crate: member ids, revisions, limits and the etcd error
//! catalogue. It must never perform I/O, read the clock or depend on a runtime.

pub mod error;
pub mod ids;
pub mod keys;
pub mod limits;

pub use error::EtcdError;
pub use ids::{ClusterId, NodeId, Revision};
