//! The versions of a range's keys in memory: the semantics every store of them keeps
//! (`stored` keeps the same rules in an ordered store, in `codec`'s order, and is tested
//! against this map).

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::ops::Bound;

use base::HlcTimestamp;

/// One version of a key: a value, or a tombstone (`None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub ts: HlcTimestamp,
    pub value: Option<Vec<u8>>,
}

/// A write at or below the key's newest version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("write at {attempted} is too old: the key has a version at {existing}")]
pub struct WriteTooOld {
    pub attempted: HlcTimestamp,
    pub existing: HlcTimestamp,
}

/// A list of versions that names one version of a key twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the version at {ts} of a key is listed twice")]
pub struct DuplicateVersion {
    pub ts: HlcTimestamp,
}

/// One key's versions, newest first (a tombstone is `None`).
type Versions = BTreeMap<Reverse<HlcTimestamp>, Option<Vec<u8>>>;

/// The versions of a range's keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VersionedMap {
    /// Per key, versions newest first.
    keys: BTreeMap<Vec<u8>, Versions>,
    /// Bytes of keys and values over all versions (what a split by size weighs).
    bytes: u64,
    /// Reads below this may miss versions GC removed.
    gc_threshold: HlcTimestamp,
}

fn version_bytes(key: &[u8], value: &Option<Vec<u8>>) -> u64 {
    (key.len() + value.as_ref().map_or(0, Vec::len)) as u64
}

/// Bytes of every version of `key`.
fn key_bytes(key: &[u8], versions: &Versions) -> u64 {
    versions
        .values()
        .map(|value| version_bytes(key, value))
        .sum()
}

impl VersionedMap {
    pub fn new() -> VersionedMap {
        VersionedMap::default()
    }

    fn write(
        &mut self,
        key: &[u8],
        ts: HlcTimestamp,
        value: Option<Vec<u8>>,
    ) -> Result<(), WriteTooOld> {
        // Below the GC threshold history is gone: a write there could hide under versions GC
        // dropped, so it is as too old as one under the newest version.
        if ts <= self.gc_threshold {
            return Err(WriteTooOld {
                attempted: ts,
                existing: self.gc_threshold,
            });
        }
        if let Some(newest) = self.newest(key)
            && newest >= ts
        {
            return Err(WriteTooOld {
                attempted: ts,
                existing: newest,
            });
        }
        self.bytes += version_bytes(key, &value);
        self.keys
            .entry(key.to_vec())
            .or_default()
            .insert(Reverse(ts), value);
        Ok(())
    }

    /// Writes `value` to `key` at `ts`.
    pub fn put(&mut self, key: &[u8], ts: HlcTimestamp, value: Vec<u8>) -> Result<(), WriteTooOld> {
        self.write(key, ts, Some(value))
    }

    /// Deletes `key` at `ts` (a tombstone; earlier versions stay readable at earlier times).
    pub fn delete(&mut self, key: &[u8], ts: HlcTimestamp) -> Result<(), WriteTooOld> {
        self.write(key, ts, None)
    }

    /// The timestamp of `key`'s newest version, tombstones included.
    pub fn newest(&self, key: &[u8]) -> Option<HlcTimestamp> {
        self.keys
            .get(key)
            .and_then(|versions| versions.keys().next())
            .map(|Reverse(ts)| *ts)
    }

    /// The version of `key` a read at `ts` sees (never a tombstone).
    pub fn get(&self, key: &[u8], ts: HlcTimestamp) -> Option<Version> {
        let versions = self.keys.get(key)?;
        let (Reverse(at), value) = versions.range(Reverse(ts)..).next()?;
        value.as_ref().map(|value| Version {
            ts: *at,
            value: Some(value.clone()),
        })
    }

    /// The keys in `[from, to)` (`to` `None`: to the end) a read at `ts` sees, in key order,
    /// at most `limit`; with each, its visible version.
    pub fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        ts: HlcTimestamp,
        limit: usize,
    ) -> Vec<(Vec<u8>, Version)> {
        let end = match to {
            Some(to) => Bound::Excluded(to),
            None => Bound::Unbounded,
        };
        self.keys
            .range::<[u8], _>((Bound::Included(from), end))
            .filter_map(|(key, _)| self.get(key, ts).map(|version| (key.clone(), version)))
            .take(limit)
            .collect()
    }

    /// Drops what no read at or above `threshold` can see; see the crate documentation.
    /// Returns the number of versions dropped. A threshold below the current one changes
    /// nothing.
    pub fn gc(&mut self, threshold: HlcTimestamp) -> usize {
        if threshold <= self.gc_threshold {
            return 0;
        }
        self.gc_threshold = threshold;
        let mut dropped = 0;
        let mut freed = 0;
        self.keys.retain(|key, versions| {
            // The newest version at or below the threshold is what reads at the threshold see;
            // everything older is invisible to them.
            let Some(&Reverse(visible)) =
                versions.range(Reverse(threshold)..).next().map(|(k, _)| k)
            else {
                return true;
            };
            let older: Vec<Reverse<HlcTimestamp>> = versions
                .range((Bound::Excluded(Reverse(visible)), Bound::Unbounded))
                .map(|(ts, _)| *ts)
                .collect();
            for ts in older {
                let value = versions.remove(&ts).expect("listed above");
                freed += version_bytes(key, &value);
                dropped += 1;
            }
            // A visible tombstone hides nothing any more: reads at or above the threshold see
            // no version either way.
            if versions.get(&Reverse(visible)) == Some(&None) {
                versions.remove(&Reverse(visible));
                freed += version_bytes(key, &None);
                dropped += 1;
            }
            !versions.is_empty()
        });
        self.bytes -= freed;
        dropped
    }

    /// Whether `gc(threshold)` would drop anything: a key with a version older than its
    /// newest at or below the threshold, or whose version there is a tombstone.
    pub fn would_gc(&self, threshold: HlcTimestamp) -> bool {
        threshold > self.gc_threshold
            && self.keys.values().any(|versions| {
                let mut visible = versions.range(Reverse(threshold)..);
                match visible.next() {
                    Some((_, None)) => true,
                    Some(_) => visible.next().is_some(),
                    None => false,
                }
            })
    }

    /// Reads below this timestamp may miss versions GC removed.
    pub fn gc_threshold(&self) -> HlcTimestamp {
        self.gc_threshold
    }

    /// Bytes of keys and values over all versions.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The first key at which the keys before it hold at least half the bytes: where a split
    /// by size cuts. `None` when fewer than two keys exist.
    pub fn middle_key(&self) -> Option<Vec<u8>> {
        if self.keys.len() < 2 {
            return None;
        }
        let half = self.bytes / 2;
        let mut before = 0;
        for (index, (key, versions)) in self.keys.iter().enumerate() {
            if index > 0 && before >= half {
                return Some(key.clone());
            }
            before += key_bytes(key, versions);
        }
        self.keys.keys().next_back().cloned()
    }

    /// Moves every key at or after `at` into a new map (the right half of a split); both keep
    /// the GC threshold.
    pub fn split_off(&mut self, at: &[u8]) -> VersionedMap {
        let right_keys = self.keys.split_off(at);
        let right_bytes: u64 = right_keys
            .iter()
            .map(|(key, versions)| key_bytes(key, versions))
            .sum();
        self.bytes -= right_bytes;
        VersionedMap {
            keys: right_keys,
            bytes: right_bytes,
            gc_threshold: self.gc_threshold,
        }
    }

    /// Takes back a right neighbour's keys (a merge); the later GC threshold holds for both.
    pub fn absorb(&mut self, right: VersionedMap) {
        self.bytes += right.bytes;
        self.gc_threshold = self.gc_threshold.max(right.gc_threshold);
        self.keys.extend(right.keys);
    }

    /// Every version of every key, keys ascending and each key's newest first (tombstones as
    /// `None`): what a snapshot of the map stores.
    pub fn versions(&self) -> impl Iterator<Item = (&[u8], HlcTimestamp, Option<&[u8]>)> + '_ {
        self.keys.iter().flat_map(|(key, versions)| {
            versions
                .iter()
                .map(move |(Reverse(ts), value)| (key.as_slice(), *ts, value.as_deref()))
        })
    }

    /// Rebuilds a map from the versions `versions` listed and its GC threshold (a snapshot's
    /// contents); the same version of a key twice is an error, since no map holds that.
    pub fn from_versions(
        gc_threshold: HlcTimestamp,
        versions: impl IntoIterator<Item = (Vec<u8>, HlcTimestamp, Option<Vec<u8>>)>,
    ) -> Result<VersionedMap, DuplicateVersion> {
        let mut map = VersionedMap {
            gc_threshold,
            ..VersionedMap::default()
        };
        for (key, ts, value) in versions {
            let bytes = version_bytes(&key, &value);
            let entry = map.keys.entry(key).or_default();
            if entry.insert(Reverse(ts), value).is_some() {
                return Err(DuplicateVersion { ts });
            }
            map.bytes += bytes;
        }
        Ok(map)
    }

    /// The byte count summed afresh, to check the running one.
    #[cfg(test)]
    pub(crate) fn recount(&self) -> u64 {
        self.keys
            .iter()
            .map(|(key, versions)| key_bytes(key, versions))
            .sum()
    }

    /// Number of keys with any version.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
