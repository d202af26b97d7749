//! Where each patch comes from: a pure function of (seed, epoch, batch, item).
//!
//! - With probability `positive_share` (and when the selection has nodules), the patch is
//!   **positive**: a nodule is chosen (uniformly, or in proportion to diameter), its
//!   centre is shifted by a uniform integer offset in `[-jitter, +jitter]` per axis, and
//!   the patch is centred there (start = centre - patch / 2, rounded down).
//! - Otherwise it is **negative**, from a source of [`super::Negatives`] (when several have
//!   a share, one more uniform draw picks it, [`super::Negatives::pick`]): a voxel drawn
//!   uniformly from the lung mask of a scan chosen uniformly (`lungs`: a chunk in
//!   proportion to its lung voxels, then the k-th lung voxel in it, found when the patch is
//!   built, [`super::patch::resolve`]); a tissue voxel of a scan chosen uniformly (`body`:
//!   a seed drawn here, the positions tried found when the patch is built); a tissue voxel
//!   in or near the lungs of a scan chosen uniformly (`dense`: likewise a seed, its tries
//!   lung voxels moved by a bounded offset; `body` in a scan without a lung mask); a class-0
//!   candidate (`candidates`) or a mined finding (`hard`), with the same jitter; or a
//!   uniform voxel of a scan chosen uniformly (`random`, and `lungs` in a scan without a
//!   lung mask). Negatives other than candidates and hard ones may contain a nodule by
//!   chance; the mask says so.
//! - The augmentation parameters are drawn from the same generator.

use rand::Rng;

use super::augment::AugmentParams;
use super::{NegativeSource, Shared};
use crate::seed;

/// One patch to build.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchSpec {
    /// Index of the scan in the loader's selection.
    pub scan: usize,
    /// First voxel (z, y, x) of the patch in the stored grid (may lie outside).
    pub start_zyx: [i64; 3],
    /// Drawn as a positive.
    pub positive: bool,
    /// For positives: index of the nodule in the scan's list.
    pub nodule: Option<usize>,
    /// Augmentations for this patch.
    pub augment: AugmentParams,
    /// For negatives: the source it was drawn from (`lungs` in a scan without a lung
    /// mask is drawn as `random`, and says so).
    pub source: Option<NegativeSource>,
    /// For lung negatives before [`super::patch::resolve`]: (position in the scan's
    /// [`super::LungIndex::chunks`], rank of the lung voxel in that chunk, C order);
    /// `start_zyx` is set from it.
    pub lung_pick: Option<(usize, u64)>,
    /// For body and dense negatives before [`super::patch::resolve`]: the seed of the
    /// positions it tries; `start_zyx` is set from the first tissue voxel among them.
    pub body_pick: Option<u64>,
}

/// Purpose tags, so streams for different uses never share draws: a patch's position and
/// augmentation.
const PURPOSE_PATCH: u64 = 1;
/// Purpose tag of the draws of the user's own transforms ([`super::Transform`]), followed by
/// the transform's position.
pub const PURPOSE_TRANSFORM: u64 = 2;

/// A voxel of a volume of `shape` (z, y, x), each uniformly likely: one draw per axis,
/// z first (what the random negatives and the body negatives' tries draw).
pub fn uniform_voxel(rng: &mut impl Rng, shape: [usize; 3]) -> [i64; 3] {
    std::array::from_fn(|a| rng.random_range(0..shape[a].max(1)) as i64)
}

/// The patch for (seed, epoch, batch, item).
pub fn sample(shared: &Shared, epoch: u64, batch: usize, item: usize) -> PatchSpec {
    let cfg = &shared.cfg;
    let mut rng = seed::rng(&[cfg.seed, epoch, batch as u64, item as u64, PURPOSE_PATCH]);
    let p = cfg.patch_zyx;
    let jitter = |rng: &mut rand_chacha::ChaCha8Rng| -> [i64; 3] {
        std::array::from_fn(|a| {
            let j = cfg.jitter_zyx[a] as i64;
            if j == 0 { 0 } else { rng.random_range(-j..=j) }
        })
    };
    let start =
        |centre: [i64; 3]| -> [i64; 3] { std::array::from_fn(|a| centre[a] - (p[a] / 2) as i64) };
    let positive = !shared.positives.is_empty() && rng.random::<f64>() < cfg.positive_share;
    let (mut lung_pick, mut body_pick, mut source) = (None, None, None);
    let uniform = |rng: &mut rand_chacha::ChaCha8Rng, scan: usize| -> [i64; 3] {
        uniform_voxel(rng, shared.scans[scan].volume.shape_zyx())
    };
    let (scan, start_zyx, nodule) = if positive {
        let total = *shared.cumulative.last().unwrap_or(&1.0);
        let t = rng.random::<f64>() * total;
        let k = shared.cumulative.partition_point(|&c| c <= t).min(shared.positives.len() - 1);
        let (scan, n) = shared.positives[k];
        let c = shared.scans[scan].nodules[n].centre_zyx;
        let j = jitter(&mut rng);
        (scan, start(std::array::from_fn(|a| c[a].round() as i64 + j[a])), Some(n))
    } else {
        let negatives = &cfg.negatives;
        let from = if negatives.is_mixture() {
            negatives.pick(rng.random::<f64>())
        } else {
            negatives.pick(0.0)
        };
        let points = match from {
            NegativeSource::Candidates => &shared.candidates,
            NegativeSource::Hard => &shared.hard_negatives,
            _ => &Vec::new(),
        };
        if !points.is_empty() {
            source = Some(from);
            let (scan, c) = points[rng.random_range(0..points.len())];
            let j = jitter(&mut rng);
            (scan, start(std::array::from_fn(|a| c[a].round() as i64 + j[a])), None)
        } else {
            let scan = rng.random_range(0..shared.scans.len());
            match (&shared.scans[scan].lungs, from) {
                (Some(ix), NegativeSource::Lungs) => {
                    source = Some(NegativeSource::Lungs);
                    lung_pick = Some(ix.draw(&mut rng));
                    (scan, [0; 3], None)
                }
                (Some(_), NegativeSource::Dense) => {
                    source = Some(NegativeSource::Dense);
                    body_pick = Some(rng.random::<u64>());
                    (scan, [0; 3], None)
                }
                (_, NegativeSource::Body | NegativeSource::Dense) => {
                    source = Some(NegativeSource::Body);
                    body_pick = Some(rng.random::<u64>());
                    (scan, [0; 3], None)
                }
                _ => {
                    source = Some(NegativeSource::Random);
                    (scan, start(uniform(&mut rng, scan)), None)
                }
            }
        }
    };
    let augment = cfg.augment.draw(&mut rng);
    PatchSpec { scan, start_zyx, positive, nodule, augment, source, lung_pick, body_pick }
}
