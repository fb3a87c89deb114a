//! A history: the events a test recorded (each operation's invocation and its one completion)
//! and the operations they pair into. An invocation without a completion, or completed with
//! `info`, has an unknown outcome: it may or may not have taken effect, at any time after its
//! invocation, and is never treated as failed.

use std::collections::BTreeMap;

pub use serde_json::Value;

/// What an event records.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    /// A client is about to send the operation.
    Invoke,
    /// The operation took effect, with the result in `value`.
    Ok,
    /// The operation certainly did not take effect.
    Fail,
    /// The outcome is unknown (a timeout after sending, a crash): it may have taken effect.
    Info,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Invoke => "invoke",
            EventType::Ok => "ok",
            EventType::Fail => "fail",
            EventType::Info => "info",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "invoke" => Some(EventType::Invoke),
            "ok" => Some(EventType::Ok),
            "fail" => Some(EventType::Fail),
            "info" => Some(EventType::Info),
            _ => None,
        }
    }
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The logical client that issued the operation; one operation at a time per process.
    pub process: u64,
    pub event_type: EventType,
    /// The operation's name: `read`, `write`, `cas`, `add`, `transfer` …
    pub f: String,
    /// The key the operation touches, when it touches one.
    pub key: Option<String>,
    /// The argument on `invoke`, the result on `ok`.
    pub value: Value,
    /// Nanoseconds since the run started, from one monotonic clock.
    pub time: u64,
    /// Server metadata of the answer, when there was one.
    pub revision: Option<i64>,
    pub member: Option<String>,
    pub term: Option<u64>,
    /// Why an operation failed or is unknown (`compare-failed`, `timeout`, …).
    pub error: Option<String>,
}

impl Event {
    /// An event with no server metadata and no error.
    pub fn new(
        process: u64,
        event_type: EventType,
        f: &str,
        key: Option<&str>,
        value: Value,
        time: u64,
    ) -> Self {
        Event {
            process,
            event_type,
            f: f.to_owned(),
            key: key.map(str::to_owned),
            value,
            time,
            revision: None,
            member: None,
            term: None,
            error: None,
        }
    }
}

/// How an operation completed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Ok,
    Fail,
    Info,
}

/// An invocation paired with its completion.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    /// Position in the history, in invocation order.
    pub id: usize,
    pub process: u64,
    pub f: String,
    pub key: Option<String>,
    /// The invocation's argument.
    pub input: Value,
    /// The completion's result (`Null` unless `ok`).
    pub output: Value,
    pub outcome: Outcome,
    pub error: Option<String>,
    /// Invocation time.
    pub call: u64,
    /// Completion time; `None` when the outcome is unknown (the operation may take effect at
    /// any time after `call`).
    pub ret: Option<u64>,
    /// Server metadata of the completion.
    pub revision: Option<i64>,
    pub member: Option<String>,
}

impl Operation {
    /// A short human description: `p3 write k1 7 → ok`.
    pub fn describe(&self) -> String {
        let key = self
            .key
            .as_deref()
            .map(|k| format!(" {k}"))
            .unwrap_or_default();
        let input = if self.input.is_null() {
            String::new()
        } else {
            format!(" {}", self.input)
        };
        let result = match self.outcome {
            Outcome::Ok if self.output.is_null() => "ok".to_owned(),
            Outcome::Ok => format!("ok {}", self.output),
            Outcome::Fail => format!("fail {}", self.error.as_deref().unwrap_or("")),
            Outcome::Info => "info (unknown)".to_owned(),
        };
        let window = match self.ret {
            Some(ret) => format!("[{} .. {}]", self.call, ret),
            None => format!("[{} .. ?]", self.call),
        };
        format!(
            "p{} {}{}{} -> {} {}",
            self.process,
            self.f,
            key,
            input,
            result.trim_end(),
            window
        )
    }
}

/// A history that cannot be paired into operations.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HistoryError {
    #[error("event {index}: process {process} invoked {f} while its earlier operation was open")]
    DoubleInvoke {
        index: usize,
        process: u64,
        f: String,
    },
    #[error("event {index}: process {process} completed {f} without an open invocation")]
    CompletionWithoutInvoke {
        index: usize,
        process: u64,
        f: String,
    },
    #[error("event {index}: process {process} completed {f} but invoked {invoked}")]
    MismatchedCompletion {
        index: usize,
        process: u64,
        f: String,
        invoked: String,
    },
    #[error("event {index}: process {process} completed at {time} before its invocation at {call}")]
    CompletionBeforeInvoke {
        index: usize,
        process: u64,
        time: u64,
        call: u64,
    },
}

/// Operations in invocation order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    pub ops: Vec<Operation>,
}

/// Counts of operations by name and outcome.
pub type Counts = BTreeMap<String, [usize; 3]>;

impl History {
    /// Pairs every invocation with the next completion of the same process. Invocations
    /// still open at the end become `info`: their outcome is unknown.
    pub fn from_events(events: &[Event]) -> Result<History, HistoryError> {
        let mut ops: Vec<Operation> = Vec::new();
        let mut open: BTreeMap<u64, usize> = BTreeMap::new();
        for (index, event) in events.iter().enumerate() {
            if event.event_type == EventType::Invoke {
                if open.contains_key(&event.process) {
                    return Err(HistoryError::DoubleInvoke {
                        index,
                        process: event.process,
                        f: event.f.clone(),
                    });
                }
                open.insert(event.process, ops.len());
                ops.push(Operation {
                    id: ops.len(),
                    process: event.process,
                    f: event.f.clone(),
                    key: event.key.clone(),
                    input: event.value.clone(),
                    output: Value::Null,
                    outcome: Outcome::Info,
                    error: None,
                    call: event.time,
                    ret: None,
                    revision: None,
                    member: None,
                });
                continue;
            }
            let Some(at) = open.remove(&event.process) else {
                return Err(HistoryError::CompletionWithoutInvoke {
                    index,
                    process: event.process,
                    f: event.f.clone(),
                });
            };
            let op = &mut ops[at];
            if op.f != event.f {
                return Err(HistoryError::MismatchedCompletion {
                    index,
                    process: event.process,
                    f: event.f.clone(),
                    invoked: op.f.clone(),
                });
            }
            if event.time < op.call {
                return Err(HistoryError::CompletionBeforeInvoke {
                    index,
                    process: event.process,
                    time: event.time,
                    call: op.call,
                });
            }
            op.error = event.error.clone();
            op.revision = event.revision;
            op.member = event.member.clone();
            match event.event_type {
                EventType::Ok => {
                    op.outcome = Outcome::Ok;
                    op.output = event.value.clone();
                    op.ret = Some(event.time);
                }
                EventType::Fail => {
                    op.outcome = Outcome::Fail;
                    op.ret = Some(event.time);
                }
                EventType::Info | EventType::Invoke => op.outcome = Outcome::Info,
            }
        }
        Ok(History { ops })
    }

    /// Counts of `[ok, fail, info]` per operation name.
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::new();
        for op in &self.ops {
            let slot = match op.outcome {
                Outcome::Ok => 0,
                Outcome::Fail => 1,
                Outcome::Info => 2,
            };
            counts.entry(op.f.clone()).or_default()[slot] += 1;
        }
        counts
    }

    /// The operations grouped by key (operations without a key under `None`), each group in
    /// invocation order.
    pub fn by_key(&self) -> BTreeMap<Option<String>, Vec<&Operation>> {
        let mut groups: BTreeMap<Option<String>, Vec<&Operation>> = BTreeMap::new();
        for op in &self.ops {
            groups.entry(op.key.clone()).or_default().push(op);
        }
        groups
    }
}
