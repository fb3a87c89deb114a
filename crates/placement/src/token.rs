//! The token functions and token ranges: where a key and a vnode sit on the `u64` circle. Both
//! functions are part of the on-disk and wire contract and must never change meaning; this
//! module never keeps state.

use base::NodeId;
use xxhash_rust::xxh3::{Xxh3Default, xxh3_64};

/// Number of distinct tokens, `2^64`: the length of the whole circle.
pub const TOKEN_SPACE: u128 = 1 << 64;

/// Returns the token of `key` in `bucket`: xxh3-64 (seed 0) of the bucket's byte length as a
/// big-endian `u64`, the bucket bytes, then the key bytes.
///
/// The length prefix makes the encoding unambiguous, so `("ab", "c")` and `("a", "bc")` hash
/// different bytes. The result is stable across versions and platforms and is part of the
/// on-disk and wire contract: replicas store data under the ranges these tokens fall into, and
/// members of different versions must agree on them. Changing it would silently misplace
/// every stored key.
pub fn key_token(bucket: &str, key: &[u8]) -> u64 {
    let mut hasher = Xxh3Default::new();
    // `usize` is at most 64 bits on every platform Rust supports, so this widening is lossless.
    hasher.update(&(bucket.len() as u64).to_be_bytes());
    hasher.update(bucket.as_bytes());
    hasher.update(key);
    hasher.digest()
}

/// Returns the token of vnode `index` of `member`: xxh3-64 (seed 0) of the member id as eight
/// big-endian bytes followed by the index as four big-endian bytes.
///
/// Only used to choose tokens for members that join; rings are stored as explicit token maps
/// (see [`crate::Ring::from_tokens`]), so changing this function would move no existing data.
/// It is still kept stable so that every version computes the same tokens for a join.
pub fn vnode_token(member: NodeId, index: u32) -> u64 {
    let mut bytes = [0u8; 12];
    bytes[..8].copy_from_slice(&member.0.to_be_bytes());
    bytes[8..].copy_from_slice(&index.to_be_bytes());
    xxh3_64(&bytes)
}

/// The tokens clockwise after `start` up to and including `end`, wrapping past `u64::MAX` to
/// 0 when `end <= start`. `start == end` means the whole circle: that is the range of a ring with
/// a single token.
///
/// A key whose token lies in the range is stored by the vnode at `end`, so every token of a
/// range has the same preference list.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenRange {
    /// The boundary just before the range (excluded).
    pub start: u64,
    /// The last token of the range (included); the vnode token that owns it.
    pub end: u64,
}

impl TokenRange {
    /// Returns the number of tokens in the range, between 1 and [`TOKEN_SPACE`].
    pub fn len(&self) -> u128 {
        if self.start == self.end {
            TOKEN_SPACE
        } else {
            u128::from(self.end.wrapping_sub(self.start))
        }
    }

    /// Returns false: a range always holds at least one token. Present because `len` is.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Returns whether `token` lies in the range.
    pub fn contains(&self, token: u64) -> bool {
        // Distance clockwise from the excluded start; the range holds distances 1..=len.
        let distance = u128::from(token.wrapping_sub(self.start));
        let distance = if distance == 0 { TOKEN_SPACE } else { distance };
        distance <= self.len()
    }

    /// Returns the range's share of the circle, in `(0, 1]`.
    pub fn fraction(&self) -> f64 {
        fraction_of_space(self.len())
    }
}

/// Returns `tokens / 2^64` as a float. Both conversions round at most once, so sums of exact
/// `u128` counts stay accurate to about 1e-16 relative.
pub(crate) fn fraction_of_space(tokens: u128) -> f64 {
    // `u128 as f64` rounds to nearest; `TOKEN_SPACE` is a power of two and converts exactly.
    tokens as f64 / TOKEN_SPACE as f64
}

/// Returns the ranges cut by `boundaries` (which must be sorted ascending and distinct, as the
/// keys of a `BTreeMap` are): one range ending at each boundary, in ascending order of `end`.
/// The first range wraps from the last boundary. Returns nothing for no boundaries.
pub(crate) fn ranges_between(boundaries: &[u64]) -> impl Iterator<Item = TokenRange> + '_ {
    let last = boundaries.last().copied();
    boundaries.iter().enumerate().map(move |(at, &end)| {
        let start = match at.checked_sub(1) {
            Some(previous) => boundaries[previous],
            // The first range starts after the last boundary; `last` exists because
            // `boundaries` yielded an element.
            None => last.unwrap_or(end),
        };
        TokenRange { start, end }
    })
}
