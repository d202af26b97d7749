//! The writer's lock: one ingest at a time per store.
//!
//! An ingest holds an exclusive advisory lock (`flock` on Unix, `LockFileEx` on Windows,
//! through `std::fs::File::try_lock`) on `STORE/.lock` from before its first write until
//! it ends. The operating system drops the lock when the process ends, however it ends,
//! so a killed ingest never leaves a stale lock. Readers take no lock: every file they
//! read appears complete or not at all (`format/FORMAT.md`).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::StoreError;

/// Name of the lock file in the store's folder.
pub const LOCK_FILE: &str = ".lock";

/// A held writer's lock; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    path: PathBuf,
}

impl StoreLock {
    /// Takes the lock of the store at `root` (creating the folder if needed), without
    /// waiting. The lock file holds the holder's process id, for the message others get.
    ///
    /// # Errors
    /// [`StoreError::Locked`] when another writer holds it; [`StoreError::Io`] when the
    /// folder or file cannot be made.
    pub fn acquire(root: &Path) -> Result<StoreLock, StoreError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io { path, source }
        };
        std::fs::create_dir_all(root).map_err(io(root))?;
        let path = root.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        // A lock this process released can stay held for a moment by a child being
        // spawned on another thread (fork copies the descriptor; exec closes it), so a
        // lock that names this very process is tried again for up to a second.
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file
                        .seek(SeekFrom::Start(0))
                        .and_then(|_| file.read_to_string(&mut holder));
                    let holder = holder.trim().parse::<u32>().ok();
                    if holder == Some(std::process::id()) && tries < 20 {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        continue;
                    }
                    return Err(StoreError::Locked { store: root.to_path_buf(), holder });
                }
                Err(TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
        }
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| write!(file, "{}", std::process::id()))
            .map_err(io(&path))?;
        Ok(StoreLock { _file: file, path })
    }

    /// Takes the lock of the store at `root`, waiting up to `wait` for another writer to
    /// release it (shards of a sharded ingest take it only for their short writes: the
    /// manifest and the index).
    ///
    /// # Errors
    /// As [`StoreLock::acquire`]; [`StoreError::Locked`] when it is still held after `wait`.
    pub fn wait(root: &Path, wait: std::time::Duration) -> Result<StoreLock, StoreError> {
        let until = std::time::Instant::now() + wait;
        loop {
            match StoreLock::acquire(root) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(100))
                }
                other => return other,
            }
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
