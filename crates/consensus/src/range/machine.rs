//! openraft's state machine for one range's group: applies committed range commands to the
//! `ranges` state machine, whose record and sessions live in memory and in the member's range
//! data (`RangeFiles`), and whose versions live only there, as the span of the range's keys.
//! Each applied batch is one transaction: versions, record (with the applied log id) and
//! changed sessions together, committed without an fsync — the group's log replays it after a
//! crash, from the applied index the record kept. A snapshot syncs the data before openraft
//! purges the log behind it. A committed split writes the right half's record (its seed: its
//! versions are already in its span) in the same transaction, so the seed exists whenever the
//! split did; a committed merge writes the right neighbour's frozen versions into its span and
//! marks this member's replica of it gone, so a lagging copy of it can write nothing more.

use std::io::{self, Cursor};
use std::sync::{Arc, RwLock};

use futures::{Stream, TryStreamExt};
use openraft::OptionalSend;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use prost::Message;
use proto::quorate::raft::v1 as pb;
use ranges::{Outcome, RangeCommand, RangeId, RangeMachine, RangeState};
use storage::{RangeWrite, StorageError};
use versioned::OrderedStore;

use crate::codec;
use crate::range::codec as range_codec;
use crate::range::files::{RangeFiles, decode_record, io_error, write_state};
use crate::types::*;

struct Inner {
    machine: RangeMachine,
    bucket: String,
    applied: Option<LogId>,
    membership: StoredMembership,
    /// The latest consistency checksums (log index, SHA-256 of the state there), oldest
    /// first; at most `CHECKSUMS_KEPT`. Not part of the state: a restart forgets them.
    checksums: std::collections::VecDeque<(u64, [u8; 32])>,
}

impl Inner {
    /// The log position of the state: its last applied entry and membership.
    fn meta(&self) -> SnapshotMeta {
        SnapshotMeta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
        }
    }
}

/// Consistency checksums a replica keeps for the check to collect.
const CHECKSUMS_KEPT: usize = 8;

/// SHA-256 of a range state: everything replicated (descriptor with its replicas as a set,
/// GC threshold, closed timestamp, sessions, the applied index, then every version in key
/// order), so two replicas at one log index hash equal exactly when they hold the same state.
pub fn state_checksum<S: OrderedStore>(
    machine: &RangeMachine,
    bucket: &str,
    store: &S,
) -> Result<[u8; 32], S::Error> {
    use sha2::Digest;
    let mut head = range_codec::snapshot_to_pb(machine, bucket, &[]);
    if let Some(descriptor) = head.descriptor.as_mut() {
        descriptor.replicas.sort_by_key(|r| (r.member, r.learner));
    }
    let mut hash = sha2::Sha256::new();
    hash.update(head.encode_to_vec());
    machine
        .state()
        .versions(store)
        .versions(&mut |key, ts, value| {
            let version = range_codec::version_to_pb(&(key, ts, value.map(<[u8]>::to_vec)));
            hash.update(version.encode_length_delimited_to_vec());
            true
        })?;
    Ok(hash.finalize().into())
}

pub(crate) struct Shared {
    inner: RwLock<Inner>,
    files: RangeFiles,
    range: RangeId,
    /// Set while openraft starts the group: it then asks for the current snapshot only for
    /// its meta, and this replica's versions are not read for it.
    starting: std::sync::atomic::AtomicBool,
    /// The member whose replica loses a merge's right keys (`Canary::MergeLosesRight`).
    #[cfg(feature = "canary")]
    loses_right: std::sync::OnceLock<u64>,
}

/// The state machine of one range on this member (cheap to clone).
#[derive(Clone)]
pub struct RangeStateMachine {
    pub(crate) shared: Arc<Shared>,
}

/// A range's versions as a read view has them (a bucket nothing was written to has none).
pub enum View {
    Table(storage::Data),
    Empty,
}

impl View {
    /// `bucket`'s versions in a fresh consistent view of `files`.
    fn open(files: &RangeFiles, bucket: &str) -> io::Result<View> {
        let read = files.store().read().map_err(io_error)?;
        Ok(match read.data(bucket).map_err(io_error)? {
            Some(table) => View::Table(table),
            None => View::Empty,
        })
    }
}

impl OrderedStore for View {
    type Error = StorageError;

    fn first(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
    ) -> Result<Option<versioned::stored::Entry>, StorageError> {
        match self {
            View::Table(data) => data.first(from, to),
            View::Empty => Ok(None),
        }
    }

    fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        match self {
            View::Table(data) => data.scan(from, to, visit),
            View::Empty => Ok(()),
        }
    }
}

impl RangeStateMachine {
    /// Opens range `descriptor.id`'s state on this member: its record (the state after its
    /// last applied entry, or a seed before its log's first). A replica without one has
    /// nothing its log could apply to: with a log (`has_log`) it refuses to start rather than
    /// guess a state — a state built from today's descriptor under an old log loses the
    /// writes the log's splits and merges carried (issue #37) —, without one it is a replica
    /// added without state, which applies nothing until its leader's snapshot arrives.
    pub fn open(
        files: RangeFiles,
        descriptor: &pb::RangeDescriptor,
        has_log: bool,
    ) -> io::Result<RangeStateMachine> {
        let range = RangeId(descriptor.id);
        let record = files.record(range)?.filter(|r| !r.gone);
        let inner = if let Some(record) = record {
            let read = files.store().read().map_err(io_error)?;
            let sessions = read
                .sessions(range.0)
                .map_err(io_error)?
                .iter()
                .map(|(_, bytes)| {
                    let session: pb::RangeSession =
                        codec::decode(bytes, "range session").map_err(io_error)?;
                    range_codec::session_from_pb(&session).map_err(io_error)
                })
                .collect::<io::Result<Vec<_>>>()?;
            let (machine, bucket) =
                range_codec::record_from_pb(&record, sessions).map_err(io_error)?;
            let (applied, membership) = match &record.raft {
                Some(meta) => {
                    let meta = codec::snapshot_meta_from_pb(meta).map_err(io_error)?;
                    (meta.last_log_id, meta.last_membership)
                }
                None => (None, StoredMembership::default()),
            };
            Inner {
                machine,
                bucket,
                applied,
                membership,
                checksums: Default::default(),
            }
        } else if has_log {
            return Err(io_error(format!(
                "range {} has a log on this member but no state to apply it to: \
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
                starting: std::sync::atomic::AtomicBool::new(true),
                #[cfg(feature = "canary")]
                loses_right: std::sync::OnceLock::new(),
            }),
        })
    }

    /// The member's range data this replica lives in.
    pub(crate) fn files(&self) -> &RangeFiles {
        &self.shared.files
    }

    /// openraft has started the group: snapshots asked for from now on are sent to peers.
    pub(crate) fn started(&self) {
        self.shared
            .starting
            .store(false, std::sync::atomic::Ordering::Release);
    }

    /// Runs `read` on the current record (no versions).
    pub(crate) fn read<T>(&self, read: impl FnOnce(&RangeMachine, &str) -> T) -> T {
        let inner = self.shared.inner.read().expect("range state lock poisoned");
        read(&inner.machine, &inner.bucket)
    }

    /// Runs `read` on the current state with its versions, as of one consistent view.
    pub(crate) fn read_data<T>(
        &self,
        read: impl FnOnce(&RangeMachine, &str, &View) -> T,
    ) -> io::Result<T> {
        let inner = self.shared.inner.read().expect("range state lock poisoned");
        let data = View::open(&self.shared.files, &inner.bucket)?;
        Ok(read(&inner.machine, &inner.bucket, &data))
    }

    /// `read_data` for a read that may fail in the store: both failures as one error.
    pub(crate) fn try_read_data<T>(
        &self,
        read: impl FnOnce(&RangeMachine, &str, &View) -> Result<T, StorageError>,
    ) -> io::Result<T> {
        self.read_data(read)?.map_err(io_error)
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
        let RangeCommand::Merge { merged, mut right } = command else {
            return command;
        };
        if merged.voters().min().map(|m| m.0) == Some(me) {
            let mut keys: Vec<&[u8]> = right.versions.iter().map(|v| v.0.as_slice()).collect();
            keys.dedup();
            if let Some(middle) = keys.get(keys.len() / 2).map(|k| k.to_vec())
                && keys.len() >= 2
            {
                right.versions.retain(|(key, _, _)| *key >= middle);
            }
        }
        RangeCommand::Merge { merged, right }
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
        let range = self.shared.range.0;
        let tx = self.shared.files.store().write().map_err(io_error)?;
        let record = tx
            .meta(range)
            .map_err(io_error)?
            .map(|bytes| decode_record(&bytes))
            .transpose()?;
        match record {
            Some(record) if record.gone => return self.apply_void(&mut inner, entries),
            // A replica without state applies nothing (it refuses appends until its
            // snapshot): writing a record now would make up a state from its descriptor.
            None if entries.is_empty() => return Ok(Vec::new()),
            None => {
                return Err(io_error(format!(
                    "range {range}: entries to apply but no state on this member"
                )));
            }
            Some(_) => {}
        }
        let structural = entries.iter().any(changes_descriptor);
        let mut replies = Vec::with_capacity(entries.len());
        {
            let mut data = tx.data(&inner.bucket).map_err(io_error)?;
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
                    })) => self.apply_command(
                        &mut inner,
                        &mut data,
                        &tx,
                        entry.log_id.index,
                        &command,
                    )?,
                    EntryPayload::Normal(other) => {
                        return Err(io_error(format!(
                            "range {range} was sent a command of the metadata group: {other}"
                        )));
                    }
                };
                replies.push(reply);
            }
        }
        self.write_record(&mut inner, &tx)?;
        // A freeze or merge is synced as it applies: a power cut must not take a range back
        // across one, since a replica of a range the metadata no longer has (the frozen right
        // neighbour) is not started again to replay it from its log.
        self.shared.files.commit(tx, structural)?;
        Ok(replies)
    }

    /// Writes the replica's record and its changed sessions into `tx`.
    fn write_record(&self, inner: &mut Inner, tx: &RangeWrite) -> io::Result<()> {
        let range = self.shared.range.0;
        let raft = inner
            .applied
            .map(|_| codec::snapshot_meta_to_pb(&inner.meta()));
        let record = range_codec::record_to_pb(&inner.machine, &inner.bucket, raft);
        tx.set_meta(range, &record.encode_to_vec())
            .map_err(io_error)?;
        write_changed_sessions(tx, range, &mut inner.machine, &inner.bucket)
    }

    /// A replica whose range a merge on this member took over (or that was retired): it
    /// writes nothing any more — its span belongs to another replica now. Its entries are
    /// answered as refused for the merge (the range is frozen) and only counted as applied.
    fn apply_void(
        &self,
        inner: &mut Inner,
        entries: Vec<Entry>,
    ) -> io::Result<Vec<pb::CommandResponse>> {
        let Some(into) = inner.machine.state().merging_into() else {
            return Err(io_error(format!(
                "range {}: retired on this member, yet entries are applied",
                self.shared.range.0
            )));
        };
        let refusal = Outcome::Refused(ranges::RangeOpError::Merging {
            range: self.shared.range,
            into,
        });
        let mut replies = Vec::with_capacity(entries.len());
        for entry in entries {
            inner.applied = Some(entry.log_id);
            let reply = match entry.payload {
                EntryPayload::Membership(m) => {
                    inner.membership = StoredMembership::new(Some(entry.log_id), m);
                    pb::CommandResponse::default()
                }
                EntryPayload::Normal(_) => pb::CommandResponse {
                    op: Some(pb::command_response::Op::Range(range_codec::outcome_to_pb(
                        &refusal,
                        &inner.bucket,
                    ))),
                    index: entry.log_id.index,
                    ..Default::default()
                },
                EntryPayload::Blank => pb::CommandResponse::default(),
            };
            replies.push(reply);
        }
        Ok(replies)
    }

    /// Applies one range command at log `index` (`apply_batch`'s part for range commands):
    /// the `ranges` machine decides; this stops a replica whose log does not fit its state,
    /// writes a split's seed and a merge's takeover, keeps consistency checksums and logs
    /// range changes.
    fn apply_command(
        &self,
        inner: &mut Inner,
        data: &mut storage::DataMut<'_>,
        tx: &RangeWrite,
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
        let merged_right = match &decoded {
            RangeCommand::Merge { right, .. } => Some(right.machine.state().descriptor().id),
            _ => None,
        };
        let checksum = matches!(decoded, RangeCommand::Checksum);
        let freeze = match &decoded {
            RangeCommand::Freeze { generation, into } => Some((*generation, *into)),
            _ => None,
        };
        #[cfg(feature = "canary")]
        let decoded = self.canary_merge(decoded);
        let outcome = inner
            .machine
            .apply(data, index, request, decoded)
            .map_err(io_error)?;
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
        let changed = change && matches!(outcome, Outcome::Done | Outcome::Split { .. });
        if changed {
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
            self.save_seed(tx, *right, &inner.bucket)?;
        }
        if let (Some(right), true) = (merged_right, changed) {
            take_over(tx, right)?;
        }
        if checksum {
            let sum = state_checksum(&inner.machine, &inner.bucket, &*data).map_err(io_error)?;
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

    /// Writes the right half of a split as its group's seed (its record and sessions: its
    /// versions are in its span already), unless the member holds a record of that range
    /// already (this apply is a replay after a restart, or the range was retired here).
    fn save_seed(&self, tx: &RangeWrite, mut right: RangeMachine, bucket: &str) -> io::Result<()> {
        let id = right.state().descriptor().id;
        if tx.meta(id.0).map_err(io_error)?.is_some() {
            return Ok(());
        }
        let record = range_codec::record_to_pb(&right, bucket, None);
        tx.set_meta(id.0, &record.encode_to_vec())
            .map_err(io_error)?;
        write_changed_sessions(tx, id.0, &mut right, bucket)
    }

    /// The replica's state in snapshot form with its log position, as of one view.
    fn snapshot_now(&self) -> io::Result<(SnapshotMeta, Vec<u8>)> {
        let inner = self.shared.inner.read().expect("range state lock poisoned");
        let data = View::open(&self.shared.files, &inner.bucket)?;
        let versions = inner.machine.state().list(&data).map_err(io_error)?;
        let snapshot = range_codec::snapshot_to_pb(&inner.machine, &inner.bucket, &versions);
        Ok((inner.meta(), snapshot.encode_to_vec()))
    }

    /// The log position the replica has applied (what a snapshot built now covers).
    fn applied_meta(&self) -> SnapshotMeta {
        self.shared
            .inner
            .read()
            .expect("range state lock poisoned")
            .meta()
    }

    fn install(&self, meta: &SnapshotMeta, data: &[u8]) -> io::Result<()> {
        let snapshot: pb::RangeSnapshot =
            codec::decode(data, "range snapshot").map_err(io_error)?;
        let (machine, bucket, versions) =
            range_codec::snapshot_from_pb(&snapshot).map_err(io_error)?;
        let mut inner = self
            .shared
            .inner
            .write()
            .expect("range state lock poisoned");
        let tx = self.shared.files.store().write().map_err(io_error)?;
        write_state(
            &tx,
            &machine,
            &bucket,
            &versions,
            Some(codec::snapshot_meta_to_pb(meta)),
        )?;
        // Durable before openraft records the snapshot and drops the log behind it.
        tx.commit(true).map_err(io_error)?;
        tracing::info!(
            range = self.shared.range.0,
            index = meta.last_log_id.map_or(0, |l| l.index),
            generation = machine.state().descriptor().generation,
            "range snapshot installed"
        );
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

#[cfg(test)]
impl RangeStateMachine {
    /// The replica's state in snapshot form (what a frozen range hands its merger).
    pub(crate) fn frozen_snapshot_for_test(&self) -> pb::RangeSnapshot {
        let (_, bytes) = self.snapshot_now().expect("snapshot");
        codec::decode(&bytes, "range snapshot").expect("decode")
    }
}

/// Writes the sessions of `machine` (range `range`) changed since the last write into `tx`.
fn write_changed_sessions(
    tx: &RangeWrite,
    range: u64,
    machine: &mut RangeMachine,
    bucket: &str,
) -> io::Result<()> {
    for (client, session) in machine.take_changed_sessions() {
        let bytes = session.map(|s| range_codec::session_to_pb(client, &s, bucket).encode_to_vec());
        tx.set_session(range, client, bytes.as_deref())
            .map_err(io_error)?;
    }
    Ok(())
}

/// A merge on this member took range `right`'s span: this member's replica of it, if it has
/// one, is void from now on (its record marked gone, its sessions dropped; the span's
/// versions are the merged range's now).
fn take_over(tx: &RangeWrite, right: RangeId) -> io::Result<()> {
    let Some(bytes) = tx.meta(right.0).map_err(io_error)? else {
        return Ok(());
    };
    let mut record = decode_record(&bytes)?;
    if record.gone {
        return Ok(());
    }
    record.gone = true;
    tx.set_meta(right.0, &record.encode_to_vec())
        .map_err(io_error)?;
    tx.clear_sessions(right.0).map_err(io_error)
}

impl RaftSnapshotBuilder<TypeConfig> for RangeStateMachine {
    type SnapshotData = SnapshotData;

    /// The replica's data is its snapshot: building one makes what it applied durable, so
    /// openraft may purge the log behind it. openraft keeps only the meta of a built snapshot;
    /// the versions are read when one is sent (`get_current_snapshot`).
    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let machine = self.clone();
        tokio::task::spawn_blocking(move || {
            let meta = machine.applied_meta();
            machine.shared.files.store().sync().map_err(io_error)?;
            Ok(Snapshot {
                meta,
                snapshot: Cursor::new(Vec::new()),
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

    /// The replica's state now (what it applied need not be durable here: a crash replays it
    /// from this member's log, which `build_snapshot`'s sync keeps). While the group starts,
    /// openraft reads only the meta — after replaying the log, and as its snapshot: the data
    /// is synced first, and no versions are read.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let machine = self.clone();
        tokio::task::spawn_blocking(move || {
            let starting = machine
                .shared
                .starting
                .load(std::sync::atomic::Ordering::Acquire);
            if starting {
                // openraft asks after replaying the committed entries the record had not
                // kept, and takes the answer for a snapshot it may purge the log behind: what
                // it names must be durable first.
                let meta = machine.applied_meta();
                machine.shared.files.store().sync().map_err(io_error)?;
                return Ok(meta.last_log_id.is_some().then(|| Snapshot {
                    meta,
                    snapshot: Cursor::new(Vec::new()),
                }));
            }
            let (meta, data) = machine.snapshot_now()?;
            if meta.last_log_id.is_none() {
                return Ok(None);
            }
            Ok(Some(Snapshot {
                meta,
                snapshot: Cursor::new(data),
            }))
        })
        .await
        .map_err(io_error)?
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;

/// Whether `entry` freezes the range or merges its right neighbour into it: what is synced as
/// it applies (a split is synced before the right half's log exists, by the group; a replica
/// change replays from the log of a range the member still runs, and syncing each one slowed
/// merge alignment under load past a cluster test's deadline).
fn changes_descriptor(entry: &Entry) -> bool {
    use pb::range_command::Op;
    matches!(
        &entry.payload,
        EntryPayload::Normal(Request(pb::Command {
            op: Some(pb::command::Op::Range(pb::RangeCommand {
                op: Some(Op::Merge(_) | Op::Freeze(_)),
                ..
            })),
        }))
    )
}
