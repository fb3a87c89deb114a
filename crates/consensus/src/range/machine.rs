//! openraft's state machine for one range's group: applies committed range commands to the
//! `ranges` state machine in memory, and keeps it durable as a snapshot file plus the Raft log
//! after it (openraft replays the log from the snapshot on restart and purges only behind a
//! snapshot that is saved). A committed split writes the right half as the seed of the new
//! range's group before the apply returns, so the seed is durable whenever the split is.

use std::io::{self, Cursor};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::OptionalSend;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use prost::Message;
use proto::quorate::raft::v1 as pb;
use ranges::{Outcome, RangeCommand, RangeId, RangeMachine, RangeState};
use storage::SnapshotFile;

use crate::codec;
use crate::range::codec as range_codec;
use crate::types::*;

fn io_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

/// Where a member keeps its ranges' files: per range a snapshot (`<id>.snap`) and the seed its
/// group's log starts from (`<id>.seed`: a bucket's first range starts empty, a range born of
/// a split on this member from the split's right half). A replica's state is always one of
/// these at a known log index (a snapshot at its last entry, a seed before the log's first),
/// never built from the metadata. A range retired here leaves a mark (`<id>.gone`): what this
/// member held of it is void, so a replayed split does not write its seed again and a replica
/// added back later starts from its leader's snapshot, not from stale files.
#[derive(Clone, Debug)]
pub struct RangeFiles {
    dir: PathBuf,
}

impl RangeFiles {
    /// The files under `dir` (created when missing).
    pub fn new(dir: PathBuf) -> io::Result<RangeFiles> {
        std::fs::create_dir_all(&dir)?;
        Ok(RangeFiles { dir })
    }

    fn snapshot(&self, range: RangeId) -> SnapshotFile {
        SnapshotFile::new(&self.dir.join(format!("{}.snap", range.0)))
    }

    fn seed(&self, range: RangeId) -> SnapshotFile {
        SnapshotFile::new(&self.dir.join(format!("{}.seed", range.0)))
    }

    fn gone_path(&self, range: RangeId) -> PathBuf {
        self.dir.join(format!("{}.gone", range.0))
    }

    /// True when this member holds state of `range` to start its group from: a snapshot or a
    /// seed, not voided by a retirement. Only looks for the files; a corrupt one is refused
    /// when the group loads it.
    pub fn has_state(&self, range: RangeId) -> io::Result<bool> {
        Ok((self.dir.join(format!("{}.snap", range.0)).try_exists()?
            || self.dir.join(format!("{}.seed", range.0)).try_exists()?)
            && !self.is_gone(range)?)
    }

    /// True when `range` was retired here: its files, and any log of it, are void.
    pub fn is_gone(&self, range: RangeId) -> io::Result<bool> {
        self.gone_path(range).try_exists()
    }

    /// Marks `range` retired (durably, before its log and files go), then removes its files.
    pub fn retire(&self, range: RangeId) -> io::Result<()> {
        let mark = std::fs::File::create(self.gone_path(range))?;
        mark.sync_all()?;
        std::fs::File::open(&self.dir)?.sync_all()?;
        self.remove(range)
    }

    /// Removes the snapshot and seed of `range` (its retirement mark stays).
    pub fn remove(&self, range: RangeId) -> io::Result<()> {
        for name in [format!("{}.snap", range.0), format!("{}.seed", range.0)] {
            match std::fs::remove_file(self.dir.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// A replica of a retired range is here again and its leader's snapshot is saved: the
    /// files are its own from now on.
    fn clear_gone(&self, range: RangeId) -> io::Result<()> {
        match std::fs::remove_file(self.gone_path(range)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Saves the seed of a bucket's first range: empty, with the descriptor it was created
    /// with, before its group's log is written (the state that log's entries were written
    /// for, whatever the metadata says later).
    pub fn save_first_seed(&self, descriptor: &pb::RangeDescriptor) -> io::Result<()> {
        let machine = RangeMachine::new(RangeState::new(topology::descriptor_from_pb(descriptor)));
        let bytes = range_codec::snapshot_to_pb(&machine, &descriptor.bucket).encode_to_vec();
        self.seed(RangeId(descriptor.id))
            .save(&bytes)
            .map_err(io_error)
    }
}

struct Inner {
    machine: RangeMachine,
    bucket: String,
    applied: Option<LogId>,
    membership: StoredMembership,
    /// The latest consistency checksums (log index, SHA-256 of the state there), oldest
    /// first; at most `CHECKSUMS_KEPT`. Not part of the state: a restart forgets them.
    checksums: std::collections::VecDeque<(u64, [u8; 32])>,
}

/// Consistency checksums a replica keeps for the check to collect.
const CHECKSUMS_KEPT: usize = 8;

/// SHA-256 of a range state's snapshot encoding: everything replicated (descriptor, versions,
/// GC threshold, closed timestamp, sessions, the applied index), so two replicas at one log
/// index hash equal exactly when they hold the same state.
pub fn state_checksum(machine: &RangeMachine, bucket: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut snapshot = range_codec::snapshot_to_pb(machine, bucket);
    // The replicas as a set: their order in a descriptor carries no state.
    if let Some(descriptor) = snapshot.descriptor.as_mut() {
        descriptor.replicas.sort_by_key(|r| (r.member, r.learner));
    }
    let bytes = snapshot.encode_to_vec();
    sha2::Sha256::digest(&bytes).into()
}

pub(crate) struct Shared {
    inner: RwLock<Inner>,
    files: RangeFiles,
    range: RangeId,
    /// The member whose replica loses a merge's right keys (`Canary::MergeLosesRight`).
    #[cfg(feature = "canary")]
    loses_right: std::sync::OnceLock<u64>,
}

/// The state machine of one range on this member (cheap to clone).
#[derive(Clone)]
pub struct RangeStateMachine {
    pub(crate) shared: Arc<Shared>,
}

/// A saved snapshot: u32 length of the `SnapshotMeta`, the meta, then the `RangeSnapshot`.
fn encode_file(meta: &SnapshotMeta, data: &[u8]) -> Vec<u8> {
    let meta_bytes = codec::snapshot_meta_to_pb(meta).encode_to_vec();
    let mut file = Vec::with_capacity(4 + meta_bytes.len() + data.len());
    file.extend_from_slice(&(meta_bytes.len() as u32).to_be_bytes());
    file.extend_from_slice(&meta_bytes);
    file.extend_from_slice(data);
    file
}

fn decode_file(file: &[u8]) -> io::Result<(SnapshotMeta, &[u8])> {
    let len = file
        .get(..4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or_else(|| io_error("range snapshot file: truncated"))?;
    let meta_bytes = file
        .get(4..4 + len)
        .ok_or_else(|| io_error("range snapshot file: truncated meta"))?;
    let meta: pb::SnapshotMeta = codec::decode(meta_bytes, "snapshot meta").map_err(io_error)?;
    let meta = codec::snapshot_meta_from_pb(&meta).map_err(io_error)?;
    Ok((meta, &file[4 + len..]))
}

fn decode_machine(data: &[u8]) -> io::Result<(RangeMachine, String)> {
    let snapshot: pb::RangeSnapshot = codec::decode(data, "range snapshot").map_err(io_error)?;
    range_codec::snapshot_from_pb(&snapshot).map_err(io_error)
}

impl RangeStateMachine {
    /// Opens range `descriptor.id`'s state on this member: its saved snapshot, else its seed
    /// (the state before its log's first entry). A replica with neither has nothing its log
    /// could apply to: with a log (`has_log`) it refuses to start rather than guess a state —
    /// a state built from today's descriptor under an old log loses the writes the log's
    /// splits and merges carried (issue #37) —, without one it is a replica added without
    /// state, which applies nothing until its leader's snapshot arrives.
    pub fn open(
        files: RangeFiles,
        descriptor: &pb::RangeDescriptor,
        has_log: bool,
    ) -> io::Result<RangeStateMachine> {
        let range = RangeId(descriptor.id);
        let gone = files.is_gone(range)?;
        let snapshot = if gone {
            None
        } else {
            files.snapshot(range).load().map_err(io_error)?
        };
        let seed = if gone || snapshot.is_some() {
            None
        } else {
            files.seed(range).load().map_err(io_error)?
        };
        let inner = if let Some(file) = snapshot {
            let (meta, data) = decode_file(&file)?;
            let (machine, bucket) = decode_machine(data)?;
            Inner {
                machine,
                bucket,
                applied: meta.last_log_id,
                membership: meta.last_membership,
                checksums: Default::default(),
            }
        } else if let Some(seed) = seed {
            let (machine, bucket) = decode_machine(&seed)?;
            Inner {
                machine,
                bucket,
                applied: None,
                membership: StoredMembership::default(),
                checksums: Default::default(),
            }
        } else if has_log {
            return Err(io_error(format!(
                "range {} has a log on this member but no snapshot or seed to apply it to: \
                 refusing to start from a guessed state",
                range.0
            )));
        } else {
            Inner {
                machine: RangeMachine::new(RangeState::new(topology::descriptor_from_pb(
                    descriptor,
                ))),
                bucket: descriptor.bucket.clone(),
                applied: None,
                membership: StoredMembership::default(),
                checksums: Default::default(),
            }
        };
        Ok(RangeStateMachine {
            shared: Arc::new(Shared {
                inner: RwLock::new(inner),
                files,
                range,
                #[cfg(feature = "canary")]
                loses_right: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Runs `read` on the current state.
    pub(crate) fn read<T>(&self, read: impl FnOnce(&RangeMachine, &str) -> T) -> T {
        let inner = self.shared.inner.read().expect("range state lock poisoned");
        read(&inner.machine, &inner.bucket)
    }

    /// Plants `Canary::MergeLosesRight` for this member (`member`).
    #[cfg(feature = "canary")]
    pub(crate) fn plant_merge_loses_right(&self, member: u64) {
        let _ = self.shared.loses_right.set(member);
    }

    /// The planted bug: on the merged range's lowest voter, a merge takes the right
    /// neighbour's state without its keys below its middle key.
    #[cfg(feature = "canary")]
    fn canary_merge(&self, command: RangeCommand) -> RangeCommand {
        let Some(&me) = self.shared.loses_right.get() else {
            return command;
        };
        let RangeCommand::Merge { merged, right } = command else {
            return command;
        };
        if merged.voters().min().map(|m| m.0) != Some(me) {
            return RangeCommand::Merge { merged, right };
        }
        let state = right.state();
        let Some(middle) = state.middle_key() else {
            return RangeCommand::Merge { merged, right };
        };
        let mut data = state.data().clone();
        let kept = data.split_off(&middle);
        let lossy = RangeState::from_parts(
            state.descriptor().clone(),
            kept,
            state.merging_into(),
            state.closed(),
        );
        let sessions: Vec<_> = right
            .sessions()
            .map(|(client, sequence, outcome, used)| (client, sequence, outcome.clone(), used))
            .collect();
        RangeCommand::Merge {
            merged,
            right: Box::new(RangeMachine::restore(lossy, right.applied(), sessions)),
        }
    }

    /// The latest consistency checksums (log index, SHA-256), oldest first.
    pub fn checksums(&self) -> Vec<(u64, [u8; 32])> {
        let inner = self.shared.inner.read().expect("range state lock poisoned");
        inner.checksums.iter().copied().collect()
    }

    /// The descriptor this replica holds, in the metadata's form.
    pub fn descriptor(&self) -> pb::RangeDescriptor {
        self.read(|m, bucket| topology::descriptor_to_pb(bucket, m.state().descriptor()))
    }

    fn apply_batch(&self, entries: Vec<Entry>) -> io::Result<Vec<pb::CommandResponse>> {
        let mut inner = self
            .shared
            .inner
            .write()
            .expect("range state lock poisoned");
        let mut replies = Vec::with_capacity(entries.len());
        for entry in entries {
            inner.applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Blank => pb::CommandResponse::default(),
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                    pb::CommandResponse::default()
                }
                EntryPayload::Normal(Request(pb::Command {
                    op: Some(pb::command::Op::Range(command)),
                })) => self.apply_command(&mut inner, entry.log_id.index, &command)?,
                EntryPayload::Normal(other) => {
                    return Err(io_error(format!(
                        "range {} was sent a command of the metadata group: {other}",
                        self.shared.range.0
                    )));
                }
            };
            replies.push(reply);
        }
        Ok(replies)
    }

    /// Applies one range command at log `index` (`apply_batch`'s part for range commands):
    /// the `ranges` machine decides; this stops a replica whose log does not fit its state,
    /// saves a split's seed, keeps consistency checksums and logs range changes.
    fn apply_command(
        &self,
        inner: &mut Inner,
        index: u64,
        command: &pb::RangeCommand,
    ) -> io::Result<pb::CommandResponse> {
        let request = range_codec::request_id(command);
        // A command the log holds but that does not decode is a broken invariant
        // (every member wrote it from a valid request): stop rather than diverge.
        let decoded = range_codec::command_from_pb(command).map_err(io_error)?;
        let change = matches!(
            decoded,
            RangeCommand::Split { .. } | RangeCommand::Merge { .. }
        );
        let checksum = matches!(decoded, RangeCommand::Checksum);
        let freeze = match &decoded {
            RangeCommand::Freeze { generation, into } => Some((*generation, *into)),
            _ => None,
        };
        #[cfg(feature = "canary")]
        let decoded = self.canary_merge(decoded);
        let outcome = inner.machine.apply(index, request, decoded);
        if outcome.breaks_invariant() {
            // This replica's state is not the one its log was written for: stop
            // it (openraft shuts the group down on a state machine error) rather
            // than apply the writes after a change it could not take.
            let descriptor = inner.machine.state().descriptor().clone();
            tracing::error!(
                range = self.shared.range.0,
                index = index,
                generation = descriptor.generation,
                ?outcome,
                "a committed split or merge does not fit this replica's state: \
                 replica stopped"
            );
            return Err(io_error(format!(
                "range {}: the split or merge at index {} does not fit this \
                 replica's state ({outcome:?})",
                self.shared.range.0, index
            )));
        }
        let response = range_codec::outcome_to_pb(&outcome, &inner.bucket);
        if change && !matches!(outcome, Outcome::Refused(_) | Outcome::Duplicate) {
            let descriptor = inner.machine.state().descriptor();
            tracing::info!(
                range = self.shared.range.0,
                index = index,
                generation = descriptor.generation,
                "range change applied: now [{:?}, {:?})",
                String::from_utf8_lossy(&descriptor.start),
                descriptor.end.as_deref().map(String::from_utf8_lossy),
            );
        }
        if let (Some((generation, into)), Outcome::Done) = (freeze, &outcome) {
            tracing::info!(
                range = self.shared.range.0,
                index = index,
                generation,
                into = into.0,
                "range frozen for a merge into its left neighbour"
            );
        }
        if let Outcome::Split { right } = outcome {
            self.save_seed(&right, &inner.bucket)?;
        }
        if checksum {
            let sum = state_checksum(&inner.machine, &inner.bucket);
            if inner.checksums.len() == CHECKSUMS_KEPT {
                inner.checksums.pop_front();
            }
            inner.checksums.push_back((index, sum));
        }
        Ok(pb::CommandResponse {
            op: Some(pb::command_response::Op::Range(response)),
            index,
            ..Default::default()
        })
    }

    /// Saves the right half of a split as its group's seed, unless that group has state here
    /// already (this apply is a replay after a restart) or was retired here (a replay must
    /// not leave a stale seed a replica added back later could start from).
    fn save_seed(&self, right: &RangeMachine, bucket: &str) -> io::Result<()> {
        let id = right.state().descriptor().id;
        if self.shared.files.has_state(id)? || self.shared.files.is_gone(id)? {
            return Ok(());
        }
        let bytes = range_codec::snapshot_to_pb(right, bucket).encode_to_vec();
        self.shared.files.seed(id).save(&bytes).map_err(io_error)
    }

    fn snapshot_now(&self) -> (SnapshotMeta, Vec<u8>) {
        let inner = self.shared.inner.read().expect("range state lock poisoned");
        let meta = SnapshotMeta {
            last_log_id: inner.applied,
            last_membership: inner.membership.clone(),
        };
        let data = range_codec::snapshot_to_pb(&inner.machine, &inner.bucket).encode_to_vec();
        (meta, data)
    }

    fn install(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        let (machine, bucket) = decode_machine(data)?;
        self.shared
            .files
            .snapshot(self.shared.range)
            .save(&encode_file(meta, data))
            .map_err(io_error)?;
        self.shared.files.clear_gone(self.shared.range)?;
        tracing::info!(
            range = self.shared.range.0,
            index = meta.last_log_id.map_or(0, |l| l.index),
            generation = machine.state().descriptor().generation,
            "range snapshot installed"
        );
        let mut inner = self
            .shared
            .inner
            .write()
            .expect("range state lock poisoned");
        *inner = Inner {
            machine,
            bucket,
            applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            checksums: Default::default(),
        };
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for RangeStateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let machine = self.clone();
        tokio::task::spawn_blocking(move || {
            let (meta, data) = machine.snapshot_now();
            machine
                .shared
                .files
                .snapshot(machine.shared.range)
                .save(&encode_file(&meta, &data))
                .map_err(io_error)?;
            Ok(Snapshot {
                meta,
                snapshot: Cursor::new(data),
            })
        })
        .await
        .map_err(io_error)?
    }
}

impl RaftStateMachine<TypeConfig> for RangeStateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = RangeStateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let inner = self.shared.inner.read().expect("range state lock poisoned");
        Ok((inner.applied, inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder, io::Error>> + Unpin + OptionalSend,
    {
        let batch: Vec<EntryResponder> = entries.try_collect().await?;
        let (entries, responders): (Vec<Entry>, Vec<_>) = batch.into_iter().unzip();
        let machine = self.clone();
        let replies = tokio::task::spawn_blocking(move || machine.apply_batch(entries))
            .await
            .map_err(io_error)??;
        for (responder, reply) in responders.into_iter().zip(replies) {
            if let Some(responder) = responder {
                responder.send(reply);
            }
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let machine = self.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || machine.install(&meta, &snapshot.into_inner()))
            .await
            .map_err(io_error)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let files = self.shared.files.clone();
        let range = self.shared.range;
        tokio::task::spawn_blocking(move || {
            let Some(file) = files.snapshot(range).load().map_err(io_error)? else {
                return Ok(None);
            };
            let (meta, data) = decode_file(&file)?;
            Ok(Some(Snapshot {
                meta,
                snapshot: Cursor::new(data.to_vec()),
            }))
        })
        .await
        .map_err(io_error)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(generation: u64, end: Option<&[u8]>) -> pb::RangeDescriptor {
        pb::RangeDescriptor {
            id: 1,
            bucket: "b".into(),
            start: Vec::new(),
            end: end.map(<[u8]>::to_vec),
            replicas: vec![pb::RangeReplica {
                member: 1,
                learner: false,
            }],
            generation,
            ..Default::default()
        }
    }

    fn files() -> (tempfile::TempDir, RangeFiles) {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = RangeFiles::new(dir.path().join("ranges")).expect("range files");
        (dir, files)
    }

    #[test]
    fn a_replica_with_a_log_but_no_seed_or_snapshot_refuses_to_start() {
        // Issue #37: a bucket's first range, merged since (its descriptor in the metadata now
        // ends at k150), restarted with only its log: building its state from that descriptor
        // and replaying [split, merge] over it lost the merged keys. It must refuse instead.
        let (_dir, files) = files();
        let merged = descriptor(4, Some(b"k150"));
        let refused = RangeStateMachine::open(files.clone(), &merged, true);
        assert!(refused.is_err(), "started from a guessed state");
        // Without a log it is a replica added without state: it starts, awaiting a snapshot.
        assert!(RangeStateMachine::open(files, &merged, false).is_ok());
    }

    #[test]
    fn a_first_range_restarts_from_the_seed_it_was_created_with_not_from_the_metadata() {
        let (_dir, files) = files();
        files
            .save_first_seed(&descriptor(1, None))
            .expect("first seed");
        let merged = descriptor(4, Some(b"k150"));
        let machine = RangeStateMachine::open(files, &merged, true).expect("opens");
        let held = machine.descriptor();
        assert_eq!(held.generation, 1);
        assert_eq!(held.end, None);
    }

    #[test]
    fn a_retired_range_s_files_are_void_and_a_replayed_split_writes_no_seed() {
        let (_dir, files) = files();
        files
            .save_first_seed(&descriptor(1, None))
            .expect("first seed");
        assert!(files.has_state(RangeId(1)).expect("look"));
        files.retire(RangeId(1)).expect("retire");
        assert!(!files.has_state(RangeId(1)).expect("look"));
        assert!(files.is_gone(RangeId(1)).expect("look"));
        // A replayed split of a parent writes no seed of the retired range here.
        let parent =
            RangeStateMachine::open(files.clone(), &descriptor(1, None), false).expect("opens");
        let right = RangeMachine::new(RangeState::new(topology::descriptor_from_pb(&descriptor(
            2, None,
        ))));
        parent.save_seed(&right, "b").expect("skipped");
        assert!(!files.has_state(RangeId(1)).expect("look"));
        // The replica added back starts without state and awaits its leader's snapshot.
        let opened = RangeStateMachine::open(files, &descriptor(7, None), false);
        assert!(opened.is_ok());
    }
}
