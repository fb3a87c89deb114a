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
