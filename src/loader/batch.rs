//! What the loader hands out: a batch of patches as contiguous f32 arrays, and where each
//! patch came from.

use super::augment::AugmentParams;

/// Where a patch came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchMeta {
    /// The scan.
    pub series_id: String,
    /// First voxel (z, y, x) in the stored grid (before augmentation moved voxels).
    pub start_zyx: [i64; 3],
    /// Drawn as a positive.
    pub positive: bool,
    /// For positives: the nodule's `nodule_id` in the index; for positives on label
    /// components ([`super::LoaderConfig::mask_label`]), the component's position in the
    /// record's list of that label volume's components.
    pub nodule_id: Option<i32>,
    /// For negatives: the source it was drawn from ([`super::Negatives`]).
    pub negative_source: Option<super::NegativeSource>,
    /// The augmentation applied.
    pub augment: AugmentParams,
}

/// A batch, ready to hand to a tensor library: `images` and `masks` are contiguous f32
/// in C order with shape `shape` = [B, 1, D, H, W].
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Epoch.
    pub epoch: u64,
    /// Index within the epoch.
    pub index: usize,
    /// [B, 1, D, H, W].
    pub shape: [usize; 5],
    /// Windowed, augmented HU in 0..1 (plus noise, if asked for).
    pub images: Vec<f32>,
    /// 1 inside a nodule, 0 outside.
    pub masks: Vec<f32>,
    /// One entry per patch.
    pub patches: Vec<PatchMeta>,
}
