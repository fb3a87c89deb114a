//! openraft's state machine: applies committed commands to the `mvcc` keyspace and persists the
//! changes with the applied log id in one `storage::StateStore` commit per batch. Reads go to
//! the same keyspace under a read lock, so a reader never sees an index entry whose record is
//! not yet stored.

use std::collections::BTreeSet;
use std::io::{self, Cursor};
use std::sync::{Arc, RwLock};

use base::EtcdError;
use futures::{Stream, TryStreamExt};
use mvcc::{Change, ChangeSet, History, Indexed, Keyspace, Record, RecordSource, Rev, WatchFilter};
use openraft::OptionalSend;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use prost::Message;
use proto::etcdserverpb::RangeRequest;
use proto::etcdserverpb::RangeResponse;
use proto::mvccpb::KeyValue;
use proto::quorate::raft::v1 as pb;
use storage::{SnapshotFile, StateStore, StateWrite};

use crate::codec;
use crate::feed::EventFeed;
use crate::types::*;

mod snapshot;

const APPLIED: &str = "applied";
const MEMBERSHIP: &str = "membership";
const REVISIONS: &str = "revisions";
const LEASES: &str = "leases";
const ALARMS: &str = "alarms";
const REMOVED: &str = "removed";
const TOPOLOGY: &str = "topology";
/// Snapshot layout: magic, revisions (16 bytes), lease table (u32 length + `LeaseTable`),
/// alarms (u32 length + etcd `AlarmResponse`), removed member ids (u32 length + 8 bytes per
/// id), topology (u32 length + `Topology`: quorum buckets and the token ring), then records
/// (16-byte revision key, u32 length, record bytes).
const SNAPSHOT_MAGIC: &[u8; 8] = b"QSNAPv05";
/// The layout before the topology section; still read (its topology is empty).
const SNAPSHOT_MAGIC_V4: &[u8; 8] = b"QSNAPv04";

/// What the state machine holds in memory, guarded by one lock.
struct Inner {
    keyspace: Keyspace,
    applied: Option<LogId>,
    membership: StoredMembership,
    /// Members a committed membership change removed (ids are never reused), so a removed
    /// member that asks learns it.
    removed: BTreeSet<NodeId>,
    /// Quorum bucket definitions and the token ring.
    topology: pb::Topology,
}

/// The state shared by the state machine, its snapshot builder and readers.
pub(crate) struct Shared {
    store: StateStore,
    snapshot_file: SnapshotFile,
    inner: RwLock<Inner>,
    pub(crate) feed: EventFeed,
    /// Counts changes of the topology since start (not persisted), so readers can cache what
    /// they derive from it and rebuild only when it changed.
    topology_version: std::sync::atomic::AtomicU64,
}

/// openraft's state machine handle (cheap to clone).
#[derive(Clone)]
pub struct StateMachine {
    pub(crate) shared: Arc<Shared>,
}

struct Source<'a>(&'a StateStore);

impl RecordSource for Source<'_> {
    fn record(&self, rev: Rev) -> Result<Record, EtcdError> {
        let bytes = self
            .0
            .record(&rev.to_bytes())
            .map_err(|e| EtcdError::Internal(format!("read record {rev:?}: {e}")))?
            .ok_or_else(|| EtcdError::Internal(format!("record {rev:?} missing from storage")))?;
        Record::decode(&bytes).map_err(|e| EtcdError::Internal(format!("record {rev:?}: {e}")))
    }
}

fn io_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

fn encode_revisions(keyspace: &Keyspace) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&keyspace.current_revision().to_be_bytes());
    out.extend_from_slice(&keyspace.compacted_revision().to_be_bytes());
    out
}

fn decode_revisions(bytes: &[u8]) -> Result<(i64, i64), io::Error> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| io_error("revisions: bad length"))?;
    let current = i64::from_be_bytes(array[..8].try_into().expect("8 bytes"));
    let compacted = i64::from_be_bytes(array[8..].try_into().expect("8 bytes"));
    Ok((current, compacted))
}

impl StateMachine {
    /// Opens the state machine on its tables, rebuilding the key index from the records.
    pub fn open(store: StateStore, snapshot_file: SnapshotFile) -> Result<StateMachine, io::Error> {
        let mut applied = None;
        let mut membership = StoredMembership::default();
        let mut revisions = (1, 0);
        let mut entries: Vec<Indexed> = Vec::new();
        let mut latest = LatestLeases::default();
        store
            .scan(
                |key, value| {
                    let rev = Rev::from_bytes(key).map_err(|e| corrupt("record key", e))?;
                    let record = Record::decode(value).map_err(|e| corrupt("record", e))?;
                    latest.see(rev, &record);
                    entries.push(Indexed::of(rev, record));
                    Ok(())
                },
                |_, _| Ok(()),
            )
            .map_err(io_error)?;
        if let Some(bytes) = store.meta(APPLIED).map_err(io_error)? {
            let id: pb::LogId = codec::decode(&bytes, "applied").map_err(io_error)?;
            applied = Some(codec::log_id_from_pb(&id).map_err(io_error)?);
        }
        if let Some(bytes) = store.meta(MEMBERSHIP).map_err(io_error)? {
            let stored: pb::StoredMembership =
                codec::decode(&bytes, "membership").map_err(io_error)?;
            membership = codec::stored_membership_from_pb(&stored).map_err(io_error)?;
        }
        if let Some(bytes) = store.meta(REVISIONS).map_err(io_error)? {
            revisions = decode_revisions(&bytes)?;
        }
        let mut keyspace = Keyspace::restore(revisions.0, revisions.1, entries);
        let table = match store.meta(LEASES).map_err(io_error)? {
            Some(bytes) => codec::decode(&bytes, "leases").map_err(io_error)?,
            None => pb::LeaseTable::default(),
        };
        restore_leases(&mut keyspace, &table, latest);
        if let Some(bytes) = store.meta(ALARMS).map_err(io_error)? {
            restore_alarms(&mut keyspace, &bytes)?;
        }
        let removed = match store.meta(REMOVED).map_err(io_error)? {
            Some(bytes) => decode_removed(&bytes)?,
            None => BTreeSet::new(),
        };
        let topology = match store.meta(TOPOLOGY).map_err(io_error)? {
            Some(bytes) => codec::decode(&bytes, "topology").map_err(io_error)?,
            None => pb::Topology::default(),
        };
        let feed = EventFeed::new(keyspace.current_revision(), keyspace.compacted_revision());
        let inner = Inner {
            keyspace,
            applied,
            membership,
            removed,
            topology,
        };
        let shared = Shared {
            store,
            snapshot_file,
            inner: RwLock::new(inner),
            feed,
            topology_version: std::sync::atomic::AtomicU64::new(0),
        };
        Ok(StateMachine {
            shared: Arc::new(shared),
        })
    }
}

/// Tracks each key's latest record while records are scanned in any order, to learn which live
/// keys hold which lease.
#[derive(Default)]
struct LatestLeases(std::collections::BTreeMap<Vec<u8>, (Rev, i64)>);

impl LatestLeases {
    fn see(&mut self, rev: Rev, record: &Record) {
        let lease = if record.tombstone { 0 } else { record.lease };
        let slot = self.0.entry(record.key.clone()).or_insert((rev, lease));
        if rev >= slot.0 {
            *slot = (rev, lease);
        }
    }
}

fn restore_leases(keyspace: &mut Keyspace, table: &pb::LeaseTable, latest: LatestLeases) {
    let leases = table.leases.iter().map(|l| (l.id, l.ttl, l.remaining));
    let keys = latest
        .0
        .into_iter()
        .filter(|(_, (_, lease))| *lease != 0)
        .map(|(key, (_, lease))| (key, lease));
    keyspace.restore_leases(leases, keys);
}

fn encode_alarms(keyspace: &Keyspace) -> Vec<u8> {
    keyspace.alarm_list(0, 0).encode_to_vec()
}

fn restore_alarms(keyspace: &mut Keyspace, bytes: &[u8]) -> Result<(), io::Error> {
    let alarms: proto::etcdserverpb::AlarmResponse =
        codec::decode(bytes, "alarms").map_err(io_error)?;
    keyspace.restore_alarms(alarms.alarms.iter().map(|a| (a.member_id, a.alarm)));
    Ok(())
}

/// Splits one length-prefixed section (u32 length, bytes) off the front of `rest`.
fn take_section<'a>(rest: &mut &'a [u8], what: &str) -> Result<&'a [u8], io::Error> {
    let truncated = || io_error(format!("snapshot: truncated {what}"));
    let length: [u8; 4] = rest
        .get(..4)
        .ok_or_else(truncated)?
        .try_into()
        .expect("4 bytes");
    let end = 4usize
        .checked_add(u32::from_be_bytes(length) as usize)
        .filter(|end| *end <= rest.len())
        .ok_or_else(truncated)?;
    let section = &rest[4..end];
    *rest = &rest[end..];
    Ok(section)
}

fn encode_removed(removed: &BTreeSet<NodeId>) -> Vec<u8> {
    removed.iter().flat_map(|id| id.to_be_bytes()).collect()
}

fn decode_removed(bytes: &[u8]) -> Result<BTreeSet<NodeId>, io::Error> {
    if !bytes.len().is_multiple_of(8) {
        return Err(io_error("removed members: bad length"));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|id| u64::from_be_bytes(id.try_into().expect("8 bytes")))
        .collect())
}

fn encode_leases(keyspace: &Keyspace) -> Vec<u8> {
    let table = pb::LeaseTable {
        leases: keyspace
            .leases()
            .map(|l| pb::LeaseRecord {
                id: l.id,
                ttl: l.ttl,
                remaining: l.remaining,
            })
            .collect(),
    };
    table.encode_to_vec()
}

fn corrupt(what: &str, error: impl std::fmt::Display) -> storage::StorageError {
    storage::StorageError::Corrupt {
        what: what.to_string(),
        detail: error.to_string(),
    }
}

impl Shared {
    /// Answers a Range from the local keyspace.
    pub(crate) fn range(&self, request: &RangeRequest) -> Result<RangeResponse, EtcdError> {
        let inner = self.inner.read().expect("state lock poisoned");
        inner.keyspace.range(&Source(&self.store), request)
    }

    /// Replays the changes `filter` selects from `from` on: from the in-memory feed when it
    /// holds them, otherwise from the keyspace's history.
    pub(crate) fn changes(
        &self,
        filter: &WatchFilter,
        from: i64,
        max_changes: usize,
    ) -> Result<History, EtcdError> {
        if let Some(history) = self.feed.read(filter, from, max_changes)? {
            return Ok(history);
        }
        let inner = self.inner.read().expect("state lock poisoned");
        inner
            .keyspace
            .history(&Source(&self.store), filter, from, max_changes)
    }

    /// Returns the key-value written at `rev`, if compaction has not removed it.
    pub(crate) fn key_value_at(&self, rev: Rev) -> Result<Option<KeyValue>, EtcdError> {
        match self.store.record(&rev.to_bytes()) {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => {
                let record = Record::decode(&bytes)
                    .map_err(|e| EtcdError::Internal(format!("record {rev:?}: {e}")))?;
                Ok(Some(KeyValue {
                    key: record.key,
                    create_revision: record.create_revision,
                    mod_revision: record.mod_revision,
                    version: record.version,
                    value: record.value,
                    lease: record.lease,
                }))
            }
            Err(e) => Err(EtcdError::Internal(format!("read record {rev:?}: {e}"))),
        }
    }

    /// Returns the HashKV of the local keyspace at `revision` and the compacted revision.
    pub(crate) fn hash_kv(&self, revision: i64) -> Result<(u32, i64, i64), EtcdError> {
        let inner = self.inner.read().expect("state lock poisoned");
        let (hash, at) = inner.keyspace.hash_kv(&Source(&self.store), revision)?;
        Ok((hash, inner.keyspace.compacted_revision(), at))
    }

    /// Returns a CRC32 of the whole replicated state: history, revisions and lease table.
    pub(crate) fn hash_all(&self) -> Result<u32, EtcdError> {
        let inner = self.inner.read().expect("state lock poisoned");
        let (history, _) = inner.keyspace.hash_kv(&Source(&self.store), 0)?;
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&history.to_be_bytes());
        hasher.update(&encode_revisions(&inner.keyspace));
        hasher.update(&encode_leases(&inner.keyspace));
        Ok(hasher.finalize())
    }

    /// Returns a consistent copy of the state in the snapshot format (for Maintenance.Snapshot).
    pub(crate) fn snapshot_data(&self) -> Result<(i64, Vec<u8>), EtcdError> {
        let (_, data) = self
            .snapshot_bytes()
            .map_err(|e| EtcdError::Internal(format!("build snapshot: {e}")))?;
        let body = &data[SNAPSHOT_MAGIC.len()..];
        let (current, _) = decode_revisions(&body[..16])
            .map_err(|e| EtcdError::Internal(format!("build snapshot: {e}")))?;
        Ok((current, data))
    }

    /// Returns the members committed membership changes removed.
    pub(crate) fn removed_members(&self) -> BTreeSet<NodeId> {
        let inner = self.inner.read().expect("state lock poisoned");
        inner.removed.clone()
    }

    /// Returns the quorum bucket definitions and the token ring.
    pub(crate) fn topology(&self) -> pb::Topology {
        let inner = self.inner.read().expect("state lock poisoned");
        inner.topology.clone()
    }

    /// Returns how many times the topology changed since start (cheap). Read it before
    /// `topology`: a cache keyed by it is then at worst rebuilt once too often.
    pub(crate) fn topology_version(&self) -> u64 {
        self.topology_version
            .load(std::sync::atomic::Ordering::Acquire)
    }

    fn topology_changed(&self) {
        self.topology_version
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// Returns the ring epoch of the topology (cheap: no copy of the topology).
    pub(crate) fn topology_epoch(&self) -> u64 {
        let inner = self.inner.read().expect("state lock poisoned");
        inner.topology.epoch
    }

    /// Returns the raised alarms of `member` (0: all) and `kind` (0: all).
    pub(crate) fn alarms(&self, member: u64, kind: i32) -> proto::etcdserverpb::AlarmResponse {
        let inner = self.inner.read().expect("state lock poisoned");
        inner.keyspace.alarm_list(member, kind)
    }

    /// Returns the lease with `id`, with its attached keys.
    pub(crate) fn lease(&self, id: i64) -> Option<mvcc::Lease> {
        let inner = self.inner.read().expect("state lock poisoned");
        inner.keyspace.lease(id).cloned()
    }

    /// Returns every lease's (id, granted TTL, checkpointed remaining TTL).
    pub(crate) fn lease_ttls(&self) -> Vec<(i64, i64, i64)> {
        let inner = self.inner.read().expect("state lock poisoned");
        inner
            .keyspace
            .leases()
            .map(|l| (l.id, l.ttl, l.remaining))
            .collect()
    }

    /// Returns (current revision, compacted revision, applied index).
    pub(crate) fn positions(&self) -> (i64, i64, u64) {
        let inner = self.inner.read().expect("state lock poisoned");
        let applied = inner.applied.map_or(0, |id| id.index);
        (
            inner.keyspace.current_revision(),
            inner.keyspace.compacted_revision(),
            applied,
        )
    }

    /// Returns the state file's size and bytes in use (zero when unreadable, logged).
    pub(crate) fn sizes(&self) -> storage::StoreSizes {
        self.store.sizes().unwrap_or_else(|error| {
            tracing::warn!(%error, "state file size");
            storage::StoreSizes::default()
        })
    }

    /// Returns the number of stored records (for status and metrics).
    pub(crate) fn record_count(&self) -> u64 {
        self.store.record_count().unwrap_or(0)
    }

    /// Applies one batch of committed entries and persists it in one commit; returns the
    /// replies in entry order.
    ///
    /// Long because the batch is one unit under the state lock: every entry kind (commands,
    /// membership, bucket and ring changes) adds to the same write and the same replies.
    fn apply_batch(&self, entries: &[Entry]) -> Result<Vec<pb::CommandResponse>, io::Error> {
        let mut inner = self.inner.write().expect("state lock poisoned");
        let source = Source(&self.store);
        let mut write = StateWrite::default();
        let mut replies = Vec::with_capacity(entries.len());
        let mut published = Vec::new();
        let mut leases_changed = false;
        let mut alarms_changed = false;
        let mut removed_changed = false;
        let mut topology_changed = false;
        for entry in entries {
            let reply = match &entry.payload {
                EntryPayload::Blank => pb::CommandResponse::default(),
                EntryPayload::Membership(m) => {
                    let gone: Vec<NodeId> = inner
                        .membership
                        .membership()
                        .nodes()
                        .map(|(id, _)| *id)
                        .filter(|id| m.get_node(id).is_none())
                        .collect();
                    removed_changed |= !gone.is_empty();
                    topology_changed |= topology::forget_drained(&mut inner.topology, &gone);
                    inner.removed.extend(gone);
                    inner.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    pb::CommandResponse::default()
                }
                EntryPayload::Normal(Request(pb::Command {
                    op: Some(pb::command::Op::Bucket(change)),
                })) => {
                    let reply = topology::apply_bucket_change(&mut inner.topology, change);
                    topology_changed |= reply.refusal.is_empty();
                    pb::CommandResponse {
                        op: Some(pb::command_response::Op::Bucket(reply)),
                        ..Default::default()
                    }
                }
                EntryPayload::Normal(Request(pb::Command {
                    op: Some(pb::command::Op::RangeChange(change)),
                })) => {
                    let reply = topology::apply_range_change(&mut inner.topology, change);
                    topology_changed |= reply.refusal.is_empty();
                    pb::CommandResponse {
                        op: Some(pb::command_response::Op::RangeChange(reply)),
                        ..Default::default()
                    }
                }
                EntryPayload::Normal(Request(pb::Command {
                    op: Some(pb::command::Op::Drain(change)),
                })) => {
                    let known = inner
                        .membership
                        .membership()
                        .get_node(&change.member)
                        .is_some();
                    let reply = topology::apply_member_drain(&mut inner.topology, change, known);
                    topology_changed |= reply.refusal.is_empty();
                    pb::CommandResponse {
                        op: Some(pb::command_response::Op::Drain(reply)),
                        ..Default::default()
                    }
                }
                EntryPayload::Normal(Request(pb::Command {
                    op: Some(pb::command::Op::Ring(change)),
                })) => {
                    let reply = topology::apply_ring_change(&mut inner.topology, change);
                    topology_changed |= reply.refusal.is_empty();
                    pb::CommandResponse {
                        op: Some(pb::command_response::Op::Ring(reply)),
                        ..Default::default()
                    }
                }
                EntryPayload::Normal(Request(command)) => {
                    use pb::command::Op;
                    leases_changed |= matches!(
                        command.op,
                        Some(Op::LeaseGrant(_) | Op::LeaseRevoke(_) | Op::LeaseCheckpoint(_))
                    );
                    alarms_changed |= matches!(command.op, Some(Op::Alarm(_)));
                    let (reply, changes) =
                        apply_command(&mut inner.keyspace, &source, &write, command);
                    if let Some(changes) = changes {
                        for (rev, record) in &changes.puts {
                            let prev = inner.keyspace.previous_live(&record.key, *rev);
                            published.push(Change {
                                rev: *rev,
                                record: record.clone(),
                                prev,
                            });
                        }
                        add_changes(&mut write, changes);
                    }
                    reply
                }
            };
            let revision = inner.keyspace.current_revision();
            replies.push(pb::CommandResponse {
                revision,
                index: entry.log_id.index,
                ..reply
            });
            inner.applied = Some(entry.log_id);
        }
        write
            .meta
            .push((REVISIONS, encode_revisions(&inner.keyspace)));
        if let Some(id) = &inner.applied {
            write
                .meta
                .push((APPLIED, codec::log_id_to_pb(id).encode_to_vec()));
        }
        let membership = codec::stored_membership_to_pb(&inner.membership).encode_to_vec();
        write.meta.push((MEMBERSHIP, membership));
        if leases_changed {
            write.meta.push((LEASES, encode_leases(&inner.keyspace)));
        }
        if alarms_changed {
            write.meta.push((ALARMS, encode_alarms(&inner.keyspace)));
        }
        if removed_changed {
            write.meta.push((REMOVED, encode_removed(&inner.removed)));
        }
        if topology_changed {
            write.meta.push((TOPOLOGY, inner.topology.encode_to_vec()));
            self.topology_changed();
        }
        // Not fsync'd: the Raft log holds every applied entry until a snapshot, which syncs.
        self.store.write(&write, false).map_err(io_error)?;
        // Watchers learn of the batch only once it is stored and visible to readers.
        self.feed.publish(
            published,
            inner.keyspace.current_revision(),
            inner.keyspace.compacted_revision(),
        );
        Ok(replies)
    }
}

/// Applies one command. Records written earlier in the same batch are not yet in storage, so
/// reads fall back to the batch's pending puts.
fn apply_command(
    keyspace: &mut Keyspace,
    store: &Source<'_>,
    pending: &StateWrite,
    command: &pb::Command,
) -> (pb::CommandResponse, Option<ChangeSet>) {
    use pb::command::Op;
    use pb::command_response::Op as Reply;
    let source = Pending { store, pending };
    let result = match &command.op {
        Some(Op::Put(r)) => keyspace
            .put(&source, r)
            .map(|(resp, c)| (Reply::Put(resp), c)),
        Some(Op::DeleteRange(r)) => keyspace
            .delete_range(&source, r)
            .map(|(resp, c)| (Reply::DeleteRange(resp), c)),
        Some(Op::Txn(r)) => keyspace
            .txn(&source, r)
            .map(|(resp, c)| (Reply::Txn(resp), c)),
        Some(Op::Compact(r)) => keyspace
            .compact(r)
            .map(|(resp, c)| (Reply::Compact(resp), c)),
        Some(Op::LeaseGrant(r)) => keyspace
            .lease_grant(r)
            .map(|resp| (Reply::LeaseGrant(resp), ChangeSet::default())),
        Some(Op::LeaseRevoke(r)) => keyspace
            .lease_revoke(&source, r)
            .map(|(resp, c)| (Reply::LeaseRevoke(resp), c)),
        Some(Op::Alarm(r)) => Ok((Reply::Alarm(keyspace.alarm(r)), ChangeSet::default())),
        Some(Op::LeaseCheckpoint(r)) => {
            keyspace.lease_checkpoint(r);
            Ok((
                Reply::LeaseCheckpoint(Default::default()),
                ChangeSet::default(),
            ))
        }
        Some(Op::Bucket(_) | Op::Ring(_) | Op::RangeChange(_) | Op::Drain(_)) => {
            unreachable!(
                "bucket, ring and range changes are applied to the topology before commands"
            )
        }
        // Only a range's own group applies range commands; proposing one here is refused.
        Some(Op::Range(_)) => Err(EtcdError::Internal(
            "a range command was proposed to the metadata group".into(),
        )),
        None => Err(EtcdError::Internal("empty command".into())),
    };
    match result {
        Ok((reply, changes)) => (
            pb::CommandResponse {
                op: Some(reply),
                ..Default::default()
            },
            Some(changes),
        ),
        Err(EtcdError::Internal(detail)) => {
            // Storage failed under the apply path: continuing would let members diverge.
            panic!("apply of a committed command failed: {detail}");
        }
        Err(error) => {
            let reply = pb::CommandResponse {
                op: Some(Reply::Error(error.to_string())),
                ..Default::default()
            };
            (reply, None)
        }
    }
}

struct Pending<'a> {
    store: &'a Source<'a>,
    pending: &'a StateWrite,
}

impl RecordSource for Pending<'_> {
    fn record(&self, rev: Rev) -> Result<Record, EtcdError> {
        let key = rev.to_bytes();
        if let Some((_, bytes)) = self
            .pending
            .puts
            .iter()
            .rev()
            .find(|(k, _)| k.as_slice() == key)
        {
            return Record::decode(bytes).map_err(|e| EtcdError::Internal(e.to_string()));
        }
        self.store.record(rev)
    }
}

fn add_changes(write: &mut StateWrite, changes: ChangeSet) {
    for (rev, record) in changes.puts {
        write.puts.push((rev.to_bytes().to_vec(), record.encode()));
    }
    for rev in changes.removed {
        let key = rev.to_bytes().to_vec();
        write.puts.retain(|(k, _)| *k != key);
        write.removes.push(key);
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<Snapshot, io::Error> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let (meta, data) = shared.snapshot_bytes()?;
            shared.save_snapshot(&meta, &data)?;
            Ok(Snapshot {
                meta,
                snapshot: Cursor::new(data),
            })
        })
        .await
        .map_err(io_error)?
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), io::Error> {
        let inner = self.shared.inner.read().expect("state lock poisoned");
        Ok((inner.applied, inner.membership.clone()))
    }

    async fn apply<Strm>(&mut self, entries: Strm) -> Result<(), io::Error>
    where
        Strm: Stream<Item = Result<EntryResponder, io::Error>> + Unpin + OptionalSend,
    {
        let batch: Vec<EntryResponder> = entries.try_collect().await?;
        let (entries, responders): (Vec<Entry>, Vec<_>) = batch.into_iter().unzip();
        let shared = self.shared.clone();
        let replies = tokio::task::spawn_blocking(move || shared.apply_batch(&entries))
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
        let shared = self.shared.clone();
        let meta = meta.clone();
        tokio::task::spawn_blocking(move || shared.install(&meta, &snapshot.into_inner()))
            .await
            .map_err(io_error)?
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, io::Error> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.load_snapshot())
            .await
            .map_err(io_error)?
    }
}
