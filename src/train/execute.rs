//! A prepared run ([`super::run::prepare`]) trained on one backend: the network of its
//! configuration built and seeded, the plan run (validation, checkpoints, the stop flag),
//! each step and validation appended to `metrics.csv` and `val.csv`, and the caller's
//! observer told. Generic over the backend: the caller names it, for example through
//! [`super::device::Opened::run`], as `ctstream train` does.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use burn::tensor::backend::AutodiffBackend;

use super::checkpoint::Checkpoint;
use super::fit::{self, Checkpoints, Observer, Plan, Validation};
use super::run::{Prepared, RunError};
use super::{
    CsvLog, ModelKind, Position, RunConfig, ScanValidation, StepRecord, UNet3d, VNet, ValRecord,
};
use crate::predict::SlidingWindow;
use crate::predict::operating::OperatingPoint;
use crate::predict::run::{MapFormat, PredictConfig};
use crate::store::Store;

/// How [`execute`] ended.
#[derive(Debug)]
pub struct Executed {
    /// The steps run (after the resumed checkpoint, if any).
    pub records: Vec<StepRecord>,
    /// Where the run stands now.
    pub position: Position,
    /// The stop flag ended the run before its last step (a checkpoint was written).
    pub stopped: bool,
    /// The last validation run, if any.
    pub last_validation: Option<ValRecord>,
    /// The best operating point on the held-out scans, if the run validated on them.
    pub best: Option<OperatingPoint>,
}

/// Trains the run prepared in `run_dir` on backend `B` and `device`, from `resume` when
/// given, stopping after the current step once `stop` is set; `observer` hears of every
/// step, validation and checkpoint after the logs have them.
///
/// # Errors
/// [`RunError::Train`] when a batch or a checkpoint fails; [`RunError::Run`] naming the
/// log that could not be written (the run goes on to its end, its checkpoints written).
pub fn execute<B: AutodiffBackend>(
    device: &B::Device,
    store: &Store,
    run_dir: &Path,
    prepared: &mut Prepared,
    resume: Option<&Checkpoint>,
    stop: Option<&AtomicBool>,
    observer: &mut dyn Observer,
) -> Result<Executed, RunError> {
    let cfg = &prepared.config;
    let scans = match (cfg.val_scans, cfg.val_series.is_empty()) {
        (true, false) => Some(scan_validation(cfg, store)?),
        _ => None,
    };
    let plan = Plan {
        loader: &prepared.loader,
        steps: cfg.steps,
        lr: cfg.lr,
        schedule: cfg.schedule,
        loss: cfg.loss,
        validation: prepared.val_loader.as_ref().map(|l| Validation {
            loader: l,
            every: cfg.val_every,
            scans,
        }),
        checkpoints: Some(Checkpoints {
            run_dir,
            every: cfg.checkpoint_every,
            keep: cfg.keep_checkpoints,
            config: prepared.config_json.clone(),
        }),
        resume,
        stop,
    };
    let mut logged = Logged {
        metrics: &mut prepared.metrics,
        val: &mut prepared.val,
        inner: observer,
        error: None,
        last_validation: None,
    };
    B::seed(device, cfg.seed);
    let fitted = match cfg.model {
        ModelKind::Unet3d => {
            fit::fit::<B, _>(UNet3d::<B>::new(cfg.width, device), &plan, device, &mut logged)
                .map(|o| (o.records, o.position, o.stopped))
        }
        ModelKind::Vnet => {
            fit::fit::<B, _>(VNet::<B>::new(cfg.width, device), &plan, device, &mut logged)
                .map(|o| (o.records, o.position, o.stopped))
        }
    };
    if let Some((path, e)) = logged.error {
        return Err(RunError::Run { path, message: format!("writing: {e}") });
    }
    let (records, position, stopped) = fitted?;
    let best = super::checkpoint::best(run_dir)?.map(|(_, op)| op);
    Ok(Executed { records, position, stopped, last_validation: logged.last_validation, best })
}

/// The whole-scan validation of a run: its held-out scans predicted with its patch shape
/// as tiles, at its `val_overlap`, in the lung region, against the store's annotations.
///
/// # Errors
/// [`RunError::Store`] when the store's nodule tables cannot be read.
fn scan_validation<'a>(cfg: &RunConfig, store: &'a Store) -> Result<ScanValidation<'a>, RunError> {
    let (annotations, excluded) = crate::evaluate::truth_from_store(store)
        .map_err(|e| RunError::Store { store: cfg.store.clone(), message: e.to_string() })?;
    let threads = if cfg.last_engine() == "flex" {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    };
    Ok(ScanValidation {
        store,
        series: cfg.val_series.clone(),
        predict: PredictConfig {
            window: SlidingWindow {
                patch_zyx: cfg.loader.patch_zyx,
                overlap: cfg.val_overlap,
                hu_window: cfg.loader.hu_window,
                ..SlidingWindow::default()
            },
            threads,
            map_format: MapFormat::None,
            ..PredictConfig::default()
        },
        annotations,
        excluded,
    })
}

impl Executed {
    /// What the run did, in a few lines: steps, time, throughput, the loader's share of
    /// the step time, the last steps' loss and Dice, the last validation, the files.
    pub fn summary(&self, batch_size: usize, run_dir: &Path) -> String {
        let records = &self.records;
        let n = records.len().max(1) as f64;
        let wait: f64 = records.iter().map(|r| r.loader_wait_s).sum();
        let total: f64 = records.iter().map(|r| r.step_s).sum();
        let tail = &records[records.len().saturating_sub(10)..];
        let tn = tail.len().max(1) as f64;
        let mut s = format!(
            "trained {} steps (to step {}) in {:.1} s: {:.1} patches/s, mean step {:.3} s, loader wait {:.1} % of step time; last {} steps: loss {:.3}, Dice {:.3}\n",
            records.len(),
            self.position.step,
            total,
            (records.len() * batch_size) as f64 / total.max(1e-9),
            total / n,
            100.0 * wait / total.max(1e-9),
            tail.len(),
            tail.iter().map(|r| r.loss).sum::<f64>() / tn,
            tail.iter().map(|r| r.dice).sum::<f64>() / tn,
        );
        if let Some(v) = &self.last_validation {
            s += &format!(
                "validation at step {}: Dice {:.3}, {:.1} false-positive voxels per negative patch\n",
                v.step, v.dice, v.fp_voxels_per_negative
            );
        }
        if let Some(b) = &self.best {
            s += &format!(
                "best on the held-out scans: step {}, CPM {:.3} ({} nodules in {} scans); operating point {}: sensitivity {:.3} at {:.2} false positives per scan -> checkpoints/best/\n",
                b.step, b.cpm, b.nodules, b.scans, b.post, b.sensitivity, b.fps_per_scan
            );
        }
        s +=
            &format!("  {}/{{config.json, metrics.csv, val.csv, checkpoints/}}", run_dir.display());
        s
    }
}

/// Appends each step and validation to the run's logs, then tells the caller's observer;
/// the first write that fails is kept (and the rest of the run not logged).
struct Logged<'a> {
    metrics: &'a mut CsvLog,
    val: &'a mut CsvLog,
    inner: &'a mut dyn Observer,
    error: Option<(PathBuf, std::io::Error)>,
    last_validation: Option<ValRecord>,
}

impl Observer for Logged<'_> {
    fn step(&mut self, r: &StepRecord) {
        if self.error.is_none()
            && let Err(e) = self.metrics.row(&r.csv_row())
        {
            self.error = Some((self.metrics.path().to_path_buf(), e));
        }
        self.inner.step(r);
    }

    fn validated(&mut self, r: &ValRecord) {
        if self.error.is_none()
            && let Err(e) = self.val.row(&r.csv_row())
        {
            self.error = Some((self.val.path().to_path_buf(), e));
        }
        self.last_validation = Some(*r);
        self.inner.validated(r);
    }

    fn checkpointed(&mut self, dir: &Path, p: &Position) {
        self.inner.checkpointed(dir, p);
    }
}
