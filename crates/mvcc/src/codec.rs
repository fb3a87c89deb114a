//! The on-disk form of one MVCC record: the key's state written at one revision. Versioned and
//! checksummed so a corrupt record is refused, never served.

use base::Revision;

/// A revision within a write: `main` is the etcd revision, `sub` orders the writes of one Txn.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rev {
    pub main: Revision,
    pub sub: i64,
}

impl Rev {
    /// Returns the 16-byte big-endian form, which sorts like the revision itself.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.main.to_be_bytes());
        out[8..].copy_from_slice(&self.sub.to_be_bytes());
        out
    }

    /// Parses the form written by [`Rev::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Rev, CodecError> {
        let array: [u8; 16] = bytes.try_into().map_err(|_| CodecError::Truncated)?;
        let main = i64::from_be_bytes(array[..8].try_into().expect("8 of 16 bytes"));
        let sub = i64::from_be_bytes(array[8..].try_into().expect("8 of 16 bytes"));
        Ok(Rev { main, sub })
    }
}

/// The state of one key written at one revision: a live value or a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: Revision,
    pub mod_revision: Revision,
    pub version: i64,
    pub lease: i64,
    pub tombstone: bool,
}

/// Why stored record bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("record truncated")]
    Truncated,
    #[error("record checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
}

const FORMAT_V1: u8 = 1;
const FLAG_TOMBSTONE: u8 = 1;

impl Record {
    /// Returns the record's stored form: version byte, flags, four i64 fields, key and value
    /// with u32 lengths, then a CRC32 of everything before it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 32 + 8 + self.key.len() + self.value.len() + 4);
        out.push(FORMAT_V1);
        out.push(if self.tombstone { FLAG_TOMBSTONE } else { 0 });
        for field in [
            self.create_revision,
            self.mod_revision,
            self.version,
            self.lease,
        ] {
            out.extend_from_slice(&field.to_be_bytes());
        }
        for bytes in [&self.key, &self.value] {
            let len = u32::try_from(bytes.len())
                .expect("keys and values are bounded by the request limit");
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(bytes);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses and verifies bytes written by [`Record::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Record, CodecError> {
        if bytes.len() < 4 {
            return Err(CodecError::Truncated);
        }
        let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
        let stored = u32::from_be_bytes(crc_bytes.try_into().expect("4 bytes"));
        let computed = crc32fast::hash(body);
        if stored != computed {
            return Err(CodecError::Checksum { stored, computed });
        }
        let mut reader = Reader { bytes: body };
        let version = reader.u8()?;
        if version != FORMAT_V1 {
            return Err(CodecError::UnknownVersion(version));
        }
        let flags = reader.u8()?;
        let create_revision = reader.i64()?;
        let mod_revision = reader.i64()?;
        let record_version = reader.i64()?;
        let lease = reader.i64()?;
        let key = reader.bytes()?;
        let value = reader.bytes()?;
        if !reader.bytes.is_empty() {
            return Err(CodecError::Truncated);
        }
        Ok(Record {
            key,
            value,
            create_revision,
            mod_revision,
            version: record_version,
            lease,
            tombstone: flags & FLAG_TOMBSTONE != 0,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], CodecError> {
        if self.bytes.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<Vec<u8>, CodecError> {
        let len = u32::from_be_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize;
        Ok(self.take(len)?.to_vec())
    }
}
