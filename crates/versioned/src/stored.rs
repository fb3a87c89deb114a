//! The versions of one range's keys in an ordered key-value store (the member's storage
//! engine), with exactly `VersionedMap`'s rules: the same reads, write-too-old refusals and GC.
//! A range is a span of user keys `[start, end)`; its versions are the store's entries between
//! the encoded bounds of its span (`span_bounds`), so a split or merge changes which span a
//! range reads and moves no data.
//!
//! Each entry is one version: the key is `codec::encode_key(key, ts)`, the value a tag byte
//! (`VALUE` or `TOMBSTONE`) and the value's bytes. The GC threshold and the byte count are the
//! range's own figures (kept with its metadata, not here): calls take the threshold, and
//! writes and GC return what they add or free, so the caller keeps its count in step.

use std::ops::Bound;

use base::HlcTimestamp;

use crate::codec::{decode_key, encode_key};
use crate::{DecodeError, Version, WriteTooOld};

/// Tag of an entry holding a value.
pub const VALUE: u8 = 1;
/// Tag of an entry holding a tombstone.
pub const TOMBSTONE: u8 = 0;

/// One stored entry: (key, value).
pub type Entry = (Vec<u8>, Vec<u8>);

/// An ordered byte-key store: the part of a storage engine a range's versions need. Reads of a
/// store being written see its own writes.
pub trait OrderedStore {
    type Error: std::error::Error + From<StoredError>;

    /// The first entry with a key in `[from, to)` (`to` `None`: no end), if any.
    fn first(&self, from: &[u8], to: Option<&[u8]>) -> Result<Option<Entry>, Self::Error>;

    /// Calls `visit` with the entries in `[from, to)` in key order until it returns false.
    fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), Self::Error>;
}

/// An ordered store that takes writes.
pub trait OrderedStoreMut: OrderedStore {
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), Self::Error>;
    fn remove(&mut self, key: &[u8]) -> Result<(), Self::Error>;
}

/// Stored bytes that are not a version.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoredError {
    #[error(transparent)]
    Key(#[from] DecodeError),
    #[error("stored version has tag {0}, neither value nor tombstone")]
    BadTag(u8),
    #[error("stored version is empty")]
    Empty,
}

/// The lowest encoded key of user key `key`: below its newest version, above every version of
/// every smaller key (the terminator 0x00 0x01 sorts below any byte of a longer key, which is
/// a nonzero byte or the escape 0x00 0xFF).
pub fn key_floor(key: &[u8]) -> Vec<u8> {
    let mut floor = encode_key(key, HlcTimestamp::ZERO);
    floor.truncate(floor.len() - crate::codec::TIMESTAMP_LEN);
    floor
}

/// Just above every version of `key` and below every other key's: its floor with the
/// terminator's last byte raised (0x00 0x02 sorts below 0x00 0xFF and above 0x00 0x01 …).
fn key_ceiling(key: &[u8]) -> Vec<u8> {
    let mut ceiling = key_floor(key);
    *ceiling.last_mut().expect("a terminator") += 1;
    ceiling
}

/// The encoded bounds `[from, to)` of the user-key span `[start, end)` (`end` `None`: to the
/// end of the keyspace).
pub fn span_bounds(start: &[u8], end: Option<&[u8]>) -> (Vec<u8>, Option<Vec<u8>>) {
    (key_floor(start), end.map(key_floor))
}

/// The smaller of two upper bounds (`None` is no bound).
fn min_bound(a: Option<Vec<u8>>, b: Option<&[u8]>) -> Option<Vec<u8>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b.to_vec())),
        (Some(a), None) => Some(a),
        (None, b) => b.map(<[u8]>::to_vec),
    }
}

/// Bytes one version weighs in a range's count (as `VersionedMap` counts them).
pub fn version_bytes(key: &[u8], value: Option<&[u8]>) -> u64 {
    (key.len() + value.map_or(0, <[u8]>::len)) as u64
}

fn entry_value(value: Option<&[u8]>) -> Vec<u8> {
    match value {
        Some(value) => {
            let mut out = Vec::with_capacity(1 + value.len());
            out.push(VALUE);
            out.extend_from_slice(value);
            out
        }
        None => vec![TOMBSTONE],
    }
}

/// The value (or `None` for a tombstone) of a stored entry.
pub fn decode_value(stored: &[u8]) -> Result<Option<&[u8]>, StoredError> {
    match stored.split_first() {
        Some((&VALUE, value)) => Ok(Some(value)),
        Some((&TOMBSTONE, [])) => Ok(None),
        Some((&tag, _)) => Err(StoredError::BadTag(tag)),
        None => Err(StoredError::Empty),
    }
}

/// One range's versions in `store`: the span `[start, end)`.
pub struct StoredVersions<'s, S> {
    store: &'s S,
    from: Vec<u8>,
    to: Option<Vec<u8>>,
}

/// One range's versions in a store being written.
pub struct StoredVersionsMut<'s, S> {
    store: &'s mut S,
    from: Vec<u8>,
    to: Option<Vec<u8>>,
}

/// What one key's versions are, newest first: (timestamp, tombstone?).
type KeyVersions = Vec<(HlcTimestamp, bool)>;

/// Which of a key's versions (newest first) GC at `threshold` drops, as `VersionedMap::gc`
/// does: every version older than the newest one at or below the threshold, and that one too
/// if it is a tombstone.
pub fn gc_drops(versions: &[(HlcTimestamp, bool)], threshold: HlcTimestamp) -> Vec<usize> {
    let Some(visible) = versions.iter().position(|(ts, _)| *ts <= threshold) else {
        return Vec::new();
    };
    let first = if versions[visible].1 {
        visible
    } else {
        visible + 1
    };
    (first..versions.len()).collect()
}

macro_rules! reads {
    () => {
        /// The timestamp of `key`'s newest version, tombstones included.
        pub fn newest(&self, key: &[u8]) -> Result<Option<HlcTimestamp>, S::Error> {
            if !self.holds(key) {
                return Ok(None);
            }
            match self.store.first(&key_floor(key), Some(&key_ceiling(key)))? {
                Some((stored, _)) => Ok(Some(decode_key(&stored).map_err(StoredError::from)?.1)),
                None => Ok(None),
            }
        }

        /// The version of `key` a read at `ts` sees (never a tombstone).
        pub fn get(&self, key: &[u8], ts: HlcTimestamp) -> Result<Option<Version>, S::Error> {
            if !self.holds(key) {
                return Ok(None);
            }
            let from = encode_key(key, ts);
            let Some((stored, value)) = self.store.first(&from, Some(&key_ceiling(key)))? else {
                return Ok(None);
            };
            let (_, at) = decode_key(&stored).map_err(StoredError::from)?;
            Ok(decode_value(&value)?.map(|value| Version {
                ts: at,
                value: Some(value.to_vec()),
            }))
        }

        /// The keys in `[from, to)` of the span (`to` `None`: to the span's end) a read at `ts`
        /// sees, in key order, at most `limit`, stopping after the entry that reaches
        /// `max_bytes` of keys and values; with each, its visible version.
        pub fn scan(
            &self,
            from: &[u8],
            to: Option<&[u8]>,
            ts: HlcTimestamp,
            limit: usize,
            max_bytes: u64,
        ) -> Result<Vec<(Vec<u8>, Version)>, S::Error> {
            let (lo, hi) = span_bounds(from, to);
            let lo = lo.max(self.from.clone());
            let hi = min_bound(hi, self.to.as_deref());
            let mut out = Vec::new();
            let mut bytes = 0;
            let mut current: Option<Vec<u8>> = None;
            let mut failure = None;
            if hi.as_ref().is_none_or(|hi| lo < *hi) && limit > 0 {
                self.store.scan(&lo, hi.as_deref(), &mut |stored, value| {
                    let (key, at) = match decode_key(stored) {
                        Ok(decoded) => decoded,
                        Err(error) => {
                            failure = Some(StoredError::from(error));
                            return false;
                        }
                    };
                    if current.as_deref() == Some(&key[..]) || at > ts {
                        // An older version of a key already decided, or one above the read.
                        return true;
                    }
                    current = Some(key.clone());
                    match decode_value(value) {
                        Ok(Some(value)) => {
                            bytes += version_bytes(&key, Some(value));
                            out.push((
                                key,
                                Version {
                                    ts: at,
                                    value: Some(value.to_vec()),
                                },
                            ));
                        }
                        Ok(None) => {}
                        Err(error) => {
                            failure = Some(error);
                            return false;
                        }
                    }
                    out.len() < limit && bytes < max_bytes
                })?;
            }
            if let Some(error) = failure {
                return Err(error.into());
            }
            Ok(out)
        }

        /// Every version in the span, keys ascending and each key's newest first: what a
        /// snapshot of the range holds. `visit` gets (key, timestamp, value or `None`) and
        /// returns false to stop.
        pub fn versions(
            &self,
            visit: &mut dyn FnMut(Vec<u8>, HlcTimestamp, Option<&[u8]>) -> bool,
        ) -> Result<(), S::Error> {
            let mut failure = None;
            self.store
                .scan(&self.from, self.to.as_deref(), &mut |stored, value| {
                    let decoded = decode_key(stored)
                        .map_err(StoredError::from)
                        .and_then(|(key, at)| Ok((key, at, decode_value(value)?)));
                    match decoded {
                        Ok((key, at, value)) => visit(key, at, value),
                        Err(error) => {
                            failure = Some(error);
                            false
                        }
                    }
                })?;
            match failure {
                Some(error) => Err(error.into()),
                None => Ok(()),
            }
        }

        /// Bytes of keys and values over all versions of the span (a split weighs each half
        /// with this).
        pub fn bytes(&self) -> Result<u64, S::Error> {
            let mut total = 0;
            self.versions(&mut |key, _, value| {
                total += version_bytes(&key, value);
                true
            })?;
            Ok(total)
        }

        /// The first key at which the keys before it hold at least half of `bytes` (the
        /// span's count): where a split by size cuts. `None` when fewer than two keys exist.
        pub fn middle_key(&self, bytes: u64) -> Result<Option<Vec<u8>>, S::Error> {
            let half = bytes / 2;
            let mut before = 0;
            let mut keys = 0usize;
            let mut last: Option<Vec<u8>> = None;
            let mut found = None;
            self.versions(&mut |key, _, value| {
                if last.as_deref() != Some(&key[..]) {
                    if keys > 0 && before >= half {
                        found = Some(key);
                        return false;
                    }
                    keys += 1;
                    last = Some(key.clone());
                }
                before += version_bytes(&key, value);
                true
            })?;
            if found.is_some() {
                return Ok(found);
            }
            Ok(if keys < 2 { None } else { last })
        }

        /// Whether GC at `threshold` (above the range's `current` one) would drop anything.
        pub fn would_gc(
            &self,
            current: HlcTimestamp,
            threshold: HlcTimestamp,
        ) -> Result<bool, S::Error> {
            if threshold <= current {
                return Ok(false);
            }
            let mut any = false;
            self.each_key(&mut |_, versions| {
                any = !gc_drops(versions, threshold).is_empty();
                !any
            })?;
            Ok(any)
        }

        fn holds(&self, key: &[u8]) -> bool {
            let floor = key_floor(key);
            floor >= self.from && self.to.as_ref().is_none_or(|to| floor < *to)
        }

        /// Calls `visit` with each key and its versions (newest first) until it returns false.
        fn each_key(
            &self,
            visit: &mut dyn FnMut(&[u8], &KeyVersions) -> bool,
        ) -> Result<(), S::Error> {
            let mut key: Option<Vec<u8>> = None;
            let mut versions = KeyVersions::new();
            let mut going = true;
            self.versions(&mut |k, at, value| {
                if key.as_deref() != Some(&k[..]) {
                    if let Some(done) = key.take() {
                        going = visit(&done, &versions);
                        if !going {
                            return false;
                        }
                    }
                    versions.clear();
                    key = Some(k);
                }
                versions.push((at, value.is_none()));
                true
            })?;
            if going && let Some(done) = key {
                visit(&done, &versions);
            }
            Ok(())
        }
    };
}

impl<'s, S: OrderedStore> StoredVersions<'s, S> {
    /// The span `[start, end)` of `store`.
    pub fn new(store: &'s S, start: &[u8], end: Option<&[u8]>) -> StoredVersions<'s, S> {
        let (from, to) = span_bounds(start, end);
        StoredVersions { store, from, to }
    }

    reads!();
}

impl<'s, S: OrderedStoreMut> StoredVersionsMut<'s, S> {
    /// The span `[start, end)` of `store`.
    pub fn new(store: &'s mut S, start: &[u8], end: Option<&[u8]>) -> StoredVersionsMut<'s, S> {
        let (from, to) = span_bounds(start, end);
        StoredVersionsMut { store, from, to }
    }

    reads!();

    /// Writes `value` (`None`: a tombstone) to `key` at `ts`, refused at or below the key's
    /// newest version or the range's GC threshold `gc`. Returns the bytes the range now
    /// holds more.
    pub fn write(
        &mut self,
        key: &[u8],
        ts: HlcTimestamp,
        value: Option<&[u8]>,
        gc: HlcTimestamp,
    ) -> Result<Result<u64, WriteTooOld>, S::Error> {
        debug_assert!(self.holds(key), "a write to a key outside the range's span");
        if ts <= gc {
            return Ok(Err(WriteTooOld {
                attempted: ts,
                existing: gc,
            }));
        }
        if let Some(newest) = self.newest(key)?
            && newest >= ts
        {
            return Ok(Err(WriteTooOld {
                attempted: ts,
                existing: newest,
            }));
        }
        self.store
            .insert(&encode_key(key, ts), &entry_value(value))?;
        Ok(Ok(version_bytes(key, value)))
    }

    /// Drops what no read at or above `threshold` can see, when it is above the range's
    /// `current` threshold. Returns (versions dropped, bytes freed).
    pub fn gc(
        &mut self,
        current: HlcTimestamp,
        threshold: HlcTimestamp,
    ) -> Result<(usize, u64), S::Error> {
        if threshold <= current {
            return Ok((0, 0));
        }
        let mut doomed: Vec<(Vec<u8>, u64)> = Vec::new();
        {
            let reader = StoredVersions {
                store: &*self.store,
                from: self.from.clone(),
                to: self.to.clone(),
            };
            let mut key: Option<Vec<u8>> = None;
            let mut versions: Vec<(HlcTimestamp, bool, u64)> = Vec::new();
            let mut flush = |key: &[u8], versions: &[(HlcTimestamp, bool, u64)]| {
                let shape: KeyVersions = versions.iter().map(|(t, d, _)| (*t, *d)).collect();
                for at in gc_drops(&shape, threshold) {
                    let (ts, _, bytes) = versions[at];
                    doomed.push((encode_key(key, ts), bytes));
                }
            };
            reader.versions(&mut |k, at, value| {
                if key.as_deref() != Some(&k[..]) {
                    if let Some(done) = key.take() {
                        flush(&done, &versions);
                    }
                    versions.clear();
                    key = Some(k.clone());
                }
                versions.push((at, value.is_none(), version_bytes(&k, value)));
                true
            })?;
            if let Some(done) = key {
                flush(&done, &versions);
            }
        }
        let freed = doomed.iter().map(|(_, bytes)| bytes).sum();
        for (stored, _) in &doomed {
            self.store.remove(stored)?;
        }
        Ok((doomed.len(), freed))
    }

    /// Removes every version of the span (a replica leaving the member). Returns how many.
    pub fn clear(&mut self) -> Result<usize, S::Error> {
        let mut keys = Vec::new();
        self.store
            .scan(&self.from, self.to.as_deref(), &mut |stored, _| {
                keys.push(stored.to_vec());
                true
            })?;
        for key in &keys {
            self.store.remove(key)?;
        }
        Ok(keys.len())
    }

    /// Writes one version as a snapshot lists it (no checks: the snapshot's source applied
    /// them).
    pub fn restore(
        &mut self,
        key: &[u8],
        ts: HlcTimestamp,
        value: Option<&[u8]>,
    ) -> Result<u64, S::Error> {
        self.store
            .insert(&encode_key(key, ts), &entry_value(value))?;
        Ok(version_bytes(key, value))
    }
}

/// An ordered store in memory (the simulation's engine, and the model in tests).
impl OrderedStore for std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    type Error = StoredError;

    fn first(&self, from: &[u8], to: Option<&[u8]>) -> Result<Option<Entry>, StoredError> {
        Ok(self
            .range::<[u8], _>((Bound::Included(from), upper(to)))
            .next()
            .map(|(k, v)| (k.clone(), v.clone())))
    }

    fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoredError> {
        for (k, v) in self.range::<[u8], _>((Bound::Included(from), upper(to))) {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }
}

impl OrderedStoreMut for std::collections::BTreeMap<Vec<u8>, Vec<u8>> {
    fn insert(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoredError> {
        std::collections::BTreeMap::insert(self, key.to_vec(), value.to_vec());
        Ok(())
    }

    fn remove(&mut self, key: &[u8]) -> Result<(), StoredError> {
        std::collections::BTreeMap::remove(self, key);
        Ok(())
    }
}

fn upper(to: Option<&[u8]>) -> Bound<&[u8]> {
    to.map_or(Bound::Unbounded, Bound::Excluded)
}
