//! Watch semantics: which changes a watcher selects (key range, no-put/no-delete filters), how
//! a change becomes an etcd `Event`, and replay of history from the index for watchers that
//! start in the past or fell behind the in-memory feed. It must never decide delivery or
//! buffering; that belongs to the watch service.

use base::{EtcdError, Revision};
use proto::mvccpb::event::EventType;
use proto::mvccpb::{Event, KeyValue};

use crate::codec::{Record, Rev};
use crate::keyspace::{Keyspace, RecordSource, to_key_value};
use crate::range::keys_in;

/// What one watcher selects.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WatchFilter {
    pub key: Vec<u8>,
    /// etcd's convention: empty selects `key` alone, `"\0"` every key from `key` on, otherwise
    /// the half-open interval `[key, range_end)`.
    pub range_end: Vec<u8>,
    pub no_put: bool,
    pub no_delete: bool,
}

impl WatchFilter {
    /// Returns true when the key lies in the watched range.
    pub fn covers(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            key == self.key.as_slice()
        } else if self.range_end == [0] {
            key >= self.key.as_slice()
        } else {
            key >= self.key.as_slice() && key < self.range_end.as_slice()
        }
    }

    /// Returns true when a change of `key` (a deletion when `tombstone`) is delivered.
    pub fn matches(&self, key: &[u8], tombstone: bool) -> bool {
        let filtered = if tombstone {
            self.no_delete
        } else {
            self.no_put
        };
        !filtered && self.covers(key)
    }
}

/// One change of one key: the record written at `rev`, and the revision of the key's live
/// value just before it (for `prev_kv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub rev: Rev,
    pub record: Record,
    pub prev: Option<Rev>,
}

impl Change {
    /// Returns the etcd event, with `prev_kv` when the caller resolved it.
    pub fn to_event(&self, prev_kv: Option<KeyValue>) -> Event {
        let kind = if self.record.tombstone {
            EventType::Delete
        } else {
            EventType::Put
        };
        Event {
            r#type: kind as i32,
            kv: Some(to_key_value(self.record.clone())),
            prev_kv,
        }
    }
}

/// A batch of replayed history: the changes, in revision order, and the revision the next
/// batch starts at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub changes: Vec<Change>,
    pub next: Revision,
}

impl Keyspace {
    /// Returns the revision of `key`'s live value just before `rev`, if it had one.
    pub fn previous_live(&self, key: &[u8], rev: Rev) -> Option<Rev> {
        let entries = self.index.get(key)?;
        let position = entries.partition_point(|entry| entry.rev < rev);
        let entry = entries.get(position.checked_sub(1)?)?;
        (!entry.tombstone).then_some(entry.rev)
    }

    /// Replays the changes selected by `filter` from revision `from` on, at most about
    /// `max_changes` of them: a revision's changes are never split, so a batch may exceed the
    /// bound by the size of its last revision. Fails with `Compacted` when history before
    /// `from` is gone (`from` below the compacted revision, as etcd decides).
    pub fn history(
        &self,
        source: &dyn RecordSource,
        filter: &WatchFilter,
        from: Revision,
        max_changes: usize,
    ) -> Result<History, EtcdError> {
        if from < self.compacted {
            return Err(EtcdError::Compacted);
        }
        let mut selected: Vec<(Rev, bool, Option<Rev>)> = Vec::new();
        for (_, entries) in keys_in(&self.index, &filter.key, &filter.range_end) {
            let start = entries.partition_point(|entry| entry.rev.main < from);
            for position in start..entries.len() {
                let entry = entries[position];
                let tombstone_filtered = if entry.tombstone {
                    filter.no_delete
                } else {
                    filter.no_put
                };
                if tombstone_filtered {
                    continue;
                }
                let prev = position
                    .checked_sub(1)
                    .map(|p| entries[p])
                    .filter(|p| !p.tombstone)
                    .map(|p| p.rev);
                selected.push((entry.rev, entry.tombstone, prev));
            }
        }
        selected.sort_by_key(|(rev, _, _)| *rev);
        let next = match selected.get(max_changes.max(1)) {
            // Keep every change of the revision the bound falls in.
            Some((boundary, _, _)) if selected[max_changes.max(1) - 1].0.main < boundary.main => {
                let next = boundary.main;
                selected.truncate(max_changes.max(1));
                next
            }
            Some((boundary, _, _)) => {
                let main = boundary.main;
                let keep = selected.partition_point(|(rev, _, _)| rev.main <= main);
                selected.truncate(keep);
                main + 1
            }
            None => self.current.max(from - 1) + 1,
        };
        let changes = selected
            .into_iter()
            .map(|(rev, _, prev)| {
                Ok(Change {
                    rev,
                    record: source.record(rev)?,
                    prev,
                })
            })
            .collect::<Result<_, EtcdError>>()?;
        Ok(History { changes, next })
    }
}

impl Keyspace {
    /// Returns a CRC32 over every key's history up to `revision` (0: the current one) and the
    /// compacted revision, for comparing members: members that applied the same log hash
    /// equal. Reads every record, so it costs a pass over the data.
    pub fn hash_kv(
        &self,
        source: &dyn RecordSource,
        revision: Revision,
    ) -> Result<(u32, Revision), EtcdError> {
        let at = if revision <= 0 {
            self.current
        } else {
            revision
        };
        if at > self.current {
            return Err(EtcdError::FutureRevision);
        }
        if at < self.compacted {
            return Err(EtcdError::Compacted);
        }
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&self.compacted.to_be_bytes());
        for entries in self.index.values() {
            for entry in entries.iter().take_while(|e| e.rev.main <= at) {
                hasher.update(&entry.rev.to_bytes());
                hasher.update(&source.record(entry.rev)?.encode());
            }
        }
        Ok((hasher.finalize(), at))
    }
}
