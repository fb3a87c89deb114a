//! The event feed: the changes of recent revisions, published by the state machine after each
//! applied batch, kept in a bounded in-memory ring, and a revision signal watchers wait on.
//! Watchers in sync read new events from here in time proportional to the new events; a
//! watcher behind the ring's floor replays history from the keyspace instead. Publishing never
//! waits for any watcher.

use std::collections::VecDeque;
use std::sync::Mutex;

use base::limits::{WATCH_FEED_BYTES_MAX, WATCH_FEED_EVENTS_MAX};
use base::{EtcdError, Revision};
use mvcc::{Change, History, WatchFilter};
use tokio::sync::watch;

struct Ring {
    changes: VecDeque<Change>,
    bytes: usize,
    /// Every change after this revision is in the ring.
    floor: Revision,
    /// The revision of the last published batch.
    current: Revision,
    /// The keyspace's compacted revision: a watch from before it is refused even when the ring
    /// still holds the changes, as etcd refuses it.
    compacted: Revision,
}

/// The feed of one consensus group's changes.
pub(crate) struct EventFeed {
    ring: Mutex<Ring>,
    revision: watch::Sender<Revision>,
}

fn change_bytes(change: &Change) -> usize {
    change.record.key.len() + change.record.value.len() + 64
}

impl EventFeed {
    /// Returns an empty feed whose history starts after `current`.
    pub(crate) fn new(current: Revision, compacted: Revision) -> EventFeed {
        EventFeed {
            ring: Mutex::new(Ring {
                changes: VecDeque::new(),
                bytes: 0,
                floor: current,
                current,
                compacted,
            }),
            revision: watch::Sender::new(current),
        }
    }

    /// Adds one applied batch's changes (in revision order) and announces `current`.
    pub(crate) fn publish(&self, changes: Vec<Change>, current: Revision, compacted: Revision) {
        {
            let mut ring = self.ring.lock().expect("feed lock poisoned");
            debug_assert!(
                changes.first().is_none_or(|c| c.rev.main > ring.current),
                "feed revisions must grow"
            );
            for change in changes {
                ring.bytes += change_bytes(&change);
                ring.changes.push_back(change);
            }
            while ring.changes.len() > WATCH_FEED_EVENTS_MAX || ring.bytes > WATCH_FEED_BYTES_MAX {
                let Some(evicted) = ring.changes.pop_front() else {
                    break;
                };
                ring.bytes -= change_bytes(&evicted);
                // Part of this revision may remain, but not all of it: it is history now.
                ring.floor = ring.floor.max(evicted.rev.main);
            }
            ring.current = current;
            ring.compacted = compacted;
        }
        self.revision.send_replace(current);
    }

    /// Forgets every change (the state was replaced by a snapshot at `current`).
    pub(crate) fn reset(&self, current: Revision, compacted: Revision) {
        {
            let mut ring = self.ring.lock().expect("feed lock poisoned");
            ring.changes.clear();
            ring.bytes = 0;
            ring.floor = current;
            ring.current = current;
            ring.compacted = compacted;
        }
        self.revision.send_replace(current);
    }

    /// Returns a receiver of the latest published revision.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Revision> {
        self.revision.subscribe()
    }

    /// Reads the changes `filter` selects from revision `from` on, up to about `max_changes`
    /// (never splitting a revision); `Ok(None)` when the ring no longer holds all of them,
    /// `Compacted` when `from` is before the compacted revision.
    pub(crate) fn read(
        &self,
        filter: &WatchFilter,
        from: Revision,
        max_changes: usize,
    ) -> Result<Option<History>, EtcdError> {
        let ring = self.ring.lock().expect("feed lock poisoned");
        if from < ring.compacted {
            return Err(EtcdError::Compacted);
        }
        if from <= ring.floor {
            return Ok(None);
        }
        let start = ring.changes.partition_point(|c| c.rev.main < from);
        let mut changes: Vec<Change> = Vec::new();
        for change in ring.changes.range(start..) {
            let full = changes.len() >= max_changes.max(1);
            if full && changes.last().is_some_and(|l| l.rev.main < change.rev.main) {
                return Ok(Some(History {
                    changes,
                    next: change.rev.main,
                }));
            }
            if filter.matches(&change.record.key, change.record.tombstone) {
                changes.push(change.clone());
            }
        }
        Ok(Some(History {
            changes,
            next: ring.current.max(from - 1) + 1,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mvcc::{Record, Rev};

    fn change(main: Revision, sub: i64, key: &str) -> Change {
        Change {
            rev: Rev { main, sub },
            record: Record {
                key: key.into(),
                value: b"v".to_vec(),
                create_revision: main,
                mod_revision: main,
                version: 1,
                lease: 0,
                tombstone: false,
            },
            prev: None,
        }
    }

    fn all() -> WatchFilter {
        WatchFilter {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        }
    }

    #[test]
    fn reads_new_changes_and_refuses_what_it_no_longer_holds() {
        // Goal: the ring answers only when complete. Method: publish, read, compact, reset.
        let feed = EventFeed::new(1, 0);
        feed.publish(vec![change(2, 0, "a"), change(2, 1, "b")], 2, 0);
        feed.publish(vec![change(3, 0, "a")], 3, 0);
        let read = feed.read(&all(), 2, 10).unwrap().expect("held");
        assert_eq!(read.changes.len(), 3);
        assert_eq!(read.next, 4);
        // A batch bound of one still keeps revision 2 whole.
        let read = feed.read(&all(), 2, 1).unwrap().expect("held");
        assert_eq!(read.changes.len(), 2);
        assert_eq!(read.next, 3);
        let only_b = WatchFilter {
            key: b"b".to_vec(),
            ..Default::default()
        };
        let read = feed.read(&only_b, 3, 10).unwrap().expect("held");
        assert_eq!(read.changes, vec![]);
        let read = feed.read(&all(), 1, 10).unwrap();
        assert!(read.is_none(), "revision 1 predates the feed");
        let read = feed.read(&all(), 9, 10).unwrap().expect("future");
        assert_eq!(read.next, 9);
        feed.publish(vec![], 3, 3);
        assert_eq!(feed.read(&all(), 2, 10), Err(EtcdError::Compacted));
        let read = feed.read(&all(), 3, 10).unwrap();
        assert!(read.is_some(), "from the compacted revision itself");
        feed.reset(10, 3);
        let read = feed.read(&all(), 4, 10).unwrap();
        assert!(read.is_none(), "reset drops history");
        assert_eq!(*feed.subscribe().borrow(), 10);
    }

    #[test]
    fn eviction_raises_the_floor() {
        // Goal: a bounded ring never claims history it dropped. Method: overfill it.
        let feed = EventFeed::new(1, 0);
        let total = WATCH_FEED_EVENTS_MAX as i64 + 10;
        for main in 2..2 + total {
            feed.publish(vec![change(main, 0, "k")], main, 0);
        }
        assert!(feed.read(&all(), 2, 10).unwrap().is_none());
        let last = 1 + total;
        let read = feed.read(&all(), last, 10).unwrap();
        assert_eq!(read.expect("recent revisions are held").changes.len(), 1);
    }
}
