//! `ctstream train`: train a U-Net or V-Net on a store (cargo feature `train`), with
//! validation, checkpoints, `--resume` and Ctrl-C.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, anyhow};
use burn::tensor::backend::AutodiffBackend;
use ctstream::loader::{Augment, LoaderConfig, Negatives};
use ctstream::progress::Progress;
use ctstream::store::Store;
use ctstream::train::device::OnBackend;
use ctstream::train::fit::{Checkpoints, Validation};
use ctstream::train::run::{self, ResumeChanges, RunError, TrainSettings};
use ctstream::train::{
    self, BackendChoice, CsvLog, DeviceChoice, LossKind, ModelKind, Observer, Plan, Position,
    RunConfig, StepRecord, UNet3d, VNet, ValRecord,
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

/// A new run's settings: the flags given, the library's defaults for the rest.
fn settings(a: &Args) -> Result<TrainSettings, ExitError> {
    let d = TrainSettings::default();
    let patch = a.patch.unwrap_or(d.loader.patch_zyx);
    let loader = LoaderConfig {
        patch_zyx: patch,
        batch_size: a.batch_size.unwrap_or(d.loader.batch_size),
        positive_share: a.positive_share.unwrap_or(d.loader.positive_share),
        jitter_zyx: a.jitter.unwrap_or(d.loader.jitter_zyx),
        negatives: match a.negatives.as_deref() {
            Some(n) => n.parse::<Negatives>().map_err(|e| usage(format!("--negatives: {e}")))?,
            None => d.loader.negatives,
        },
        augment: match a.augment.as_deref() {
            Some(s) => Augment::parse(s, patch).map_err(|e| usage(format!("--augment: {e}")))?,
            None => d.loader.augment,
        },
        workers: a.workers.unwrap_or(d.loader.workers),
        cache_bytes: a.cache.map_or(d.loader.cache_bytes, |c| c << 20),
        mask_label: a.mask_label.clone(),
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
        checkpoint_every: a.checkpoint_every.or(d.checkpoint_every),
        keep_checkpoints: a.keep_checkpoints.unwrap_or(d.keep_checkpoints),
        seed: a.seed.unwrap_or(d.seed),
        loader,
    })
}

/// A library error as the CLI's: settings are usage errors (exit 2), the rest failures.
fn run_err(e: RunError) -> ExitError {
    match e {
        RunError::Config(_) => ExitError(Exit::Usage, e.into()),
        other => other.into(),
    }
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

pub fn run(a: Args, bars: &Bars) -> Result<(), ExitError> {
    let previous = match &a.resume {
        Some(dir) => Some(run::read_config(dir).map_err(run_err)?),
        None => None,
    };
    let backend = backend_of(&a, previous.as_ref().and_then(|c| c.engine.as_deref()));
    let engine = train::device::resolve(a.device, backend)
        .map_err(|e| usage(format!("--backend {backend} --device {}: {e}", a.device)))?;
    let opened = train::device::open(engine).map_err(|e| anyhow!("--device: {e}"))?;
    let (run_dir, cfg, resume) = match &a.resume {
        None => {
            let out = a
                .out
                .clone()
                .ok_or_else(|| usage("--out RUN_DIR or --resume RUN_DIR is required".into()))?;
            let store_path = a
                .store
                .clone()
                .ok_or_else(|| usage("--store STORE is required for a new run".into()))?;
            let store = Store::open(&store_path)
                .with_context(|| format!("opening {}", store_path.display()))?;
            let cfg = settings(&a)?
                .into_config(&store_path, &store, &a.device.to_string())
                .map_err(run_err)?;
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
            let changes = ResumeChanges {
                store: a.store.clone(),
                steps: a.steps,
                epochs: a.epochs,
                device: Some(a.device.to_string()),
                workers: a.workers,
                cache_bytes: a.cache.map(|c| c << 20),
                val_every: a.val_every,
                checkpoint_every: a.checkpoint_every,
                keep_checkpoints: a.keep_checkpoints,
            };
            let (cfg, ck) = run::resume_config(dir, &changes).map_err(run_err)?;
            let before = previous.as_ref().map_or_else(|| cfg.last_engine(), |p| p.last_engine());
            if before != engine.to_string() {
                bars.println(&format!("note: the run last trained on {before}, now on {engine}: the steps from here are not bit for bit those an uninterrupted run on {before} would take"));
            }
            (dir.clone(), cfg, Some(ck))
        }
    };
    let store = crate::open_store(&cfg.store, &a.disk_cache)?;
    let prepared = run::prepare(&run_dir, cfg, resume.as_ref(), &store, &engine.to_string())
        .map_err(|e| match (&e, &a.out) {
            (RunError::Run { .. }, Some(out)) if resume.is_none() => {
                usage(format!("--out {}: {e}; continue it with --resume {0}", out.display()))
            }
            _ => run_err(e),
        })?;
    for n in &prepared.notes {
        bars.println(&format!("note: {n}"));
    }
    let cfg = &prepared.config;
    let through = resume.as_ref().map_or(0, |c| c.state.position.step);
    let mut reporter = Reporter {
        bars,
        metrics: prepared.metrics,
        val: prepared.val,
        error: None,
        last_val: None,
        steps: cfg.steps,
    };
    install_ctrl_c(bars);
    let plan = Plan {
        loader: &prepared.loader,
        steps: cfg.steps,
        lr: cfg.lr,
        schedule: cfg.schedule,
        loss: cfg.loss,
        validation: prepared
            .val_loader
            .as_ref()
            .map(|l| Validation { loader: l, every: cfg.val_every }),
        checkpoints: Some(Checkpoints {
            run_dir: &run_dir,
            every: cfg.checkpoint_every,
            keep: cfg.keep_checkpoints,
            config: prepared.config_json.clone(),
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
    let outcome = opened.run(RunOn { cfg, plan: &plan, reporter: &mut reporter })?;
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
