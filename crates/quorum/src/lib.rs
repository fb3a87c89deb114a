//! The pure protocol core of quorum buckets: no `async`, no I/O, no clock. Consistency levels
//! ([`Level`]), the tallies of replica answers ([`WriteRound`], [`ReadRound`]), placement
//! plans from rings built once per topology ([`Placer`], [`Plan`]), the write and read
//! coordinators as state machines (inputs in, commands out: [`WriteCoordinator`],
//! [`ReadCoordinator`]), what a replica does with a call ([`replica`]), the hint book
//! ([`HintBook`]), a member's part in a ring change ([`HandoffPlan`]) and tombstone reaping
//! ([`reap`]). Failures of replica calls are the closed [`ReplicaError`].
//!
//! Drivers (the member's quorum node, the in-memory simulation) send the calls, store what the
//! commands say, feed the answers back and keep time; they make no protocol decision.

mod error;
mod handoff;
mod hints;
mod level;
mod plan;
mod read;
pub mod reap;
pub mod replica;
mod round;
mod write;

pub use error::ReplicaError;
pub use handoff::{HandoffPlan, keeps};
pub use hints::{HintBook, HintStats, delivery_targets};
pub use level::{Level, LevelError};
pub use plan::{BucketDef, PlaceError, Placer, Plan};
pub use read::{ReadCommand, ReadCoordinator, ReadDone, ReadError, ReadInput, ReadSpec};
pub use round::{NotEnoughReplicas, ReadRound, WriteRound};
pub use write::{CallId, WriteCommand, WriteCoordinator, WriteDone, WriteInput, WriteSpec};

#[cfg(test)]
mod tests;
