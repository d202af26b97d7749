//! `ctstream train`: train a U-Net or V-Net on a store (cargo feature `train`), with
//! validation, checkpoints, `--resume` and Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, anyhow};
use burn::tensor::backend::AutodiffBackend;
use ctstream::loader::{Augment, Loader, LoaderConfig, LoaderError, Negatives};
use ctstream::progress::Progress;
use ctstream::store::Store;
use ctstream::train::checkpoint;
use ctstream::train::device::OnBackend;
use ctstream::train::fit::{Checkpoints, Validation};
use ctstream::train::{
    self, BackendChoice, CsvLog, DeviceChoice, LossKind, LrSchedule, ModelKind, Observer, Plan,
    Position, RunConfig, StepRecord, UNet3d, VNet, ValRecord,
};

use crate::progress::Bars;
use crate::{Exit, ExitError, parse3};

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
    store: Option<PathBuf>,
    #[command(flatten)]
    disk_cache: crate::DiskCacheArgs,
    /// Run folder for a new run.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its newest checkpoint.
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// The network: unet3d or vnet [default: unet3d].
    #[arg(long, value_parser = ["unet3d", "vnet"])]
    model: Option<String>,
    /// Channel width multiplier (1.0 = the published widths) [default: 1.0].
    #[arg(long)]
    width: Option<f64>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// auto (LibTorch on the CPU when built in, Burn's CUDA backend on GPUs), burn (flex on
    /// the CPU, CubeCL on CUDA) or libtorch [default: auto; on resume, the run's backend].
    #[arg(long)]
    backend: Option<BackendChoice>,
    /// Patches per step [default: 8].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Steps to train (the whole run's total) [default: 100].
    #[arg(long, conflicts_with = "epochs")]
    steps: Option<usize>,
    /// Epochs to train (an epoch visits every training nodule once at the positive share).
    #[arg(long)]
    epochs: Option<usize>,
    /// Adam learning rate [default: 0.001].
    #[arg(long)]
    lr: Option<f64>,
    /// constant, or cosine (linear warm-up, then cosine decay to --min-lr-factor) [default: constant].
    #[arg(long, value_parser = ["constant", "cosine"])]
    lr_schedule: Option<String>,
    /// Warm-up steps of the cosine schedule [default: 5% of the steps].
    #[arg(long)]
    warmup: Option<usize>,
    /// Final learning rate of the cosine schedule, as a fraction of --lr [default: 0.01].
    #[arg(long)]
    min_lr_factor: Option<f64>,
    /// dice, dice-bce or tversky [default: dice].
    #[arg(long, value_parser = ["dice", "dice-bce", "tversky"])]
    loss: Option<String>,
    /// Patch shape Z,Y,X, each divisible by 16 [default: 32,64,64].
    #[arg(long, value_parser = parse3::<usize>)]
    patch: Option<[usize; 3]>,
    /// Share of nodule-centred patches [default: 0.8].
    #[arg(long)]
    positive_share: Option<f64>,
    /// Largest shift Z,Y,X (voxels) of a positive patch's centre from its nodule [default: 8,8,8].
    #[arg(long, value_parser = parse3::<usize>)]
    jitter: Option<[usize; 3]>,
    /// Negatives: lungs (centred on a voxel of the scan's lung mask; random positions in
    /// scans without one), random positions, or candidates (LUNA16 class-0 candidates)
    /// [default: lungs].
    #[arg(long, value_parser = ["lungs", "random", "candidates"])]
    negatives: Option<String>,
    /// Masks from a label volume instead of the annotations' spheres: NAME, or NAME:V,V
    /// for some of its values (say `labels:2`). Without nodules in the index, positive
    /// patches are centred on the label's connected components.
    #[arg(long, value_name = "NAME[:V,...]")]
    mask_label: Option<ctstream::loader::MaskLabel>,
    /// Augmentations, comma-separated: flip, rot90, hu (HU shift 25, scale 5%), noise
    /// (sigma 0.01); or none, or all [default: none].
    #[arg(long)]
    augment: Option<String>,
    /// Loader worker threads [default: 2].
    #[arg(long)]
    workers: Option<usize>,
    /// Decoded-chunk cache budget, MB [default: 256].
    #[arg(long)]
    cache: Option<usize>,
    /// Fraction of series held out for validation, by hash of the series id [default: 0.2].
    #[arg(long)]
    val_fraction: Option<f64>,
    /// Validate every K steps (and after the last) [default: 50].
    #[arg(long)]
    val_every: Option<usize>,
    /// Batches per validation (always the same patches) [default: 4].
    #[arg(long)]
    val_batches: Option<usize>,
    /// Checkpoint every K steps (and after the last) [default: --val-every].
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Checkpoints to keep, newest first; 0 keeps all [default: 3].
    #[arg(long)]
    keep_checkpoints: Option<usize>,
    /// Seed of weights and patches [default: 0].
    #[arg(long)]
    seed: Option<u64>,
}

fn usage(msg: String) -> ExitError {
    ExitError(Exit::Usage, anyhow!(msg))
}

fn parse_augment(s: &str, patch: [usize; 3]) -> Result<Augment, ExitError> {
    Augment::parse(s, patch).map_err(|e| usage(format!("--augment: {e}")))
}

/// A new run's configuration from the flags and the defaults.
fn new_config(a: &Args, store_path: &Path, store: &Store) -> Result<RunConfig, ExitError> {
    let patch = a.patch.unwrap_or([32, 64, 64]);
    if patch.iter().any(|p| *p == 0 || p % 16 != 0) {
        return Err(usage(format!(
            "--patch {}: every side must be a positive multiple of 16 (four 2x down-samplings)",
            patch.map(|p| p.to_string()).join(",")
        )));
    }
    let steps = a.steps.unwrap_or(100);
    let schedule = match a.lr_schedule.as_deref() {
        Some("cosine") => LrSchedule::Cosine {
            warmup: a.warmup.unwrap_or(steps / 20),
            min_factor: a.min_lr_factor.unwrap_or(0.01),
        },
        _ => LrSchedule::Constant,
    };
    let val_every = a.val_every.unwrap_or(50);
    let loader = LoaderConfig {
        patch_zyx: patch,
        batch_size: a.batch_size.unwrap_or(8),
        positive_share: a.positive_share.unwrap_or(0.8),
        jitter_zyx: a.jitter.unwrap_or([8, 8, 8]),
        negatives: a
            .negatives
            .as_deref()
            .unwrap_or("lungs")
            .parse::<Negatives>()
            .map_err(|e| ExitError(Exit::Usage, anyhow::anyhow!("--negatives: {e}")))?,
        augment: parse_augment(a.augment.as_deref().unwrap_or("none"), patch)?,
        workers: a.workers.unwrap_or(2),
        cache_bytes: a.cache.unwrap_or(256) << 20,
        seed: a.seed.unwrap_or(0),
        mask_label: a.mask_label.clone(),
        ..LoaderConfig::default()
    };
    let val_fraction = a.val_fraction.unwrap_or(0.2);
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(usage(format!("--val-fraction {val_fraction}: must lie in [0, 1)")));
    }
    Ok(RunConfig {
        store: store_path.to_path_buf(),
        store_manifest: store.manifest().clone(),
        train_series: Vec::new(),
        val_series: Vec::new(),
        model: if a.model.as_deref() == Some("vnet") { ModelKind::Vnet } else { ModelKind::Unet3d },
        width: a.width.unwrap_or(1.0),
        loss: match a.loss.as_deref() {
            Some("dice-bce") => LossKind::DiceBce,
            Some("tversky") => LossKind::Tversky,
            _ => LossKind::Dice,
        },
        lr: a.lr.unwrap_or(1e-3),
        schedule,
        steps,
        epochs: a.epochs,
        val_fraction,
        val_every,
        val_batches: a.val_batches.unwrap_or(4),
        checkpoint_every: a.checkpoint_every.unwrap_or(val_every),
        keep_checkpoints: a.keep_checkpoints.unwrap_or(3),
        device: a.device.to_string(),
        engine: None,
        seed: a.seed.unwrap_or(0),
        loader,
        ctstream_version: env!("CARGO_PKG_VERSION").to_string(),
        burn_version: "0.21.0".to_string(),
    })
}

/// The flags that would change what a resumed run computes.
fn fixed_on_resume(a: &Args) -> Vec<&'static str> {
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
        (a.mask_label.is_some(), "--mask-label"),
        (a.augment.is_some(), "--augment"),
        (a.val_fraction.is_some(), "--val-fraction"),
        (a.val_batches.is_some(), "--val-batches"),
        (a.seed.is_some(), "--seed"),
    ];
    given.iter().filter(|(g, _)| *g).map(|(_, n)| *n).collect()
}

/// Set by the first Ctrl-C; the loop checks it after each step.
static STOP: AtomicBool = AtomicBool::new(false);

fn install_ctrl_c(bars: &Bars) {
    let bars = bars.clone();
    let r = ctrlc::set_handler(move || {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: quitting without a checkpoint");
            std::process::exit(130);
        }
        bars.println("Ctrl-C: stopping after this step and writing a checkpoint (Ctrl-C again to quit at once)");
    });
    if let Err(e) = r {
        eprintln!("warning: Ctrl-C will not write a checkpoint ({e})");
    }
}

/// The backend a run asks for: the flag, or on resume the one the run last used.
fn backend_of(a: &Args, cfg_engine: Option<&str>) -> BackendChoice {
    match (a.backend, cfg_engine) {
        (Some(b), _) => b,
        (None, Some(e)) if e.starts_with("libtorch") => BackendChoice::Libtorch,
        (None, Some(_)) => BackendChoice::Burn,
        (None, None) if a.resume.is_some() => BackendChoice::Burn,
        (None, None) => BackendChoice::Auto,
    }
}

/// Reads a run's `config.json`.
fn read_config(dir: &Path) -> Result<RunConfig, ExitError> {
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(serde_json::from_str(&text)
        .with_context(|| format!("{}: not a ctstream run configuration", path.display()))?)
}

pub fn run(a: Args, bars: &Bars) -> Result<(), ExitError> {
    let previous = match &a.resume {
        Some(dir) => Some(read_config(dir)?),
        None => None,
    };
    let backend = backend_of(&a, previous.as_ref().and_then(|c| c.engine.as_deref()));
    let engine = train::device::resolve(a.device, backend)
        .map_err(|e| usage(format!("--backend {backend} --device {}: {e}", a.device)))?;
    let opened = train::device::open(engine).map_err(|e| anyhow!("--device: {e}"))?;
    let (run_dir, mut cfg, resume) = match &a.resume {
        None => {
            let out = a
                .out
                .clone()
                .ok_or_else(|| usage("--out RUN_DIR or --resume RUN_DIR is required".into()))?;
            if !checkpoint::list(&out)?.is_empty() {
                return Err(usage(format!(
                    "{} already holds a run with checkpoints: continue it with --resume {0}, or choose another --out",
                    out.display()
                )));
            }
            let store_path = a
                .store
                .clone()
                .ok_or_else(|| usage("--store STORE is required for a new run".into()))?;
            let store = Store::open(&store_path)
                .with_context(|| format!("opening {}", store_path.display()))?;
            let cfg = new_config(&a, &store_path, &store)?;
            (out, cfg, None)
        }
        Some(dir) => {
            let fixed = fixed_on_resume(&a);
            if !fixed.is_empty() {
                return Err(usage(format!(
                    "--resume continues the run as configured in {}; {} cannot change (start a new run instead)",
                    dir.join("config.json").display(),
                    fixed.join(", ")
                )));
            }
            let mut cfg =
                previous.clone().ok_or_else(|| anyhow!("{}: no configuration", dir.display()))?;
            let ck = checkpoint::latest(dir)?.ok_or_else(|| anyhow!("{}: no checkpoint to resume from (the run stopped before its first checkpoint); start it again", checkpoint::folder(dir).display()))?;
            if let Some(s) = &a.store {
                cfg.store = s.clone();
            }
            if let Some(s) = a.steps {
                (cfg.steps, cfg.epochs) = (s, None);
            }
            cfg.epochs = a.epochs.or(cfg.epochs);
            cfg.device = a.device.to_string();
            let before = cfg.engine.clone().unwrap_or_else(|| {
                if cfg.device == "cpu" { "flex".into() } else { cfg.device.clone() }
            });
            if before != engine.to_string() {
                bars.println(&format!("note: the run last trained on {before}, now on {engine}: the steps from here are not bit for bit those an uninterrupted run on {before} would take"));
            }
            if let Some(w) = a.workers {
                cfg.loader.workers = w;
            }
            if let Some(c) = a.cache {
                cfg.loader.cache_bytes = c << 20;
            }
            cfg.val_every = a.val_every.unwrap_or(cfg.val_every);
            cfg.checkpoint_every = a.checkpoint_every.unwrap_or(cfg.checkpoint_every);
            cfg.keep_checkpoints = a.keep_checkpoints.unwrap_or(cfg.keep_checkpoints);
            (dir.clone(), cfg, Some(ck))
        }
    };

    let store = crate::open_store(&cfg.store, &a.disk_cache)?;
    if resume.is_some() && !store.manifest().same_parameters(&cfg.store_manifest) {
        return Err(anyhow!("{}: the store's parameters differ from those the run started with (config.json store_manifest); resuming would train on other data", cfg.store.display()).into());
    }
    let loader = match Loader::builder(&store).config(cfg.train_loader()).build() {
        Ok(l) => {
            for n in l.notes() {
                bars.println(&format!("note: {n}"));
            }
            Ok(l)
        }
        Err(e) => Err(e),
    };
    let loader = match loader {
        Err(LoaderError::Empty(_)) if cfg.val_fraction > 0.0 => {
            return Err(usage(format!(
                "{}: every scan falls in the validation split (--val-fraction {}); use a smaller --val-fraction, or 0 to train on all",
                cfg.store.display(),
                cfg.val_fraction
            )));
        }
        r => r?,
    };
    let val_loader = if cfg.val_fraction > 0.0 {
        match Loader::builder(&store).config(cfg.val_loader()).build() {
            Ok(l) => Some(l),
            Err(LoaderError::Empty(_)) => {
                bars.println(&format!("note: no series of the {} scans hashes into the validation split (--val-fraction {}); training without validation", store.scans().len(), cfg.val_fraction));
                None
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };
    let train_series: Vec<String> = loader.series_ids().iter().map(|s| s.to_string()).collect();
    let val_series: Vec<String> = val_loader
        .as_ref()
        .map(|l| l.series_ids().iter().map(|s| s.to_string()).collect())
        .unwrap_or_default();
    if resume.is_some() && (train_series != cfg.train_series || val_series != cfg.val_series) {
        return Err(anyhow!("{}: the store now holds other scans than when the run started (config.json train_series / val_series); resuming would not give the same batches", cfg.store.display()).into());
    }
    (cfg.train_series, cfg.val_series) = (train_series, val_series);
    if let Some(e) = cfg.epochs {
        cfg.steps = e * loader.batches_per_epoch();
    }
    cfg.engine = Some(engine.to_string());

    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let cfg_path = run_dir.join("config.json");
    let cfg_json = serde_json::to_value(&cfg).context("config JSON")?;
    ctstream::fsutil::write_bytes_atomic(
        &cfg_path,
        serde_json::to_string_pretty(&cfg_json).context("config JSON")?.as_bytes(),
    )
    .with_context(|| format!("writing {}", cfg_path.display()))?;
    let through = resume.as_ref().map_or(0, |c| c.state.position.step);
    let open = |name: &str, header: &str| {
        let p = run_dir.join(name);
        if resume.is_some() {
            CsvLog::resume(&p, header, through)
        } else {
            CsvLog::create(&p, header)
        }
        .with_context(|| format!("opening {}", p.display()))
    };
    let mut reporter = Reporter {
        bars,
        metrics: open("metrics.csv", StepRecord::HEADER)?,
        val: open("val.csv", ValRecord::HEADER)?,
        error: None,
        last_val: None,
        steps: cfg.steps,
    };
    install_ctrl_c(bars);
    let plan = Plan {
        loader: &loader,
        steps: cfg.steps,
        lr: cfg.lr,
        schedule: cfg.schedule,
        loss: cfg.loss,
        validation: val_loader.as_ref().map(|l| Validation { loader: l, every: cfg.val_every }),
        checkpoints: Some(Checkpoints {
            run_dir: &run_dir,
            every: cfg.checkpoint_every,
            keep: cfg.keep_checkpoints,
            config: cfg_json,
        }),
        resume: resume.as_ref(),
        stop: Some(&STOP),
    };
    if let Some(ck) = &resume {
        let p = ck.state.position;
        bars.println(&format!(
            "resuming {} at step {} (epoch {}, batch {}) of {}",
            run_dir.display(),
            p.step,
            p.epoch,
            p.next_batch,
            cfg.steps
        ));
    }
    bars.start("training", Some(cfg.steps as u64));
    bars.advance(through as u64);
    bars.println(&format!("training on {engine}"));
    let outcome = opened.run(RunOn { cfg: &cfg, plan: &plan, reporter: &mut reporter })?;
    bars.finish();
    if let Some(e) = reporter.error {
        return Err(e.into());
    }
    summarise(&outcome.0, &outcome.1, reporter.last_val.as_ref(), cfg.loader.batch_size, &run_dir);
    if outcome.2 {
        return Err(ExitError(
            Exit::Interrupted,
            anyhow!(
                "interrupted at step {} of {}; continue with: ctstream train --resume {}",
                outcome.1.step,
                cfg.steps,
                run_dir.display()
            ),
        ));
    }
    Ok(())
}

/// Builds the network on the opened backend, seeded, and runs the plan.
struct RunOn<'a, 'b, 'c> {
    cfg: &'a RunConfig,
    plan: &'a Plan<'b>,
    reporter: &'a mut Reporter<'c>,
}

impl OnBackend for RunOn<'_, '_, '_> {
    type Output = Result<(Vec<StepRecord>, Position, bool), ExitError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        run_on::<B>(device, self.cfg, self.plan, self.reporter)
    }
}

/// Builds the network on `B`, seeded, and runs the plan: (records, position, stopped).
fn run_on<B: AutodiffBackend>(
    device: B::Device,
    cfg: &RunConfig,
    plan: &Plan<'_>,
    reporter: &mut Reporter<'_>,
) -> Result<(Vec<StepRecord>, Position, bool), ExitError> {
    B::seed(&device, cfg.seed);
    let (records, position, stopped) = match cfg.model {
        ModelKind::Unet3d => {
            let o =
                train::fit::<B, _>(UNet3d::<B>::new(cfg.width, &device), plan, &device, reporter)?;
            (o.records, o.position, o.stopped)
        }
        ModelKind::Vnet => {
            let o =
                train::fit::<B, _>(VNet::<B>::new(cfg.width, &device), plan, &device, reporter)?;
            (o.records, o.position, o.stopped)
        }
    };
    Ok((records, position, stopped))
}

/// Writes the CSVs and drives the bar.
struct Reporter<'a> {
    bars: &'a Bars,
    metrics: CsvLog,
    val: CsvLog,
    error: Option<anyhow::Error>,
    last_val: Option<ValRecord>,
    steps: usize,
}

impl Observer for Reporter<'_> {
    fn step(&mut self, r: &StepRecord) {
        if let Err(e) = self.metrics.row(&r.csv_row()) {
            self.error.get_or_insert(anyhow!("writing {}: {e}", self.metrics.path().display()));
        }
        self.bars.advance(1);
        let val = self.last_val.map(|v| format!(", val Dice {:.3}", v.dice)).unwrap_or_default();
        self.bars.set_message(&format!(
            "loss {:.3} Dice {:.3}{val}, wait {:.0}%",
            r.loss,
            r.dice,
            100.0 * r.loader_wait_s / r.step_s.max(1e-9)
        ));
    }

    fn validated(&mut self, r: &ValRecord) {
        if let Err(e) = self.val.row(&r.csv_row()) {
            self.error.get_or_insert(anyhow!("writing {}: {e}", self.val.path().display()));
        }
        self.last_val = Some(*r);
        self.bars.println(&format!(
            "step {:>6}/{}: validation loss {:.4}, Dice {:.3} on {} positive patches, {:.1} false-positive voxels per negative patch ({} negatives)",
            r.step, self.steps, r.loss, r.dice, r.positives, r.fp_voxels_per_negative, r.negatives
        ));
    }

    fn checkpointed(&mut self, dir: &Path, _p: &Position) {
        self.bars.set_message(&format!("checkpoint {}", dir.display()));
    }
}

fn summarise(
    records: &[StepRecord],
    pos: &Position,
    val: Option<&ValRecord>,
    batch: usize,
    run_dir: &Path,
) {
    let n = records.len().max(1) as f64;
    let wait: f64 = records.iter().map(|r| r.loader_wait_s).sum();
    let total: f64 = records.iter().map(|r| r.step_s).sum();
    let tail = &records[records.len().saturating_sub(10)..];
    let tn = tail.len().max(1) as f64;
    println!(
        "trained {} steps (to step {}) in {:.1} s: {:.1} patches/s, mean step {:.3} s, loader wait {:.1} % of step time; last {} steps: loss {:.3}, Dice {:.3}",
        records.len(),
        pos.step,
        total,
        (records.len() * batch) as f64 / total.max(1e-9),
        total / n,
        100.0 * wait / total.max(1e-9),
        tail.len(),
        tail.iter().map(|r| r.loss).sum::<f64>() / tn,
        tail.iter().map(|r| r.dice).sum::<f64>() / tn,
    );
    if let Some(v) = val {
        println!(
            "validation at step {}: Dice {:.3}, {:.1} false-positive voxels per negative patch",
            v.step, v.dice, v.fp_voxels_per_negative
        );
    }
    println!("  {}/{{config.json, metrics.csv, val.csv, checkpoints/}}", run_dir.display());
}
