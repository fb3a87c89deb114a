//! Sequential specifications for the linearizability checker: a model turns each history
//! operation into one of its own operations (or drops it when it has no effect and nothing to
//! check) and says which states an operation may lead to.

use std::fmt::Debug;
use std::hash::Hash;

use serde_json::Value;

use crate::history::{Operation, Outcome};

/// A scalar value of a register: absent, an integer or a string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Datum {
    Nil,
    Int(i64),
    Text(String),
}

impl Datum {
    /// Reads a JSON scalar; arrays, objects, booleans and fractions are not register values.
    pub fn from_value(value: &Value) -> Result<Datum, String> {
        match value {
            Value::Null => Ok(Datum::Nil),
            Value::String(text) => Ok(Datum::Text(text.clone())),
            Value::Number(n) => n
                .as_i64()
                .map(Datum::Int)
                .ok_or_else(|| format!("{n} is not a 64-bit integer")),
            other => Err(format!("{other} is not null, an integer or a string")),
        }
    }
}

impl std::fmt::Display for Datum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Datum::Nil => write!(f, "nil"),
            Datum::Int(n) => write!(f, "{n}"),
            Datum::Text(text) => write!(f, "{text:?}"),
        }
    }
}

/// A sequential specification.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Op: Clone + Debug;

    fn name(&self) -> &'static str;

    fn init(&self) -> Self::State;

    /// Converts a history operation: `Ok(None)` drops it (it had no effect and returned
    /// nothing to check), `Err` says why it does not fit the model.
    fn convert(&self, op: &Operation) -> Result<Option<Self::Op>, String>;

    /// The state after `op` applied to `state`, or `None` when `op`'s observed result is
    /// impossible from `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    fn describe(&self, state: &Self::State) -> String;
}

/// The observed outcome of a compare-and-set.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CasOutcome {
    Swapped,
    /// Definitely not swapped because the comparison failed.
    Mismatch,
    /// Unknown: it may have swapped (if the comparison held) or not.
    Unknown,
}

/// An operation on a register.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOp {
    Read(Datum),
    Write(Datum),
    Cas {
        expected: Datum,
        new: Datum,
        outcome: CasOutcome,
    },
}

/// A register with read and write, and with compare-and-set when `cas` is on. Reads of a
/// never-written register return nil. A `cas` takes `[expected, new]`; completed `ok` it
/// swapped; completed `fail` with error `compare-failed` the comparison certainly failed;
/// any other failure had no effect and is dropped.
#[derive(Copy, Clone, Debug, Default)]
pub struct Register {
    pub cas: bool,
}

/// The error a failed compare-and-set carries when its comparison was evaluated and false.
pub const COMPARE_FAILED: &str = "compare-failed";

impl Model for Register {
    type State = Datum;
    type Op = RegisterOp;

    fn name(&self) -> &'static str {
        if self.cas { "cas-register" } else { "register" }
    }

    fn init(&self) -> Datum {
        Datum::Nil
    }

    fn convert(&self, op: &Operation) -> Result<Option<RegisterOp>, String> {
        match (op.f.as_str(), op.outcome) {
            ("read", Outcome::Ok) => Ok(Some(RegisterOp::Read(Datum::from_value(&op.output)?))),
            ("read", _) => Ok(None),
            // Follower reads promise bounded staleness, not linearizability (`staleness`).
            (crate::staleness::FOLLOWER_READ, _) => Ok(None),
            ("write", Outcome::Fail) => Ok(None),
            ("write", _) => Ok(Some(RegisterOp::Write(Datum::from_value(&op.input)?))),
            ("cas", outcome) if self.cas => {
                let pair = op
                    .input
                    .as_array()
                    .filter(|pair| pair.len() == 2)
                    .ok_or_else(|| format!("cas takes [expected, new], not {}", op.input))?;
                let outcome = match outcome {
                    Outcome::Ok => CasOutcome::Swapped,
                    Outcome::Info => CasOutcome::Unknown,
                    Outcome::Fail if op.error.as_deref() == Some(COMPARE_FAILED) => {
                        CasOutcome::Mismatch
                    }
                    Outcome::Fail => return Ok(None),
                };
                Ok(Some(RegisterOp::Cas {
                    expected: Datum::from_value(&pair[0])?,
                    new: Datum::from_value(&pair[1])?,
                    outcome,
                }))
            }
            (f, _) => Err(format!("the {} model has no operation {f:?}", self.name())),
        }
    }

    fn step(&self, state: &Datum, op: &RegisterOp) -> Option<Datum> {
        match op {
            RegisterOp::Read(seen) => (seen == state).then(|| state.clone()),
            RegisterOp::Write(value) => Some(value.clone()),
            RegisterOp::Cas {
                expected,
                new,
                outcome,
            } => match outcome {
                CasOutcome::Swapped => (expected == state).then(|| new.clone()),
                CasOutcome::Mismatch => (expected != state).then(|| state.clone()),
                // Placed where it swaps if it can; the case where it never took effect is
                // the same as placing it after everything else, which the search also tries.
                CasOutcome::Unknown if expected == state => Some(new.clone()),
                CasOutcome::Unknown => Some(state.clone()),
            },
        }
    }

    fn describe(&self, state: &Datum) -> String {
        state.to_string()
    }
}
