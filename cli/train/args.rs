//! `ctstream train`'s flags, and the run settings they give.

use std::path::PathBuf;

use ctstream::loader::{Augment, LoaderConfig, Negatives};
use ctstream::train::run::TrainSettings;
use ctstream::train::{BackendChoice, DeviceChoice, LossKind, ModelKind};

use super::usage;
use crate::{ExitError, parse3};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes RUN_DIR/config.json, metrics.csv (one row per step), val.csv (one row per validation) and \
checkpoints/step-N/. Ctrl-C stops after the current step and writes a checkpoint; `ctstream train --resume RUN_DIR` \
continues from the newest checkpoint with the same next batches. On resume only --steps/--epochs, --device, --backend, --workers, \
--cache, --val-every, --checkpoint-every, --keep-checkpoints and --store may be given."
)]
pub struct Args {
    /// The store to train on: a folder, or a URL on object storage (s3://bucket/prefix, ...).
    #[arg(long)]
    pub(super) store: Option<PathBuf>,
    #[command(flatten)]
    pub(super) disk_cache: crate::DiskCacheArgs,
    /// Run folder for a new run.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    pub(super) out: Option<PathBuf>,
    /// Continue the run in this folder from its newest checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    pub(super) resume: Option<PathBuf>,
    /// The network: unet3d or vnet [default: unet3d].
    #[arg(long, value_parser = ["unet3d", "vnet"])]
    pub(super) model: Option<String>,
    /// Channel width multiplier (1.0 = the published widths) [default: 1.0].
    #[arg(long)]
    pub(super) width: Option<f64>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub(super) device: DeviceChoice,
    /// auto (LibTorch on the CPU when built in, Burn's CUDA backend on GPUs), burn (flex on
    /// the CPU, CubeCL on CUDA) or libtorch [default: auto; on resume, the run's backend].
    #[arg(long)]
    pub(super) backend: Option<BackendChoice>,
    /// Patches per step [default: 8].
    #[arg(long)]
    pub(super) batch_size: Option<usize>,
    /// Steps to train (the whole run's total) [default: 100].
    #[arg(long, conflicts_with = "epochs")]
    pub(super) steps: Option<usize>,
    /// Epochs to train (an epoch visits every training nodule once at the positive share).
    #[arg(long)]
    pub(super) epochs: Option<usize>,
    /// Adam learning rate [default: 0.001].
    #[arg(long)]
    pub(super) lr: Option<f64>,
    /// constant, or cosine (linear warm-up, then cosine decay to --min-lr-factor) [default: constant].
    #[arg(long, value_parser = ["constant", "cosine"])]
    pub(super) lr_schedule: Option<String>,
    /// Warm-up steps of the cosine schedule [default: 5% of the steps].
    #[arg(long)]
    pub(super) warmup: Option<usize>,
    /// Final learning rate of the cosine schedule, as a fraction of --lr [default: 0.01].
    #[arg(long)]
    pub(super) min_lr_factor: Option<f64>,
    /// dice, dice-bce or tversky [default: dice].
    #[arg(long, value_parser = ["dice", "dice-bce", "tversky"])]
    pub(super) loss: Option<String>,
    /// Patch shape Z,Y,X, each divisible by 16 [default: 32,64,64].
    #[arg(long, value_parser = parse3::<usize>)]
    pub(super) patch: Option<[usize; 3]>,
    /// Share of nodule-centred patches [default: 0.8].
    #[arg(long)]
    pub(super) positive_share: Option<f64>,
    /// Largest shift Z,Y,X (voxels) of a positive patch's centre from its nodule [default: 8,8,8].
    #[arg(long, value_parser = parse3::<usize>)]
    pub(super) jitter: Option<[usize; 3]>,
    /// Where negatives come from: one source, or several with shares
    /// (`lungs=0.5,body=0.3,candidates=0.2`). lungs: a voxel of the lung mask; body: a
    /// tissue voxel anywhere in the scan (body wall, mediastinum, vessels); dense: a tissue
    /// voxel in or within 10 mm of the lungs (vessels, the pleura, ribs); candidates:
    /// LUNA16 class-0 candidates; random: any position; hard: findings of an earlier
    /// prediction that hit no nodule (--hard-negatives) [default: lungs=0.25,body=0.25,dense=0.5].
    #[arg(long, value_name = "SOURCE[=SHARE],...")]
    pub(super) negatives: Option<String>,
    /// Findings to mine hard negatives from: a LUNA16 candidates.csv as `ctstream predict`
    /// writes it (predict the training scans with `--split train`); findings within an
    /// annotated nodule's radius are left out. Adds `hard` to the default negatives.
    #[arg(long, value_name = "FINDINGS.csv")]
    pub(super) hard_negatives: Option<PathBuf>,
    /// Masks from a label volume instead of the annotations' spheres: NAME, or NAME:V,V
    /// for some of its values (say `labels:2`). Without nodules in the index, positive
    /// patches are centred on the label's connected components.
    #[arg(long, value_name = "NAME[:V,...]")]
    pub(super) mask_label: Option<ctstream::loader::MaskLabel>,
    #[command(flatten)]
    pub(super) nodules: crate::NoduleFilterArgs,
    /// Augmentations, comma-separated, each with optional :key=value settings: nnunet
    /// (nnU-Net v2's 3D default), flip, rot90, hu, noise, rotation, scaling, elastic,
    /// bspline (cubic B-spline image for the spatial ones), gaussian_noise, blur,
    /// brightness, contrast, low_resolution, gamma, inverted_gamma;
    /// or none, or all (e.g. `nnunet` or `flip,rotation:p=0.5:deg=15`; README,
    /// "Augmentation") [default: none].
    #[arg(long)]
    pub(super) augment: Option<String>,
    /// Loader worker threads [default: 2].
    #[arg(long)]
    pub(super) workers: Option<usize>,
    /// Decoded-chunk cache budget, MB [default: 256].
    #[arg(long)]
    pub(super) cache: Option<usize>,
    /// Train and validate on these scans only (series ids; the split by --val-fraction is
    /// made among them), leaving the store's others for a test [default: every scan].
    #[arg(long, num_args = 1.., value_name = "SERIES")]
    pub(super) series: Option<Vec<String>>,
    /// Fraction of series held out for validation, by hash of the series id [default: 0.2].
    #[arg(long)]
    pub(super) val_fraction: Option<f64>,
    /// Validate every K steps (and after the last) [default: 50].
    #[arg(long)]
    pub(super) val_every: Option<usize>,
    /// Batches per validation (always the same patches) [default: 4].
    #[arg(long)]
    pub(super) val_batches: Option<usize>,
    /// Validate on patches only: without it, each validation also predicts the held-out
    /// scans whole (in their lung region), records CPM and the chosen operating point in
    /// val.csv, and keeps the best model by CPM as checkpoints/best/ (what predict uses).
    #[arg(long)]
    pub(super) no_val_scans: bool,
    /// Tile overlap when the held-out scans are predicted [default: 0.5, as predict's].
    #[arg(long)]
    pub(super) val_overlap: Option<f64>,
    /// Checkpoint every K steps (and after the last) [default: --val-every].
    #[arg(long)]
    pub(super) checkpoint_every: Option<usize>,
    /// Checkpoints to keep, newest first; 0 keeps all [default: 3].
    #[arg(long)]
    pub(super) keep_checkpoints: Option<usize>,
    /// Seed of weights and patches [default: 0].
    #[arg(long)]
    pub(super) seed: Option<u64>,
}

/// A new run's settings: the flags given, the library's defaults for the rest.
pub(super) fn settings(a: &Args) -> Result<TrainSettings, ExitError> {
    let d = TrainSettings::default();
    let patch = a.patch.unwrap_or(d.loader.patch_zyx);
    let loader = LoaderConfig {
        patch_zyx: patch,
        batch_size: a.batch_size.unwrap_or(d.loader.batch_size),
        positive_share: a.positive_share.unwrap_or(d.loader.positive_share),
        jitter_zyx: a.jitter.unwrap_or(d.loader.jitter_zyx),
        negatives: match a.negatives.as_deref() {
            Some(n) => n.parse::<Negatives>().map_err(|e| usage(format!("--negatives: {e}")))?,
            None if a.hard_negatives.is_some() => d.loader.negatives.with_hard(),
            None => d.loader.negatives,
        },
        hard_negatives: a.hard_negatives.clone(),
        augment: match a.augment.as_deref() {
            Some(s) => Augment::parse(s, patch).map_err(|e| usage(format!("--augment: {e}")))?,
            None => d.loader.augment.clone(),
        },
        workers: a.workers.unwrap_or(d.loader.workers),
        cache_bytes: a.cache.map_or(d.loader.cache_bytes, |c| c.saturating_mul(1 << 20)),
        mask_label: a.mask_label.clone(),
        nodule_filter: a.nodules.filter(),
        series: a.series.clone().or(d.loader.series.clone()),
        ..d.loader.clone()
    };
    Ok(TrainSettings {
        model: if a.model.as_deref() == Some("vnet") { ModelKind::Vnet } else { d.model },
        width: a.width.unwrap_or(d.width),
        loss: match a.loss.as_deref() {
            Some("dice-bce") => LossKind::DiceBce,
            Some("tversky") => LossKind::Tversky,
            _ => d.loss,
        },
        lr: a.lr.unwrap_or(d.lr),
        cosine: a.lr_schedule.as_deref() == Some("cosine"),
        warmup: a.warmup.or(d.warmup),
        min_lr_factor: a.min_lr_factor.unwrap_or(d.min_lr_factor),
        steps: a.steps.unwrap_or(d.steps),
        epochs: a.epochs,
        val_fraction: a.val_fraction.unwrap_or(d.val_fraction),
        val_every: a.val_every.unwrap_or(d.val_every),
        val_batches: a.val_batches.unwrap_or(d.val_batches),
        val_scans: d.val_scans && !a.no_val_scans,
        val_overlap: a.val_overlap.unwrap_or(d.val_overlap),
        checkpoint_every: a.checkpoint_every.or(d.checkpoint_every),
        keep_checkpoints: a.keep_checkpoints.unwrap_or(d.keep_checkpoints),
        seed: a.seed.unwrap_or(d.seed),
        loader,
    })
}

/// The flags that would change what a resumed run computes.
pub(super) fn fixed_on_resume(a: &Args) -> Vec<&'static str> {
    let given = [
        (a.model.is_some(), "--model"),
        (a.width.is_some(), "--width"),
        (a.batch_size.is_some(), "--batch-size"),
        (a.lr.is_some(), "--lr"),
        (a.lr_schedule.is_some(), "--lr-schedule"),
        (a.warmup.is_some(), "--warmup"),
        (a.min_lr_factor.is_some(), "--min-lr-factor"),
        (a.loss.is_some(), "--loss"),
        (a.patch.is_some(), "--patch"),
        (a.positive_share.is_some(), "--positive-share"),
        (a.jitter.is_some(), "--jitter"),
        (a.negatives.is_some(), "--negatives"),
        (a.hard_negatives.is_some(), "--hard-negatives"),
        (a.mask_label.is_some(), "--mask-label"),
        (a.nodules.min_readers.is_some(), "--min-readers"),
        (a.nodules.min_malignancy.is_some(), "--min-malignancy"),
        (a.augment.is_some(), "--augment"),
        (a.series.is_some(), "--series"),
        (a.val_fraction.is_some(), "--val-fraction"),
        (a.val_batches.is_some(), "--val-batches"),
        (a.no_val_scans, "--no-val-scans"),
        (a.val_overlap.is_some(), "--val-overlap"),
        (a.seed.is_some(), "--seed"),
    ];
    given.iter().filter(|(g, _)| *g).map(|(_, n)| *n).collect()
}
