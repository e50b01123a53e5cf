//! The data directory's layout (journal, snapshot, models) and its lock: one process per
//! directory.

use std::path::{Path, PathBuf};

use crate::error::{ActorError, Result};

/// The file under a data directory that a running engine holds locked.
pub const LOCK_FILE: &str = "lock";

/// Locks `data_dir` for this process, or says that another one holds it.
pub(super) fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(data_dir.join(LOCK_FILE))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(ActorError::DataInUse { dir: data_dir.to_path_buf(), lock: data_dir.join(LOCK_FILE) })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Journal directory under a data directory.
pub fn journal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("journal")
}

/// Model versions under a data directory.
pub fn models_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("models")
}

pub(super) fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshot")
}
