//! The explicit, versioned binary forms of [`Object`] (stored and sent between replicas) and of
//! [`VersionVector`] (handed to clients as a context token). Decoding checks every invariant
//! the in-memory types rely on and never panics, whatever the input.
//!
//! Format version 1. Every integer is an unsigned LEB128 varint in its shortest form (seven
//! bits a byte, low group first, high bit set on all but the last byte):
//!
//! ```text
//! object         = version:u8 (= 1)  version-vector  sibling-count  sibling*
//! version-vector = entry-count  (actor counter)*     actors strictly increasing, counters >= 1
//! sibling        = actor counter  physical logical  kind:u8  [value-length value-bytes]
//!                  siblings strictly increasing by (actor, counter), each covered by the vector;
//!                  logical < 2^32; kind 0 = tombstone (nothing follows), 1 = value
//! ```
//!
//! A context token is `v1.` followed by the lowercase hex of a `version-vector`; the prefix
//! carries the format version, so the empty vector is `v1.00`.

use std::collections::BTreeMap;

use base::HlcTimestamp;

use crate::object::{Object, Sibling};
use crate::vv::{Dot, VersionVector};

/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// What every context token starts with.
const TOKEN_PREFIX: &str = "v1.";

const KIND_TOMBSTONE: u8 = 0;
const KIND_VALUE: u8 = 1;

/// Why bytes or a token were refused. Offsets count bytes from the start of the binary form
/// (for tokens: of the hex-decoded body).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input ends inside the {what} at byte {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("format version {found} is not supported; this build reads version {FORMAT_VERSION}")]
    UnsupportedVersion { found: u8 },
    #[error("{count} unexpected bytes follow the end of the encoding at byte {offset}")]
    TrailingBytes { offset: usize, count: usize },
    #[error("the varint at byte {offset} does not fit in 64 bits")]
    VarintOverflow { offset: usize },
    #[error("the varint at byte {offset} is not in its shortest form")]
    VarintNotMinimal { offset: usize },
    #[error("actor {actor:x} has counter 0 at byte {offset}; counters start at 1")]
    ZeroCounter { actor: u64, offset: usize },
    #[error("version vector names actor {actor:x} twice, again at byte {offset}")]
    DuplicateActor { actor: u64, offset: usize },
    #[error("version vector actors must increase: {actor:x} follows {previous:x} at byte {offset}")]
    UnsortedActors {
        previous: u64,
        actor: u64,
        offset: usize,
    },
    #[error("sibling {dot} appears twice, again at byte {offset}")]
    DuplicateSibling { dot: Dot, offset: usize },
    #[error("siblings must increase by dot: {dot} follows {previous} at byte {offset}")]
    UnsortedSiblings {
        previous: Dot,
        dot: Dot,
        offset: usize,
    },
    #[error("sibling {dot} at byte {offset} is not covered by the object's context")]
    SiblingOutsideContext { dot: Dot, offset: usize },
    #[error("logical time {value} at byte {offset} does not fit in 32 bits")]
    LogicalOverflow { value: u64, offset: usize },
    #[error("sibling kind {kind} at byte {offset} is neither 0 (tombstone) nor 1 (value)")]
    UnknownSiblingKind { kind: u8, offset: usize },
    #[error("a context token must start with {TOKEN_PREFIX:?}")]
    TokenPrefix,
    #[error("context token has {found:?} at character {position}; expected a lowercase hex digit")]
    TokenNotHex { position: usize, found: char },
    #[error("context token has {digits} hex digits; whole bytes need an even number")]
    TokenOddLength { digits: usize },
}

/// Returns the binary form of `object`, starting with [`FORMAT_VERSION`].
pub fn encode_object(object: &Object) -> Vec<u8> {
    let mut out = vec![FORMAT_VERSION];
    put_version_vector(&mut out, &object.context);
    put_varint(&mut out, object.siblings.len() as u64);
    for sibling in &object.siblings {
        put_varint(&mut out, sibling.dot.actor);
        put_varint(&mut out, sibling.dot.counter);
        put_varint(&mut out, sibling.timestamp.physical);
        put_varint(&mut out, u64::from(sibling.timestamp.logical));
        match &sibling.value {
            None => out.push(KIND_TOMBSTONE),
            Some(value) => {
                out.push(KIND_VALUE);
                put_varint(&mut out, value.len() as u64);
                out.extend_from_slice(value);
            }
        }
    }
    out
}

/// Parses the form [`encode_object`] writes, refusing anything that breaks the format or
/// [`Object`]'s invariants.
pub fn decode_object(bytes: &[u8]) -> Result<Object, DecodeError> {
    let mut reader = Reader { bytes, offset: 0 };
    let found = reader.byte("format version")?;
    if found != FORMAT_VERSION {
        return Err(DecodeError::UnsupportedVersion { found });
    }
    let context = read_version_vector(&mut reader)?;
    let count = reader.varint("sibling count")?;
    // No capacity from `count`: it is untrusted, and each sibling takes at least six bytes.
    let mut siblings: Vec<Sibling> = Vec::new();
    for _ in 0..count {
        let offset = reader.offset;
        let actor = reader.varint("sibling actor")?;
        let counter = reader.varint("sibling counter")?;
        let dot = Dot { actor, counter };
        if counter == 0 {
            return Err(DecodeError::ZeroCounter { actor, offset });
        }
        if let Some(previous) = siblings.last().map(|s| s.dot) {
            if dot == previous {
                return Err(DecodeError::DuplicateSibling { dot, offset });
            }
            if dot < previous {
                return Err(DecodeError::UnsortedSiblings {
                    previous,
                    dot,
                    offset,
                });
            }
        }
        if !context.covers(&dot) {
            return Err(DecodeError::SiblingOutsideContext { dot, offset });
        }
        let physical = reader.varint("sibling timestamp")?;
        let logical_offset = reader.offset;
        let logical = reader.varint("sibling timestamp")?;
        let logical = u32::try_from(logical).map_err(|_| DecodeError::LogicalOverflow {
            value: logical,
            offset: logical_offset,
        })?;
        let kind_offset = reader.offset;
        let value = match reader.byte("sibling kind")? {
            KIND_TOMBSTONE => None,
            KIND_VALUE => {
                let len = reader.varint("value length")?;
                Some(reader.take(len, "value")?.to_vec())
            }
            kind => {
                return Err(DecodeError::UnknownSiblingKind {
                    kind,
                    offset: kind_offset,
                });
            }
        };
        siblings.push(Sibling {
            dot,
            timestamp: HlcTimestamp { physical, logical },
            value,
        });
    }
    reader.finish()?;
    Ok(Object { context, siblings })
}

impl VersionVector {
    /// Returns the context token a client carries from a read to its next write: `v1.` and the
    /// lowercase hex of the vector's binary form.
    pub fn to_token(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut body = Vec::new();
        put_version_vector(&mut body, self);
        let mut token = String::with_capacity(TOKEN_PREFIX.len() + 2 * body.len());
        token.push_str(TOKEN_PREFIX);
        for byte in body {
            token.push(char::from(HEX[usize::from(byte >> 4)]));
            token.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        token
    }

    /// Parses a token made by [`VersionVector::to_token`]. Tokens come from clients, so any
    /// string is refused with a reason rather than trusted.
    pub fn from_token(token: &str) -> Result<VersionVector, DecodeError> {
        let hex = token
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(DecodeError::TokenPrefix)?;
        let mut digits = Vec::with_capacity(hex.len());
        for (position, found) in hex.chars().enumerate() {
            match found {
                '0'..='9' => digits.push(found as u8 - b'0'),
                'a'..='f' => digits.push(found as u8 - b'a' + 10),
                _ => {
                    return Err(DecodeError::TokenNotHex {
                        position: TOKEN_PREFIX.len() + position,
                        found,
                    });
                }
            }
        }
        if digits.len() % 2 != 0 {
            return Err(DecodeError::TokenOddLength {
                digits: digits.len(),
            });
        }
        let body: Vec<u8> = digits
            .chunks(2)
            .map(|pair| pair[0] << 4 | pair[1])
            .collect();
        let mut reader = Reader {
            bytes: &body,
            offset: 0,
        };
        let vv = read_version_vector(&mut reader)?;
        reader.finish()?;
        Ok(vv)
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_version_vector(out: &mut Vec<u8>, vv: &VersionVector) {
    put_varint(out, vv.entries.len() as u64);
    for (actor, counter) in vv.iter() {
        put_varint(out, actor);
        put_varint(out, counter);
    }
}

fn read_version_vector(reader: &mut Reader<'_>) -> Result<VersionVector, DecodeError> {
    let count = reader.varint("version vector length")?;
    let mut entries = BTreeMap::new();
    let mut previous: Option<u64> = None;
    for _ in 0..count {
        let offset = reader.offset;
        let actor = reader.varint("version vector actor")?;
        let counter = reader.varint("version vector counter")?;
        if counter == 0 {
            return Err(DecodeError::ZeroCounter { actor, offset });
        }
        if let Some(previous) = previous {
            if actor == previous {
                return Err(DecodeError::DuplicateActor { actor, offset });
            }
            if actor < previous {
                return Err(DecodeError::UnsortedActors {
                    previous,
                    actor,
                    offset,
                });
            }
        }
        entries.insert(actor, counter);
        previous = Some(actor);
    }
    Ok(VersionVector { entries })
}

/// A cursor over untrusted bytes; every read checks the length first.
struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let byte = *self.bytes.get(self.offset).ok_or(DecodeError::Truncated {
            what,
            offset: self.offset,
        })?;
        self.offset += 1;
        Ok(byte)
    }

    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.offset;
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let byte = self.byte(what)?;
            // The tenth byte holds bit 63 only, and ends the varint.
            if shift == 63 && byte > 1 {
                return Err(DecodeError::VarintOverflow { offset: start });
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                if byte == 0 && shift > 0 {
                    return Err(DecodeError::VarintNotMinimal { offset: start });
                }
                return Ok(value);
            }
            shift += 7;
        }
    }

    fn take(&mut self, len: u64, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let remaining = self.bytes.len() - self.offset;
        let len = usize::try_from(len)
            .ok()
            .filter(|&len| len <= remaining)
            .ok_or(DecodeError::Truncated {
                what,
                offset: self.bytes.len(),
            })?;
        let taken = &self.bytes[self.offset..self.offset + len];
        self.offset += len;
        Ok(taken)
    }

    fn finish(self) -> Result<(), DecodeError> {
        match self.bytes.len() - self.offset {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes {
                offset: self.offset,
                count,
            }),
        }
    }
}
