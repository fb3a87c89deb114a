//! When a range splits and where. By size: once its data passes the bucket's
//! `range-max-bytes`, at the key that halves its bytes (the driver finds that key in the
//! range's storage). By load: once its requests per second stay above a threshold for a
//! number of consecutive windows, at the key that halves the sampled requests — and only if
//! each side would get a real share, since splitting off one hot key's neighbours helps
//! nothing. The load sample is a deterministic stride sample (every k-th request, k doubling
//! when the sample is full), so it is bounded and needs no randomness.

use crate::descriptor::RangeDescriptor;

/// A split's thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SplitConfig {
    /// A range with more data than this splits.
    pub range_max_bytes: u64,
    /// Requests per second above which a window counts as hot.
    pub load_split_qps: f64,
    /// Consecutive hot windows before a load split.
    pub load_split_windows: u32,
}

/// The default size of a range, as the bucket option `--range-max-bytes` documents it.
pub const RANGE_MAX_BYTES_DEFAULT: u64 = 64 << 20;
/// Requests per second a range may sustain before it splits by load. A range's leader does a
/// few thousand durable writes per second on the machines of `docs/benchmarks.md`; a range
/// that keeps a good share of that busy gains from a second leader.
pub const LOAD_SPLIT_QPS_DEFAULT: f64 = 2_500.0;
/// Hot windows in a row before a load split, so a burst does not split a range.
pub const LOAD_SPLIT_WINDOWS_DEFAULT: u32 = 3;

impl Default for SplitConfig {
    fn default() -> SplitConfig {
        SplitConfig {
            range_max_bytes: RANGE_MAX_BYTES_DEFAULT,
            load_split_qps: LOAD_SPLIT_QPS_DEFAULT,
            load_split_windows: LOAD_SPLIT_WINDOWS_DEFAULT,
        }
    }
}

/// Sampled keys kept per window; when full, every other one is dropped and the stride doubles.
pub const LOAD_SAMPLES_MAX: usize = 1024;
/// The smallest share of the sampled requests each side of a load split must get.
pub const LOAD_SPLIT_MIN_SHARE: f64 = 0.25;

/// Why a range splits.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SplitReason {
    Size,
    Load,
}

/// A split to propose: the right half starts at `at`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub at: Vec<u8>,
    pub reason: SplitReason,
}

/// The requests a range served, window by window.
#[derive(Clone, Debug)]
pub struct LoadTracker {
    /// Requests this window.
    requests: u64,
    /// Every `stride`-th request's key, this window.
    samples: Vec<Vec<u8>>,
    stride: u64,
    /// Consecutive windows above the threshold, counting the last one ended.
    hot_windows: u32,
    /// The balancing key of the last window, when it had one.
    last_split_key: Option<Vec<u8>>,
    /// Requests per second of the last window ended.
    last_qps: f64,
}

impl Default for LoadTracker {
    fn default() -> LoadTracker {
        LoadTracker {
            requests: 0,
            samples: Vec::new(),
            stride: 1,
            hot_windows: 0,
            last_split_key: None,
            last_qps: 0.0,
        }
    }
}

impl LoadTracker {
    pub fn new() -> LoadTracker {
        LoadTracker::default()
    }

    /// Counts one request for `key`.
    pub fn record(&mut self, key: &[u8]) {
        self.requests += 1;
        if !self.requests.is_multiple_of(self.stride) {
            return;
        }
        self.samples.push(key.to_vec());
        if self.samples.len() > LOAD_SAMPLES_MAX {
            let mut keep = false;
            self.samples.retain(|_| {
                keep = !keep;
                keep
            });
            self.stride *= 2;
        }
    }

    /// Ends a window of `seconds` for `range`: returns its requests per second and keeps, for
    /// the split decision, whether it was hot and the key that would balance its load.
    pub fn end_window(
        &mut self,
        range: &RangeDescriptor,
        seconds: f64,
        config: &SplitConfig,
    ) -> f64 {
        let qps = if seconds > 0.0 {
            self.requests as f64 / seconds
        } else {
            0.0
        };
        if qps > config.load_split_qps {
            self.hot_windows += 1;
        } else {
            self.hot_windows = 0;
        }
        self.last_split_key = balancing_key(range, &mut self.samples);
        self.last_qps = qps;
        self.requests = 0;
        self.samples.clear();
        self.stride = 1;
        qps
    }

    /// Requests per second of the last window ended.
    pub fn qps(&self) -> f64 {
        self.last_qps
    }

    /// Consecutive hot windows.
    pub fn hot_windows(&self) -> u32 {
        self.hot_windows
    }

    /// Keys sampled so far this window.
    pub fn samples_len(&self) -> usize {
        self.samples.len()
    }
}

/// The key that best halves the sampled requests (inside the range, above its start), if
/// each side gets at least `LOAD_SPLIT_MIN_SHARE` of them.
fn balancing_key(range: &RangeDescriptor, samples: &mut [Vec<u8>]) -> Option<Vec<u8>> {
    samples.sort_unstable();
    let total = samples.len();
    let mut best: Option<(usize, usize)> = None; // (imbalance, index of the candidate)
    for index in 1..total {
        // Candidates are the first sample of each distinct key: left = samples before it.
        if samples[index] == samples[index - 1] {
            continue;
        }
        let key = &samples[index];
        if key.as_slice() <= range.start.as_slice() || !range.contains(key) {
            continue;
        }
        let imbalance = index.abs_diff(total - index);
        if best.is_none_or(|(b, _)| imbalance < b) {
            best = Some((imbalance, index));
        }
    }
    let (_, index) = best?;
    let smaller = index.min(total - index) as f64;
    (smaller >= LOAD_SPLIT_MIN_SHARE * total as f64).then(|| samples[index].clone())
}

/// Whether `range` should split, and where. `bytes` is its data size and `middle_key` the key
/// at half its bytes, as the driver measured them; `load` its request windows.
pub fn decide_split(
    range: &RangeDescriptor,
    bytes: u64,
    middle_key: Option<&[u8]>,
    load: &LoadTracker,
    config: &SplitConfig,
) -> Option<Split> {
    let inside = |key: &[u8]| key > range.start.as_slice() && range.contains(key);
    if bytes > config.range_max_bytes
        && let Some(key) = middle_key.filter(|k| inside(k))
    {
        return Some(Split {
            at: key.to_vec(),
            reason: SplitReason::Size,
        });
    }
    if load.hot_windows >= config.load_split_windows
        && let Some(key) = load.last_split_key.as_deref().filter(|k| inside(k))
    {
        return Some(Split {
            at: key.to_vec(),
            reason: SplitReason::Load,
        });
    }
    None
}
