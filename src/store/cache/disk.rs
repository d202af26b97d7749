//! Tier 2 ([`super`]): a local disk cache of chunk bytes fetched from object storage (`--disk-cache DIR
//! --disk-cache-gb N`), in front of the loader's cache of decoded chunks: a second epoch,
//! or a second run on the same machine, reads from the local disk what the first fetched.
//!
//! Each chunk payload is one file, named by the SHA-256 of what identifies it (the
//! object's URL, the file's size, and the chunk's offset, length and CRC-32), so a volume
//! replaced in the store never reads stale bytes from the cache. Files are written under a
//! temporary name and renamed, not synced: a file a crash left torn fails its CRC-32 and is
//! fetched again. Bytes read back are checked against the chunk table's
//! CRC-32 before use; a file that fails is removed and the chunk fetched again. The least
//! recently used files go when the budget is exceeded. Several processes may share one
//! folder (each keeps its own count of it, so the folder may briefly hold more than one
//! budget).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::store::StoreError;

/// The cache folder and its budget.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    budget: u64,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// File name -> (bytes, last use).
    files: HashMap<String, (u64, u64)>,
    /// Last use -> file name.
    lru: BTreeMap<u64, String>,
    bytes: u64,
    tick: u64,
}

/// A disk cache to open for a store on object storage: its folder and the most it may hold
/// (the CLI's `--disk-cache DIR --disk-cache-gb N`, Python's `Store(disk_cache=,
/// disk_cache_gb=)`).
#[derive(Debug, Clone, PartialEq)]
pub struct DiskCacheConfig {
    /// The folder (made if missing; several processes may share it).
    pub dir: PathBuf,
    /// The most it may hold, in GB (10^9 bytes): more than 0, at most [`Self::MAX_GB`].
    pub gb: f64,
}

impl DiskCacheConfig {
    /// The size a disk cache has unless told otherwise: 10 GB.
    pub const DEFAULT_GB: f64 = 10.0;
    /// The largest size accepted: 1,000,000 GB (a petabyte).
    pub const MAX_GB: f64 = 1e6;

    /// A cache in `dir` of the default size.
    pub fn new(dir: impl Into<PathBuf>) -> DiskCacheConfig {
        DiskCacheConfig { dir: dir.into(), gb: Self::DEFAULT_GB }
    }

    /// Checks the size.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] naming `disk_cache_gb` for a size that is not finite, not
    /// more than 0, or over [`Self::MAX_GB`].
    pub fn validate(&self) -> Result<(), StoreError> {
        let gb = self.gb;
        if gb.is_finite() && gb > 0.0 && gb <= Self::MAX_GB {
            Ok(())
        } else {
            Err(StoreError::Invalid {
                message: format!(
                    "disk_cache_gb (CLI --disk-cache-gb) {gb}: give more than 0 and at most {}",
                    Self::MAX_GB
                ),
            })
        }
    }

    /// Validates the size and opens the cache.
    ///
    /// # Errors
    /// As [`Self::validate`] and [`DiskCache::open`].
    pub fn open(&self) -> Result<DiskCache, StoreError> {
        self.validate()?;
        // At most 10^15 bytes: exact in u64.
        DiskCache::open(&self.dir, (self.gb * 1e9) as u64)
    }
}

/// Counters of a [`DiskCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DiskCacheStats {
    /// Chunks read from the cache.
    pub hits: u64,
    /// Chunks not there (fetched, then written to it).
    pub misses: u64,
    /// Bytes the cache holds now.
    pub bytes: u64,
}

impl DiskCache {
    /// The cache in `dir` (created if missing) holding at most `budget` bytes; files already
    /// there are counted (oldest first out).
    ///
    /// # Errors
    /// [`StoreError::Io`] naming the folder when it cannot be made or listed;
    /// [`StoreError::Invalid`] for a budget of 0.
    pub fn open(dir: &Path, budget: u64) -> Result<DiskCache, StoreError> {
        if budget == 0 {
            return Err(StoreError::Invalid {
                message: format!("disk cache {}: its size must be more than 0 GB", dir.display()),
            });
        }
        let io = |source| StoreError::Io { path: dir.to_path_buf(), source };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut found = Vec::new();
        for e in std::fs::read_dir(dir).map_err(io)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            match e.metadata() {
                Ok(m) if m.is_file() && is_entry_name(&name) => {
                    found.push((m.modified().ok(), name, m.len()))
                }
                // Temporary files of a writer that died: not counted, removed.
                Ok(m) if m.is_file() && crate::fsutil::is_temp_name(&name) => {
                    let _ = std::fs::remove_file(e.path());
                }
                _ => {}
            }
        }
        found.sort();
        let cache = DiskCache {
            dir: dir.to_path_buf(),
            budget,
            state: Mutex::new(State::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        };
        if let Ok(mut s) = cache.state.lock() {
            for (_, name, len) in found {
                s.tick += 1;
                let t = s.tick;
                s.files.insert(name.clone(), (len, t));
                s.lru.insert(t, name);
                s.bytes += len;
            }
            cache.evict(&mut s);
        }
        Ok(cache)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name of the entry for chunk bytes `offset..offset+length` with CRC `crc` of the
    /// object at `url` of `file_size` bytes.
    pub fn key(url: &str, file_size: u64, offset: u64, length: u32, crc: u32) -> String {
        let mut h = Sha256::new();
        h.update(url.as_bytes());
        h.update([0]);
        for v in [file_size, offset, u64::from(length), u64::from(crc)] {
            h.update(v.to_le_bytes());
        }
        h.finalize()[..16].iter().map(|b| format!("{b:02x}")).collect::<String>() + ".chunk"
    }

    /// The bytes of entry `key` if the cache holds them and they have CRC-32 `crc` (an
    /// entry that does not is removed).
    pub fn get(&self, key: &str, crc: u32) -> Option<Vec<u8>> {
        let held = self.state.lock().is_ok_and(|s| s.files.contains_key(key));
        let bytes = if held { std::fs::read(self.dir.join(key)).ok() } else { None };
        match bytes {
            Some(b) if crc32fast::hash(&b) == crc => {
                if let Ok(mut s) = self.state.lock() {
                    s.tick += 1;
                    let t = s.tick;
                    if let Some((_, last)) = s.files.get_mut(key) {
                        let old = std::mem::replace(last, t);
                        s.lru.remove(&old);
                        s.lru.insert(t, key.to_string());
                    }
                }
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(b)
            }
            other => {
                if other.is_some() || held {
                    self.forget(key);
                    let _ = std::fs::remove_file(self.dir.join(key));
                }
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Whether the cache holds entry `key` (by its count; the file is not read).
    pub fn holds(&self, key: &str) -> bool {
        self.state.lock().is_ok_and(|s| s.files.contains_key(key))
    }

    /// Stores `bytes` as entry `key` (best effort: a full disk only costs the cache).
    pub fn put(&self, key: &str, bytes: &[u8]) {
        if bytes.len() as u64 > self.budget {
            return;
        }
        // A temporary name of this thread's own (several may write one key at once), then
        // the rename; no sync, as the module says.
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        let tmp = self.dir.join(format!(
            ".{key}-{}.tmp-{}",
            SERIAL.fetch_add(1, Ordering::Relaxed),
            std::process::id()
        ));
        if std::fs::write(&tmp, bytes)
            .and_then(|()| std::fs::rename(&tmp, self.dir.join(key)))
            .is_err()
        {
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        if let Ok(mut s) = self.state.lock() {
            s.tick += 1;
            let t = s.tick;
            if let Some((len, last)) = s.files.insert(key.to_string(), (bytes.len() as u64, t)) {
                s.lru.remove(&last);
                s.bytes -= len;
            }
            s.lru.insert(t, key.to_string());
            s.bytes += bytes.len() as u64;
            self.evict(&mut s);
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> DiskCacheStats {
        DiskCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: self.state.lock().map_or(0, |s| s.bytes),
        }
    }

    fn forget(&self, key: &str) {
        if let Ok(mut s) = self.state.lock()
            && let Some((len, last)) = s.files.remove(key)
        {
            s.lru.remove(&last);
            s.bytes -= len;
        }
    }

    fn evict(&self, s: &mut State) {
        while s.bytes > self.budget {
            let Some((_, name)) = s.lru.pop_first() else { break };
            if let Some((len, _)) = s.files.remove(&name) {
                s.bytes -= len;
            }
            let _ = std::fs::remove_file(self.dir.join(&name));
        }
    }
}

/// Whether `name` is an entry's file name (32 hex digits and `.chunk`).
fn is_entry_name(name: &str) -> bool {
    name.strip_suffix(".chunk")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_back_checked_and_the_oldest_go_over_budget() {
        let dir = tempfile::tempdir().unwrap();
        let c = DiskCache::open(dir.path(), 250).unwrap();
        let (a, b, d) = (vec![1u8; 100], vec![2u8; 100], vec![3u8; 100]);
        let (ka, kb, kd) = (
            DiskCache::key("s3://x/v", 1000, 0, 100, crc32fast::hash(&a)),
            DiskCache::key("s3://x/v", 1000, 100, 100, crc32fast::hash(&b)),
            DiskCache::key("s3://x/v", 1000, 200, 100, crc32fast::hash(&d)),
        );
        assert_ne!(ka, kb);
        c.put(&ka, &a);
        c.put(&kb, &b);
        assert_eq!(c.get(&ka, crc32fast::hash(&a)), Some(a.clone()));
        // 300 bytes > 250: the least recently used (b; a was just read) goes.
        c.put(&kd, &d);
        assert_eq!(c.stats().bytes, 200);
        assert_eq!(c.get(&kb, crc32fast::hash(&b)), None);
        assert!(!dir.path().join(&kb).exists());
        // A damaged file is not returned, and is removed.
        std::fs::write(dir.path().join(&kd), [9u8; 100]).unwrap();
        assert_eq!(c.get(&kd, crc32fast::hash(&d)), None);
        assert!(!dir.path().join(&kd).exists());
        // Reopened, the cache counts what is there.
        let again = DiskCache::open(dir.path(), 250).unwrap();
        assert_eq!(again.stats().bytes, 100);
        assert_eq!(again.get(&ka, crc32fast::hash(&a)), Some(a));
        assert!(DiskCache::open(dir.path(), 0).is_err());
    }

    #[test]
    fn sizes_outside_the_range_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for gb in [0.0, -1.0, f64::NAN, f64::INFINITY, 1.000_001e6] {
            let e = DiskCacheConfig { dir: dir.path().into(), gb }.open().unwrap_err();
            assert!(e.to_string().contains("disk_cache_gb"), "{e}");
        }
        assert!(DiskCacheConfig { dir: dir.path().into(), gb: 0.001 }.open().is_ok());
    }
}
