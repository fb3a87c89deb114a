//! The state of one replica of one range: its descriptor and the versions of its keys. Every
//! read and write checks the key against the descriptor the replica holds, so a replica never
//! serves a key that a split or merge moved to another range — it answers `range moved` with
//! its descriptor instead, and the caller's routing cache learns from it. Reads below the GC
//! threshold are refused (their versions may be gone). Splits and merges change the state as
//! the committed descriptor change says: a split hands the right half's versions to the new
//! range's state, a merge takes the right neighbour's back. A range about to be merged into its
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
use versioned::{Version, VersionedMap, WriteTooOld};

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

/// One replica's state of one range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeState {
    descriptor: RangeDescriptor,
    data: VersionedMap,
    /// Frozen for a merge into this left neighbour.
    merging_into: Option<RangeId>,
    /// No write applies at or below this any more.
    closed: HlcTimestamp,
}

impl RangeState {
    /// An empty range (a new bucket's first range).
    pub fn new(descriptor: RangeDescriptor) -> RangeState {
        RangeState {
            descriptor,
            data: VersionedMap::new(),
            merging_into: None,
            closed: HlcTimestamp::ZERO,
        }
    }

    pub fn descriptor(&self) -> &RangeDescriptor {
        &self.descriptor
    }

    /// A range's state from its parts (a snapshot being restored).
    pub fn from_parts(
        descriptor: RangeDescriptor,
        data: VersionedMap,
        merging_into: Option<RangeId>,
        closed: HlcTimestamp,
    ) -> RangeState {
        RangeState {
            descriptor,
            data,
            merging_into,
            closed,
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

    /// The versions of the range's keys (what a snapshot stores).
    pub fn data(&self) -> &VersionedMap {
        &self.data
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
        let threshold = self.data.gc_threshold();
        if at < threshold {
            return Err(RangeOpError::BelowGc { at, threshold });
        }
        Ok(())
    }

    /// Writes `value` to `key` at `ts`.
    pub fn put(
        &mut self,
        key: &[u8],
        ts: HlcTimestamp,
        value: Vec<u8>,
    ) -> Result<(), RangeOpError> {
        self.check(key)?;
        Ok(self.data.put(key, ts, value)?)
    }

    /// Deletes `key` at `ts`.
    pub fn delete(&mut self, key: &[u8], ts: HlcTimestamp) -> Result<(), RangeOpError> {
        self.check(key)?;
        Ok(self.data.delete(key, ts)?)
    }

    /// The version of `key` a read at `ts` sees.
    pub fn get(&self, key: &[u8], ts: HlcTimestamp) -> Result<Option<Version>, RangeOpError> {
        self.check(key)?;
        self.check_read(ts)?;
        Ok(self.data.get(key, ts))
    }

    /// The keys of `[from, to)` in this range a read at `ts` sees, at most `limit`. `from`
    /// must be in the range; the scan stops at the range's end and says where to go on.
    pub fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        ts: HlcTimestamp,
        limit: usize,
    ) -> Result<ScanPart, RangeOpError> {
        self.check(from)?;
        self.check_read(ts)?;
        let end = match (to, self.descriptor.end.as_deref()) {
            (Some(to), Some(own)) => Some(to.min(own)),
            (Some(to), None) => Some(to),
            (None, own) => own,
        };
        let entries = self.data.scan(from, end, ts, limit);
        let resume = if limit > 0 && entries.len() == limit {
            let mut after = entries.last().map(|(k, _)| k.clone()).expect("limit > 0");
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
        Ok(ScanPart { entries, resume })
    }

    /// `scan`, with the page also cut once its keys and values pass `max_bytes` (0: no bound;
    /// the first entry is always kept, so a scan always moves on).
    pub fn scan_bounded(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        ts: HlcTimestamp,
        limit: usize,
        max_bytes: u64,
    ) -> Result<ScanPart, RangeOpError> {
        let mut part = self.scan(from, to, ts, limit)?;
        if max_bytes == 0 {
            return Ok(part);
        }
        let mut bytes = 0u64;
        let cut = part.entries.iter().position(|(key, version)| {
            let size = key.len() + version.value.as_ref().map_or(0, Vec::len);
            let over = bytes > 0 && bytes + size as u64 > max_bytes;
            bytes += size as u64;
            over
        });
        if let Some(cut) = cut {
            part.entries.truncate(cut);
            let mut after = part
                .entries
                .last()
                .map(|(k, _)| k.clone())
                .expect("cut > 0");
            after.push(0);
            part.resume = Some(after);
        }
        Ok(part)
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

    /// Applies a committed split: this range becomes `left`, and the versions from
    /// `right.start` on move to the returned state of `right`.
    pub fn split(
        &mut self,
        left: RangeDescriptor,
        right: RangeDescriptor,
    ) -> Result<RangeState, RangeOpError> {
        self.fits_split(&left, &right)?;
        let data = self.data.split_off(&right.start);
        // The metadata split this range, so a merge it was frozen for did not commit.
        self.descriptor = left;
        self.merging_into = None;
        Ok(RangeState {
            descriptor: right,
            data,
            merging_into: None,
            closed: self.closed,
        })
    }

    /// Applies a committed merge: this range becomes `merged`, taking `right`'s versions.
    pub fn merge(
        &mut self,
        merged: RangeDescriptor,
        right: RangeState,
    ) -> Result<(), RangeOpError> {
        self.fits_merge(&merged, &right)?;
        self.data.absorb(right.data);
        self.descriptor = merged;
        self.merging_into = None;
        self.closed = self.closed.max(right.closed);
        Ok(())
    }

    /// Drops versions no read at or above `threshold` sees (refused while frozen: the state
    /// a merge takes must not change).
    pub fn gc(&mut self, threshold: HlcTimestamp) -> Result<usize, RangeOpError> {
        self.check_thawed()?;
        Ok(self.data.gc(threshold))
    }

    /// Whether a GC at `threshold` would drop anything (never while frozen).
    pub fn would_gc(&self, threshold: HlcTimestamp) -> bool {
        self.merging_into.is_none() && self.data.would_gc(threshold)
    }

    /// The timestamp of `key`'s newest version, tombstones included.
    pub fn newest(&self, key: &[u8]) -> Option<HlcTimestamp> {
        self.data.newest(key)
    }

    /// Reads below this may miss versions GC dropped; writes at or below it are refused.
    pub fn gc_threshold(&self) -> HlcTimestamp {
        self.data.gc_threshold()
    }

    /// The bytes of all versions, for the split decision.
    pub fn bytes(&self) -> u64 {
        self.data.bytes()
    }

    /// Where a split by size cuts, when the range holds two keys or more.
    pub fn middle_key(&self) -> Option<Vec<u8>> {
        self.data.middle_key()
    }
}
