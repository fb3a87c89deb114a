//! Histories of operations against a database and the checkers that judge them: the
//! JSON-lines history format, pairing of invocations with completions, linearizability by
//! Wing–Gong–Lowe search with memoization and per-key partitioning under a budget and the
//! caller's deadline (a `Monitor`), with indeterminate operations placed only when needed, and the
//! set, bank, watch, fenced-lock and bounded-staleness checkers, and the revision checker of the
//! etcd-kv model. Every verdict is three-valued: a budget that runs out gives
//! `Unknown`, never `Valid`. It must never perform I/O or read a clock: histories arrive as
//! text or values and verdicts leave as values.

pub mod bank;
pub mod codec;
pub mod history;
pub mod linear;
pub mod lock;
pub mod model;
pub mod revisions;
pub mod set;
pub mod staleness;
pub mod verdict;
pub mod watch;

pub use codec::CodecError;
pub use history::{Event, EventType, History, HistoryError, Operation, Outcome};
pub use linear::{Budget, Monitor, Unmonitored, check_linearizable, check_linearizable_monitored};
pub use model::{Datum, Model, Register};
pub use verdict::{Anomaly, AnomalyKind, Report, Verdict};

#[cfg(test)]
mod tests;
