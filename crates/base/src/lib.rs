//! Shared vocabulary of every Quorate crate: member ids, revisions, limits, the etcd error
//! catalogue, the `Clock` trait and the hybrid logical clock. It must never perform I/O, read
//! the clock or depend on a runtime.

pub mod clock;
pub mod error;
pub mod ids;
pub mod keys;
pub mod limits;

pub use clock::{Clock, Hlc, HlcTimestamp};
pub use error::EtcdError;
pub use ids::{ClusterId, NodeId, Revision};
