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
use super::{CsvLog, ModelKind, Position, StepRecord, UNet3d, VNet, ValRecord};

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
    run_dir: &Path,
    prepared: &mut Prepared,
    resume: Option<&Checkpoint>,
    stop: Option<&AtomicBool>,
    observer: &mut dyn Observer,
) -> Result<Executed, RunError> {
    let cfg = &prepared.config;
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
    Ok(Executed { records, position, stopped, last_validation: logged.last_validation })
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
