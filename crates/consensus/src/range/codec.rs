//! The wire and snapshot forms of a range group's commands, outcomes and state
//! (`quorate.raft.v1` messages) and their mapping to the `ranges` types. A snapshot lists every
//! version, the GC threshold, the closed timestamp and the client sessions, so a replica restored from it answers a
//! retried request as the one that applied it did.

use base::HlcTimestamp;
use proto::quorate::raft::v1 as pb;
use ranges::{Outcome, RangeCommand, RangeId, RangeMachine, RangeOpError, RangeState, RequestId};
use versioned::VersionedMap;

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
            right: Box::new(
                snapshot_from_pb(merge.right.as_ref().ok_or(missing(what, "right"))?)?.0,
            ),
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

/// The snapshot form of a range's state machine.
pub fn snapshot_to_pb(machine: &RangeMachine, bucket: &str) -> pb::RangeSnapshot {
    let state = machine.state();
    pb::RangeSnapshot {
        descriptor: Some(topology::descriptor_to_pb(bucket, state.descriptor())),
        versions: state
            .data()
            .versions()
            .map(|(key, ts, value)| pb::RangeVersion {
                key: key.to_vec(),
                value: value.map(<[u8]>::to_vec),
                ts: Some(ts_to_pb(ts)),
            })
            .collect(),
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

/// A range's state machine from its snapshot form, and the bucket it belongs to.
pub fn snapshot_from_pb(
    snapshot: &pb::RangeSnapshot,
) -> Result<(RangeMachine, String), CodecError> {
    let what = "range snapshot";
    let descriptor = snapshot
        .descriptor
        .as_ref()
        .ok_or(missing(what, "descriptor"))?;
    let gc_threshold = snapshot
        .gc_threshold
        .as_ref()
        .map_or(HlcTimestamp::ZERO, ts_from_pb);
    let versions = snapshot
        .versions
        .iter()
        .map(|v| {
            Ok((
                v.key.clone(),
                ts_of(&v.ts, "range version")?,
                v.value.clone(),
            ))
        })
        .collect::<Result<Vec<_>, CodecError>>()?;
    let data = VersionedMap::from_versions(gc_threshold, versions)
        .map_err(|e| CodecError::Invalid(format!("range snapshot: {e}")))?;
    let sessions = snapshot
        .sessions
        .iter()
        .map(|s| {
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
        })
        .collect::<Result<Vec<_>, CodecError>>()?;
    let state = RangeState::from_parts(
        topology::descriptor_from_pb(descriptor),
        data,
        (snapshot.merging_into != 0).then_some(RangeId(snapshot.merging_into)),
        snapshot
            .closed
            .as_ref()
            .map_or(HlcTimestamp::ZERO, ts_from_pb),
    );
    Ok((
        RangeMachine::restore(state, snapshot.applied, sessions),
        descriptor.bucket.clone(),
    ))
}
