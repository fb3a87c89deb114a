//! The in-memory key index (key → revisions at which it changed) and the write path. Values
//! stay in the caller's storage; the index is rebuilt from it at start-up.

use std::collections::BTreeMap;

use base::{EtcdError, Revision};
use proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse,
};
use proto::mvccpb::KeyValue;

use crate::codec::{Record, Rev};

/// Where the keyspace reads record bytes it does not hold in memory.
pub trait RecordSource {
    /// Returns the record written at `rev`. A missing or corrupt record is an error.
    fn record(&self, rev: Rev) -> Result<Record, EtcdError>;
}

/// One change of a key, as the index remembers it. It keeps the record's create revision and
/// version so a Put finds them without reading the previous record from storage.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub(crate) rev: Rev,
    pub(crate) tombstone: bool,
    pub(crate) create_revision: Revision,
    pub(crate) version: i64,
}

/// What the index keeps of one stored record, for [`Keyspace::restore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Indexed {
    pub rev: Rev,
    pub key: Vec<u8>,
    pub tombstone: bool,
    pub create_revision: Revision,
    pub version: i64,
}

impl Indexed {
    /// The index's part of `record`, stored at `rev`.
    pub fn of(rev: Rev, record: Record) -> Indexed {
        Indexed {
            rev,
            tombstone: record.tombstone,
            create_revision: record.create_revision,
            version: record.version,
            key: record.key,
        }
    }
}

/// What one applied command changed, for the caller to persist atomically with the Raft
/// applied index.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ChangeSet {
    /// Records written, in revision order.
    pub puts: Vec<(Rev, Record)>,
    /// Records removed by compaction.
    pub removed: Vec<Rev>,
    /// The current revision after the command.
    pub current_revision: Revision,
    /// The compacted revision after the command.
    pub compacted_revision: Revision,
}

impl ChangeSet {
    /// Returns true when nothing needs to be persisted but the revisions.
    pub fn is_empty(&self) -> bool {
        self.puts.is_empty() && self.removed.is_empty()
    }
}

/// The etcd keyspace: the index of every key's history plus the current and compacted
/// revisions. A fresh keyspace is at revision 1, as etcd's is.
#[derive(Debug, Clone)]
pub struct Keyspace {
    pub(crate) index: BTreeMap<Vec<u8>, Vec<IndexEntry>>,
    pub(crate) current: Revision,
    pub(crate) compacted: Revision,
    pub(crate) leases: crate::lease::Leases,
    /// Raised alarms: (member id, etcd `AlarmType`).
    pub(crate) alarms: std::collections::BTreeSet<(u64, i32)>,
}

impl Default for Keyspace {
    fn default() -> Self {
        Keyspace::new()
    }
}

impl Keyspace {
    /// Returns an empty keyspace at revision 1.
    pub fn new() -> Keyspace {
        Keyspace {
            index: BTreeMap::new(),
            current: 1,
            compacted: 0,
            leases: Default::default(),
            alarms: Default::default(),
        }
    }

    /// Rebuilds the index from stored records, given in any order.
    pub fn restore(
        current: Revision,
        compacted: Revision,
        records: impl IntoIterator<Item = Indexed>,
    ) -> Keyspace {
        let mut index: BTreeMap<Vec<u8>, Vec<IndexEntry>> = BTreeMap::new();
        for record in records {
            index.entry(record.key).or_default().push(IndexEntry {
                rev: record.rev,
                tombstone: record.tombstone,
                create_revision: record.create_revision,
                version: record.version,
            });
        }
        for entries in index.values_mut() {
            entries.sort_by_key(|entry| entry.rev);
        }
        Keyspace {
            index,
            current,
            compacted,
            leases: Default::default(),
            alarms: Default::default(),
        }
    }

    /// Returns the revision of the last change.
    pub fn current_revision(&self) -> Revision {
        self.current
    }

    /// Returns the revision up to which history has been compacted (0 when never).
    pub fn compacted_revision(&self) -> Revision {
        self.compacted
    }

    /// Returns the number of keys that have any history in the index.
    pub fn key_count(&self) -> usize {
        self.index.len()
    }

    /// Returns the entry that says what `key` was at revision `at`, if it existed then.
    pub(crate) fn live_at(&self, key: &[u8], at: Revision) -> Option<IndexEntry> {
        let entries = self.index.get(key)?;
        visible(entries, at)
    }

    /// Starts a write at the next revision.
    pub(crate) fn begin_write(&mut self) -> Write<'_> {
        let main = self.current + 1;
        Write {
            keyspace: self,
            main,
            sub: 0,
            written: BTreeMap::new(),
        }
    }

    /// Applies a Put outside a Txn.
    pub fn put(
        &mut self,
        source: &dyn RecordSource,
        request: &PutRequest,
    ) -> Result<(PutResponse, ChangeSet), EtcdError> {
        let mut write = self.begin_write();
        write.check_put(request)?;
        let response = write.put(source, request)?;
        Ok((response, write.finish()))
    }

    /// Applies a DeleteRange outside a Txn.
    pub fn delete_range(
        &mut self,
        source: &dyn RecordSource,
        request: &DeleteRangeRequest,
    ) -> Result<(DeleteRangeResponse, ChangeSet), EtcdError> {
        let mut write = self.begin_write();
        let response = write.delete_range(source, request)?;
        Ok((response, write.finish()))
    }

    /// Removes history older than `request.revision`, keeping each key's state at it.
    pub fn compact(
        &mut self,
        request: &CompactionRequest,
    ) -> Result<(CompactionResponse, ChangeSet), EtcdError> {
        let at = request.revision;
        if at <= self.compacted {
            return Err(EtcdError::Compacted);
        }
        if at > self.current {
            return Err(EtcdError::FutureRevision);
        }
        let mut removed = Vec::new();
        self.index.retain(|_, entries| {
            // The last entry at or before `at` stays when it is live: it is the key's value
            // at the compacted revision. Everything before it goes, and so does a tombstone
            // before `at`; a tombstone written at `at` itself stays until the next compaction,
            // so a watch may still start at the compacted revision and miss nothing.
            let keep_from = match entries.iter().rposition(|entry| entry.rev.main <= at) {
                None => 0,
                Some(position)
                    if entries[position].tombstone && entries[position].rev.main < at =>
                {
                    position + 1
                }
                Some(position) => position,
            };
            removed.extend(entries.drain(..keep_from).map(|entry| entry.rev));
            !entries.is_empty()
        });
        removed.sort();
        self.compacted = at;
        let changes = ChangeSet {
            puts: Vec::new(),
            removed,
            current_revision: self.current,
            compacted_revision: self.compacted,
        };
        Ok((CompactionResponse { header: None }, changes))
    }

    /// Returns every key's entries for hashing and snapshots, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&[u8], Rev, bool)> {
        self.index.iter().flat_map(|(key, entries)| {
            entries
                .iter()
                .map(move |entry| (key.as_slice(), entry.rev, entry.tombstone))
        })
    }
}

/// Returns the entry visible at revision `at`: the last change at or before it, unless that
/// change deleted the key.
pub(crate) fn visible(entries: &[IndexEntry], at: Revision) -> Option<IndexEntry> {
    let count = entries.partition_point(|entry| entry.rev.main <= at);
    let entry = *entries.get(count.checked_sub(1)?)?;
    (!entry.tombstone).then_some(entry)
}

/// Returns the client's view of a stored record.
pub(crate) fn to_key_value(record: Record) -> KeyValue {
    KeyValue {
        key: record.key,
        create_revision: record.create_revision,
        mod_revision: record.mod_revision,
        version: record.version,
        value: record.value,
        lease: record.lease,
    }
}

/// A write in progress at revision `main`. Reads through it see its own earlier writes, as reads
/// inside an etcd Txn do.
pub(crate) struct Write<'a> {
    pub(crate) keyspace: &'a mut Keyspace,
    pub(crate) main: Revision,
    sub: i64,
    written: BTreeMap<Rev, Record>,
}

impl Write<'_> {
    /// Returns the revision reads inside this write observe.
    pub(crate) fn read_revision(&self) -> Revision {
        if self.written.is_empty() {
            self.keyspace.current
        } else {
            self.main
        }
    }

    /// Returns the record at `rev`, looking at this write's own records first.
    pub(crate) fn record(&self, source: &dyn RecordSource, rev: Rev) -> Result<Record, EtcdError> {
        match self.written.get(&rev) {
            Some(record) => Ok(record.clone()),
            None => source.record(rev),
        }
    }

    fn next_rev(&mut self) -> Rev {
        let rev = Rev {
            main: self.main,
            sub: self.sub,
        };
        self.sub += 1;
        rev
    }

    fn push(&mut self, rev: Rev, record: Record) {
        let tombstone = record.tombstone;
        let lease = if tombstone { 0 } else { record.lease };
        self.keyspace.leases.attach(&record.key, lease);
        self.keyspace
            .index
            .entry(record.key.clone())
            .or_default()
            .push(IndexEntry {
                rev,
                tombstone,
                create_revision: record.create_revision,
                version: record.version,
            });
        self.written.insert(rev, record);
    }

    /// Checks what a Put needs from existing state (ignore_value, ignore_lease, lease).
    pub(crate) fn check_put(&self, request: &PutRequest) -> Result<(), EtcdError> {
        if (request.ignore_value || request.ignore_lease)
            && self
                .keyspace
                .live_at(&request.key, self.read_revision())
                .is_none()
        {
            return Err(EtcdError::KeyNotFound);
        }
        if self.keyspace.no_space() {
            return Err(EtcdError::NoSpace);
        }
        if request.lease != 0 && !self.keyspace.leases.by_id.contains_key(&request.lease) {
            return Err(EtcdError::LeaseNotFound);
        }
        Ok(())
    }

    /// Writes a Put. The caller has run [`Write::check_put`].
    pub(crate) fn put(
        &mut self,
        source: &dyn RecordSource,
        request: &PutRequest,
    ) -> Result<PutResponse, EtcdError> {
        let live = self.keyspace.live_at(&request.key, self.read_revision());
        // The previous record is read from storage only when the request needs its value,
        // lease or the record itself; its create revision and version are in the index.
        let needs_previous = request.prev_kv || request.ignore_value || request.ignore_lease;
        let previous = match live {
            Some(entry) if needs_previous => Some(self.record(source, entry.rev)?),
            _ => None,
        };
        let rev = self.next_rev();
        let record = Record {
            key: request.key.clone(),
            value: match (&previous, request.ignore_value) {
                (Some(previous), true) => previous.value.clone(),
                _ => request.value.clone(),
            },
            create_revision: live.map_or(rev.main, |entry| entry.create_revision),
            mod_revision: rev.main,
            version: live.map_or(1, |entry| entry.version + 1),
            lease: match (&previous, request.ignore_lease) {
                (Some(previous), true) => previous.lease,
                _ => request.lease,
            },
            tombstone: false,
        };
        self.push(rev, record);
        Ok(PutResponse {
            header: None,
            prev_kv: if request.prev_kv {
                previous.map(to_key_value)
            } else {
                None
            },
        })
    }

    /// Writes a DeleteRange: one tombstone per live key in the range.
    pub(crate) fn delete_range(
        &mut self,
        source: &dyn RecordSource,
        request: &DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        let at = self.read_revision();
        let live: Vec<(Vec<u8>, IndexEntry)> =
            crate::range::keys_in(&self.keyspace.index, &request.key, &request.range_end)
                .filter_map(|(key, entries)| visible(entries, at).map(|entry| (key.clone(), entry)))
                .collect();
        let mut prev_kvs = Vec::new();
        for (key, entry) in &live {
            if request.prev_kv {
                prev_kvs.push(to_key_value(self.record(source, entry.rev)?));
            }
            let rev = self.next_rev();
            let tombstone = Record {
                key: key.clone(),
                value: Vec::new(),
                create_revision: 0,
                mod_revision: rev.main,
                version: 0,
                lease: 0,
                tombstone: true,
            };
            self.push(rev, tombstone);
        }
        Ok(DeleteRangeResponse {
            header: None,
            deleted: live.len() as i64,
            prev_kvs,
        })
    }

    /// Ends the write: the revision advances when anything was written.
    pub(crate) fn finish(self) -> ChangeSet {
        if !self.written.is_empty() {
            self.keyspace.current = self.main;
        }
        ChangeSet {
            puts: self.written.into_iter().collect(),
            removed: Vec::new(),
            current_revision: self.keyspace.current,
            compacted_revision: self.keyspace.compacted,
        }
    }
}
