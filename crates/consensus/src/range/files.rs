//! Where a member keeps its range replicas: the range data file (`storage::RangeStore`,
//! `<dir>/data.redb`), holding per replica a record (descriptor, applied index, GC threshold,
//! closed timestamp, byte count), its client sessions, and its versions as the span of its
//! keys in the bucket's table. A replica's state is always a record at a known log index (its
//! last applied entry, or none for a seed: a bucket's first range, created empty, or a split's
//! right half, written by the split), never built from the metadata. A replica retired here,
//! or taken over by a merge on this member, keeps a record marked gone: what this member held
//! of it is void, so a replayed split does not seed it again and a replica added back later
//! starts from its leader's snapshot.
//!
//! Data directories from before kept one snapshot file per range (`<id>.snap`), split seeds
//! (`<id>.seed`) and retirement marks (`<id>.gone`): they are imported on open, then removed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use prost::Message;
use proto::quorate::raft::v1 as pb;
use ranges::{RangeId, RangeMachine, RangeState};
use storage::{RangeStore, RangeWrite, SnapshotFile};
use versioned::StoredVersionsMut;

use crate::codec;
use crate::range::codec as range_codec;
use crate::types::*;

pub(crate) fn io_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

/// The member's range replicas (cheap to clone).
#[derive(Clone)]
pub struct RangeFiles {
    store: Arc<RangeStore>,
    /// When the data was last committed synced (`commit`).
    synced: Arc<std::sync::Mutex<std::time::Instant>>,
}

impl std::fmt::Debug for RangeFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RangeFiles")
    }
}

/// A decoded record: gone or live.
pub(crate) fn decode_record(bytes: &[u8]) -> io::Result<pb::RangeRecord> {
    codec::decode(bytes, "range record").map_err(io_error)
}

/// Whether the spans of two descriptors of one bucket overlap.
fn overlaps(a: &pb::RangeDescriptor, b: &pb::RangeDescriptor) -> bool {
    let before = |start: &[u8], end: Option<&[u8]>| end.is_none_or(|end| start < end);
    a.bucket == b.bucket && before(&a.start, b.end.as_deref()) && before(&b.start, a.end.as_deref())
}

/// The first of `records` (range id, encoded record) other than `descriptor`'s own that is
/// live and holds part of its span.
fn first_overlapping(
    records: Vec<(u64, Vec<u8>)>,
    descriptor: &pb::RangeDescriptor,
) -> io::Result<Option<u64>> {
    for (id, bytes) in records {
        if id == descriptor.id {
            continue;
        }
        let record = decode_record(&bytes)?;
        if !record.gone
            && record
                .descriptor
                .as_ref()
                .is_some_and(|held| overlaps(held, descriptor))
        {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

impl RangeFiles {
    /// The range data under `dir` (created when missing), with a page cache of `cache_bytes`;
    /// files of an older layout found there are imported.
    pub fn new(dir: PathBuf, cache_bytes: usize) -> io::Result<RangeFiles> {
        std::fs::create_dir_all(&dir)?;
        let store = RangeStore::open(&dir.join("data.redb"), cache_bytes).map_err(io_error)?;
        let files = RangeFiles {
            store: Arc::new(store),
            synced: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
        };
        files.import_old_files(&dir)?;
        Ok(files)
    }

    /// Range data in memory (tests, inspecting a snapshot).
    pub fn in_memory() -> io::Result<RangeFiles> {
        let store = RangeStore::in_memory().map_err(io_error)?;
        Ok(RangeFiles {
            store: Arc::new(store),
            synced: Arc::new(std::sync::Mutex::new(std::time::Instant::now())),
        })
    }

    pub(crate) fn store(&self) -> &RangeStore {
        &self.store
    }

    /// Commits an applied batch: unsynced (the ranges' logs replay it), but synced when
    /// `durable_now` says so (a descriptor change) or the last synced commit is
    /// `RANGE_DATA_SYNC_INTERVAL` old, so a restart replays at most about that much of the
    /// logs whatever the data's size.
    pub(crate) fn commit(&self, tx: RangeWrite, durable_now: bool) -> io::Result<()> {
        let now = std::time::Instant::now();
        let durable = {
            let mut synced = self.synced.lock().expect("sync time poisoned");
            let due = durable_now
                || now.duration_since(*synced) >= base::limits::RANGE_DATA_SYNC_INTERVAL;
            if due {
                *synced = now;
            }
            due
        };
        tx.commit(durable).map_err(io_error)
    }

    /// Range `range`'s record, live or gone.
    pub(crate) fn record(&self, range: RangeId) -> io::Result<Option<pb::RangeRecord>> {
        let read = self.store.read().map_err(io_error)?;
        match read.meta(range.0).map_err(io_error)? {
            Some(bytes) => Ok(Some(decode_record(&bytes)?)),
            None => Ok(None),
        }
    }

    /// True when this member holds state of `range` to start its group from (a live record).
    pub fn has_state(&self, range: RangeId) -> io::Result<bool> {
        Ok(self.record(range)?.is_some_and(|r| !r.gone))
    }

    /// True when `range` was retired or merged away here: what is left of it, and any log of
    /// it, is void.
    pub fn is_gone(&self, range: RangeId) -> io::Result<bool> {
        Ok(self.record(range)?.is_some_and(|r| r.gone))
    }

    /// Another live replica on this member whose span overlaps `descriptor`'s: a replica of
    /// `descriptor`'s range must not take a state there until that one leaves or shrinks (it
    /// would write into the same keys).
    pub fn overlapping(&self, descriptor: &pb::RangeDescriptor) -> io::Result<Option<u64>> {
        let read = self.store.read().map_err(io_error)?;
        first_overlapping(read.metas().map_err(io_error)?, descriptor)
    }

    /// Marks `range` gone and removes its sessions and its versions (unless another live
    /// replica here holds its span now: a merge took it), durably, before its log goes.
    pub fn retire(&self, range: RangeId) -> io::Result<()> {
        let tx = self.store.write().map_err(io_error)?;
        if let Some(bytes) = tx.meta(range.0).map_err(io_error)? {
            let mut record = decode_record(&bytes)?;
            if let Some(held) = record.descriptor.clone()
                && !record.gone
            {
                let taken = first_overlapping(tx.metas().map_err(io_error)?, &held)?;
                if taken.is_none() {
                    clear_span(&tx, &held)?;
                }
            }
            record.gone = true;
            tx.set_meta(range.0, &record.encode_to_vec())
                .map_err(io_error)?;
        } else {
            let gone = pb::RangeRecord {
                gone: true,
                ..Default::default()
            };
            tx.set_meta(range.0, &gone.encode_to_vec())
                .map_err(io_error)?;
        }
        tx.clear_sessions(range.0).map_err(io_error)?;
        tx.commit(true).map_err(io_error)
    }

    /// Forgets `range` entirely (a replica added back after its retirement starts afresh).
    pub fn remove(&self, range: RangeId) -> io::Result<()> {
        let tx = self.store.write().map_err(io_error)?;
        tx.remove_meta(range.0).map_err(io_error)?;
        tx.clear_sessions(range.0).map_err(io_error)?;
        tx.commit(true).map_err(io_error)
    }

    /// Saves the seed of a bucket's first range: empty, with the descriptor it was created
    /// with, durably before its group's log is written (the state that log's entries were
    /// written for, whatever the metadata says later).
    pub fn save_first_seed(&self, descriptor: &pb::RangeDescriptor) -> io::Result<()> {
        let machine = RangeMachine::new(RangeState::new(topology::descriptor_from_pb(descriptor)));
        let record = range_codec::record_to_pb(&machine, &descriptor.bucket, None);
        let tx = self.store.write().map_err(io_error)?;
        tx.set_meta(descriptor.id, &record.encode_to_vec())
            .map_err(io_error)?;
        tx.commit(true).map_err(io_error)
    }

    /// Imports the files of the older layout under `dir`: snapshots first, then seeds of
    /// ranges without one, then retirement marks; each range only if the store has no record
    /// of it yet. The files go once the import is durable.
    fn import_old_files(&self, dir: &Path) -> io::Result<()> {
        let mut found: Vec<(u64, &'static str, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let (Some(stem), Some(ext)) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            let Ok(id) = stem.parse::<u64>() else {
                continue;
            };
            let kind = match ext {
                "snap" => "snap",
                "seed" => "seed",
                "gone" => "gone",
                _ => continue,
            };
            found.push((id, kind, path));
        }
        if found.is_empty() {
            return Ok(());
        }
        let order = |kind: &str| match kind {
            "gone" => 0,
            "snap" => 1,
            _ => 2,
        };
        found.sort_by_key(|(id, kind, _)| (*id, order(kind)));
        let tx = self.store.write().map_err(io_error)?;
        for (id, kind, path) in &found {
            if tx.meta(*id).map_err(io_error)?.is_some() {
                continue;
            }
            match *kind {
                "gone" => {
                    let gone = pb::RangeRecord {
                        gone: true,
                        ..Default::default()
                    };
                    tx.set_meta(*id, &gone.encode_to_vec()).map_err(io_error)?;
                }
                _ => {
                    let Some(file) = SnapshotFile::new(path).load().map_err(io_error)? else {
                        continue;
                    };
                    let (meta, data) = if *kind == "snap" {
                        let (meta, data) = decode_file(&file)?;
                        (Some(codec::snapshot_meta_to_pb(&meta)), data)
                    } else {
                        (None, &file[..])
                    };
                    let snapshot: pb::RangeSnapshot =
                        codec::decode(data, "range snapshot").map_err(io_error)?;
                    let (machine, bucket, versions) =
                        range_codec::snapshot_from_pb(&snapshot).map_err(io_error)?;
                    write_state(&tx, &machine, &bucket, &versions, meta)?;
                }
            }
            tracing::warn!(range = id, kind, "range file of the older layout imported");
        }
        tx.commit(true).map_err(io_error)?;
        for (_, _, path) in found {
            std::fs::remove_file(path)?;
        }
        Ok(())
    }
}

/// Removes every version in `descriptor`'s span of its bucket.
pub(crate) fn clear_span(tx: &RangeWrite, descriptor: &pb::RangeDescriptor) -> io::Result<()> {
    let mut data = tx.data(&descriptor.bucket).map_err(io_error)?;
    StoredVersionsMut::new(&mut data, &descriptor.start, descriptor.end.as_deref())
        .clear()
        .map_err(io_error)?;
    Ok(())
}

/// Writes a whole replica state — record, sessions and versions — replacing what the member
/// held in its span and of its sessions (a snapshot being installed, an old file imported).
pub(crate) fn write_state(
    tx: &RangeWrite,
    machine: &RangeMachine,
    bucket: &str,
    versions: &[ranges::ListedVersion],
    raft: Option<pb::SnapshotMeta>,
) -> io::Result<()> {
    let state = machine.state();
    let descriptor = topology::descriptor_to_pb(bucket, state.descriptor());
    let id = descriptor.id;
    if let Some(bytes) = tx.meta(id).map_err(io_error)? {
        // The replica's own older state may have covered another span: it is void too.
        let old = decode_record(&bytes)?;
        if let Some(held) = old.descriptor.filter(|_| !old.gone) {
            clear_span(tx, &held)?;
        }
    }
    clear_span(tx, &descriptor)?;
    {
        let mut data = tx.data(bucket).map_err(io_error)?;
        let mut span =
            StoredVersionsMut::new(&mut data, &descriptor.start, descriptor.end.as_deref());
        for (key, ts, value) in versions {
            span.restore(key, *ts, value.as_deref()).map_err(io_error)?;
        }
    }
    tx.clear_sessions(id).map_err(io_error)?;
    for (client, sequence, outcome, used) in machine.sessions() {
        let session = ranges::Session {
            sequence,
            outcome: outcome.clone(),
            used,
        };
        let bytes = range_codec::session_to_pb(client, &session, bucket).encode_to_vec();
        tx.set_session(id, client, Some(&bytes)).map_err(io_error)?;
    }
    let record = range_codec::record_to_pb(machine, bucket, raft);
    tx.set_meta(id, &record.encode_to_vec()).map_err(io_error)
}

/// A snapshot file of the older layout: u32 length of the `SnapshotMeta`, the meta, then the
/// `RangeSnapshot`.
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

/// The older layout's snapshot file of `meta` and `data` (tests of the import).
#[cfg(test)]
pub(crate) fn encode_file(meta: &SnapshotMeta, data: &[u8]) -> Vec<u8> {
    let meta_bytes = codec::snapshot_meta_to_pb(meta).encode_to_vec();
    let mut file = Vec::with_capacity(4 + meta_bytes.len() + data.len());
    file.extend_from_slice(&(meta_bytes.len() as u32).to_be_bytes());
    file.extend_from_slice(&meta_bytes);
    file.extend_from_slice(data);
    file
}
