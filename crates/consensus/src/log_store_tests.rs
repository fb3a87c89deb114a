//! The log store against openraft's storage conformance suite (appends readable at once,
//! durable callbacks, truncation, purge, vote, no holes), each case on fresh files, plus the
//! cache's own bounds and a reopen that reads back what the writer made durable.

use openraft::StorageError;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::type_config::TypeConfigExt;
use openraft::vote::RaftLeaderId;
use storage::{SnapshotFile, StateStore};

use super::*;
use crate::state_machine::StateMachine;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = storage::LogStore::open(&dir.path().join("log.redb")).expect("open log");
        let state = StateStore::open(&dir.path().join("state.redb")).expect("open state");
        let snapshot = SnapshotFile::new(&dir.path().join("snapshot"));
        let machine = StateMachine::open(state, snapshot).expect("open state machine");
        Ok((
            dir,
            LogStore::new(log).expect("start the log writer"),
            machine,
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_openraft_storage_suite() {
    Suite::test_all(Builder).await.expect("storage suite");
}

/// Opens the log at `path` again, once the previous store's writer thread (which ends after
/// the last handle is dropped) has closed the file.
async fn reopen(path: &std::path::Path) -> LogStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match storage::LogStore::open(path) {
            Ok(log) => return LogStore::new(log).expect("start"),
            Err(error) if std::time::Instant::now() > deadline => panic!("reopen: {error}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: LogId::new(LeaderId::new(term, 1), index),
        payload: openraft::EntryPayload::Blank,
    }
}

async fn append_and_wait(store: &mut LogStore, entries: Vec<Entry>) {
    let (tx, flushed) = TypeConfig::oneshot();
    store
        .append(entries, IOFlushed::signal(tx))
        .await
        .expect("append");
    flushed.await.expect("callback").expect("durable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_group_caches_fewer_entries_than_the_main_group() {
    // Goal: a member runs many range groups; each keeps only `RANGE_LOG_CACHE_*` of its
    // durable entries in memory, and what it evicted still reads back from the file.
    let dir = tempfile::tempdir().expect("temp dir");
    let writer =
        LogWriter::start(storage::LogStore::open(&dir.path().join("log.redb")).expect("open"))
            .expect("start");
    let mut store = writer.open_group(7).expect("open group 7");
    let total = (base::limits::RANGE_LOG_CACHE_ENTRIES_MAX * 3) as u64;
    let mut next = 1;
    while next <= total {
        let end = (next + 500).min(total + 1);
        append_and_wait(&mut store, (next..end).map(|i| entry(1, i)).collect()).await;
        next = end;
    }
    let cached = store.shared.cache.lock().expect("lock").entries.len();
    assert!(
        cached <= base::limits::RANGE_LOG_CACHE_ENTRIES_MAX,
        "range group caches {cached} entries"
    );
    let read = store.try_get_log_entries(1..=total).await.expect("read");
    assert_eq!(read.len() as u64, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_survive_reopen_and_cache_stays_bounded() {
    // Goal: what the writer reported durable is in the file (a reopened store reads it),
    // and the cache evicts durable entries beyond its bound. Method: append more entries
    // than the cache holds, in batches, waiting for each callback; reopen; read all back.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("log.redb");
    let total = (RAFT_LOG_CACHE_ENTRIES_MAX + 500) as u64;
    {
        let mut store =
            LogStore::new(storage::LogStore::open(&path).expect("open")).expect("start");
        let mut next = 1;
        while next <= total {
            let end = (next + 700).min(total + 1);
            append_and_wait(&mut store, (next..end).map(|i| entry(1, i)).collect()).await;
            next = end;
        }
        {
            let cache = store.shared.cache.lock().expect("lock");
            assert!(
                cache.entries.len() <= RAFT_LOG_CACHE_ENTRIES_MAX,
                "cache holds {} entries",
                cache.entries.len()
            );
            assert_eq!(cache.durable, total);
        }
        let read = store.try_get_log_entries(1..=total).await.expect("read");
        assert_eq!(read.len() as u64, total);
        assert!(read.iter().zip(1..).all(|(e, i)| e.log_id.index == i));
    }
    let mut reopened = reopen(&path).await;
    let state = reopened.get_log_state().await.expect("state");
    assert_eq!(state.last_log_id.map(|id| id.index), Some(total));
    let read = reopened.try_get_log_entries(1..=total).await.expect("read");
    assert_eq!(read.len() as u64, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_replaces_the_cached_suffix() {
    // Goal: after a truncation, readers see the new entries, never the replaced ones, from
    // the cache and from the file. Method: append term-1 entries 1..=10, truncate after 5,
    // append term-2 entries 6..=8, read through the cache and after a reopen.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("log.redb");
    {
        let mut store =
            LogStore::new(storage::LogStore::open(&path).expect("open")).expect("start");
        append_and_wait(&mut store, (1..=10).map(|i| entry(1, i)).collect()).await;
        store
            .truncate_after(Some(entry(1, 5).log_id))
            .await
            .expect("truncate");
        append_and_wait(&mut store, (6..=8).map(|i| entry(2, i)).collect()).await;
        let read = store.try_get_log_entries(1..20).await.expect("read");
        let terms: Vec<u64> = read.iter().map(|e| e.log_id.leader_id.term).collect();
        assert_eq!(terms, vec![1, 1, 1, 1, 1, 2, 2, 2]);
        let hole = store.append(vec![entry(2, 10)], IOFlushed::noop()).await;
        assert!(hole.is_err(), "an append past the end must be refused");
    }
    let mut reopened = reopen(&path).await;
    let read = reopened.try_get_log_entries(1..20).await.expect("read");
    let terms: Vec<u64> = read.iter().map(|e| e.log_id.leader_id.term).collect();
    assert_eq!(terms, vec![1, 1, 1, 1, 1, 2, 2, 2]);
}

/// The suite again, on a group that shares its file and writer with a busy neighbour.
struct SharedBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, (tempfile::TempDir, LogStore)>
    for SharedBuilder
{
    async fn build(
        &self,
    ) -> Result<((tempfile::TempDir, LogStore), LogStore, StateMachine), StorageError<TypeConfig>>
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = storage::LogStore::open(&dir.path().join("log.redb")).expect("open log");
        let writer = LogWriter::start(log).expect("start the log writer");
        let mut neighbour = writer.open_group(MAIN_GROUP).expect("open group 0");
        append_and_wait(&mut neighbour, (1..=20).map(|i| entry(3, i)).collect()).await;
        let state = StateStore::open(&dir.path().join("state.redb")).expect("open state");
        let snapshot = SnapshotFile::new(&dir.path().join("snapshot"));
        let machine = StateMachine::open(state, snapshot).expect("open state machine");
        let group = writer.open_group(7).expect("open group 7");
        Ok(((dir, neighbour), group, machine))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_beside_another_passes_openraft_storage_suite() {
    Suite::test_all(SharedBuilder).await.expect("storage suite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_write_through_one_writer_and_stay_apart() {
    // Goal: many groups appending at once through one writer each get exactly their own
    // entries back, before and after a reopen, and a truncation or purge in one group leaves
    // the others whole. Method: 8 groups append 300 entries each concurrently (in batches of
    // 30, waiting for each durable callback); group 3 truncates after 100, group 5 purges up
    // to 50; reopen and read every group.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("log.redb");
    {
        let writer =
            LogWriter::start(storage::LogStore::open(&path).expect("open")).expect("start");
        let mut tasks = tokio::task::JoinSet::new();
        for group in 0..8u64 {
            let mut store = writer.open_group(group).expect("open group");
            tasks.spawn(async move {
                for batch in 0..10u64 {
                    let first = batch * 30 + 1;
                    let entries = (first..first + 30).map(|i| entry(group + 1, i)).collect();
                    append_and_wait(&mut store, entries).await;
                }
                store
            });
        }
        let mut stores = Vec::new();
        while let Some(store) = tasks.join_next().await {
            stores.push(store.expect("appender"));
        }
        stores.sort_by_key(|s| s.shared.group);
        stores[3]
            .truncate_after(Some(entry(4, 100).log_id))
            .await
            .expect("truncate");
        stores[5].purge(entry(6, 50).log_id).await.expect("purge");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let writer = loop {
        match storage::LogStore::open(&path) {
            Ok(log) => break LogWriter::start(log).expect("start"),
            Err(error) if std::time::Instant::now() > deadline => panic!("reopen: {error}"),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    };
    for group in 0..8u64 {
        let mut store = writer.open_group(group).expect("reopen group");
        let state = store.get_log_state().await.expect("state");
        let (first, last) = match group {
            3 => (1, 100),
            5 => (51, 300),
            _ => (1, 300),
        };
        assert_eq!(
            state.last_log_id.map(|id| id.index),
            Some(last),
            "group {group}"
        );
        let read = store.try_get_log_entries(first..=last).await.expect("read");
        assert_eq!(read.len() as u64, last - first + 1, "group {group}");
        assert!(
            read.iter()
                .zip(first..)
                .all(|(e, i)| e.log_id.index == i && e.log_id.leader_id.term == group + 1),
            "group {group} reads another group's entries"
        );
    }
    assert_eq!(
        writer
            .open_group(5)
            .expect("open")
            .get_log_state()
            .await
            .expect("state")
            .last_purged_log_id
            .map(|id| id.index),
        Some(50)
    );
}

/// A file disk whose fsyncs are counted and can be held, so a test can queue writes while the
/// writer is inside one.
#[derive(Debug)]
struct GatedDisk {
    file: std::fs::File,
    syncs: Arc<std::sync::atomic::AtomicUsize>,
    /// While true, a sync waits.
    held: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl storage::StorageBackend for GatedDisk {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.file.metadata()?.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, out, offset)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.file.set_len(len)
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        let (held, released) = &*self.held;
        let mut guard = held.lock().expect("gate lock");
        while *guard {
            guard = released.wait(guard).expect("gate lock");
        }
        self.syncs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.file.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, data, offset)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fsync_covers_the_appends_of_many_groups() {
    // Goal: appends of different groups queued while the writer is busy are made durable by
    // one transaction, one fsync. Method: hold the disk's fsync while group 0 appends, queue
    // one append from each of groups 1..=8, release; count the fsyncs of the appends.
    let dir = tempfile::tempdir().expect("temp dir");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(dir.path().join("log.redb"))
        .expect("create");
    let syncs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let held = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let disk = GatedDisk {
        file,
        syncs: syncs.clone(),
        held: held.clone(),
    };
    let writer =
        LogWriter::start(storage::LogStore::open_with_backend(disk).expect("open")).expect("start");
    let mut stores: Vec<LogStore> = (0..=8)
        .map(|group| writer.open_group(group).expect("open group"))
        .collect();
    *held.0.lock().expect("gate lock") = true;
    let before = syncs.load(std::sync::atomic::Ordering::SeqCst);
    let mut flushed = Vec::new();
    for (group, store) in stores.iter_mut().enumerate() {
        let (tx, rx) = TypeConfig::oneshot();
        store
            .append(vec![entry(1, 1)], IOFlushed::signal(tx))
            .await
            .expect("queue an append");
        flushed.push(rx);
        if group == 0 {
            // Let the writer take group 0's append and block in its fsync.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while store.writer.queue.capacity() < RAFT_LOG_WRITE_QUEUE_MAX {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the writer never took the append"
                );
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    }
    *held.0.lock().expect("gate lock") = false;
    held.1.notify_all();
    for rx in flushed {
        rx.await.expect("callback").expect("durable");
    }
    let appends_synced = syncs.load(std::sync::atomic::Ordering::SeqCst) - before;
    // One fsync for the held commit (group 0, perhaps with the first group queued behind
    // it) and one for all the groups that queued while it was held — not one per group.
    assert_eq!(appends_synced, 2, "fsyncs for nine groups' appends");
    for store in &mut stores {
        let state = store.get_log_state().await.expect("state");
        assert_eq!(state.last_log_id.map(|id| id.index), Some(1));
    }
}
