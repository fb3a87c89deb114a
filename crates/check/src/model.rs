//! Sequential specifications for the linearizability checker: a model turns each history
//! operation into one of its own operations (or drops it when it has no effect and nothing to
//! check) and says which states an operation may lead to.

use std::collections::HashMap;
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
    /// Equal operations have equal effects: the search uses only the latest invoked of equal
    /// indeterminate ones it may place.
    type Op: Clone + Eq + Hash + Debug;

    fn name(&self) -> &'static str;

    fn init(&self) -> Self::State;

    /// Converts a history operation: `Ok(None)` drops it (it had no effect and returned
    /// nothing to check), `Err` says why it does not fit the model.
    fn convert(&self, op: &Operation) -> Result<Option<Self::Op>, String>;

    /// The state after `op` applied to `state`, or `None` when `op`'s observed result is
    /// impossible from `state`.
    fn step(&self, state: &Self::State, op: &Self::Op) -> Option<Self::State>;

    fn describe(&self, state: &Self::State) -> String;

    /// Flags, one per operation of one key (in the order given), the indeterminate operations
    /// the linearizability search may leave out because no legal order with the fewest
    /// indeterminate operations contains them (see `linear`'s header). A model flags one only
    /// when it can show that no chain of operations, each needing the one before, leads from
    /// it to a completed operation; leaving an operation out is always sound, so a wrong flag
    /// could only turn a valid history invalid. Completed operations are never flagged. The
    /// default flags none, which is right for every model.
    fn unneeded(&self, ops: &[(Operation, Self::Op)]) -> Vec<bool> {
        vec![false; ops.len()]
    }
}

/// The observed outcome of a compare-and-set.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CasOutcome {
    Swapped,
    /// Definitely not swapped because the comparison failed.
    Mismatch,
    /// Unknown: it may have swapped (if the comparison held) or not.
    Unknown,
}

/// An operation on a register.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
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

    /// Leaves out the indeterminate writes and compare-and-sets whose value nothing can have
    /// observed in time. The state is the value alone (no revision or version that counts
    /// writes), so an indeterminate operation `X` that sets value `v` is needed by the
    /// operation right after it (linear's rule 2) only if that one is a completed read of
    /// `v`, a completed swap expecting `v`, a completed compare-failed compare-and-set
    /// expecting anything but `v`, or an indeterminate compare-and-set from `v` to another
    /// value, itself needed in turn. A write never needs what came before it. Every link of
    /// such a chain lies after `X`'s call and before the return of the completed operation
    /// that ends it, so `X` is kept exactly when its call is no later than the latest such
    /// return ([`need_horizons`]). This fits the etcd-kv model too: it judges revisions apart
    /// (`revisions`), from answered operations only, which an indeterminate one never is.
    fn unneeded(&self, ops: &[(Operation, RegisterOp)]) -> Vec<bool> {
        let horizons = need_horizons(ops);
        ops.iter()
            .map(|(op, model_op)| {
                let set = match model_op {
                    _ if op.ret.is_some() => return false,
                    RegisterOp::Read(_) => return false,
                    RegisterOp::Cas { expected, new, .. } if expected == new => return true,
                    RegisterOp::Write(value) | RegisterOp::Cas { new: value, .. } => value,
                };
                horizons.until(set).is_none_or(|until| op.call > until)
            })
            .collect()
    }
}

/// For each register value, the latest time an operation that needs the register to hold
/// it can return (see [`Register::unneeded`]).
#[derive(Default)]
struct Horizons<'a> {
    /// Completed reads of the value and swaps expecting it, and indeterminate
    /// compare-and-sets from it to a value needed later than their call.
    direct: HashMap<&'a Datum, u64>,
    /// The latest completed compare-failed compare-and-set, which needs any value other than
    /// its expected one.
    mismatch_latest: Option<(u64, &'a Datum)>,
    /// The latest one whose expected value differs from `mismatch_latest`'s.
    mismatch_other: Option<(u64, &'a Datum)>,
}

impl<'a> Horizons<'a> {
    fn until(&self, value: &Datum) -> Option<u64> {
        let mismatch = [self.mismatch_latest, self.mismatch_other]
            .into_iter()
            .flatten()
            .find(|&(_, expected)| expected != value)
            .map(|(ret, _)| ret);
        self.direct.get(value).copied().max(mismatch)
    }

    /// Raises the horizon of `value` to `until`; returns whether it rose.
    fn raise(&mut self, value: &'a Datum, until: u64) -> bool {
        match self.direct.get_mut(value) {
            Some(horizon) if *horizon >= until => false,
            Some(horizon) => {
                *horizon = until;
                true
            }
            None => {
                self.direct.insert(value, until);
                true
            }
        }
    }

    fn add_mismatch(&mut self, expected: &'a Datum, ret: u64) {
        match self.mismatch_latest {
            Some((latest, latest_expected)) if ret <= latest => {
                if latest_expected != expected && self.mismatch_other.is_none_or(|(t, _)| ret > t) {
                    self.mismatch_other = Some((ret, expected));
                }
            }
            previous => {
                if previous.is_some_and(|(_, e)| e != expected) {
                    self.mismatch_other = previous;
                }
                self.mismatch_latest = Some((ret, expected));
            }
        }
    }
}

/// The horizons of a key's operations: those of the completed ones, then the chains of
/// indeterminate compare-and-sets until nothing rises (each rise takes a horizon to one of
/// the finitely many return times).
fn need_horizons(ops: &[(Operation, RegisterOp)]) -> Horizons<'_> {
    let mut horizons = Horizons::default();
    for (op, model_op) in ops {
        let Some(ret) = op.ret else { continue };
        match model_op {
            RegisterOp::Read(value) => {
                horizons.raise(value, ret);
            }
            RegisterOp::Cas {
                expected,
                outcome: CasOutcome::Swapped,
                ..
            } => {
                horizons.raise(expected, ret);
            }
            RegisterOp::Cas {
                expected,
                outcome: CasOutcome::Mismatch,
                ..
            } => horizons.add_mismatch(expected, ret),
            RegisterOp::Cas { .. } | RegisterOp::Write(_) => {}
        }
    }
    let chains: Vec<(u64, &Datum, &Datum)> = ops
        .iter()
        .filter(|(op, _)| op.ret.is_none())
        .filter_map(|(op, model_op)| match model_op {
            RegisterOp::Cas { expected, new, .. } if expected != new => {
                Some((op.call, expected, new))
            }
            _ => None,
        })
        .collect();
    let mut rose = true;
    while rose {
        rose = false;
        for &(call, expected, new) in &chains {
            if let Some(until) = horizons.until(new)
                && call <= until
                && horizons.until(expected).is_none_or(|known| known < until)
            {
                rose |= horizons.raise(expected, until);
            }
        }
    }
    horizons
}
