//! One `cairnd` per data dir: an exclusive lock on `<datadir>/cairnd.pid`, taken before anything
//! in the data dir is opened or changed, holding the pid of the node that owns it.
//!
//! RocksDB has a lock of its own, but it is taken only after RocksDB has already rotated the
//! running node's `LOG`, and its error names a file, not the process to look for.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, bail};

/// Lock file name inside the data dir.
pub const LOCK_FILE: &str = "cairnd.pid";

/// Held for the life of the node; the OS releases the lock when the process ends, however it ends.
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock or explains who holds it.
    pub fn acquire(datadir: &Path) -> anyhow::Result<DataDirLock> {
        let path = datadir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let pid = text.trim();
                let who = if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                };
                bail!(
                    "another cairnd is using {}{who}: stop it first, or give this one another --datadir",
                    datadir.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(DataDirLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).err().unwrap().to_string();
        assert!(err.contains("another cairnd is using"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }
}
