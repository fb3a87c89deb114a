//! The state of one replica of one range: its record (descriptor, GC threshold, closed
//! timestamp, byte count, merge freeze) here, its keys' versions in the member's ordered
//! store (`versioned::stored`: the range is the span of its keys there, so a split or merge
//! changes the span and moves no data; every call takes the store). Every
//! read and write checks the key against the descriptor the replica holds, so a replica never
//! serves a key that a split or merge moved to another range — it answers `range moved` with
//! its descriptor instead, and the caller's routing cache learns from it. Reads below the GC
//! threshold are refused (their versions may be gone). Splits and merges change the state as
//! the committed descriptor change says: a split gives the right half's span (and its bytes)
//! to the new range's record, a merge writes the right neighbour's frozen versions into its
//! span and takes its record's figures. A range about to be merged into its
//! left neighbour is first frozen: it refuses every read, write and GC from then on, so the
//! state its left neighbour takes is final; any later change of its descriptor (which the
//! metadata commits only if the merge did not) thaws it.
//!
//! The state also holds the range's **closed timestamp**: a timestamp its leader promised no
//! later write will be applied at or below (`RangeCommand::Close`; the state machine bumps
//! every later write above it). A replica that applied the promise holds every version at or
//! below it, so any replica, a follower included, serves reads at it (bounded-staleness
//! follower reads). Splits hand it to both halves and merges keep the larger.

use base::HlcTimestamp;
use versioned::{
    OrderedStore, OrderedStoreMut, StoredVersions, StoredVersionsMut, Version, WriteTooOld,
};

use crate::descriptor::{RangeDescriptor, RangeId};

/// Why a range replica refused an operation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RangeOpError {
    /// The key is not in this range (any more): route by `descriptor`, this replica's view.
    #[error("range moved: the key is outside range {} (generation {})", .descriptor.id, .descriptor.generation)]
    KeyOutside { descriptor: RangeDescriptor },
    #[error(transparent)]
    WriteTooOld(#[from] WriteTooOld),
    /// The range is frozen while its left neighbour `into` takes it over: retry shortly, the
    /// key will be served by the merged range.
    #[error("range {range} is being merged into range {into}")]
    Merging { range: RangeId, into: RangeId },
    /// A freeze for a generation the range has left (a split or another change came first).
    #[error("range {range} is at generation {current}, not {expected}")]
    StaleGeneration {
        range: RangeId,
        expected: u64,
        current: u64,
    },
    #[error("read at {at} is below the GC threshold {threshold}: its versions may be gone")]
    BelowGc {
        at: HlcTimestamp,
        threshold: HlcTimestamp,
    },
    /// A split or merge whose descriptors do not fit this range: the log and the metadata
    /// disagree, which must never happen.
    #[error("descriptor change does not fit range {}: {why}", .descriptor.id)]
    BadChange {
        descriptor: RangeDescriptor,
        why: &'static str,
    },
}

/// What a scan of one range found, and where the caller goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanPart {
    pub entries: Vec<(Vec<u8>, Version)>,
    /// The key to continue from: this range's end when the scan reaches past it, or the key
    /// after the last entry when the limit cut it short; `None` when the scan is complete.
    pub resume: Option<Vec<u8>>,
}

/// One replica's record of one range (its versions are in the store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeState {
    descriptor: RangeDescriptor,
    /// Frozen for a merge into this left neighbour.
    merging_into: Option<RangeId>,
    /// No write applies at or below this any more.
    closed: HlcTimestamp,
    /// Reads below this may miss versions GC dropped; writes at or below it are refused.
    gc_threshold: HlcTimestamp,
    /// Bytes of keys and values over all versions in the span.
    bytes: u64,
}

/// One version as a snapshot or a merge lists it: key, timestamp, value (`None`: tombstone).
pub type ListedVersion = (Vec<u8>, HlcTimestamp, Option<Vec<u8>>);

/// What a store call gives: the store's own failure outside, the range's refusal inside.
pub type Stored<T, E> = Result<Result<T, RangeOpError>, E>;

impl RangeState {
    /// An empty range (a new bucket's first range).
    pub fn new(descriptor: RangeDescriptor) -> RangeState {
        RangeState {
            descriptor,
            merging_into: None,
            closed: HlcTimestamp::ZERO,
            gc_threshold: HlcTimestamp::ZERO,
            bytes: 0,
        }
    }

    pub fn descriptor(&self) -> &RangeDescriptor {
        &self.descriptor
    }

    /// A range's record from its parts (a snapshot or a saved record being restored).
    pub fn from_parts(
        descriptor: RangeDescriptor,
        merging_into: Option<RangeId>,
        closed: HlcTimestamp,
        gc_threshold: HlcTimestamp,
        bytes: u64,
    ) -> RangeState {
        RangeState {
            descriptor,
            merging_into,
            closed,
            gc_threshold,
            bytes,
        }
    }

    /// The closed timestamp: every version at or below it is here, and no later write will
    /// be applied at or below it.
    pub fn closed(&self) -> HlcTimestamp {
        self.closed
    }

    /// Closes `ts` (a promise only ever moves forward).
    pub fn close(&mut self, ts: HlcTimestamp) {
        self.closed = self.closed.max(ts);
    }

    /// The left neighbour this range is frozen for, if it is.
    pub fn merging_into(&self) -> Option<RangeId> {
        self.merging_into
    }

    fn check_thawed(&self) -> Result<(), RangeOpError> {
        match self.merging_into {
            Some(into) => Err(RangeOpError::Merging {
                range: self.descriptor.id,
                into,
            }),
            None => Ok(()),
        }
    }

    /// Freezes the range (at `generation`, as the merge's proposer saw it) for a merge into
    /// its left neighbour `into`. Frozen again for the same merge is no change.
    pub fn freeze(&mut self, generation: u64, into: RangeId) -> Result<(), RangeOpError> {
        if generation != self.descriptor.generation {
            return Err(RangeOpError::StaleGeneration {
                range: self.descriptor.id,
                expected: generation,
                current: self.descriptor.generation,
            });
        }
        match self.merging_into {
            Some(other) if other != into => Err(RangeOpError::Merging {
                range: self.descriptor.id,
                into: other,
            }),
            _ => {
                self.merging_into = Some(into);
                Ok(())
            }
        }
    }

    /// The range's versions in `store` (its span).
    pub fn versions<'s, S: OrderedStore>(&self, store: &'s S) -> StoredVersions<'s, S> {
        StoredVersions::new(
            store,
            &self.descriptor.start,
            self.descriptor.end.as_deref(),
        )
    }

    fn versions_mut<'s, S: OrderedStoreMut>(&self, store: &'s mut S) -> StoredVersionsMut<'s, S> {
        StoredVersionsMut::new(
            store,
            &self.descriptor.start,
            self.descriptor.end.as_deref(),
        )
    }

    fn check(&self, key: &[u8]) -> Result<(), RangeOpError> {
        self.check_thawed()?;
        if self.descriptor.contains(key) {
            Ok(())
        } else {
            Err(RangeOpError::KeyOutside {
                descriptor: self.descriptor.clone(),
            })
        }
    }

    fn check_read(&self, at: HlcTimestamp) -> Result<(), RangeOpError> {
        if at < self.gc_threshold {
            return Err(RangeOpError::BelowGc {
                at,
                threshold: self.gc_threshold,
            });
        }
        Ok(())
    }

    fn write<S: OrderedStoreMut>(
        &mut self,
        store: &mut S,
        key: &[u8],
        ts: HlcTimestamp,
        value: Option<&[u8]>,
    ) -> Stored<(), S::Error> {
        if let Err(refused) = self.check(key) {
            return Ok(Err(refused));
        }
        let gc = self.gc_threshold;
        Ok(match self.versions_mut(store).write(key, ts, value, gc)? {
            Ok(added) => {
                self.bytes += added;
                Ok(())
            }
            Err(too_old) => Err(RangeOpError::WriteTooOld(too_old)),
        })
    }

    /// Writes `value` to `key` at `ts`.
    pub fn put<S: OrderedStoreMut>(
        &mut self,
        store: &mut S,
        key: &[u8],
        ts: HlcTimestamp,
        value: &[u8],
    ) -> Stored<(), S::Error> {
        self.write(store, key, ts, Some(value))
    }

    /// Deletes `key` at `ts`.
    pub fn delete<S: OrderedStoreMut>(
        &mut self,
        store: &mut S,
        key: &[u8],
        ts: HlcTimestamp,
    ) -> Stored<(), S::Error> {
        self.write(store, key, ts, None)
    }

    /// The version of `key` a read at `ts` sees.
    pub fn get<S: OrderedStore>(
        &self,
        store: &S,
        key: &[u8],
        ts: HlcTimestamp,
    ) -> Stored<Option<Version>, S::Error> {
        if let Err(refused) = self.check(key).and_then(|()| self.check_read(ts)) {
            return Ok(Err(refused));
        }
        Ok(Ok(self.versions(store).get(key, ts)?))
    }

    /// The keys of `[from, to)` in this range a read at `ts` sees, at most `limit`. `from`
    /// must be in the range; the scan stops at the range's end and says where to go on.
    pub fn scan<S: OrderedStore>(
        &self,
        store: &S,
        from: &[u8],
        to: Option<&[u8]>,
        ts: HlcTimestamp,
        limit: usize,
    ) -> Stored<ScanPart, S::Error> {
        self.scan_bounded(store, from, to, ts, limit, 0)
    }

    /// `scan`, with the page also cut once its keys and values pass `max_bytes` (0: no bound;
    /// the first entry is always kept, so a scan always moves on).
    pub fn scan_bounded<S: OrderedStore>(
        &self,
        store: &S,
        from: &[u8],
        to: Option<&[u8]>,
        ts: HlcTimestamp,
        limit: usize,
        max_bytes: u64,
    ) -> Stored<ScanPart, S::Error> {
        if let Err(refused) = self.check(from).and_then(|()| self.check_read(ts)) {
            return Ok(Err(refused));
        }
        let end = match (to, self.descriptor.end.as_deref()) {
            (Some(to), Some(own)) => Some(to.min(own)),
            (Some(to), None) => Some(to),
            (None, own) => own,
        };
        let bound = if max_bytes == 0 { u64::MAX } else { max_bytes };
        let mut entries = self.versions(store).scan(from, end, ts, limit, bound)?;
        let mut cut_short = limit > 0 && entries.len() == limit;
        if max_bytes > 0 {
            let mut bytes = 0u64;
            let cut = entries.iter().position(|(key, version)| {
                let size = (key.len() + version.value.as_ref().map_or(0, Vec::len)) as u64;
                let over = bytes > 0 && bytes + size > max_bytes;
                bytes += size;
                over
            });
            match cut {
                Some(cut) => {
                    entries.truncate(cut);
                    cut_short = true;
                }
                // The store stopped at the bound: what follows is still to read.
                None if bytes >= max_bytes => cut_short = true,
                None => {}
            }
        }
        let resume = if cut_short {
            let mut after = entries
                .last()
                .map(|(k, _)| k.clone())
                .expect("a page has one");
            after.push(0);
            Some(after)
        } else {
            // The scan went to the range's end; if the caller's end lies beyond it, go on there.
            match (self.descriptor.end.as_deref(), to) {
                (Some(own), Some(to)) if to > own => Some(own.to_vec()),
                (Some(own), None) => Some(own.to_vec()),
                _ => None,
            }
        };
        Ok(Ok(ScanPart { entries, resume }))
    }

    /// A replica change, or any change that keeps the span: takes the new descriptor.
    pub fn set_descriptor(&mut self, descriptor: RangeDescriptor) -> Result<(), RangeOpError> {
        if descriptor.id != self.descriptor.id
            || descriptor.start != self.descriptor.start
            || descriptor.end != self.descriptor.end
        {
            return Err(RangeOpError::BadChange {
                descriptor,
                why: "a replica change must keep the id and the span",
            });
        }
        // The metadata changed this range, so a merge it was frozen for did not commit.
        self.descriptor = descriptor;
        self.merging_into = None;
        Ok(())
    }

    /// Whether a split into `left` and `right` fits this state: the halves cover exactly this
    /// range, cut inside it. A leader asks before proposing one, replicas when applying it.
    pub fn fits_split(
        &self,
        left: &RangeDescriptor,
        right: &RangeDescriptor,
    ) -> Result<(), RangeOpError> {
        let fits = left.id == self.descriptor.id
            && left.start == self.descriptor.start
            && left.end.as_deref() == Some(right.start.as_slice())
            && right.end == self.descriptor.end
            && right.start > left.start;
        if fits {
            return Ok(());
        }
        Err(RangeOpError::BadChange {
            descriptor: right.clone(),
            why: "the halves must cover exactly this range, cut inside it",
        })
    }

    /// Whether a merge into `merged` taking `right` fits this state: `right` is this range's
    /// right neighbour, frozen for it, and `merged` spans both.
    pub fn fits_merge(
        &self,
        merged: &RangeDescriptor,
        right: &RangeState,
    ) -> Result<(), RangeOpError> {
        let fits = merged.id == self.descriptor.id
            && merged.start == self.descriptor.start
            && self.descriptor.end.as_deref() == Some(right.descriptor.start.as_slice())
            && merged.end == right.descriptor.end;
        if !fits {
            return Err(RangeOpError::BadChange {
                descriptor: merged.clone(),
                why: "a merge joins this range with its right neighbour",
            });
        }
        if right.merging_into != Some(self.descriptor.id) {
            return Err(RangeOpError::BadChange {
                descriptor: merged.clone(),
                why: "a merge takes only a right neighbour frozen for it",
            });
        }
        Ok(())
    }

    /// Applies a committed split: this range becomes `left`, and the returned record of
    /// `right` takes the span from `right.start` on with its versions (weighed in `store`;
    /// none move).
    pub fn split<S: OrderedStore>(
        &mut self,
        store: &S,
        left: RangeDescriptor,
        right: RangeDescriptor,
    ) -> Stored<RangeState, S::Error> {
        if let Err(refused) = self.fits_split(&left, &right) {
            return Ok(Err(refused));
        }
        let right_bytes = StoredVersions::new(store, &right.start, right.end.as_deref())
            .bytes()?
            .min(self.bytes);
        self.bytes -= right_bytes;
        // The metadata split this range, so a merge it was frozen for did not commit.
        self.descriptor = left;
        self.merging_into = None;
        Ok(Ok(RangeState {
            descriptor: right,
            merging_into: None,
            closed: self.closed,
            gc_threshold: self.gc_threshold,
            bytes: right_bytes,
        }))
    }

    /// Applies a committed merge: this range becomes `merged`; the right neighbour's span in
    /// `store` is cleared and given `right`'s frozen versions, listed (whatever this member
    /// held of it before is not trusted: its replica may lag).
    pub fn merge<S: OrderedStoreMut>(
        &mut self,
        store: &mut S,
        merged: RangeDescriptor,
        right: &RangeState,
        versions: &[ListedVersion],
    ) -> Stored<(), S::Error> {
        if let Err(refused) = self.fits_merge(&merged, right) {
            return Ok(Err(refused));
        }
        let mut span = right.versions_mut(store);
        span.clear()?;
        let mut added = 0;
        for (key, ts, value) in versions {
            if !right.descriptor.contains(key) {
                return Ok(Err(RangeOpError::BadChange {
                    descriptor: merged,
                    why: "a merge's right versions must lie in the right neighbour's span",
                }));
            }
            added += span.restore(key, *ts, value.as_deref())?;
        }
        self.bytes += added;
        self.gc_threshold = self.gc_threshold.max(right.gc_threshold);
        self.descriptor = merged;
        self.merging_into = None;
        self.closed = self.closed.max(right.closed);
        Ok(Ok(()))
    }

    /// Drops versions no read at or above `threshold` sees (refused while frozen: the state
    /// a merge takes must not change). Returns the versions dropped.
    pub fn gc<S: OrderedStoreMut>(
        &mut self,
        store: &mut S,
        threshold: HlcTimestamp,
    ) -> Stored<usize, S::Error> {
        if let Err(refused) = self.check_thawed() {
            return Ok(Err(refused));
        }
        let current = self.gc_threshold;
        let (dropped, freed) = self.versions_mut(store).gc(current, threshold)?;
        self.bytes -= freed.min(self.bytes);
        self.gc_threshold = self.gc_threshold.max(threshold);
        Ok(Ok(dropped))
    }

    /// Whether a GC at `threshold` would drop anything (never while frozen).
    pub fn would_gc<S: OrderedStore>(
        &self,
        store: &S,
        threshold: HlcTimestamp,
    ) -> Result<bool, S::Error> {
        if self.merging_into.is_some() {
            return Ok(false);
        }
        self.versions(store).would_gc(self.gc_threshold, threshold)
    }

    /// The timestamp of `key`'s newest version, tombstones included.
    pub fn newest<S: OrderedStore>(
        &self,
        store: &S,
        key: &[u8],
    ) -> Result<Option<HlcTimestamp>, S::Error> {
        self.versions(store).newest(key)
    }

    /// Reads below this may miss versions GC dropped; writes at or below it are refused.
    pub fn gc_threshold(&self) -> HlcTimestamp {
        self.gc_threshold
    }

    /// The bytes of all versions, for the split decision.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where a split by size cuts, when the range holds two keys or more.
    pub fn middle_key<S: OrderedStore>(&self, store: &S) -> Result<Option<Vec<u8>>, S::Error> {
        self.versions(store).middle_key(self.bytes)
    }

    /// Every version of the range, listed (a snapshot's or a merge's contents).
    pub fn list<S: OrderedStore>(&self, store: &S) -> Result<Vec<ListedVersion>, S::Error> {
        let mut out = Vec::new();
        self.versions(store).versions(&mut |key, ts, value| {
            out.push((key, ts, value.map(<[u8]>::to_vec)));
            true
        })?;
        Ok(out)
    }
}
