//! What the loader hands out: a batch of patches as contiguous f32 arrays (or, compact,
//! as stored int16 HU and uint8 masks with what normalises them), and where each patch
//! came from.

use super::augment::AugmentParams;
use super::augment::window::Window;

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
/// in C order with shape `shape` = [B, 1, D, H, W]; or, from a loader with
/// [`super::LoaderConfig::compact`], empty, with the batch in [`Batch::compact`].
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Epoch.
    pub epoch: u64,
    /// Index within the epoch.
    pub index: usize,
    /// [B, 1, D, H, W].
    pub shape: [usize; 5],
    /// Windowed, augmented HU in 0..1 (plus noise, if asked for); empty in a compact batch.
    pub images: Vec<f32>,
    /// 1 inside a nodule, 0 outside; empty in a compact batch.
    pub masks: Vec<f32>,
    /// The compact batch (None: the batch is in `images` and `masks`).
    pub compact: Option<Compact>,
    /// One entry per patch.
    pub patches: Vec<PatchMeta>,
}

/// A compact batch: the stored HU as int16 and the masks as uint8 (a third of the bytes of
/// f32 images and masks), with what maps each patch's HU to the values the f32 batch
/// would hold: `((hu * hu_scale[i] + hu_shift[i] - window[0]) * inv)` clamped to 0..1,
/// with `inv = 1 / (window[1] - window[0])` in f32, each operation rounded to f32 in this
/// order ([`Compact::normalise`]; on the device: `ctstream.torch.normalise`, or the
/// training loop). Only augmentations that move whole voxels or change HU by a factor
/// and a shift can be delivered so.
#[derive(Debug, Clone, PartialEq)]
pub struct Compact {
    /// HU as stored (mirrored and turned as drawn), [B, 1, D, H, W], C order.
    pub images: Vec<i16>,
    /// 1 inside a nodule, 0 outside, [B, 1, D, H, W], C order.
    pub masks: Vec<u8>,
    /// The loader's HU window, mapped to 0 and 1.
    pub window: [f32; 2],
    /// Each patch's drawn HU factor (1 without HU augmentation).
    pub hu_scale: Vec<f32>,
    /// Each patch's drawn HU shift (0 without HU augmentation).
    pub hu_shift: Vec<f32>,
}

impl Compact {
    /// The f32 images and masks the loader would have delivered without `compact`, bit
    /// for bit: the reference for a normalisation done elsewhere (on a GPU). The images
    /// are as many equal patches as `hu_scale` has entries (a loader's batch always is);
    /// voxels beyond the patches that `hu_scale` and `hu_shift` both cover are left out.
    pub fn normalise(&self) -> (Vec<f32>, Vec<f32>) {
        let patches = self.hu_scale.len().min(self.hu_shift.len());
        let n = (self.images.len() / patches.max(1)).max(1);
        let mut images = Vec::with_capacity(self.images.len());
        let per_patch = self.hu_scale.iter().zip(&self.hu_shift);
        for (patch, (&scale, &shift)) in self.images.chunks(n).zip(per_patch) {
            let w = Window::new(self.window, scale, shift);
            images.extend(patch.iter().map(|&v| w.apply(f32::from(v))));
        }
        (images, self.masks.iter().map(|&m| f32::from(m)).collect())
    }
}

impl Batch {
    /// The masks as f32 (1 inside, 0 outside), from either kind of batch.
    pub fn masks_f32(&self) -> std::borrow::Cow<'_, [f32]> {
        match &self.compact {
            Some(c) => c.masks.iter().map(|&m| f32::from(m)).collect(),
            None => std::borrow::Cow::Borrowed(&self.masks),
        }
    }

    /// This batch with its values as f32 in `images` and `masks`: a compact batch
    /// normalised ([`Compact::normalise`]), any other unchanged.
    pub fn into_float(mut self) -> Batch {
        if let Some(c) = self.compact.take() {
            (self.images, self.masks) = c.normalise();
        }
        self
    }
}
