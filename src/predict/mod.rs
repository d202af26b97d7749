//! Whole-scan prediction: a sliding window over a stored scan, tiles read from the store
//! as they are needed and blended with Gaussian weights into a probability volume; then
//! the nodules found in it ([`components`]).
//!
//! The network is any function from a batch of windowed tiles (`[B, 1, D, H, W]` f32, the
//! loader's normalisation) to probabilities of the same shape, so this module needs no
//! deep-learning library; `train::trained` (feature `train`) adapts a trained Burn
//! network.
//!
//! [`run`] is the whole pipeline over scans of a store: lung region, window, findings, and
//! the files `ctstream predict` and `ctstream.predict` write.
//!
//! Memory: the output and the weight sum (4 bytes each per voxel), one batch of tiles and
//! a bounded cache of decoded chunks; the scan is never decoded whole.

pub mod components;
pub mod operating;
pub mod run;
pub mod window;

use ndarray::Array3;

use crate::loader::cache::ChunkCache;
use crate::progress::Progress;
use crate::store::{Region, StoreError, VolumeFile};

/// How to slide the window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlidingWindow {
    /// Tile shape (z, y, x): the patch shape the network was trained on.
    pub patch_zyx: [usize; 3],
    /// Overlap of neighbouring tiles, 0..1 (0.5: RadIO's strides of half a patch).
    pub overlap: f64,
    /// Tiles per network call.
    pub batch_size: usize,
    /// HU mapped to 0 and 1, as in training.
    pub hu_window: [f32; 2],
    /// Decoded-chunk cache budget, bytes.
    pub cache_bytes: usize,
    /// Test-time mirroring along these axes (z, y, x): each batch is also predicted
    /// mirrored along every combination of them, mirrored back, and the predictions
    /// averaged (nnU-Net's `use_mirroring`: 2^k network calls for k axes).
    pub mirror_zyx: [bool; 3],
}

/// The most tiles per model call.
pub const MAX_BATCH: usize = 4096;
/// The most voxels of one tile (a 256^3 tile).
pub const MAX_TILE_VOXELS: usize = 1 << 24;
/// The most voxels one network call takes (tiles per call x tile voxels): 64 Mi voxels,
/// 256 MiB of f32 input and many times that of activations.
pub const MAX_BATCH_VOXELS: u64 = 1 << 26;

impl SlidingWindow {
    /// Checks every value; each message names the setting.
    ///
    /// # Errors
    /// [`PredictError::Config`].
    pub fn validate(&self) -> Result<(), PredictError> {
        let bad = |m: String| Err(PredictError::Config(m));
        let voxels = self.patch_zyx.iter().try_fold(1usize, |n, &s| n.checked_mul(s));
        if self.patch_zyx.contains(&0) || voxels.is_none_or(|n| n > MAX_TILE_VOXELS) {
            return bad(format!(
                "patch {:?}: each side at least 1, at most {MAX_TILE_VOXELS} voxels a tile",
                self.patch_zyx
            ));
        }
        let per_call = voxels.unwrap_or(MAX_TILE_VOXELS) as u64 * self.batch_size as u64;
        if self.batch_size == 0 || self.batch_size > MAX_BATCH || per_call > MAX_BATCH_VOXELS {
            return bad(format!(
                "batch_size {}: give 1 to {} for patch {:?} (at most {MAX_BATCH_VOXELS} voxels a call)",
                self.batch_size,
                (MAX_BATCH_VOXELS / voxels.unwrap_or(MAX_TILE_VOXELS).max(1) as u64)
                    .min(MAX_BATCH as u64),
                self.patch_zyx
            ));
        }
        if !(0.0..1.0).contains(&self.overlap) {
            return bad(format!("overlap {}: give 0 <= overlap < 1", self.overlap));
        }
        let [lo, hi] = self.hu_window;
        if !(lo.is_finite() && hi.is_finite() && lo < hi) {
            return bad(format!("hu_window {:?}: give finite LO < HI", self.hu_window));
        }
        Ok(())
    }
}

impl Default for SlidingWindow {
    fn default() -> Self {
        SlidingWindow {
            patch_zyx: [32, 64, 64],
            overlap: 0.5,
            batch_size: 8,
            hu_window: [-1000.0, 400.0],
            cache_bytes: 128 << 20,
            mirror_zyx: [false; 3],
        }
    }
}

/// Errors of a prediction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PredictError {
    /// The scan could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The network failed or returned the wrong number of values.
    #[error("model: {0}")]
    Model(String),
    /// The options make no sense.
    #[error("prediction: {0}")]
    Config(String),
    /// The training run (config.json or a checkpoint) could not be read.
    #[error("{0}")]
    Run(String),
    /// A folder or file of the output could not be made or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The folder or file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A probability map could not be written as MetaImage.
    #[error(transparent)]
    MetaImage(#[from] crate::io::metaimage::MetaImageError),
    /// `candidates.csv` could not be written.
    #[error(transparent)]
    Csv(#[from] crate::annotations::AnnotationError),
}

/// The tiles that are computed: every tile start of [`tiles`], or with `roi` only those
/// that are the nearest tile of some voxel of the region ([`window::nearest_cells`]: the
/// tile whose centre is closest, axis by axis). Every voxel of the region is then
/// predicted by the tile it lies most centrally in, where the network sees it with the
/// most context; a tile left out would reach the region only with its outer part, where
/// its Gaussian weight is at most e^-2 along some axis at overlap 0.5. Tiles left out are
/// not computed; voxels no computed tile covers have probability 0.
pub fn tiles_in(shape_zyx: [usize; 3], sw: &SlidingWindow, roi: Option<&Roi>) -> Vec<[usize; 3]> {
    let Some(r) = roi else {
        return tiles(shape_zyx, sw);
    };
    let starts: [Vec<usize>; 3] =
        std::array::from_fn(|a| window::tile_starts(shape_zyx[a], sw.patch_zyx[a], sw.overlap));
    let cells: [Vec<std::ops::Range<usize>>; 3] =
        std::array::from_fn(|a| window::nearest_cells(&starts[a], sw.patch_zyx[a], shape_zyx[a]));
    let mut out = Vec::new();
    for (z, cz) in starts[0].iter().zip(&cells[0]) {
        for (y, cy) in starts[1].iter().zip(&cells[1]) {
            for (x, cx) in starts[2].iter().zip(&cells[2]) {
                let (lo, hi) = ([cz.start, cy.start, cx.start], [cz.end, cy.end, cx.end]);
                if r.touches(lo, std::array::from_fn(|a| hi[a] - lo[a])) {
                    out.push([*z, *y, *x]);
                }
            }
        }
    }
    out
}

/// Every tile start (z, y, x) of a volume of shape `shape`, z-major (so consecutive tiles
/// share chunks).
pub fn tiles(shape_zyx: [usize; 3], sw: &SlidingWindow) -> Vec<[usize; 3]> {
    let s: [Vec<usize>; 3] =
        std::array::from_fn(|a| window::tile_starts(shape_zyx[a], sw.patch_zyx[a], sw.overlap));
    let mut out = Vec::with_capacity(s[0].len() * s[1].len() * s[2].len());
    for &z in &s[0] {
        for &y in &s[1] {
            for &x in &s[2] {
                out.push([z, y, x]);
            }
        }
    }
    out
}

/// Where prediction looks in a scan: its lung region (the `lungs` label volume dilated,
/// format/FORMAT.md), with a coarse map of which 8x8x8 blocks hold any of it, so a tile
/// is tested in a few hundred lookups.
#[derive(Debug, Clone)]
pub struct Roi {
    /// 0/1 per voxel of the scan.
    pub mask: Array3<u8>,
    blocks: Array3<bool>,
}

/// The side of the blocks of [`Roi`]'s coarse map.
const ROI_BLOCK: usize = 8;

impl Roi {
    /// The region of interest `mask` (0/1, the scan's shape).
    pub fn new(mask: Array3<u8>) -> Roi {
        let (nz, ny, nx) = mask.dim();
        let mut blocks = Array3::from_elem(
            (nz.div_ceil(ROI_BLOCK), ny.div_ceil(ROI_BLOCK), nx.div_ceil(ROI_BLOCK)),
            false,
        );
        for ((z, y, x), &v) in mask.indexed_iter() {
            if v != 0 {
                blocks[[z / ROI_BLOCK, y / ROI_BLOCK, x / ROI_BLOCK]] = true;
            }
        }
        Roi { mask, blocks }
    }

    /// The lung region of a scan from its `lungs` label volume ([`crate::labels::lungs::dilate_box`]
    /// by [`crate::labels::LUNG_REGION_MARGIN_MM`]).
    ///
    /// # Errors
    /// The label volume's errors.
    pub fn lung_region(lungs: &VolumeFile) -> Result<Roi, StoreError> {
        let m = lungs.read_all_as::<u8>()?;
        Ok(Roi::new(crate::labels::lungs::dilate_box(
            &m,
            lungs.header().spacing_xyz,
            crate::labels::LUNG_REGION_MARGIN_MM,
        )))
    }

    /// Whether the box at `start` of `shape` voxels holds any voxel of the region.
    pub fn touches(&self, start_zyx: [usize; 3], shape_zyx: [usize; 3]) -> bool {
        let d = self.mask.dim();
        let dims = [d.0, d.1, d.2];
        let end: [usize; 3] = std::array::from_fn(|a| (start_zyx[a] + shape_zyx[a]).min(dims[a]));
        if (0..3).any(|a| start_zyx[a] >= end[a]) {
            return false;
        }
        let (b0, b1): ([usize; 3], [usize; 3]) = (
            std::array::from_fn(|a| start_zyx[a] / ROI_BLOCK),
            std::array::from_fn(|a| (end[a] - 1) / ROI_BLOCK),
        );
        for bz in b0[0]..=b1[0] {
            for by in b0[1]..=b1[1] {
                for bx in b0[2]..=b1[2] {
                    if !self.blocks[[bz, by, bx]] {
                        continue;
                    }
                    // A block that holds region voxels: look at the part inside the box.
                    let lo = [bz, by, bx].map(|b| b * ROI_BLOCK);
                    let z = lo[0].max(start_zyx[0])..(lo[0] + ROI_BLOCK).min(end[0]);
                    let y = lo[1].max(start_zyx[1])..(lo[1] + ROI_BLOCK).min(end[1]);
                    let x = lo[2].max(start_zyx[2])..(lo[2] + ROI_BLOCK).min(end[2]);
                    if self.mask.slice(ndarray::s![z, y, x]).iter().any(|&v| v != 0) {
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Whether the voxel nearest the continuous index `zyx` lies in the region.
    pub fn contains(&self, zyx: [f64; 3]) -> bool {
        let d = self.mask.dim();
        let i: [i64; 3] = zyx.map(|v| (v + 0.5).floor() as i64);
        (0..3).all(|a| i[a] >= 0 && (i[a] as usize) < [d.0, d.1, d.2][a])
            && self.mask[[i[0] as usize, i[1] as usize, i[2] as usize]] != 0
    }
}

/// The probability of every voxel of `volume`: `model` on every tile of the sliding
/// window, blended with [`window::gaussian`] weights and normalised by their sum.
///
/// `threads` batches are predicted at a time, each on its own thread (Burn's CPU backend
/// runs a network on one core); their results are added in tile order, so the map is the
/// same for any number of threads.
///
/// # Errors
/// [`PredictError::Store`] for unreadable chunks, [`PredictError::Model`] when `model`
/// fails or returns other than one value per input value.
pub fn predict_volume(
    volume: &VolumeFile,
    sw: &SlidingWindow,
    threads: usize,
    model: impl Fn(&[f32], [usize; 5]) -> Result<Vec<f32>, String> + Sync,
    progress: &dyn Progress,
) -> Result<Array3<f32>, PredictError> {
    predict_volume_in(volume, sw, threads, None, model, progress)
}

/// [`predict_volume`] within a region of interest: only the tiles [`tiles_in`] chooses
/// are computed (those that are the nearest tile of a voxel of `roi`), and voxels no
/// computed tile covers have probability 0. With `roi` `None`, every tile is computed.
///
/// # Errors
/// As [`predict_volume`]; [`PredictError::Config`] for a region of another shape.
pub fn predict_volume_in(
    volume: &VolumeFile,
    sw: &SlidingWindow,
    threads: usize,
    roi: Option<&Roi>,
    model: impl Fn(&[f32], [usize; 5]) -> Result<Vec<f32>, String> + Sync,
    progress: &dyn Progress,
) -> Result<Array3<f32>, PredictError> {
    use rayon::prelude::*;
    if let Some(r) = roi {
        let d = r.mask.dim();
        if [d.0, d.1, d.2] != volume.shape_zyx() {
            return Err(PredictError::Config(format!(
                "region of interest {:?} is not the scan's shape {:?}",
                [d.0, d.1, d.2],
                volume.shape_zyx()
            )));
        }
    }
    sw.validate()?;
    let shape = volume.shape_zyx();
    let p = sw.patch_zyx;
    let n = p[0] * p[1] * p[2];
    let weights = window::gaussian(p);
    let mut acc = Array3::<f32>::zeros((shape[0], shape[1], shape[2]));
    let mut wsum = Array3::<f32>::zeros((shape[0], shape[1], shape[2]));
    let cache = ChunkCache::new(sw.cache_bytes);
    let (lo, inv) = (sw.hu_window[0], 1.0 / (sw.hu_window[1] - sw.hu_window[0]));
    let all = tiles_in(shape, sw, roi);
    let batches: Vec<&[[usize; 3]]> = all.chunks(sw.batch_size).collect();
    // One batch: read its tiles (through the shared cache), window, predict.
    let run = |batch: &[[usize; 3]]| -> Result<Vec<f32>, PredictError> {
        let mut input = Vec::with_capacity(batch.len() * n);
        for t in batch {
            let start = t.map(|v| v as i64);
            let region = Region::new(start, std::array::from_fn(|a| start[a] + p[a] as i64));
            let hu = cache.read_region(0, volume, region)?;
            input.extend(hu.iter().map(|&v| ((v as f32 - lo) * inv).clamp(0.0, 1.0)));
        }
        let shape5 = [batch.len(), 1, p[0], p[1], p[2]];
        let call = |x: &[f32]| -> Result<Vec<f32>, PredictError> {
            let probs = model(x, shape5).map_err(PredictError::Model)?;
            if probs.len() != x.len() {
                return Err(PredictError::Model(format!(
                    "returned {} values for {} inputs",
                    probs.len(),
                    x.len()
                )));
            }
            Ok(probs)
        };
        let mut probs = call(&input)?;
        let flips = window::mirrorings(sw.mirror_zyx);
        // Each tile of a batch mirrored in place, as the loader mirrors a patch.
        let mirror = |x: &mut [f32], flip| {
            x.chunks_exact_mut(n).for_each(|t| crate::loader::patch::mirror_in_place(t, p, flip))
        };
        for &flip in &flips {
            let mut mirrored = input.clone();
            mirror(&mut mirrored, flip);
            let mut back = call(&mirrored)?;
            mirror(&mut back, flip);
            probs.iter_mut().zip(back).for_each(|(a, b)| *a += b);
        }
        if !flips.is_empty() {
            let k = 1.0 / (flips.len() + 1) as f32;
            probs.iter_mut().for_each(|v| *v *= k);
        }
        Ok(probs)
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| PredictError::Config(format!("threads: {e}")))?;
    progress.start("predicting", Some(all.len() as u64));
    for round in batches.chunks(threads.max(1)) {
        let results: Vec<Result<Vec<f32>, PredictError>> =
            pool.install(|| round.par_iter().map(|b| run(b)).collect());
        for (batch, probs) in round.iter().zip(results) {
            let probs = probs?;
            for (k, t) in batch.iter().enumerate() {
                let tile = &probs[k * n..(k + 1) * n];
                for dz in 0..p[0].min(shape[0] - t[0]) {
                    for dy in 0..p[1].min(shape[1] - t[1]) {
                        let row = (dz * p[1] + dy) * p[2];
                        let len = p[2].min(shape[2] - t[2]);
                        let mut a =
                            acc.slice_mut(ndarray::s![t[0] + dz, t[1] + dy, t[2]..t[2] + len]);
                        let mut w =
                            wsum.slice_mut(ndarray::s![t[0] + dz, t[1] + dy, t[2]..t[2] + len]);
                        for i in 0..len {
                            a[i] += weights[row + i] * tile[row + i];
                            w[i] += weights[row + i];
                        }
                    }
                }
            }
            progress.advance(batch.len() as u64);
        }
    }
    progress.finish();
    acc.zip_mut_with(&wsum, |a, &w| *a = if w > 0.0 { *a / w } else { 0.0 });
    Ok(acc)
}
