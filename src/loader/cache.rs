//! Tier 4 of the chunk caches ([`crate::store::cache`] names them all): decoded chunks
//! with a byte budget, shared by the loader's workers (and a prediction's): the chunks
//! around nodules, read again and again, are decoded once. Least recently used chunks
//! are evicted first; the cache is split into shards to keep lock contention low.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// (scan index, chunk index within the scan's grid).
pub type ChunkKey = (u32, u32);

const SHARDS: usize = 16;

/// The cache key of scan `scan`'s lung label volume (its chunks share the cache with the
/// scans', under keys no scan has).
pub fn label_key(scan: u32) -> u32 {
    scan | 0x8000_0000
}

/// The cache key of scan `scan`'s mask label volume ([`super::LoaderConfig::mask_label`]).
pub fn mask_key(scan: u32) -> u32 {
    scan | 0x4000_0000
}

/// The cache key of chunk `c` (z, y, x) of a volume with chunk grid `grid`, under
/// `volume_key`: the chunk's index in C order.
fn chunk_key(volume_key: u32, grid: [usize; 3], c: [usize; 3]) -> ChunkKey {
    (volume_key, ((c[0] * grid[1] + c[1]) * grid[2] + c[2]) as u32)
}

/// Chunk `c` of `volume`, stored as `T`, decoded (from `fetched` where object storage
/// brought it) and widened to `i16`, as the cache holds every chunk.
fn decode_widened<T: crate::store::format::Voxel>(
    volume: &crate::store::VolumeFile,
    c: [usize; 3],
    fetched: &crate::store::reader::Fetched,
) -> Result<Vec<i16>, crate::store::StoreError>
where
    i16: From<T>,
{
    volume.decode_chunk_fetched::<T>(c, fetched).map(|v| v.into_iter().map(i16::from).collect())
}

#[derive(Default)]
struct Shard {
    map: HashMap<ChunkKey, (Arc<[i16]>, u64)>,
    lru: BTreeMap<u64, ChunkKey>,
    tick: u64,
    bytes: usize,
}

/// Counters of a [`ChunkCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups served from the cache.
    pub hits: u64,
    /// Lookups that decoded the chunk.
    pub misses: u64,
    /// Bytes of decoded chunks produced by misses (int16).
    pub decoded_bytes: u64,
    /// Bytes held now.
    pub held_bytes: u64,
}

/// The cache. A budget of 0 disables it (every lookup decodes).
pub struct ChunkCache {
    shards: Vec<Mutex<Shard>>,
    budget_per_shard: usize,
    hits: AtomicU64,
    misses: AtomicU64,
    decoded: AtomicU64,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("budget_bytes", &(self.budget_per_shard * SHARDS))
            .field("stats", &self.stats())
            .finish()
    }
}

impl ChunkCache {
    /// A cache holding at most about `budget_bytes` of decoded chunks.
    pub fn new(budget_bytes: usize) -> Self {
        ChunkCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            budget_per_shard: budget_bytes / SHARDS,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            decoded: AtomicU64::new(0),
        }
    }

    /// The chunk for `key`, from the cache or from `decode` (whose result is then cached).
    ///
    /// # Errors
    /// Whatever `decode` returns; nothing is cached then.
    pub fn get_or_decode<E>(
        &self,
        key: ChunkKey,
        decode: impl FnOnce() -> Result<Vec<i16>, E>,
    ) -> Result<Arc<[i16]>, E> {
        let shard = &self.shards[(key.0 as usize * 31 + key.1 as usize) % SHARDS];
        if let Ok(mut s) = shard.lock() {
            s.tick += 1;
            let tick = s.tick;
            if let Some((data, old)) = s.map.get_mut(&key) {
                let (data, old_tick) = (data.clone(), std::mem::replace(old, tick));
                s.lru.remove(&old_tick);
                s.lru.insert(tick, key);
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(data);
            }
        }
        let data: Arc<[i16]> = decode()?.into();
        let bytes = data.len() * 2;
        self.misses.fetch_add(1, Ordering::Relaxed);
        self.decoded.fetch_add(bytes as u64, Ordering::Relaxed);
        if bytes <= self.budget_per_shard
            && let Ok(mut s) = shard.lock()
            && !s.map.contains_key(&key)
        {
            s.tick += 1;
            let tick = s.tick;
            s.map.insert(key, (data.clone(), tick));
            s.lru.insert(tick, key);
            s.bytes += bytes;
            while s.bytes > self.budget_per_shard {
                let Some((_, old)) = s.lru.pop_first() else { break };
                if let Some((d, _)) = s.map.remove(&old) {
                    s.bytes -= d.len() * 2;
                }
            }
        }
        Ok(data)
    }

    /// Reads region `r` of `volume`, getting each chunk it touches through the cache
    /// (keyed by `volume_key` and the chunk's index in C order).
    ///
    /// # Errors
    /// [`StoreError`](crate::store::StoreError) for a corrupt chunk.
    pub fn read_region(
        &self,
        volume_key: u32,
        volume: &crate::store::VolumeFile,
        r: crate::store::Region,
    ) -> Result<ndarray::Array3<i16>, crate::store::StoreError> {
        self.read_region_where(volume_key, volume, r, |_| true)
    }

    /// [`ChunkCache::read_region`] of the chunks `wanted` keeps (by chunk index z, y,
    /// x): the others are neither fetched, decoded nor copied, and their part of the
    /// region is the fill value ([`crate::store::VolumeFile::read_region_where`]).
    ///
    /// # Errors
    /// As [`ChunkCache::read_region`].
    pub fn read_region_where(
        &self,
        volume_key: u32,
        volume: &crate::store::VolumeFile,
        r: crate::store::Region,
        wanted: impl Fn([usize; 3]) -> bool,
    ) -> Result<ndarray::Array3<i16>, crate::store::StoreError> {
        let mut out = Vec::new();
        self.read_region_into::<i16>(volume_key, volume, r, wanted, &mut out)?;
        ndarray::Array3::from_shape_vec(r.shape_zyx, out).map_err(|e| {
            crate::store::StoreError::Invalid { message: format!("region {:?}: {e}", r.shape_zyx) }
        })
    }

    /// [`ChunkCache::read_region_where`] into `out` (resized to the region, C order,
    /// every value written: it may hold anything before), for a volume stored as `T`
    /// (`u8` for a label volume, whose values are read widened, as the cache holds them).
    ///
    /// # Errors
    /// As [`ChunkCache::read_region`]; the volume is not of type `T`.
    pub fn read_region_into<T: crate::store::format::Voxel>(
        &self,
        volume_key: u32,
        volume: &crate::store::VolumeFile,
        r: crate::store::Region,
        wanted: impl Fn([usize; 3]) -> bool,
        out: &mut Vec<i16>,
    ) -> Result<(), crate::store::StoreError>
    where
        i16: From<T>,
    {
        out.resize(r.shape_zyx.iter().product(), 0);
        self.read_region_into_slice::<T>(volume_key, volume, r, wanted, out)
    }

    /// [`ChunkCache::read_region_into`] into `out`, which holds exactly the region's
    /// voxels (a patch's part of a batch, written in place).
    ///
    /// # Errors
    /// As [`ChunkCache::read_region_into`]; `out` is not the region's size.
    pub fn read_region_into_slice<T: crate::store::format::Voxel>(
        &self,
        volume_key: u32,
        volume: &crate::store::VolumeFile,
        r: crate::store::Region,
        wanted: impl Fn([usize; 3]) -> bool,
        out: &mut [i16],
    ) -> Result<(), crate::store::StoreError>
    where
        i16: From<T>,
    {
        let grid = volume.header().grid();
        let fetched = self.fetch_missing(volume_key, volume, r, &wanted)?;
        volume.read_region_into_slice::<T, i16, _>(
            r,
            &wanted,
            |c| {
                self.get_or_decode(chunk_key(volume_key, grid, c), || {
                    decode_widened::<T>(volume, c, &fetched)
                })
            },
            out,
        )
    }

    /// Decodes into the cache the chunks of `r` that `wanted` keeps and it does not hold
    /// (fetching them from object storage first, in as few requests as coalescing
    /// allows), without assembling the region: the work of a fetcher ahead of the workers.
    ///
    /// # Errors
    /// As [`ChunkCache::read_region`].
    pub fn warm_region<T: crate::store::format::Voxel>(
        &self,
        volume_key: u32,
        volume: &crate::store::VolumeFile,
        r: crate::store::Region,
        wanted: impl Fn([usize; 3]) -> bool,
    ) -> Result<(), crate::store::StoreError>
    where
        i16: From<T>,
    {
        let grid = volume.header().grid();
        let key = |c| chunk_key(volume_key, grid, c);
        let fetched = self.fetch_missing(volume_key, volume, r, &wanted)?;
        for c in volume.chunks_touched(r).into_iter().filter(|&c| wanted(c)) {
            if !self.holds(key(c)) {
                self.get_or_decode(key(c), || decode_widened::<T>(volume, c, &fetched))?;
            }
        }
        Ok(())
    }

    /// For a volume on object storage: the payloads of the chunks of `r` that are wanted
    /// and the cache does not hold, fetched in as few requests as coalescing allows
    /// (nothing for a local file).
    fn fetch_missing(
        &self,
        volume_key: u32,
        volume: &crate::store::VolumeFile,
        r: crate::store::Region,
        wanted: &impl Fn([usize; 3]) -> bool,
    ) -> Result<crate::store::reader::Fetched, crate::store::StoreError> {
        let grid = volume.header().grid();
        volume.fetch_region(r, |c| !wanted(c) || self.holds(chunk_key(volume_key, grid, c)))
    }

    /// Whether the cache holds `key` now (no counters change).
    fn holds(&self, key: ChunkKey) -> bool {
        self.shards[(key.0 as usize * 31 + key.1 as usize) % SHARDS]
            .lock()
            .is_ok_and(|s| s.map.contains_key(&key))
    }

    /// A region of a uint8 label volume through the cache (its chunks are held widened to
    /// i16, as every chunk here is), of the chunks `wanted` keeps (as
    /// [`ChunkCache::read_region_where`]).
    ///
    /// # Errors
    /// As [`ChunkCache::read_region`].
    pub fn read_label_region(
        &self,
        volume_key: u32,
        volume: &crate::store::VolumeFile,
        r: crate::store::Region,
        wanted: impl Fn([usize; 3]) -> bool,
    ) -> Result<ndarray::Array3<u8>, crate::store::StoreError> {
        let mut held = Vec::new();
        self.read_region_into::<u8>(volume_key, volume, r, wanted, &mut held)?;
        // Values were u8 when they went in.
        let values = held.into_iter().map(|v| v as u8).collect();
        ndarray::Array3::from_shape_vec(r.shape_zyx, values).map_err(|e| {
            crate::store::StoreError::Invalid { message: format!("region {:?}: {e}", r.shape_zyx) }
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        let held = self.shards.iter().map(|s| s.lock().map_or(0, |s| s.bytes as u64)).sum();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            decoded_bytes: self.decoded.load(Ordering::Relaxed),
            held_bytes: held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_budget() {
        // 16 shards x 2 chunks of 100 i16 (200 bytes) each.
        let c = ChunkCache::new(16 * 400);
        let k = |i: u32| (0u32, i * 16); // all in shard 0
        for i in 0..3 {
            c.get_or_decode(k(i), || Ok::<_, ()>(vec![i as i16; 100])).unwrap();
        }
        // 0 was evicted (least recent); 1 and 2 remain.
        let mut decoded = false;
        c.get_or_decode(k(0), || {
            decoded = true;
            Ok::<_, ()>(vec![0; 100])
        })
        .unwrap();
        assert!(decoded);
        let s = c.stats();
        assert_eq!((s.hits, s.misses), (0, 4));
        assert!(s.held_bytes <= 16 * 400);
        assert_eq!(&*c.get_or_decode(k(0), || Err(())).unwrap(), &[0i16; 100][..]);
        assert_eq!(c.stats().hits, 1);
    }
}
