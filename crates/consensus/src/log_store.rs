//! openraft's log storage over `storage::LogStore`: the entries and hard state of every Raft
//! group of a member in one redb file. Appends are pipelined: `append` puts the entries in
//! the group's in-memory cache (readable at once, so the leader replicates them while its own
//! fsync runs) and queues them for the member's one log writer thread (`LogWriter`), which
//! group-commits everything queued — the appends of many groups — in one fsync'd transaction
//! and only then tells openraft they are durable. Every write of a group goes through that
//! thread in order (openraft requires write IO serialized); votes, truncations and purges wait
//! for it. It never reports an entry durable before its fsync returned.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use base::limits::{
    RAFT_LOG_CACHE_BYTES_MAX, RAFT_LOG_CACHE_ENTRIES_MAX, RAFT_LOG_GROUP_COMMIT_ENTRIES_MAX,
    RAFT_LOG_WRITE_QUEUE_MAX,
};
use openraft::OptionalSend;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use prost::Message;
use proto::quorate::raft::v1 as pb;
use tokio::sync::{mpsc, oneshot};

use crate::codec;
use crate::types::*;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// The Raft log of one group.
#[derive(Clone)]
pub struct LogStore {
    shared: Arc<Shared>,
    writer: LogWriter,
    /// The group had a log here when it was opened.
    existed: bool,
}

/// The log writer of a member: one thread and one queue for the logs of all its groups, so
/// one fsync covers the appends of many groups. The thread ends when the last clone of the
/// writer and of every group's `LogStore` is dropped.
#[derive(Clone)]
pub struct LogWriter {
    store: Arc<storage::LogStore>,
    queue: mpsc::Sender<(Arc<Shared>, Write)>,
}

/// One group's log: its number in the file and its cache.
struct Shared {
    group: u64,
    store: Arc<storage::LogStore>,
    cache: Mutex<Cache>,
}

/// The newest entries: every entry not yet durable, plus recent durable ones up to the
/// bounds. Entries below `first` are durable in the file.
struct Cache {
    /// Index of the first cached entry (the next index when empty).
    first: u64,
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
    /// Highest index the writer has made durable.
    durable: u64,
    /// Counts truncations: a write queued before one must not mark the entries that
    /// replaced its own durable.
    generation: u64,
    /// Bounds of the durable entries kept: (entries, bytes).
    bounds: (usize, usize),
}

impl Cache {
    fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Drops cached entries at or after `from`.
    fn truncate_from(&mut self, from: u64) {
        if from < self.next() {
            self.generation += 1;
            self.durable = self.durable.min(from.saturating_sub(1));
        }
        while self.next() > from.max(self.first) {
            let (_, size) = self
                .entries
                .pop_back()
                .expect("next > first means non-empty");
            self.bytes -= size;
        }
        if from < self.first {
            self.first = from;
        }
    }

    /// Drops cached entries at or before `upto`.
    fn purge_upto(&mut self, upto: u64) {
        while self.first <= upto {
            match self.entries.pop_front() {
                Some((_, size)) => self.bytes -= size,
                None => {
                    self.first = upto + 1;
                    return;
                }
            }
            self.first += 1;
        }
    }

    /// Evicts durable entries from the front while the cache is over its bounds.
    fn evict(&mut self) {
        while (self.entries.len() > self.bounds.0 || self.bytes > self.bounds.1)
            && self.first <= self.durable
        {
            let (_, size) = self
                .entries
                .pop_front()
                .expect("over a bound means non-empty");
            self.bytes -= size;
            self.first += 1;
        }
    }

    /// Clones the cached entries in `start..end` (`start` at or after `first`).
    fn range(&self, start: u64, end: Option<u64>) -> Vec<Entry> {
        let end = end.map_or(self.next(), |end| end.min(self.next()));
        if start >= end {
            return Vec::new();
        }
        let from = (start - self.first) as usize;
        let to = (end - self.first) as usize;
        self.entries
            .range(from..to)
            .map(|(entry, _)| entry.clone())
            .collect()
    }
}

/// One request to the log writer, executed in queue order.
enum Write {
    /// Entries to make durable; `callback` learns when they are.
    Append {
        entries: Vec<(u64, Vec<u8>)>,
        generation: u64,
        callback: IOFlushed,
    },
    /// The committed log id (not fsync'd on its own).
    Committed(Vec<u8>),
    Vote {
        bytes: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
    },
    Truncate {
        from: u64,
        done: oneshot::Sender<io::Result<()>>,
    },
    Purge {
        upto: u64,
        bytes: Vec<u8>,
        done: oneshot::Sender<io::Result<()>>,
    },
}

fn io_error(error: impl std::fmt::Display) -> io::Error {
    io::Error::other(error.to_string())
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, io::Error> + Send + 'static,
) -> Result<T, io::Error> {
    tokio::task::spawn_blocking(work).await.map_err(io_error)?
}

fn bounds(range: &impl RangeBounds<u64>) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(s) => *s,
        Bound::Excluded(s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(e) => Some(e.checked_add(1)?),
        Bound::Excluded(e) => Some(*e),
        Bound::Unbounded => None,
    };
    if end.is_some_and(|end| start >= end) {
        return None;
    }
    Some((start, end))
}

/// Reads a log id kept in the hard state (committed, purged).
fn read_log_id(
    store: &storage::LogStore,
    group: u64,
    name: &str,
) -> Result<Option<LogId>, io::Error> {
    match store.hard_state(group, name).map_err(io_error)? {
        None => Ok(None),
        Some(bytes) => {
            let id: pb::LogId = codec::decode(&bytes, "log id").map_err(io_error)?;
            Ok(Some(codec::log_id_from_pb(&id).map_err(io_error)?))
        }
    }
}

/// Appends, commits and fsyncs in one transaction everything queued together: consecutive
/// appends and committed ids, of any groups, form one group commit; a vote, truncation or
/// purge runs alone, after the group commit before it.
fn writer_loop(store: Arc<storage::LogStore>, mut queue: mpsc::Receiver<(Arc<Shared>, Write)>) {
    let mut batch = Vec::new();
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        let mut entries = match &batch[0].1 {
            Write::Append { entries, .. } => entries.len(),
            _ => 0,
        };
        while entries < RAFT_LOG_GROUP_COMMIT_ENTRIES_MAX {
            let Ok(next) = queue.try_recv() else { break };
            if let Write::Append { entries: more, .. } = &next.1 {
                entries += more.len();
            }
            batch.push(next);
        }
        let mut commit = GroupCommit::default();
        for (shared, write) in batch.drain(..) {
            match write {
                Write::Append {
                    entries,
                    generation,
                    callback,
                } => {
                    let part = commit.part(&shared);
                    if let Some((last, _)) = entries.last() {
                        part.appended.push((*last, generation));
                    }
                    part.entries.extend(entries);
                    commit.callbacks.push(callback);
                }
                Write::Committed(bytes) => commit.part(&shared).committed = Some(bytes),
                other => {
                    flush(&store, std::mem::take(&mut commit));
                    run_alone(&store, &shared, other);
                }
            }
        }
        flush(&store, commit);
    }
}

/// Consecutive appends and committed ids, of any groups, written as one transaction.
#[derive(Default)]
struct GroupCommit {
    /// One part per group, in the order the groups first appear.
    parts: Vec<Part>,
    /// Each group's index in `parts` (a commit may carry the appends of many groups).
    by_group: HashMap<u64, usize>,
    callbacks: Vec<IOFlushed>,
}

/// One group's share of a group commit.
struct Part {
    shared: Arc<Shared>,
    entries: Vec<(u64, Vec<u8>)>,
    /// The last index of each append, with the cache generation it was queued in.
    appended: Vec<(u64, u64)>,
    committed: Option<Vec<u8>>,
}

impl GroupCommit {
    fn part(&mut self, shared: &Arc<Shared>) -> &mut Part {
        let parts = &mut self.parts;
        let index = *self.by_group.entry(shared.group).or_insert_with(|| {
            parts.push(Part {
                shared: shared.clone(),
                entries: Vec::new(),
                appended: Vec::new(),
                committed: None,
            });
            parts.len() - 1
        });
        &mut self.parts[index]
    }
}

/// Writes one group commit and reports it to openraft.
fn flush(store: &storage::LogStore, commit: GroupCommit) {
    let hard_states: Vec<Vec<(&str, &[u8])>> = commit
        .parts
        .iter()
        .map(|part| {
            part.committed
                .as_deref()
                .map(|bytes| (COMMITTED, bytes))
                .into_iter()
                .collect()
        })
        .collect();
    let writes: Vec<storage::GroupWrite<'_>> = commit
        .parts
        .iter()
        .zip(&hard_states)
        .filter(|(part, state)| !part.entries.is_empty() || !state.is_empty())
        .map(|(part, state)| storage::GroupWrite {
            group: part.shared.group,
            entries: &part.entries,
            hard_state: state,
        })
        .collect();
    // Only entries need the fsync; a committed id alone rides on the next durable commit.
    let durable = writes.iter().any(|w| !w.entries.is_empty());
    let result = if writes.is_empty() {
        Ok(())
    } else {
        store.write_batch(&writes, durable)
    };
    match &result {
        Ok(()) => {
            for part in &commit.parts {
                let mut cache = part.shared.cache.lock().expect("log cache lock poisoned");
                let generation = cache.generation;
                let durable = part
                    .appended
                    .iter()
                    .filter(|(_, g)| *g == generation)
                    .map(|(last, _)| *last)
                    .max();
                if let Some(durable) = durable {
                    cache.durable = cache.durable.max(durable);
                    cache.evict();
                }
            }
        }
        Err(error) => tracing::error!(%error, "raft log write failed"),
    }
    for callback in commit.callbacks {
        callback.io_completed(result.as_ref().map(|_| ()).map_err(io_error));
    }
}

fn run_alone(store: &storage::LogStore, shared: &Shared, write: Write) {
    let group = shared.group;
    match write {
        Write::Append { .. } | Write::Committed(_) => unreachable!("grouped by the caller"),
        Write::Vote { bytes, done } => {
            let _ = done.send(
                store
                    .put_hard_state(group, VOTE, &bytes, true)
                    .map_err(io_error),
            );
        }
        Write::Truncate { from, done } => {
            let _ = done.send(store.truncate_from(group, from).map_err(io_error));
        }
        Write::Purge { upto, bytes, done } => {
            let _ = done.send(store.purge_upto(group, upto, &bytes).map_err(io_error));
        }
    }
}

impl LogWriter {
    /// Wraps an opened log file and starts the writer thread.
    pub fn start(store: storage::LogStore) -> Result<LogWriter, io::Error> {
        let store = Arc::new(store);
        let (queue, receiver) = mpsc::channel(RAFT_LOG_WRITE_QUEUE_MAX);
        let thread_store = store.clone();
        std::thread::Builder::new()
            .name("raft-log-writer".into())
            .spawn(move || writer_loop(thread_store, receiver))?;
        Ok(LogWriter { store, queue })
    }

    /// The log of `group`, written through this writer. Open each group once: two stores of
    /// one group would keep two caches. The main group caches up to
    /// `RAFT_LOG_CACHE_*_MAX` of its recent durable entries, a range group
    /// `RANGE_LOG_CACHE_*_MAX`.
    pub fn open_group(&self, group: u64) -> Result<LogStore, io::Error> {
        let store = &self.store;
        let purged_next = read_log_id(store, group, PURGED)?.map_or(0, |id| id.index + 1);
        let next = match store.last(group).map_err(io_error)? {
            Some((index, _)) => (index + 1).max(purged_next),
            None => purged_next,
        };
        let shared = Arc::new(Shared {
            group,
            store: store.clone(),
            cache: Mutex::new(Cache {
                first: next,
                entries: VecDeque::new(),
                bytes: 0,
                durable: next.saturating_sub(1),
                generation: 0,
                bounds: if group == MAIN_GROUP {
                    (RAFT_LOG_CACHE_ENTRIES_MAX, RAFT_LOG_CACHE_BYTES_MAX)
                } else {
                    (
                        base::limits::RANGE_LOG_CACHE_ENTRIES_MAX,
                        base::limits::RANGE_LOG_CACHE_BYTES_MAX,
                    )
                },
            }),
        });
        Ok(LogStore {
            shared,
            writer: self.clone(),
            existed: next > 0,
        })
    }
}

impl LogWriter {
    /// Starts the log of a new group whose voters are `voters`: its first entry, the
    /// membership, with the same log id and content on every replica (term 0, leader 0, index
    /// 0, members without addresses — peers are reached through the main group's), so replicas
    /// that start a group each on their own hold identical logs. Does nothing and returns
    /// false when the group has a log here already. Durable on return.
    pub fn create_group(
        &self,
        group: u64,
        voters: std::collections::BTreeSet<NodeId>,
    ) -> Result<bool, io::Error> {
        assert_ne!(
            group, MAIN_GROUP,
            "the main group is initialized by openraft"
        );
        if self.has_group(group)? {
            return Ok(false);
        }
        let nodes: std::collections::BTreeMap<NodeId, Member> =
            voters.iter().map(|id| (*id, Member::default())).collect();
        let membership = Membership::new(vec![voters], nodes).map_err(io_error)?;
        let entry = Entry {
            log_id: LogId::new(
                LeaderId {
                    term: 0,
                    node_id: 0,
                },
                0,
            ),
            payload: EntryPayload::Membership(membership),
        };
        self.store
            .append(group, &[(0, codec::encode_entry(&entry))])
            .map_err(io_error)?;
        Ok(true)
    }

    /// True when `group` has a log on this member (entries, or a purge mark behind a
    /// snapshot).
    pub fn has_group(&self, group: u64) -> Result<bool, io::Error> {
        Ok(self.store.last(group).map_err(io_error)?.is_some()
            || read_log_id(&self.store, group, PURGED)?.is_some())
    }

    /// Removes everything of `group` from the log file (a range replica that left this
    /// member). Its Raft must be shut down first: nothing of it may still be queued.
    pub async fn remove_group(&self, group: u64) -> Result<(), io::Error> {
        assert_ne!(group, MAIN_GROUP, "the main group is never removed");
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.remove_group(group).map_err(io_error))
            .await
            .map_err(|e| io::Error::other(e.to_string()))?
    }
}

/// The group of the etcd keyspace and the cluster metadata, the member's first group.
pub const MAIN_GROUP: u64 = 0;

impl LogStore {
    /// Wraps an opened log file, starts its writer and opens the main group's log (a member
    /// with one group).
    pub fn new(store: storage::LogStore) -> Result<LogStore, io::Error> {
        LogWriter::start(store)?.open_group(MAIN_GROUP)
    }

    /// The writer this log goes through, to open more groups on it.
    pub fn writer(&self) -> &LogWriter {
        &self.writer
    }

    /// True when the group had a log on this member when it was opened: entries, or a purge
    /// mark behind a snapshot (the group ran here before).
    pub fn has_log(&self) -> bool {
        self.existed
    }

    async fn send(&self, write: Write) -> Result<(), io::Error> {
        self.writer
            .queue
            .send((self.shared.clone(), write))
            .await
            .map_err(|_| io::Error::other("the raft log writer has stopped"))
    }

    /// Queues a write that reports back, and waits for its outcome.
    async fn send_and_wait(
        &self,
        write: impl FnOnce(oneshot::Sender<io::Result<()>>) -> Write,
    ) -> Result<(), io::Error> {
        let (done, outcome) = oneshot::channel();
        self.send(write(done)).await?;
        outcome
            .await
            .map_err(|_| io::Error::other("the raft log writer has stopped"))?
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let Some((start, end)) = bounds(&range) else {
            return Ok(Vec::new());
        };
        // The cached part is taken first: whatever is evicted afterwards is durable, so the
        // file read below finds it.
        let (first, cached) = {
            let cache = self.shared.cache.lock().expect("log cache lock poisoned");
            (cache.first, cache.range(start.max(cache.first), end))
        };
        if start >= first {
            return Ok(cached);
        }
        let store = self.shared.store.clone();
        let group = self.shared.group;
        let file_end = end.map_or(first, |end| end.min(first));
        let mut entries: Vec<Entry> = blocking(move || {
            store
                .entries(group, start..file_end)
                .map_err(io_error)?
                .iter()
                .map(|(_, bytes)| codec::decode_entry(bytes).map_err(io_error))
                .collect()
        })
        .await?;
        entries.extend(cached);
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        let store = self.shared.store.clone();
        let group = self.shared.group;
        blocking(
            move || match store.hard_state(group, VOTE).map_err(io_error)? {
                None => Ok(None),
                Some(bytes) => {
                    let vote: pb::Vote = codec::decode(&bytes, "vote").map_err(io_error)?;
                    Ok(Some(codec::vote_from_pb(&vote).map_err(io_error)?))
                }
            },
        )
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState, io::Error> {
        let cached_last = {
            let cache = self.shared.cache.lock().expect("log cache lock poisoned");
            cache.entries.back().map(|(entry, _)| entry.log_id)
        };
        let this = self.clone();
        blocking(move || {
            let (store, group) = (&this.shared.store, this.shared.group);
            let purged = read_log_id(store, group, PURGED)?;
            let last = match cached_last {
                Some(last) => Some(last),
                None => match store.last(group).map_err(io_error)? {
                    Some((_, bytes)) => Some(codec::decode_entry(&bytes).map_err(io_error)?.log_id),
                    None => purged,
                },
            };
            Ok(LogState {
                last_purged_log_id: purged,
                last_log_id: last,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let bytes = codec::vote_to_pb(vote).encode_to_vec();
        self.send_and_wait(|done| Write::Vote { bytes, done }).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let Some(committed) = committed else {
            return Ok(());
        };
        // Not fsync'd on its own: it rides on the next durable append, and losing it only
        // makes a restarted member wait for the leader to tell it again.
        let bytes = codec::log_id_to_pb(&committed).encode_to_vec();
        self.send(Write::Committed(bytes)).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let this = self.clone();
        blocking(move || read_log_id(&this.shared.store, this.shared.group, COMMITTED)).await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .iter()
            .map(|e| (e.log_id.index, codec::encode_entry(e)))
            .collect();
        let generation = {
            let mut cache = self.shared.cache.lock().expect("log cache lock poisoned");
            if let Some(first_index) = entries.first().map(|e| e.log_id.index) {
                // openraft truncates a conflicting suffix before it overwrites it; an append
                // that starts inside the cache replaces what follows.
                cache.truncate_from(first_index);
                if cache.entries.is_empty() {
                    cache.first = first_index;
                }
                if cache.next() != first_index {
                    return Err(io::Error::other(format!(
                        "raft log append at index {first_index} would leave a hole after {}",
                        cache.next().saturating_sub(1)
                    )));
                }
            }
            for (entry, (_, bytes)) in entries.into_iter().zip(&encoded) {
                cache.bytes += bytes.len();
                cache.entries.push_back((entry, bytes.len()));
            }
            cache.generation
        };
        // Empty appends go through the writer too, so their callback keeps IO order.
        self.send(Write::Append {
            entries: encoded,
            generation,
            callback,
        })
        .await
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        self.shared
            .cache
            .lock()
            .expect("log cache lock poisoned")
            .truncate_from(from);
        self.send_and_wait(|done| Write::Truncate { from, done })
            .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let bytes = codec::log_id_to_pb(&log_id).encode_to_vec();
        let upto = log_id.index;
        self.shared
            .cache
            .lock()
            .expect("log cache lock poisoned")
            .purge_upto(upto);
        self.send_and_wait(|done| Write::Purge { upto, bytes, done })
            .await
    }
}

#[cfg(test)]
#[path = "log_store_tests.rs"]
mod tests;
