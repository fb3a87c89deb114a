//! openraft's log storage over `storage::LogStore`: entries and hard state in a redb file,
//! fsync'd before openraft is told they are durable. Blocking storage calls run on tokio's
//! blocking pool so they never stall the Raft core.

use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::OptionalSend;
use openraft::storage::{RaftLogReader, RaftLogStorage};
use prost::Message;
use proto::quorate::raft::v1 as pb;

use crate::codec;
use crate::types::*;

const VOTE: &str = "vote";
const COMMITTED: &str = "committed";
const PURGED: &str = "purged";

/// The Raft log of one group.
#[derive(Clone)]
pub struct LogStore {
    store: Arc<storage::LogStore>,
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

impl LogStore {
    /// Wraps an opened log file.
    pub fn new(store: storage::LogStore) -> LogStore {
        LogStore {
            store: Arc::new(store),
        }
    }

    fn read_log_id(&self, name: &str) -> Result<Option<LogId>, io::Error> {
        match self.store.hard_state(name).map_err(io_error)? {
            None => Ok(None),
            Some(bytes) => {
                let id: pb::LogId = codec::decode(&bytes, "log id").map_err(io_error)?;
                Ok(Some(codec::log_id_from_pb(&id).map_err(io_error)?))
            }
        }
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
        let store = self.store.clone();
        blocking(move || {
            let raw = match end {
                Some(end) => store.entries(start..end),
                None => store.entries(start..),
            }
            .map_err(io_error)?;
            raw.iter()
                .map(|(_, bytes)| codec::decode_entry(bytes).map_err(io_error))
                .collect()
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        let store = self.store.clone();
        blocking(move || match store.hard_state(VOTE).map_err(io_error)? {
            None => Ok(None),
            Some(bytes) => {
                let vote: pb::Vote = codec::decode(&bytes, "vote").map_err(io_error)?;
                Ok(Some(codec::vote_from_pb(&vote).map_err(io_error)?))
            }
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState, io::Error> {
        let this = self.clone();
        blocking(move || {
            let purged = this.read_log_id(PURGED)?;
            let last = match this.store.last().map_err(io_error)? {
                Some((_, bytes)) => Some(codec::decode_entry(&bytes).map_err(io_error)?.log_id),
                None => purged,
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
        let store = self.store.clone();
        blocking(move || store.put_hard_state(VOTE, &bytes, true).map_err(io_error)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let Some(committed) = committed else {
            return Ok(());
        };
        let bytes = codec::log_id_to_pb(&committed).encode_to_vec();
        let store = self.store.clone();
        // Not fsync'd on its own: it rides on the next durable append, and losing it only
        // makes a restarted member wait for the leader to tell it again.
        blocking(move || {
            store
                .put_hard_state(COMMITTED, &bytes, false)
                .map_err(io_error)
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        let this = self.clone();
        blocking(move || this.read_log_id(COMMITTED)).await
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, codec::encode_entry(&e)))
            .collect();
        let store = self.store.clone();
        // One durable redb commit for the whole batch openraft hands us (group commit).
        let result = blocking(move || store.append(&encoded).map_err(io_error)).await;
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(error) => {
                callback.io_completed(Err(io::Error::other(error.to_string())));
                Err(error)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |id| id.index + 1);
        let store = self.store.clone();
        blocking(move || store.truncate_from(from).map_err(io_error)).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let bytes = codec::log_id_to_pb(&log_id).encode_to_vec();
        let store = self.store.clone();
        blocking(move || store.purge_upto(log_id.index, &bytes).map_err(io_error)).await
    }
}
