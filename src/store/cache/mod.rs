//! The caches of chunk data, named here once, tier by tier. A reader gets a chunk from the
//! first tier that holds it; what a lower tier brings is kept in the tiers above it.
//!
//! | tier | holds | lives | budget | module |
//! |---|---|---|---|---|
//! | 4, decoded | decoded chunks (i16), one cache per loader or prediction | memory | `cache_bytes` (256 MiB) | `crate::loader::cache` |
//! | 3, memory | chunk payloads fetched from object storage, compressed as stored, one per store | memory | [`super::remote::RemoteOptions::memory_bytes`] (256 MiB) | [`memory`] |
//! | 2, disk | the same payloads on a local disk, across runs and processes | `--disk-cache DIR` | `--disk-cache-gb` (10 GB) | [`disk`] |
//! | 1, remote | the store's files on object storage, by coalesced byte ranges | the server | - | [`super::remote`] |
//!
//! A local store's files are memory-mapped, so it has tier 4 only. For a file on object
//! storage, [`super::VolumeFile::fetch`] asks [`Payloads::fetch`], which walks tiers 3, 2
//! and 1 (requests go through a function the caller gives, so this module needs no client).
//! Every payload, from any tier, is checked by its CRC-32 when it is decoded.

pub mod disk;
pub mod memory;

use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;

use super::StoreError;
use super::format::ChunkEntry;
use disk::DiskCache;
use memory::{Claimed, Key, MemoryCache};

/// Tiers 3 and 2 of a store on object storage: the payloads held in memory (and those
/// being fetched now), and the disk cache when one is set.
#[derive(Debug)]
pub struct Payloads {
    memory: MemoryCache,
    disk: OnceLock<DiskCache>,
}

/// What the tiers need to know of one volume file on object storage.
#[derive(Debug, Clone, Copy)]
pub struct FileChunks<'a> {
    /// The file's id in the memory tier ([`memory::next_id`]).
    pub id: u64,
    /// The file's URL (part of each payload's name in the disk tier).
    pub url: &'a str,
    /// The file's size in bytes (likewise).
    pub file_size: u64,
    /// Its chunk table: where each payload lies and its CRC-32.
    pub table: &'a [ChunkEntry],
}

/// Tier 1 as [`Payloads::fetch`] uses it: byte ranges of the file in, coalesced spans and
/// their bytes out (`Remote::get_spans`); how long to wait for another thread's request;
/// and where to count payloads an earlier request brought along that are used now.
pub struct Requests<'a> {
    /// Fetches the ranges, as spans that cover them.
    pub get_spans: &'a dyn Fn(&[Range<u64>]) -> Result<Vec<(Range<u64>, Bytes)>, StoreError>,
    /// Longest wait for a payload another thread is fetching.
    pub deadline: Duration,
    /// Counts bytes of payloads used from the memory tier for the first time.
    pub note_wanted: &'a dyn Fn(u64),
}

impl Payloads {
    /// Empty tiers, the memory one with a budget of `memory_bytes`, no disk tier.
    pub fn new(memory_bytes: usize) -> Payloads {
        Payloads { memory: MemoryCache::new(memory_bytes), disk: OnceLock::new() }
    }

    /// Sets the disk tier (once; false when one was set already).
    pub fn set_disk(&self, cache: DiskCache) -> bool {
        self.disk.set(cache).is_ok()
    }

    /// The disk tier, when one is set.
    pub fn disk(&self) -> Option<&DiskCache> {
        self.disk.get()
    }

    /// The memory tier.
    pub fn memory(&self) -> &MemoryCache {
        &self.memory
    }

    /// The payloads of chunks `ks` (indices in C order, sorted, no repeats) of `file`: from
    /// memory where held; chunks another thread is fetching are waited for, not asked
    /// again; then from the disk tier; then by requests, every chunk a coalesced span
    /// brings kept in memory (and on disk) for the readers that come next.
    ///
    /// # Errors
    /// What the requests fail with ([`StoreError::Remote`] naming the object and range).
    pub fn fetch(
        &self,
        file: &FileChunks<'_>,
        ks: &[usize],
        requests: &Requests<'_>,
    ) -> Result<HashMap<usize, Bytes>, StoreError> {
        let keys: Vec<Key> = ks.iter().map(|&k| (file.id, k)).collect();
        let claim = self.memory.claim(&keys);
        let mut out = HashMap::with_capacity(ks.len());
        (requests.note_wanted)(claim.first_use_bytes);
        out.extend(claim.held.into_iter().map(|((_, k), b)| (k, b)));
        {
            let mine = Claimed::new(&self.memory, claim.mine);
            let want: Vec<usize> = mine.keys().iter().map(|&(_, k)| k).collect();
            self.fetch_below_memory(file, &want, requests, &mut out)?;
            // `mine` is released here, waking the threads waiting for these chunks.
        }
        if !claim.theirs.is_empty() {
            let mut missing = Vec::new();
            let (got, first_use) = self.memory.wait(&claim.theirs, requests.deadline);
            (requests.note_wanted)(first_use);
            for ((_, k), b) in got {
                match b {
                    Some(b) => {
                        out.insert(k, b);
                    }
                    None => missing.push(k),
                }
            }
            // Their fetch failed (or what it brought was evicted at once): fetch them here.
            self.fetch_below_memory(file, &missing, requests, &mut out)?;
        }
        Ok(out)
    }

    /// Tiers 2 and 1 for chunks `ks` (sorted), into `out`; what the requests bring is kept
    /// in the memory tier and the disk tier.
    fn fetch_below_memory(
        &self,
        file: &FileChunks<'_>,
        ks: &[usize],
        requests: &Requests<'_>,
        out: &mut HashMap<usize, Bytes>,
    ) -> Result<(), StoreError> {
        if ks.is_empty() {
            return Ok(());
        }
        let table = file.table;
        let disk = self.disk();
        let key = |k: usize| {
            DiskCache::key(file.url, file.file_size, table[k].offset, table[k].length, table[k].crc)
        };
        let mut want = Vec::with_capacity(ks.len());
        for &k in ks {
            match disk.and_then(|c| c.get(&key(k), table[k].crc)) {
                Some(b) => {
                    out.insert(k, Bytes::from(b));
                }
                None => want.push(k),
            }
        }
        let range = |k: usize| table[k].offset..table[k].offset + table[k].length as u64;
        let ranges: Vec<Range<u64>> = want.iter().map(|&k| range(k)).collect();
        for (span, bytes) in (requests.get_spans)(&ranges)? {
            // Every chunk lying wholly in the span (the payloads tile the file in chunk
            // order, check 6, so they are found by offset).
            let first = table.partition_point(|e| e.offset < span.start);
            for k in first..table.len() {
                let r = range(k);
                if r.end > span.end {
                    break;
                }
                let b = bytes.slice((r.start - span.start) as usize..(r.end - span.start) as usize);
                if let Some(c) = disk {
                    let name = key(k);
                    if !c.holds(&name) {
                        c.put(&name, &b);
                    }
                }
                let wanted = want.binary_search(&k).is_ok();
                self.memory.insert((file.id, k), &b, wanted);
                if wanted {
                    out.insert(k, b);
                }
            }
        }
        Ok(())
    }
}
