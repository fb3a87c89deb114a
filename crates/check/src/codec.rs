//! The history file format (DESIGN §5): one JSON object per line,
//! `{"process":P,"type":"invoke|ok|fail|info","f":"…","key":…,"value":…,"time":NS}` plus the
//! optional server metadata `revision`, `member`, `term` and an `error` string. Unknown fields
//! are ignored so later recorders can add metadata; a missing required field is an error with
//! its line number.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::history::{Event, EventType};

/// A history line that cannot be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    #[error("line {line}: {message}")]
    Malformed { line: usize, message: String },
}

#[derive(Serialize, Deserialize)]
struct EventRecord {
    process: u64,
    #[serde(rename = "type")]
    event_type: String,
    f: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<Value>,
    #[serde(default)]
    value: Value,
    time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revision: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    member: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    term: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Encodes one event as one line (without the newline).
pub fn encode_event(event: &Event) -> String {
    let record = EventRecord {
        process: event.process,
        event_type: event.event_type.as_str().to_owned(),
        f: event.f.clone(),
        key: event.key.clone().map(Value::String),
        value: event.value.clone(),
        time: event.time,
        revision: event.revision,
        member: event.member.clone(),
        term: event.term,
        error: event.error.clone(),
    };
    serde_json::to_string(&record).expect("a history event always encodes")
}

/// Decodes one line; `line` (1-based) only labels errors.
pub fn decode_event(text: &str, line: usize) -> Result<Event, CodecError> {
    let malformed = |message: String| CodecError::Malformed { line, message };
    let record: EventRecord = serde_json::from_str(text).map_err(|e| malformed(e.to_string()))?;
    let event_type = EventType::parse(&record.event_type).ok_or_else(|| {
        malformed(format!(
            "type {:?} is not invoke, ok, fail or info",
            record.event_type
        ))
    })?;
    let key = match record.key {
        None | Some(Value::Null) => None,
        Some(Value::String(key)) => Some(key),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => return Err(malformed(format!("key {other} is not a string or number"))),
    };
    Ok(Event {
        process: record.process,
        event_type,
        f: record.f,
        key,
        value: record.value,
        time: record.time,
        revision: record.revision,
        member: record.member,
        term: record.term,
        error: record.error,
    })
}

/// Decodes a whole history file; blank lines are skipped.
pub fn decode_history(text: &str) -> Result<Vec<Event>, CodecError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| decode_event(line, n + 1))
        .collect()
}
