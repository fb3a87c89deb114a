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
use ranges::{Outcome, RangeId, RangeMachine, RangeState};
use storage::SnapshotFile;

use crate::codec;
use crate::range::codec as range_codec;
use crate::types::*;

fn io_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

/// Where a member keeps its ranges' files: per range a snapshot (`<id>.snap`) and, for a range
/// born of a split on this member, the seed its group starts from (`<id>.seed`).
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

    /// True when this member holds state of `range` to start its group from: a snapshot or a
    /// split's seed. Only looks for the files; a corrupt one is refused when the group loads it.
    pub fn has_state(&self, range: RangeId) -> io::Result<bool> {
        Ok(self.dir.join(format!("{}.snap", range.0)).try_exists()?
            || self.dir.join(format!("{}.seed", range.0)).try_exists()?)
    }

    /// Removes the files of a range this member no longer replicates.
    pub fn remove(&self, range: RangeId) -> io::Result<()> {
        for name in [format!("{}.snap", range.0), format!("{}.seed", range.0)] {
            match std::fs::remove_file(self.dir.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

struct Inner {
    machine: RangeMachine,
    bucket: String,
    applied: Option<LogId>,
    membership: StoredMembership,
}

pub(crate) struct Shared {
    inner: RwLock<Inner>,
    files: RangeFiles,
    range: RangeId,
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
    /// Opens range `descriptor.id`'s state on this member: its saved snapshot, else the seed a
    /// split left, else an empty range with `descriptor` (a new bucket's first range, or a
    /// replica that waits for a snapshot from the leader).
    pub fn open(
        files: RangeFiles,
        descriptor: &pb::RangeDescriptor,
    ) -> io::Result<RangeStateMachine> {
        let range = RangeId(descriptor.id);
        let inner = if let Some(file) = files.snapshot(range).load().map_err(io_error)? {
            let (meta, data) = decode_file(&file)?;
            let (machine, bucket) = decode_machine(data)?;
            Inner {
                machine,
                bucket,
                applied: meta.last_log_id,
                membership: meta.last_membership,
            }
        } else if let Some(seed) = files.seed(range).load().map_err(io_error)? {
            let (machine, bucket) = decode_machine(&seed)?;
            Inner {
                machine,
                bucket,
                applied: None,
                membership: StoredMembership::default(),
            }
        } else {
            Inner {
                machine: RangeMachine::new(RangeState::new(topology::descriptor_from_pb(
                    descriptor,
                ))),
                bucket: descriptor.bucket.clone(),
                applied: None,
                membership: StoredMembership::default(),
            }
        };
        Ok(RangeStateMachine {
            shared: Arc::new(Shared {
                inner: RwLock::new(inner),
                files,
                range,
            }),
        })
    }

    /// Runs `read` on the current state.
    pub(crate) fn read<T>(&self, read: impl FnOnce(&RangeMachine, &str) -> T) -> T {
        let inner = self.shared.inner.read().expect("range state lock poisoned");
        read(&inner.machine, &inner.bucket)
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
                })) => {
                    let request = range_codec::request_id(&command);
                    // A command the log holds but that does not decode is a broken invariant
                    // (every member wrote it from a valid request): stop rather than diverge.
                    let decoded = range_codec::command_from_pb(&command).map_err(io_error)?;
                    let outcome = inner.machine.apply(entry.log_id.index, request, decoded);
                    let response = range_codec::outcome_to_pb(&outcome, &inner.bucket);
                    if let Outcome::Split { right } = outcome {
                        self.save_seed(&right, &inner.bucket)?;
                    }
                    pb::CommandResponse {
                        op: Some(pb::command_response::Op::Range(response)),
                        index: entry.log_id.index,
                        ..Default::default()
                    }
                }
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

    /// Saves the right half of a split as its group's seed, unless that group has state here
    /// already (this apply is a replay after a restart).
    fn save_seed(&self, right: &RangeMachine, bucket: &str) -> io::Result<()> {
        let id = right.state().descriptor().id;
        if self.shared.files.has_state(id)? {
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
