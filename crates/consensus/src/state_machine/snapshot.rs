//! Snapshots of the state machine: building one (format `QSNAPv05`: revisions, lease table,
//! alarms, removed member ids, topology, records; `QSNAPv04` without the topology is still
//! read), saving and loading the member's snapshot file, installing one from the leader or a
//! restore, and starting a new cluster from a restored one.

use std::io::{self, Cursor};

use mvcc::{Indexed, Keyspace, Record, Rev};
use prost::Message;
use proto::quorate::raft::v1 as pb;
use storage::StateWrite;

use crate::codec;
use crate::types::*;

use super::{
    ALARMS, APPLIED, Inner, LEASES, LatestLeases, MEMBERSHIP, REMOVED, REVISIONS, SNAPSHOT_MAGIC,
    SNAPSHOT_MAGIC_V4, Shared, TOPOLOGY, decode_removed, decode_revisions, encode_alarms,
    encode_leases, encode_removed, encode_revisions, io_error, restore_alarms, restore_leases,
    take_section,
};

impl Shared {
    /// Serializes the whole state (records and revisions) for a snapshot.
    pub(super) fn snapshot_bytes(&self) -> Result<(SnapshotMeta, Vec<u8>), io::Error> {
        // Under the state lock only what lives in memory is encoded and a read view of the
        // store is taken; the long copy of the records reads that view afterwards, while
        // applies go on (holding the lock through the copy stalled every write behind it).
        let (meta, mut data, view) = {
            let inner = self.inner.read().expect("state lock poisoned");
            let view = self.store.view().map_err(io_error)?;
            let mut data = Vec::new();
            data.extend_from_slice(SNAPSHOT_MAGIC);
            data.extend_from_slice(&encode_revisions(&inner.keyspace));
            for section in [
                encode_leases(&inner.keyspace),
                encode_alarms(&inner.keyspace),
                encode_removed(&inner.removed),
                inner.topology.encode_to_vec(),
            ] {
                data.extend_from_slice(&(section.len() as u32).to_be_bytes());
                data.extend_from_slice(&section);
            }
            let meta = SnapshotMeta {
                last_log_id: inner.applied,
                last_membership: inner.membership.clone(),
            };
            (meta, data, view)
        };
        // Everything in the view becomes durable before the log may be purged behind it: a
        // durable commit after the view covers every commit the view holds.
        self.store.sync().map_err(io_error)?;
        view.scan(
            |key, value| {
                data.extend_from_slice(key);
                data.extend_from_slice(&(value.len() as u32).to_be_bytes());
                data.extend_from_slice(value);
                Ok(())
            },
            |_, _| Ok(()),
        )
        .map_err(io_error)?;
        Ok((meta, data))
    }

    pub(super) fn save_snapshot(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), io::Error> {
        let meta_bytes = codec::snapshot_meta_to_pb(meta).encode_to_vec();
        let mut file = Vec::with_capacity(4 + meta_bytes.len() + data.len());
        file.extend_from_slice(&(meta_bytes.len() as u32).to_be_bytes());
        file.extend_from_slice(&meta_bytes);
        file.extend_from_slice(data);
        self.snapshot_file.save(&file).map_err(io_error)
    }

    pub(super) fn load_snapshot(&self) -> Result<Option<Snapshot>, io::Error> {
        let Some(file) = self.snapshot_file.load().map_err(io_error)? else {
            return Ok(None);
        };
        if file.len() < 4 {
            return Err(io_error("snapshot file: truncated"));
        }
        let meta_len = u32::from_be_bytes(file[..4].try_into().expect("4 bytes")) as usize;
        let meta_end = 4usize
            .checked_add(meta_len)
            .filter(|end| *end <= file.len());
        let meta_end = meta_end.ok_or_else(|| io_error("snapshot file: bad meta length"))?;
        let meta: pb::SnapshotMeta =
            codec::decode(&file[4..meta_end], "snapshot meta").map_err(io_error)?;
        let meta = codec::snapshot_meta_from_pb(&meta).map_err(io_error)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Cursor::new(file[meta_end..].to_vec()),
        }))
    }

    pub(super) fn install(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), io::Error> {
        self.install_state(meta, data)?;
        self.save_snapshot(meta, data)
    }

    /// Replaces the state with a snapshot's (without saving it as this member's snapshot).
    pub(crate) fn install_state(&self, meta: &SnapshotMeta, data: &[u8]) -> Result<(), io::Error> {
        let (body, has_topology) = match data.strip_prefix(SNAPSHOT_MAGIC.as_slice()) {
            Some(body) => (body, true),
            None => (
                data.strip_prefix(SNAPSHOT_MAGIC_V4.as_slice())
                    .ok_or_else(|| io_error("snapshot: unknown format"))?,
                false,
            ),
        };
        if body.len() < 16 {
            return Err(io_error("snapshot: truncated"));
        }
        let (current, compacted) = decode_revisions(&body[..16])?;
        let mut rest = &body[16..];
        let table: pb::LeaseTable =
            codec::decode(take_section(&mut rest, "lease table")?, "leases").map_err(io_error)?;
        let alarms_bytes = take_section(&mut rest, "alarms")?;
        let removed = decode_removed(take_section(&mut rest, "removed members")?)?;
        let topology: pb::Topology = if has_topology {
            codec::decode(take_section(&mut rest, "topology")?, "topology").map_err(io_error)?
        } else {
            pb::Topology::default()
        };
        let mut latest = LatestLeases::default();
        let mut write = StateWrite::default();
        let mut entries = Vec::new();
        while !rest.is_empty() {
            if rest.len() < 20 {
                return Err(io_error("snapshot: truncated record header"));
            }
            let rev = Rev::from_bytes(&rest[..16]).map_err(io_error)?;
            let len = u32::from_be_bytes(rest[16..20].try_into().expect("4 bytes")) as usize;
            let value = rest
                .get(20..20 + len)
                .ok_or_else(|| io_error("snapshot: truncated record"))?;
            let record = Record::decode(value).map_err(io_error)?;
            latest.see(rev, &record);
            entries.push(Indexed::of(rev, record));
            write.puts.push((rest[..16].to_vec(), value.to_vec()));
            rest = &rest[20 + len..];
        }
        let mut keyspace = Keyspace::restore(current, compacted, entries);
        restore_leases(&mut keyspace, &table, latest);
        restore_alarms(&mut keyspace, alarms_bytes)?;
        let mut inner = self.inner.write().expect("state lock poisoned");
        write.meta.push((REVISIONS, encode_revisions(&keyspace)));
        write.meta.push((LEASES, encode_leases(&keyspace)));
        write.meta.push((ALARMS, encode_alarms(&keyspace)));
        write.meta.push((REMOVED, encode_removed(&removed)));
        write.meta.push((TOPOLOGY, topology.encode_to_vec()));
        if let Some(id) = &meta.last_log_id {
            write
                .meta
                .push((APPLIED, codec::log_id_to_pb(id).encode_to_vec()));
        }
        let membership = codec::stored_membership_to_pb(&meta.last_membership).encode_to_vec();
        write.meta.push((MEMBERSHIP, membership));
        self.store.replace(&write).map_err(io_error)?;
        *inner = Inner {
            keyspace,
            applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            removed,
            topology,
        };
        self.topology_changed();
        self.feed.reset(current, compacted);
        Ok(())
    }

    /// Forgets what belonged to the source cluster of a restored snapshot (its removed member
    /// ids, alarms raised by its members), then saves the state as this member's snapshot.
    pub(crate) fn begin_new_cluster(&self) -> Result<(), io::Error> {
        {
            let mut inner = self.inner.write().expect("state lock poisoned");
            inner.removed.clear();
            inner.keyspace.restore_alarms(std::iter::empty());
            // The ring names the source cluster's members; the new cluster installs its own.
            inner.topology.ring.clear();
            inner.topology.vnodes = 0;
            inner.topology.pending = None;
            let mut write = StateWrite::default();
            write.meta.push((REMOVED, encode_removed(&inner.removed)));
            write.meta.push((TOPOLOGY, inner.topology.encode_to_vec()));
            write.meta.push((ALARMS, encode_alarms(&inner.keyspace)));
            self.store.write(&write, true).map_err(io_error)?;
        }
        self.topology_changed();
        let (meta, data) = self.snapshot_bytes()?;
        self.save_snapshot(&meta, &data)
    }
}
