//! The frame every stored value carries: a CRC32 of the payload, then the payload.

use crate::StorageError;

/// Returns `payload` with its CRC32 in front.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Returns the payload of a frame after checking its CRC32; `what` names the value in errors.
pub fn unframe<'a>(bytes: &'a [u8], what: &str) -> Result<&'a [u8], StorageError> {
    if bytes.len() < 4 {
        return Err(StorageError::Corrupt {
            what: what.to_string(),
            detail: "truncated frame".into(),
        });
    }
    let (crc, payload) = bytes.split_at(4);
    let stored = u32::from_be_bytes(crc.try_into().expect("4 bytes"));
    let computed = crc32fast::hash(payload);
    if stored != computed {
        return Err(StorageError::Corrupt {
            what: what.to_string(),
            detail: format!("checksum mismatch: stored {stored:08x}, computed {computed:08x}"),
        });
    }
    Ok(payload)
}
