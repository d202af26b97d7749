//! Measuring the loader against the bounds of the machine, in one run (`ctstream bench`).
//!
//! - **loader**: steady-state patches/s delivered (image + mask as f32) after a warm-up,
//!   with the cache hit rate, read amplification (int16 bytes decoded / int16 bytes
//!   delivered) and resident memory.
//! - **decode bound**: patches/s if the workers did nothing but decode every chunk each
//!   patch touches (no cache, no copy), from decoding the chunks of the same patches on
//!   the same number of threads. A loader above it is winning through the cache.
//! - **copy bound**: patches/s of the copy + convert step alone (window, mask
//!   rasterisation, batch layout) on already-decoded patches, on the same number of
//!   threads: the most the loader could deliver with every chunk already decoded.
//! - **NumPy bounds**: what a loader holding whole scans in memory as int16 could do at
//!   best, computed as NumPy computes `vol[z:z+d, y:y+h, x:x+w].astype(np.float32)`: a
//!   strided crop copied row by row and cast, for the image (int16) and a uint8 mask
//!   volume, at the same patches on the same number of threads (`numpy_f32`); and the
//!   int16 crop copy alone (`int16_copy`), the bound of a compact batch. Up to
//!   [`BOUND_SCANS`] whole scans are read for them, after the loader's measurement.
//! - **compact batches** ([`compact`]): the same loader delivering int16 HU and uint8
//!   masks ([`super::LoaderConfig::compact`]), against the f32 rate and the int16 bound.
//! - **object storage** (a store given as a URL): requests per patch, bytes received per
//!   patch, and bytes received per byte used (the chunks asked for, and those a coalesced
//!   request brought along when a reader first takes them from the memory cache), during
//!   the measurement: above 1 where what coalescing brought was evicted unused, below 1
//!   where the measurement uses what the warm-up brought. The decode
//!   bound then decodes chunks fetched beforehand: it stays the bound of the CPU.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::patch::{read_patch, write_patch};
use super::{Loader, LoaderError};

/// What [`run`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Worker threads.
    pub workers: usize,
    /// Patches per batch.
    pub batch_size: usize,
    /// Patch shape (z, y, x).
    pub patch_zyx: [usize; 3],
    /// Cache budget, bytes.
    pub cache_bytes: usize,
    /// Measured seconds (after warm-up).
    pub seconds: f64,
    /// Patches delivered in that time.
    pub patches: u64,
    /// Loader throughput.
    pub patches_per_s: f64,
    /// Bytes delivered per second (images + masks, f32).
    pub mb_per_s: f64,
    /// Decode-only bound (see module docs).
    pub decode_bound_patches_per_s: f64,
    /// Copy + convert bound (see module docs).
    pub copy_bound_patches_per_s: f64,
    /// Loader / decode bound.
    pub ratio_to_decode_bound: f64,
    /// Loader / copy bound.
    pub ratio_to_copy_bound: f64,
    /// NumPy's crop + cast to f32 of image and mask (see module docs), patches/s.
    pub numpy_f32_bound_patches_per_s: f64,
    /// Loader / NumPy's f32 bound.
    pub ratio_to_numpy_f32_bound: f64,
    /// NumPy's int16 crop copy of the image alone, patches/s.
    pub int16_copy_bound_patches_per_s: f64,
    /// Compact batches from the same loader configuration, where measured ([`compact`]).
    pub compact: Option<CompactReport>,
    /// int16 bytes decoded / int16 bytes delivered, during the measurement.
    pub read_amplification: f64,
    /// Chunk lookups served by the cache, during the measurement.
    pub cache_hit_rate: f64,
    /// Chunks a patch touches, on average.
    pub chunks_per_patch: f64,
    /// Peak resident memory of the process (VmHWM), bytes; 0 where unknown.
    pub peak_rss_bytes: u64,
    /// Resident memory when the measurement started and ended (VmRSS), bytes.
    pub rss_start_bytes: u64,
    /// See `rss_start_bytes`.
    pub rss_end_bytes: u64,
    /// For a store on object storage: its requests during the measurement.
    pub remote: Option<RemoteReport>,
}

/// What [`compact`] measured: the loader delivering compact batches.
#[derive(Debug, Clone, Serialize)]
pub struct CompactReport {
    /// Patches delivered in the measurement.
    pub patches: u64,
    /// Throughput.
    pub patches_per_s: f64,
    /// Bytes delivered per second (int16 image + uint8 mask).
    pub mb_per_s: f64,
    /// Compact / f32 throughput of the same configuration.
    pub ratio_to_f32: f64,
    /// Compact throughput / NumPy's int16 crop copy bound.
    pub ratio_to_int16_copy_bound: f64,
    /// Peak resident memory during this measurement (VmHWM, reset before it where the
    /// kernel allows), bytes; 0 where unknown.
    pub peak_rss_bytes: u64,
}

/// The most whole scans read into memory for the NumPy bounds.
pub const BOUND_SCANS: usize = 4;

/// The requests of a loader reading a store on object storage, during the measurement.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteReport {
    /// Requests (byte ranges; coalesced ones count once).
    pub requests: u64,
    /// Requests per patch delivered.
    pub requests_per_patch: f64,
    /// Bytes received per patch delivered.
    pub bytes_per_patch: f64,
    /// Bytes received per byte used ([`crate::store::remote::RemoteStats::bytes_wanted`]).
    pub fetched_per_byte_wanted: f64,
}

/// A field of /proc/self/status in bytes (Linux); 0 elsewhere.
pub fn proc_status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Runs `f(i)` for i in 0..n on `threads` threads; returns the wall time.
fn parallel_time(threads: usize, n: usize, f: impl Fn(usize) + Sync) -> f64 {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    f(i);
                }
            });
        }
    });
    t.elapsed().as_secs_f64()
}

/// Measures `loader` for `seconds` after `warmup` (see the module docs).
///
/// # Errors
/// The loader's errors (a corrupt chunk ends the measurement).
pub fn run(
    loader: &Loader,
    warmup: Duration,
    seconds: Duration,
) -> Result<BenchReport, LoaderError> {
    let shared = loader.shared();
    let cfg = &shared.cfg;
    let n_voxels: usize = cfg.patch_zyx.iter().product();
    // The loader, steady state.
    let mut epoch = loader.stream(0, 0, usize::MAX / 2);
    warm_up(loader, &mut epoch, warmup)?;
    let remote = shared.scans.iter().find_map(|s| s.volume.remote().cloned());
    let r0 = remote.as_ref().map(|r| r.stats());
    let (c0, rss_start) = (loader.cache_stats(), proc_status_bytes("VmRSS:"));
    let (patches, elapsed) = measure(loader, &mut epoch, seconds)?;
    let c1 = loader.cache_stats();
    let r1 = remote.as_ref().map(|r| r.stats());
    let rss_end = proc_status_bytes("VmRSS:");
    // The loader's own peak, before the bounds below read whole scans.
    let peak_rss_bytes = proc_status_bytes("VmHWM:");
    drop(epoch);
    let remote = r0.zip(r1).map(|(a, b)| {
        let requests = b.requests - a.requests;
        let per_patch = |n: u64| n as f64 / patches.max(1) as f64;
        RemoteReport {
            requests,
            requests_per_patch: per_patch(requests),
            bytes_per_patch: per_patch(b.bytes_fetched - a.bytes_fetched),
            fetched_per_byte_wanted: (b.bytes_fetched - a.bytes_fetched) as f64
                / (b.bytes_wanted - a.bytes_wanted).max(1) as f64,
        }
    });
    let patches_per_s = patches as f64 / elapsed;
    let lookups = (c1.hits + c1.misses - c0.hits - c0.misses).max(1);

    // The bounds, on the patches of epoch 1 (same distribution, other draws).
    let specs: Vec<_> = (0..256)
        .map(|i| super::patch::resolve(shared, 1, i / cfg.batch_size, i % cfg.batch_size))
        .collect::<Result<_, _>>()?;
    let mut touched = Vec::new();
    for s in &specs {
        let v = &shared.scans[s.scan].volume;
        let r = crate::store::Region { start_zyx: s.start_zyx, shape_zyx: cfg.patch_zyx };
        touched.push(v.chunks_touched(r).into_iter().map(|c| (s.scan, c)).collect::<Vec<_>>());
    }
    let chunks_per_patch = touched.iter().map(Vec::len).sum::<usize>() as f64 / specs.len() as f64;
    // On object storage the chunks' bytes are fetched first, outside the timing (nothing
    // for a local file).
    let fetched: Vec<_> = specs
        .iter()
        .zip(&touched)
        .map(|(s, t)| {
            shared.scans[s.scan].volume.fetch(&t.iter().map(|(_, c)| *c).collect::<Vec<_>>())
        })
        .collect::<Result<_, _>>()
        .map_err(LoaderError::Store)?;
    let decode_s = parallel_time(cfg.workers, specs.len(), |i| {
        for (scan, c) in &touched[i] {
            let _ = std::hint::black_box(
                shared.scans[*scan].volume.decode_chunk_fetched::<i16>(*c, &fetched[i]),
            );
        }
    });
    let decoded: Vec<_> = specs.iter().map(|s| read_patch(shared, s)).collect::<Result<_, _>>()?;
    let copy_rounds = 4;
    let copy_s = parallel_time(cfg.workers, specs.len() * copy_rounds, |i| {
        let k = i % specs.len();
        let s = &specs[k];
        let (mut img, mut msk) = (Vec::with_capacity(n_voxels), Vec::with_capacity(n_voxels));
        if s.augment.spatial.is_some() {
            // A spatially transformed patch samples the region it covers (from the cache).
            let _ = super::patch::build_patch(shared, s, &mut img, &mut msk);
        } else {
            // The chunks were read above: a label chunk that fails here failed there.
            let Ok(m) = super::patch::patch_mask(shared, s) else { return };
            if let Some(hu) = decoded[k].as_slice() {
                write_patch(hu, &m, &s.augment, cfg.patch_zyx, cfg.hu_window, &mut img, &mut msk);
            }
        }
        std::hint::black_box((img, msk));
    });
    let decode_bound = specs.len() as f64 / decode_s;
    let copy_bound = (specs.len() * copy_rounds) as f64 / copy_s;
    let (numpy_f32, int16_copy) = numpy_bounds(shared, &specs)?;
    Ok(BenchReport {
        workers: cfg.workers,
        batch_size: cfg.batch_size,
        patch_zyx: cfg.patch_zyx,
        cache_bytes: cfg.cache_bytes,
        seconds: elapsed,
        patches,
        patches_per_s,
        mb_per_s: patches_per_s * (n_voxels * 8) as f64 / 1e6,
        decode_bound_patches_per_s: decode_bound,
        copy_bound_patches_per_s: copy_bound,
        ratio_to_decode_bound: patches_per_s / decode_bound,
        ratio_to_copy_bound: patches_per_s / copy_bound,
        numpy_f32_bound_patches_per_s: numpy_f32,
        ratio_to_numpy_f32_bound: patches_per_s / numpy_f32,
        int16_copy_bound_patches_per_s: int16_copy,
        compact: None,
        read_amplification: (c1.decoded_bytes - c0.decoded_bytes) as f64
            / (patches.max(1) as f64 * n_voxels as f64 * 2.0),
        cache_hit_rate: (c1.hits - c0.hits) as f64 / lookups as f64,
        chunks_per_patch,
        peak_rss_bytes,
        rss_start_bytes: rss_start,
        rss_end_bytes: rss_end,
        remote,
    })
}

/// Takes batches from `epoch` of `loader` for `warmup`, handing each back.
fn warm_up(loader: &Loader, epoch: &mut super::Epoch, warmup: Duration) -> Result<(), LoaderError> {
    let t0 = Instant::now();
    while t0.elapsed() < warmup {
        if let Some(b) = epoch.next().transpose()? {
            loader.recycle(b);
        }
    }
    Ok(())
}

/// Takes batches from `epoch` of `loader` for `seconds`, handing each back as a training
/// loop does once it holds the values in a tensor ([`Loader::recycle`]): the patches
/// delivered and the seconds taken.
fn measure(
    loader: &Loader,
    epoch: &mut super::Epoch,
    seconds: Duration,
) -> Result<(u64, f64), LoaderError> {
    let t = Instant::now();
    let mut patches = 0u64;
    while t.elapsed() < seconds {
        if let Some(b) = epoch.next().transpose()? {
            patches += b.patches.len() as u64;
            loader.recycle(b);
        }
    }
    Ok((patches, t.elapsed().as_secs_f64()))
}

/// Measures `loader`, built with [`super::LoaderConfig::compact`], as [`run`] measures a
/// loader, and sets `report.compact` against the f32 figures of `report` (the same
/// configuration otherwise).
///
/// # Errors
/// The loader's errors; [`LoaderError::Config`] for a loader that is not compact.
pub fn compact(
    loader: &Loader,
    warmup: Duration,
    seconds: Duration,
    report: &mut BenchReport,
) -> Result<(), LoaderError> {
    let cfg = &loader.shared().cfg;
    if !cfg.compact {
        return Err(LoaderError::Config("bench::compact needs a compact loader".into()));
    }
    let n_voxels: usize = cfg.patch_zyx.iter().product();
    // The peak of this measurement alone: Linux resets VmHWM on writing 5 to clear_refs.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let mut epoch = loader.stream(0, 0, usize::MAX / 2);
    warm_up(loader, &mut epoch, warmup)?;
    let (patches, elapsed) = measure(loader, &mut epoch, seconds)?;
    let peak_rss_bytes = proc_status_bytes("VmHWM:");
    drop(epoch);
    let patches_per_s = patches as f64 / elapsed;
    report.compact = Some(CompactReport {
        patches,
        patches_per_s,
        mb_per_s: patches_per_s * (n_voxels * 3) as f64 / 1e6,
        ratio_to_f32: patches_per_s / report.patches_per_s,
        ratio_to_int16_copy_bound: patches_per_s / report.int16_copy_bound_patches_per_s,
        peak_rss_bytes,
    });
    Ok(())
}

/// Copies the crop at `start` of shape `p` out of `vol` (C order, shape `shape`) row by
/// row through `f`, as NumPy copies a strided slice with `astype`.
fn crop<T: Copy, U>(
    vol: &[T],
    shape: [usize; 3],
    start: [usize; 3],
    p: [usize; 3],
    f: impl Fn(T) -> U,
) -> Vec<U> {
    let mut out = Vec::with_capacity(p.iter().product());
    for z in start[0]..start[0] + p[0] {
        for y in start[1]..start[1] + p[1] {
            let row = (z * shape[1] + y) * shape[2] + start[2];
            out.extend(vol[row..row + p[2]].iter().map(|&v| f(v)));
        }
    }
    out
}

/// The NumPy bounds of the module docs at the patches of `specs` that lie inside the
/// first [`BOUND_SCANS`] scans they name: (f32 crop + cast of image and mask, int16 crop
/// copy), patches/s on the loader's number of threads.
fn numpy_bounds(
    shared: &super::Shared,
    specs: &[super::sampler::PatchSpec],
) -> Result<(f64, f64), LoaderError> {
    let p = shared.cfg.patch_zyx;
    let mut scans: Vec<usize> = Vec::new();
    for s in specs {
        if !scans.contains(&s.scan) && scans.len() < BOUND_SCANS {
            scans.push(s.scan);
        }
    }
    let mut volumes = Vec::new();
    for &k in &scans {
        let v = shared.scans[k].volume.read_all().map_err(LoaderError::Store)?;
        let shape = v.dim();
        let hu = v.into_raw_vec_and_offset().0;
        // A mask volume with values in it (untouched zero pages would read for free).
        let mask: Vec<u8> = hu.iter().map(|&h| u8::from(h > 0)).collect();
        volumes.push(([shape.0, shape.1, shape.2], hu, mask));
    }
    // The patches, moved inside their scan where they reach past its edge.
    let crops: Vec<(usize, [usize; 3])> = specs
        .iter()
        .filter_map(|s| {
            let k = scans.iter().position(|&c| c == s.scan)?;
            let shape = volumes[k].0;
            let start = std::array::from_fn(|a| {
                (s.start_zyx[a].max(0) as usize).min(shape[a].saturating_sub(p[a]))
            });
            (0..3).all(|a| shape[a] >= p[a]).then_some((k, start))
        })
        .collect();
    if crops.is_empty() {
        return Ok((f64::NAN, f64::NAN));
    }
    let rounds = 8;
    let n = crops.len() * rounds;
    let f32_s = parallel_time(shared.cfg.workers, n, |i| {
        let (k, start) = crops[i % crops.len()];
        let (shape, hu, mask) = &volumes[k];
        let img = crop(hu, *shape, start, p, f32::from);
        let msk = crop(mask, *shape, start, p, f32::from);
        std::hint::black_box((img, msk));
    });
    let i16_s = parallel_time(shared.cfg.workers, n, |i| {
        let (k, start) = crops[i % crops.len()];
        let (shape, hu, _) = &volumes[k];
        std::hint::black_box(crop(hu, *shape, start, p, |v| v));
    });
    Ok((n as f64 / f32_s, n as f64 / i16_s))
}
