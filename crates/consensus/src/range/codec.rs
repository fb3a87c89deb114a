//! The wire, snapshot and record forms of a range group's commands, outcomes and state
//! (`quorate.raft.v1` messages) and their mapping to the `ranges` types. A snapshot lists every
//! version, the GC threshold, the closed timestamp and the client sessions, so a replica
//! restored from it answers a retried request as the one that applied it did. A record is what
//! the member's range data keeps of a replica besides its versions and sessions.

use base::HlcTimestamp;
use proto::quorate::raft::v1 as pb;
use ranges::{
    FrozenRange, ListedVersion, Outcome, RangeCommand, RangeId, RangeMachine, RangeOpError,
    RangeState, RequestId, Session,
};

use crate::codec::CodecError;

fn missing(what: &'static str, field: &'static str) -> CodecError {
    CodecError::Missing { what, field }
}

pub fn ts_to_pb(ts: HlcTimestamp) -> pb::Timestamp {
    pb::Timestamp {
        micros: ts.physical,
        logical: ts.logical,
    }
}

pub fn ts_from_pb(ts: &pb::Timestamp) -> HlcTimestamp {
    HlcTimestamp {
        physical: ts.micros,
        logical: ts.logical,
    }
}

fn ts_of(ts: &Option<pb::Timestamp>, what: &'static str) -> Result<HlcTimestamp, CodecError> {
    ts.as_ref().map(ts_from_pb).ok_or(missing(what, "ts"))
}

/// The request id of a command (`None` when it carries none).
pub fn request_id(command: &pb::RangeCommand) -> Option<RequestId> {
    (command.client != 0).then_some(RequestId {
        client: command.client,
        sequence: command.sequence,
    })
}

/// A range command as the `ranges` state machine takes it.
pub fn command_from_pb(command: &pb::RangeCommand) -> Result<RangeCommand, CodecError> {
    use pb::range_command::Op;
    let what = "range command";
    Ok(match command.op.as_ref().ok_or(missing(what, "op"))? {
        Op::Put(put) => RangeCommand::Put {
            key: put.key.clone(),
            value: put.value.clone(),
            ts: ts_of(&put.ts, "range put")?,
        },
        Op::Delete(delete) => RangeCommand::Delete {
            key: delete.key.clone(),
            ts: ts_of(&delete.ts, "range delete")?,
        },
        Op::Split(split) => RangeCommand::Split {
            left: topology::descriptor_from_pb(split.left.as_ref().ok_or(missing(what, "left"))?),
            right: topology::descriptor_from_pb(
                split.right.as_ref().ok_or(missing(what, "right"))?,
            ),
        },
        Op::SetDescriptor(descriptor) => {
            RangeCommand::SetDescriptor(topology::descriptor_from_pb(descriptor))
        }
        Op::Gc(threshold) => RangeCommand::Gc {
            threshold: ts_from_pb(threshold),
        },
        Op::Close(ts) => RangeCommand::Close { ts: ts_from_pb(ts) },
        Op::Checksum(_) => RangeCommand::Checksum,
        Op::Freeze(freeze) => RangeCommand::Freeze {
            generation: freeze.generation,
            into: RangeId(freeze.into),
        },
        Op::Merge(merge) => RangeCommand::Merge {
            merged: topology::descriptor_from_pb(
                merge.merged.as_ref().ok_or(missing(what, "merged"))?,
            ),
            right: Box::new({
                let (machine, _, versions) =
                    snapshot_from_pb(merge.right.as_ref().ok_or(missing(what, "right"))?)?;
                FrozenRange { machine, versions }
            }),
        },
    })
}

/// Why a replica refused, as the wire says it (`bucket` names the range's bucket).
pub fn refusal_to_pb(error: &RangeOpError, bucket: &str) -> pb::RangeRefusal {
    use pb::range_refusal::Why;
    let why = match error {
        RangeOpError::KeyOutside { descriptor } => {
            Why::Moved(topology::descriptor_to_pb(bucket, descriptor))
        }
        RangeOpError::WriteTooOld(too_old) => Why::TooOld(ts_to_pb(too_old.existing)),
        RangeOpError::BelowGc { threshold, .. } => Why::BelowGc(ts_to_pb(*threshold)),
        RangeOpError::BadChange { .. } => Why::BadChange(error.to_string()),
        RangeOpError::Merging { into, .. } => Why::Merging(into.0),
        RangeOpError::StaleGeneration { current, .. } => Why::Stale(*current),
    };
    pb::RangeRefusal { why: Some(why) }
}

/// What applying a command did, as the wire says it. A split answers `done`: its right half
/// is handed to the new range's group, not to the proposer.
pub fn outcome_to_pb(outcome: &Outcome, bucket: &str) -> pb::RangeCommandResponse {
    use pb::range_command_response::Outcome as O;
    let outcome = match outcome {
        Outcome::Written { ts } => O::Written(ts_to_pb(*ts)),
        Outcome::Split { .. } | Outcome::Done => O::Done(pb::Blank {}),
        Outcome::Refused(error) => O::Refused(refusal_to_pb(error, bucket)),
        Outcome::Duplicate => O::Duplicate(pb::Blank {}),
    };
    pb::RangeCommandResponse {
        outcome: Some(outcome),
        index: 0,
    }
}

/// A remembered outcome back from a snapshot (sessions remember only effects).
fn session_outcome_from_pb(outcome: &pb::RangeCommandResponse) -> Result<Outcome, CodecError> {
    use pb::range_command_response::Outcome as O;
    match outcome.outcome.as_ref() {
        Some(O::Written(ts)) => Ok(Outcome::Written { ts: ts_from_pb(ts) }),
        Some(O::Done(_)) => Ok(Outcome::Done),
        _ => Err(missing("range session", "written or done outcome")),
    }
}

/// One client's session in its stored and snapshot form.
pub fn session_to_pb(client: u64, session: &Session, bucket: &str) -> pb::RangeSession {
    pb::RangeSession {
        client,
        sequence: session.sequence,
        outcome: Some(outcome_to_pb(&session.outcome, bucket)),
        used: session.used,
    }
}

/// A session back: (client, sequence, outcome, last use).
pub fn session_from_pb(s: &pb::RangeSession) -> Result<(u64, u64, Outcome, u64), CodecError> {
    let outcome = s
        .outcome
        .as_ref()
        .ok_or(missing("range session", "outcome"))?;
    Ok((
        s.client,
        s.sequence,
        session_outcome_from_pb(outcome)?,
        s.used,
    ))
}

/// A version in its snapshot form.
pub fn version_to_pb((key, ts, value): &ListedVersion) -> pb::RangeVersion {
    pb::RangeVersion {
        key: key.clone(),
        value: value.clone(),
        ts: Some(ts_to_pb(*ts)),
    }
}

/// The snapshot form of a range's state machine and its versions.
pub fn snapshot_to_pb(
    machine: &RangeMachine,
    bucket: &str,
    versions: &[ListedVersion],
) -> pb::RangeSnapshot {
    let state = machine.state();
    pb::RangeSnapshot {
        descriptor: Some(topology::descriptor_to_pb(bucket, state.descriptor())),
        versions: versions.iter().map(version_to_pb).collect(),
        gc_threshold: Some(ts_to_pb(state.gc_threshold())),
        sessions: machine
            .sessions()
            .map(|(client, sequence, outcome, used)| pb::RangeSession {
                client,
                sequence,
                outcome: Some(outcome_to_pb(outcome, bucket)),
                used,
            })
            .collect(),
        applied: machine.applied(),
        merging_into: state.merging_into().map_or(0, |r| r.0),
        closed: Some(ts_to_pb(state.closed())),
    }
}

/// A range's state machine from its snapshot form, the bucket it belongs to and its versions
/// (the byte count summed from them).
pub fn snapshot_from_pb(
    snapshot: &pb::RangeSnapshot,
) -> Result<(RangeMachine, String, Vec<ListedVersion>), CodecError> {
    let what = "range snapshot";
    let descriptor = snapshot
        .descriptor
        .as_ref()
        .ok_or(missing(what, "descriptor"))?;
    let gc_threshold = snapshot
        .gc_threshold
        .as_ref()
        .map_or(HlcTimestamp::ZERO, ts_from_pb);
    let mut bytes = 0;
    let versions = snapshot
        .versions
        .iter()
        .map(|v| {
            bytes += versioned::stored::version_bytes(&v.key, v.value.as_deref());
            Ok((
                v.key.clone(),
                ts_of(&v.ts, "range version")?,
                v.value.clone(),
            ))
        })
        .collect::<Result<Vec<_>, CodecError>>()?;
    if versions
        .windows(2)
        .any(|w| (&w[0].0, std::cmp::Reverse(w[0].1)) >= (&w[1].0, std::cmp::Reverse(w[1].1)))
    {
        return Err(CodecError::Invalid(
            "range snapshot: versions out of order or listed twice".into(),
        ));
    }
    let sessions = snapshot
        .sessions
        .iter()
        .map(session_from_pb)
        .collect::<Result<Vec<_>, CodecError>>()?;
    let state = RangeState::from_parts(
        topology::descriptor_from_pb(descriptor),
        (snapshot.merging_into != 0).then_some(RangeId(snapshot.merging_into)),
        snapshot
            .closed
            .as_ref()
            .map_or(HlcTimestamp::ZERO, ts_from_pb),
        gc_threshold,
        bytes,
    );
    Ok((
        RangeMachine::restore(state, snapshot.applied, sessions),
        descriptor.bucket.clone(),
        versions,
    ))
}

/// The record form of a replica's state (its versions and sessions are stored apart).
pub fn record_to_pb(
    machine: &RangeMachine,
    bucket: &str,
    raft: Option<pb::SnapshotMeta>,
) -> pb::RangeRecord {
    let state = machine.state();
    pb::RangeRecord {
        descriptor: Some(topology::descriptor_to_pb(bucket, state.descriptor())),
        gc_threshold: Some(ts_to_pb(state.gc_threshold())),
        merging_into: state.merging_into().map_or(0, |r| r.0),
        closed: Some(ts_to_pb(state.closed())),
        bytes: state.bytes(),
        applied: machine.applied(),
        raft,
        gone: false,
    }
}

/// A replica's state from its record and sessions, and its bucket.
pub fn record_from_pb(
    record: &pb::RangeRecord,
    sessions: Vec<(u64, u64, Outcome, u64)>,
) -> Result<(RangeMachine, String), CodecError> {
    let descriptor = record
        .descriptor
        .as_ref()
        .ok_or(missing("range record", "descriptor"))?;
    let ts_or_zero =
        |ts: &Option<pb::Timestamp>| ts.as_ref().map_or(HlcTimestamp::ZERO, ts_from_pb);
    let state = RangeState::from_parts(
        topology::descriptor_from_pb(descriptor),
        (record.merging_into != 0).then_some(RangeId(record.merging_into)),
        ts_or_zero(&record.closed),
        ts_or_zero(&record.gc_threshold),
        record.bytes,
    );
    Ok((
        RangeMachine::restore(state, record.applied, sessions),
        descriptor.bucket.clone(),
    ))
}
