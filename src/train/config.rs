//! A run's configuration (`RUN_DIR/config.json`): everything needed to repeat the run or
//! to resume it, and what prediction needs to rebuild the network.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{LossKind, LrSchedule, ModelKind};
use crate::loader::{LoaderConfig, Split};
use crate::store::format::Manifest;

/// Patches per validation batch share that are positive (the rest are negatives, for the
/// false-positive count).
pub const VAL_POSITIVE_SHARE: f64 = 0.5;

/// Overlap of the tiles when whole held-out scans are predicted during training: a half,
/// `predict`'s default, so the operating point is chosen on the maps `predict` makes. A
/// network trained on nodule-centred patches finds a nodule best from a tile it lies near
/// the centre of: on the 12-scan recipe store the same checkpoint scored CPM 0.226 at a
/// half and 0.155 at a quarter, where four of twelve held-out nodules lay too far from
/// every tile's centre to be seen (README "Training").
pub const VAL_OVERLAP: f64 = 0.5;

/// The overlap of runs whose `config.json` predates the field: a quarter, as they used.
fn default_val_overlap() -> f64 {
    0.25
}

/// `config.json` of a training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The store trained on.
    pub store: PathBuf,
    /// Its manifest when the run started.
    pub store_manifest: Manifest,
    /// Series of the training split.
    pub train_series: Vec<String>,
    /// Series of the validation split (empty: no validation).
    pub val_series: Vec<String>,
    /// The network.
    pub model: ModelKind,
    /// Channel width multiplier.
    pub width: f64,
    /// Loss.
    pub loss: LossKind,
    /// Base learning rate (Adam).
    pub lr: f64,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Steps of the whole run.
    pub steps: usize,
    /// Epochs asked for (`steps` = epochs x batches per epoch), if given that way.
    pub epochs: Option<usize>,
    /// Fraction of series held out for validation (by hash of the series id).
    pub val_fraction: f64,
    /// Validate every this many steps (0: only at the end).
    pub val_every: usize,
    /// Validation batches.
    pub val_batches: usize,
    /// Validate on the whole held-out scans too (CPM, operating point, best checkpoint);
    /// absent in runs made before it (off).
    #[serde(default)]
    pub val_scans: bool,
    /// Overlap of the sliding window's tiles in the scan validation.
    #[serde(default = "default_val_overlap")]
    pub val_overlap: f64,
    /// Checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Checkpoints kept (0: all).
    pub keep_checkpoints: usize,
    /// Device it ran on (`cpu`, `cuda:0`); may change on resume.
    pub device: String,
    /// Backend and device it ran on last ([`Engine`](super::device::Engine): `flex`,
    /// `cuda:0`, `libtorch-cpu`, ...); absent in runs made before LibTorch (all Burn's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Seed of the weights (the loader has its own in `loader.seed`).
    pub seed: u64,
    /// The training loader (its `split` selects the training series).
    pub loader: LoaderConfig,
    /// ctstream version.
    pub ctstream_version: String,
    /// Burn version.
    pub burn_version: String,
}

impl RunConfig {
    /// The training loader's configuration: compact batches (normalised on the device,
    /// [`super::batch_tensors`]) where the augmentation allows them.
    pub fn train_loader(&self) -> LoaderConfig {
        let mut c = self.loader.clone();
        c.compact = c.augment.needs_float().is_none();
        if self.val_fraction > 0.0 {
            c.split = Some(Split::Train { val_fraction: self.val_fraction });
        }
        c
    }

    /// The validation loader's configuration: the held-out series, no augmentation, half
    /// positives, `val_batches` batches, its own seed; no hard negatives (they were mined
    /// on the training scans).
    pub fn val_loader(&self) -> LoaderConfig {
        let mut c = self.loader.clone();
        c.negatives = c.negatives.without_hard();
        c.hard_negatives = None;
        c.split = Some(Split::Val { val_fraction: self.val_fraction });
        c.augment = Default::default();
        c.compact = true;
        c.positive_share = VAL_POSITIVE_SHARE;
        c.batches_per_epoch = Some(self.val_batches.max(1));
        c.workers = c.workers.clamp(1, 2);
        c.seed = crate::seed::derive(&[self.loader.seed, 0x5641_4c49_4441_5445]);
        c
    }
}
