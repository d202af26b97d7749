//! A training run as `ctstream train` makes one: its settings with their defaults and
//! checks ([`TrainSettings`]), a new run's configuration or a resumed one's
//! ([`resume_config`], with what may change on resume), and the run folder made ready
//! ([`prepare`]: the store and the loaders checked against the configuration, so a resumed
//! run trains on exactly the batches the uninterrupted run would have, `config.json`
//! written, the CSV logs opened). [`super::execute`] then trains it on a backend.

use std::path::{Path, PathBuf};

use super::checkpoint::{self, Checkpoint};
use super::{
    BackendChoice, CsvLog, LossKind, LrSchedule, ModelKind, RunConfig, StepRecord, ValRecord,
};
use crate::loader::{Loader, LoaderConfig, LoaderError};
use crate::store::Store;

/// Errors preparing a run (training itself fails with [`super::TrainError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A setting is out of range, or settings contradict each other; names the setting.
    #[error("{0}")]
    Config(String),
    /// The run folder (its `config.json`, checkpoints or logs) cannot be used as asked.
    #[error("{}: {message}", path.display())]
    Run {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The store differs from the one the run started on, or holds no scans to train on.
    #[error("{}: {message}", store.display())]
    Store {
        /// The store.
        store: PathBuf,
        /// What differs.
        message: String,
    },
    /// A checkpoint could not be listed or read.
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    /// A loader could not be built.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// Training failed: a batch could not be built, or a checkpoint written.
    #[error(transparent)]
    Train(#[from] super::TrainError),
}

/// The largest patches per step, and the most steps, a run takes.
pub const MAX_BATCH: usize = 4096;
/// The most steps of a run.
pub const MAX_STEPS: usize = 1 << 32;

/// What a new run is asked to do, with the defaults `ctstream train` documents; the
/// loader's settings are [`LoaderConfig`]'s own.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSettings {
    /// The network: U-Net.
    pub model: ModelKind,
    /// Channel width multiplier (1.0: the published widths).
    pub width: f64,
    /// Loss: soft Dice.
    pub loss: LossKind,
    /// Adam learning rate: 0.001.
    pub lr: f64,
    /// Cosine schedule (linear warm-up, then cosine decay) instead of a constant rate.
    pub cosine: bool,
    /// Warm-up steps of the cosine schedule (None: 5 % of the steps).
    pub warmup: Option<usize>,
    /// Final rate of the cosine schedule, as a fraction of `lr`: 0.01.
    pub min_lr_factor: f64,
    /// Steps of the whole run: 100 (unless `epochs`).
    pub steps: usize,
    /// Epochs instead of steps (an epoch visits every training nodule once at the
    /// positive share).
    pub epochs: Option<usize>,
    /// Share of series held out for validation, by hash of the series id: 0.2.
    pub val_fraction: f64,
    /// Validate every this many steps (and after the last): 50.
    pub val_every: usize,
    /// Batches per validation (always the same patches): 4.
    pub val_batches: usize,
    /// Validate on the whole held-out scans too (predicted in their lung region; CPM and
    /// the operating point in `val.csv`; the best model by CPM kept as
    /// `checkpoints/best/`, which `predict` uses): on.
    pub val_scans: bool,
    /// Tile overlap of that prediction: [`super::config::VAL_OVERLAP`].
    pub val_overlap: f64,
    /// Checkpoint every this many steps (None: `val_every`).
    pub checkpoint_every: Option<usize>,
    /// Checkpoints kept, newest first (0: all): 3.
    pub keep_checkpoints: usize,
    /// Seed of the weights and of the patches: 0.
    pub seed: u64,
    /// The training loader (its `seed` is replaced by `seed`).
    pub loader: LoaderConfig,
}

impl Default for TrainSettings {
    fn default() -> Self {
        TrainSettings {
            model: ModelKind::Unet3d,
            width: 1.0,
            loss: LossKind::Dice,
            lr: 1e-3,
            cosine: false,
            warmup: None,
            min_lr_factor: 0.01,
            steps: 100,
            epochs: None,
            val_fraction: 0.2,
            val_every: 50,
            val_batches: 4,
            val_scans: true,
            val_overlap: super::config::VAL_OVERLAP,
            checkpoint_every: None,
            keep_checkpoints: 3,
            seed: 0,
            loader: LoaderConfig { negatives: recipe_negatives(), ..LoaderConfig::default() },
        }
    }
}

/// The recipe's negatives: a quarter inside the lungs, a quarter on tissue anywhere in the
/// scan, half on tissue in and within 10 mm of the lungs (`dense`), so the network sees the
/// body wall, the mediastinum, the pleura, the ribs and the vessels as background, most of
/// all those in the region `predict` looks in (with lung negatives alone it paints the
/// body wall; with lung and body negatives it marked vessels, ribs and the pleura on the
/// demo's validation scan).
pub fn recipe_negatives() -> crate::loader::Negatives {
    use crate::loader::NegativeSource;
    crate::loader::Negatives::mix(&[
        (NegativeSource::Lungs, 0.25),
        (NegativeSource::Body, 0.25),
        (NegativeSource::Dense, 0.5),
    ])
    .unwrap_or_default()
}

/// The networks halve each side four times: a patch side must be a multiple of this.
pub const PATCH_MULTIPLE: usize = 16;

/// Checks a patch shape against the networks' rule ([`PATCH_MULTIPLE`]).
///
/// # Errors
/// [`RunError::Config`] naming the shape.
pub fn check_patch(patch_zyx: [usize; 3]) -> Result<(), RunError> {
    if patch_zyx.iter().any(|p| *p == 0 || p % PATCH_MULTIPLE != 0) {
        return Err(RunError::Config(format!(
            "patch {}: every side must be a positive multiple of {PATCH_MULTIPLE} (four 2x down-samplings)",
            patch_zyx.map(|p| p.to_string()).join(",")
        )));
    }
    Ok(())
}

/// Checks a network's input: `batch` patches of `patch_zyx` voxels, 1 to [`MAX_BATCH`]
/// patches and at most [`crate::predict::MAX_BATCH_VOXELS`] voxels a step, so that a
/// size typed by mistake is refused before the network allocates its activations.
///
/// # Errors
/// [`RunError::Config`] naming `patch`, or `flag` (the batch-size setting, as the caller names it).
pub fn check_input(patch_zyx: [usize; 3], batch: usize, flag: &str) -> Result<(), RunError> {
    check_patch(patch_zyx)?;
    let limit = crate::predict::MAX_BATCH_VOXELS;
    let voxels = patch_zyx.iter().try_fold(1u64, |n, &s| n.checked_mul(s as u64));
    let Some(voxels) = voxels.filter(|&v| v <= limit) else {
        return Err(RunError::Config(format!(
            "patch {}: at most {limit} voxels",
            patch_zyx.map(|p| p.to_string()).join(",")
        )));
    };
    let most = (limit / voxels).min(MAX_BATCH as u64);
    if batch == 0 || batch as u64 > most {
        return Err(RunError::Config(format!(
            "{flag} {batch}: give 1 to {most} for patch {} (at most {limit} voxels a step)",
            patch_zyx.map(|p| p.to_string()).join(",")
        )));
    }
    Ok(())
}

impl TrainSettings {
    /// Checks every value; each message names the setting.
    ///
    /// # Errors
    /// [`RunError::Config`].
    pub fn validate(&self) -> Result<(), RunError> {
        let bad = |m: String| Err(RunError::Config(m));
        check_patch(self.loader.patch_zyx)?;
        if !(self.width.is_finite() && self.width > 0.0 && self.width <= 16.0) {
            return bad(format!("width {}: give more than 0, at most 16", self.width));
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr < 10.0) {
            return bad(format!("learning rate {}: give more than 0, less than 10", self.lr));
        }
        if !(self.min_lr_factor.is_finite() && (0.0..=1.0).contains(&self.min_lr_factor)) {
            return bad(format!("min-lr-factor {}: give 0 to 1", self.min_lr_factor));
        }
        if self.steps == 0 || self.steps > MAX_STEPS {
            return bad(format!("steps {}: give 1 to {MAX_STEPS}", self.steps));
        }
        if self.epochs.is_some_and(|e| e == 0 || e > MAX_STEPS) {
            return bad(format!("epochs {:?}: give 1 to {MAX_STEPS}", self.epochs));
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(format!("val-fraction {}: must lie in [0, 1)", self.val_fraction));
        }
        check_input(self.loader.patch_zyx, self.loader.batch_size, "batch-size")?;
        if !(0.0..1.0).contains(&self.val_overlap) {
            return bad(format!("val-overlap {}: give 0 <= overlap < 1", self.val_overlap));
        }
        if self.val_batches == 0 || self.val_batches > MAX_STEPS {
            return bad(format!("val-batches {}: give 1 to {MAX_STEPS}", self.val_batches));
        }
        Ok(())
    }

    /// The configuration of a new run on the store at `store_path`, on `device`.
    ///
    /// # Errors
    /// As [`TrainSettings::validate`].
    pub fn into_config(
        self,
        store_path: &Path,
        store: &Store,
        device: &str,
    ) -> Result<RunConfig, RunError> {
        self.validate()?;
        let schedule = if self.cosine {
            LrSchedule::Cosine {
                warmup: self.warmup.unwrap_or(self.steps / 20),
                min_factor: self.min_lr_factor,
            }
        } else {
            LrSchedule::Constant
        };
        Ok(RunConfig {
            store: store_path.to_path_buf(),
            store_manifest: store.manifest().clone(),
            train_series: Vec::new(),
            val_series: Vec::new(),
            model: self.model,
            width: self.width,
            loss: self.loss,
            lr: self.lr,
            schedule,
            steps: self.steps,
            epochs: self.epochs,
            val_fraction: self.val_fraction,
            val_every: self.val_every,
            val_batches: self.val_batches,
            val_scans: self.val_scans,
            val_overlap: self.val_overlap,
            checkpoint_every: self.checkpoint_every.unwrap_or(self.val_every),
            keep_checkpoints: self.keep_checkpoints,
            device: device.to_string(),
            engine: None,
            seed: self.seed,
            loader: LoaderConfig { seed: self.seed, ..self.loader },
            ctstream_version: env!("CARGO_PKG_VERSION").to_string(),
            burn_version: "0.21.0".to_string(),
        })
    }
}

/// Reads a run's `config.json`.
///
/// # Errors
/// [`RunError::Run`] naming the file.
pub fn read_config(run_dir: &Path) -> Result<RunConfig, RunError> {
    let path = run_dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| RunError::Run { path: path.clone(), message: format!("cannot read: {e}") })?;
    serde_json::from_str(&text).map_err(|e| RunError::Run {
        path,
        message: format!("not a ctstream run configuration: {e}"),
    })
}

/// What may change when a run is resumed: where the store is, how long to train, where,
/// how fast the loader runs, how often to validate and checkpoint. Everything else would
/// change what the run computes. `None` keeps the run's own.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResumeChanges {
    /// The store, moved or on object storage now.
    pub store: Option<PathBuf>,
    /// The whole run's steps.
    pub steps: Option<usize>,
    /// The whole run's epochs.
    pub epochs: Option<usize>,
    /// The device (`cpu`, `cuda:0`).
    pub device: Option<String>,
    /// Loader worker threads.
    pub workers: Option<usize>,
    /// Decoded-chunk cache budget, bytes.
    pub cache_bytes: Option<usize>,
    /// Validate every this many steps.
    pub val_every: Option<usize>,
    /// Checkpoint every this many steps.
    pub checkpoint_every: Option<usize>,
    /// Checkpoints kept.
    pub keep_checkpoints: Option<usize>,
}

/// A run to resume: `cfg`, its configuration as [`read_config`] read it, with `changes`
/// applied, and its newest checkpoint.
///
/// # Errors
/// [`RunError::Run`] for a folder without a checkpoint.
pub fn resume_config(
    run_dir: &Path,
    mut cfg: RunConfig,
    changes: &ResumeChanges,
) -> Result<(RunConfig, Checkpoint), RunError> {
    let ck = checkpoint::latest(run_dir)?.ok_or_else(|| RunError::Run {
        path: checkpoint::folder(run_dir),
        message: "no checkpoint to resume from (the run stopped before its first checkpoint); start it again".into(),
    })?;
    let c = changes.clone();
    if let Some(s) = c.store {
        cfg.store = s;
    }
    if let Some(s) = c.steps {
        (cfg.steps, cfg.epochs) = (s, None);
    }
    cfg.epochs = c.epochs.or(cfg.epochs);
    if let Some(d) = c.device {
        cfg.device = d;
    }
    if let Some(w) = c.workers {
        cfg.loader.workers = w;
    }
    if let Some(b) = c.cache_bytes {
        cfg.loader.cache_bytes = b;
    }
    cfg.val_every = c.val_every.unwrap_or(cfg.val_every);
    cfg.checkpoint_every = c.checkpoint_every.unwrap_or(cfg.checkpoint_every);
    cfg.keep_checkpoints = c.keep_checkpoints.unwrap_or(cfg.keep_checkpoints);
    Ok((cfg, ck))
}

/// The backend a run trains on: the one asked for; else, on resume, the one the run last
/// used (LibTorch, or Burn's for a run made before LibTorch was recorded), so a resumed run
/// takes the same steps; else [`BackendChoice::Auto`].
pub fn backend_for(asked: Option<BackendChoice>, resumed: Option<&RunConfig>) -> BackendChoice {
    match (asked, resumed) {
        (Some(b), _) => b,
        (None, Some(c)) if c.last_engine().starts_with("libtorch") => BackendChoice::Libtorch,
        (None, Some(_)) => BackendChoice::Burn,
        (None, None) => BackendChoice::Auto,
    }
}

impl RunConfig {
    /// The backend and device the run last trained on (`flex` for a CPU run made before
    /// the engine was recorded).
    pub fn last_engine(&self) -> String {
        self.engine.clone().unwrap_or_else(|| {
            if self.device == "cpu" { "flex".into() } else { self.device.clone() }
        })
    }
}

/// A run folder made ready to train: the configuration as written, the loaders, the logs.
#[derive(Debug)]
pub struct Prepared {
    /// The configuration, with the series and the engine filled in.
    pub config: RunConfig,
    /// The same, as written to `config.json` (checkpoints carry it).
    pub config_json: serde_json::Value,
    /// The training loader.
    pub loader: Loader,
    /// The validation loader (None: no series falls in the validation split, or none is
    /// asked for).
    pub val_loader: Option<Loader>,
    /// What the user should know (from the loaders, and a validation split left empty).
    pub notes: Vec<String>,
    /// `metrics.csv`, truncated to the resumed step.
    pub metrics: CsvLog,
    /// `val.csv`, likewise.
    pub val: CsvLog,
}

/// Makes `run_dir` ready: for a new run (`resume` None) refuses a folder that already
/// holds checkpoints; builds the loaders from `store`; on resume refuses a store whose
/// parameters or scans differ from those the run started with (the batches would not be
/// the same); turns epochs into steps; records `engine`; writes `config.json`; opens the
/// CSV logs (on resume, cut back to the checkpoint's step).
///
/// # Errors
/// [`RunError`] naming the folder, file or store, and what differs.
pub fn prepare(
    run_dir: &Path,
    mut cfg: RunConfig,
    resume: Option<&Checkpoint>,
    store: &Store,
    engine: &str,
) -> Result<Prepared, RunError> {
    let store_err = |message: String| RunError::Store { store: cfg.store.clone(), message };
    if resume.is_none() && !checkpoint::list(run_dir)?.is_empty() {
        return Err(RunError::Run {
            path: run_dir.to_path_buf(),
            message: "already holds a run with checkpoints: resume it, or choose another folder"
                .into(),
        });
    }
    if resume.is_some() && !store.manifest().same_parameters(&cfg.store_manifest) {
        return Err(store_err("the store's parameters differ from those the run started with (config.json store_manifest); resuming would train on other data".into()));
    }
    let mut notes = Vec::new();
    let loader = match Loader::builder(store).config(cfg.train_loader()).build() {
        Err(LoaderError::Empty(_)) if cfg.val_fraction > 0.0 => {
            return Err(RunError::Config(format!(
                "{}: every scan falls in the validation split (val-fraction {}); use a smaller val-fraction, or 0 to train on all",
                cfg.store.display(),
                cfg.val_fraction
            )));
        }
        r => r?,
    };
    notes.extend(loader.notes().iter().cloned());
    let val_loader = if cfg.val_fraction > 0.0 {
        match Loader::builder(store).config(cfg.val_loader()).build() {
            Ok(l) => Some(l),
            Err(LoaderError::Empty(_)) => {
                notes.push(format!(
                    "no series of the {} scans hashes into the validation split (val-fraction {}); training without validation",
                    store.scans().len(),
                    cfg.val_fraction
                ));
                None
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let ids = |l: &Loader| l.series_ids().iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let train_series = ids(&loader);
    let val_series = val_loader.as_ref().map(ids).unwrap_or_default();
    if resume.is_some() && (train_series != cfg.train_series || val_series != cfg.val_series) {
        return Err(store_err("the store now holds other scans than when the run started (config.json train_series / val_series); resuming would not give the same batches".into()));
    }
    (cfg.train_series, cfg.val_series) = (train_series, val_series);
    if let Some(e) = cfg.epochs {
        cfg.steps = e.saturating_mul(loader.batches_per_epoch());
    }
    cfg.engine = Some(engine.to_string());
    let io = |path: &Path, e: std::io::Error| RunError::Run {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(run_dir).map_err(|e| io(run_dir, e))?;
    let cfg_path = run_dir.join("config.json");
    let config_json = serde_json::to_value(&cfg).map_err(|e| io(&cfg_path, e.into()))?;
    let text = serde_json::to_string_pretty(&config_json).map_err(|e| io(&cfg_path, e.into()))?;
    crate::fsutil::write_bytes_atomic(&cfg_path, text.as_bytes()).map_err(|e| io(&cfg_path, e))?;
    let through = resume.map_or(0, |c| c.state.position.step);
    let open = |name: &str, header: &str| {
        let p = run_dir.join(name);
        match resume {
            Some(_) => CsvLog::resume(&p, header, through),
            None => CsvLog::create(&p, header),
        }
        .map_err(|e| io(&p, e))
    };
    Ok(Prepared {
        metrics: open("metrics.csv", StepRecord::HEADER)?,
        val: open("val.csv", ValRecord::HEADER)?,
        config: cfg,
        config_json,
        loader,
        val_loader,
        notes,
    })
}
