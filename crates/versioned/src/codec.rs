//! The storage key of one version: the user key with every 0x00 byte written as 0x00 0xFF and
//! ended by 0x00 0x01, then the timestamp's physical and logical parts inverted, big-endian.
//! Byte order of encoded keys is then (key ascending, timestamp descending): all versions of
//! a key are contiguous, the newest first, and no key's versions interleave with those of a
//! key it is a prefix of (the terminator sorts below any escaped byte).

use base::HlcTimestamp;

/// Bytes of the encoded timestamp.
pub(crate) const TIMESTAMP_LEN: usize = 12;

/// Why stored bytes are not a versioned key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("versioned key is too short: {0} bytes")]
    TooShort(usize),
    #[error("versioned key has no terminator")]
    NoTerminator,
    #[error("versioned key has a bad escape at byte {0}")]
    BadEscape(usize),
}

/// The storage key of `key` at `ts`.
pub fn encode_key(key: &[u8], ts: HlcTimestamp) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 + TIMESTAMP_LEN + key.len() / 16);
    for &byte in key {
        out.push(byte);
        if byte == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0x00, 0x01]);
    out.extend_from_slice(&(!ts.physical).to_be_bytes());
    out.extend_from_slice(&(!ts.logical).to_be_bytes());
    out
}

/// The key and timestamp of a storage key.
pub fn decode_key(bytes: &[u8]) -> Result<(Vec<u8>, HlcTimestamp), DecodeError> {
    if bytes.len() < 2 + TIMESTAMP_LEN {
        return Err(DecodeError::TooShort(bytes.len()));
    }
    let (escaped, stamp) = bytes.split_at(bytes.len() - TIMESTAMP_LEN);
    let mut key = Vec::with_capacity(escaped.len());
    let mut i = 0;
    loop {
        match escaped.get(i) {
            None => return Err(DecodeError::NoTerminator),
            Some(0) => match escaped.get(i + 1) {
                Some(0xff) => {
                    key.push(0);
                    i += 2;
                }
                Some(0x01) if i + 2 == escaped.len() => break,
                _ => return Err(DecodeError::BadEscape(i)),
            },
            Some(&byte) => {
                key.push(byte);
                i += 1;
            }
        }
    }
    let physical = u64::from_be_bytes(stamp[..8].try_into().expect("8 bytes"));
    let logical = u32::from_be_bytes(stamp[8..].try_into().expect("4 bytes"));
    Ok((
        key,
        HlcTimestamp {
            physical: !physical,
            logical: !logical,
        },
    ))
}
