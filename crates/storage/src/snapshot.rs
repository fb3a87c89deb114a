//! The latest Raft snapshot as one file, replaced atomically (write, fsync, rename, fsync the
//! directory) and verified by CRC on load.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{StorageError, frame, unframe};

/// The file that holds the latest snapshot of this member's state machine.
pub struct SnapshotFile {
    path: PathBuf,
}

impl SnapshotFile {
    /// Returns the snapshot file at `path` (which need not exist yet).
    pub fn new(path: &Path) -> SnapshotFile {
        SnapshotFile {
            path: path.to_path_buf(),
        }
    }

    fn file_error(&self, source: std::io::Error) -> StorageError {
        StorageError::File {
            path: self.path.display().to_string(),
            source,
        }
    }

    /// Durably replaces the snapshot with `bytes`.
    pub fn save(&self, bytes: &[u8]) -> Result<(), StorageError> {
        // `<name>.tmp` beside it: a range's snapshot (`7.snap`) and seed (`7.seed`) must not
        // share one temporary file, as `with_extension` would make them.
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        let mut file = fs::File::create(&tmp).map_err(|e| self.file_error(e))?;
        file.write_all(&frame(bytes))
            .map_err(|e| self.file_error(e))?;
        file.sync_all().map_err(|e| self.file_error(e))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(|e| self.file_error(e))?;
        if let Some(dir) = self.path.parent() {
            fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.file_error(e))?;
        }
        Ok(())
    }

    /// Returns the saved snapshot, verified, or `None` when none was saved.
    pub fn load(&self) -> Result<Option<Vec<u8>>, StorageError> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(unframe(&bytes, "snapshot file")?.to_vec())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.file_error(e)),
        }
    }
}
