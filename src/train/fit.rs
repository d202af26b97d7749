//! The training loop: Adam on the loader's batches, with validation, checkpoints,
//! resume and a stop flag (Ctrl-C).
//!
//! The loop's position is (step, epoch, next batch). The loader builds any batch from
//! (seed, epoch, index) alone, so a run resumed from a checkpoint asks the loader for the
//! batches after the checkpoint's position and trains on exactly the batches the
//! uninterrupted run would have; the learning rate is a function of the step
//! ([`LrSchedule`]), and Adam's moments come back from the checkpoint.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use super::checkpoint::{self, Checkpoint, Position, State};
use super::validate::{ScanValidation, ValRecord, validate, validate_scans};
use super::{LossKind, LrSchedule, Segmenter, StepRecord, TrainError, batch_tensors, loss};
use crate::loader::{Batch, Loader, LoaderError};

/// Validation during a run.
#[derive(Debug, Clone)]
pub struct Validation<'a> {
    /// The held-out patches (epoch 0 of this loader).
    pub loader: &'a Loader,
    /// Validate after every `every` steps (and after the last).
    pub every: usize,
    /// Also on the whole held-out scans (CPM, operating point); with checkpoints, the
    /// model of the best CPM so far is kept as `checkpoints/best/`.
    pub scans: Option<ScanValidation<'a>>,
}

/// Checkpoints during a run.
#[derive(Debug, Clone)]
pub struct Checkpoints<'a> {
    /// The run folder (checkpoints go to `run_dir/checkpoints/`).
    pub run_dir: &'a Path,
    /// Write one after every `every` steps (and after the last, and when stopped).
    pub every: usize,
    /// Keep the newest `keep` (0: all).
    pub keep: usize,
    /// The run's configuration, stored in each checkpoint's `state.json`.
    pub config: serde_json::Value,
}

/// Everything a run needs besides the model and the device.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// The training batches.
    pub loader: &'a Loader,
    /// Steps in the whole run (a resumed run continues up to this).
    pub steps: usize,
    /// Base learning rate.
    pub lr: f64,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Loss.
    pub loss: LossKind,
    /// Validation, if any.
    pub validation: Option<Validation<'a>>,
    /// Checkpoints, if any.
    pub checkpoints: Option<Checkpoints<'a>>,
    /// Continue from this checkpoint.
    pub resume: Option<&'a Checkpoint>,
    /// Checked after each step: when set, the run writes a checkpoint and stops.
    pub stop: Option<&'a AtomicBool>,
}

impl<'a> Plan<'a> {
    /// A plain run: `steps` steps at a constant `lr`, no validation, no checkpoints.
    pub fn new(loader: &'a Loader, steps: usize, lr: f64, loss: LossKind) -> Self {
        Plan {
            loader,
            steps,
            lr,
            schedule: LrSchedule::Constant,
            loss,
            validation: None,
            checkpoints: None,
            resume: None,
            stop: None,
        }
    }
}

/// What a run reports as it goes; every method does nothing by default.
pub trait Observer {
    /// After each step.
    fn step(&mut self, _record: &StepRecord) {}
    /// After each validation.
    fn validated(&mut self, _record: &ValRecord) {}
    /// After each checkpoint.
    fn checkpointed(&mut self, _dir: &Path, _position: &Position) {}
}

impl Observer for () {}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome<M> {
    /// The trained model.
    pub model: M,
    /// The steps run by this call (after the resumed checkpoint, if any).
    pub records: Vec<StepRecord>,
    /// The validations run by this call.
    pub validations: Vec<ValRecord>,
    /// Where the run stands now.
    pub position: Position,
    /// The stop flag ended the run before `steps`.
    pub stopped: bool,
    /// The last checkpoint written, if any.
    pub last_checkpoint: Option<PathBuf>,
}

/// A fingerprint of a batch's patches (scan, position, augmentation): equal fingerprints
/// mean the same patches, so resumed and uninterrupted runs can be compared from their
/// `metrics.csv` alone.
pub fn batch_fingerprint(batch: &Batch) -> u64 {
    crate::seed::fnv1a(format!("{:?}", batch.patches).as_bytes())
}

/// Trains `model` according to `plan`, reporting to `observer`.
///
/// # Errors
/// [`TrainError::Loader`] when a batch cannot be built, [`TrainError::Checkpoint`] when a
/// checkpoint cannot be read or written.
pub fn fit<B, M>(
    model: M,
    plan: &Plan<'_>,
    device: &B::Device,
    observer: &mut dyn Observer,
) -> Result<Outcome<M>, TrainError>
where
    B: AutodiffBackend,
    M: Segmenter<B> + AutodiffModule<B>,
    M::InnerModule: Segmenter<B::InnerBackend> + Sync,
{
    let mut model = model;
    let mut best_cpm = match &plan.checkpoints {
        Some(c) => checkpoint::best(c.run_dir)?.map_or(f64::NEG_INFINITY, |(_, op)| op.cpm),
        None => f64::NEG_INFINITY,
    };
    let mut optim = AdamConfig::new().init::<B, M>();
    let mut pos = Position { step: 0, epoch: 0, next_batch: 0 };
    if let Some(ck) = plan.resume {
        model = ck.load_model(model, device)?;
        optim = ck.load_optimizer::<B, M, _>(optim, device)?;
        pos = ck.state.position;
    }
    let per_epoch = plan.loader.batches_per_epoch();
    let mut out = Outcome {
        model,
        records: Vec::new(),
        validations: Vec::new(),
        position: pos,
        stopped: false,
        last_checkpoint: None,
    };
    let first = pos.next_batch.min(per_epoch);
    let mut batches = plan.loader.batches(pos.epoch, first, per_epoch - first)?;
    let mut fresh = false;
    while pos.step < plan.steps {
        let t0 = Instant::now();
        let batch = match batches.next() {
            Some(b) => b?,
            None if fresh => {
                return Err(LoaderError::Config(format!(
                    "epoch {} delivered no batches",
                    pos.epoch
                ))
                .into());
            }
            None => {
                // `pos` already points at the next epoch's first batch.
                let first = pos.next_batch.min(per_epoch);
                batches = plan.loader.batches(pos.epoch, first, per_epoch - first)?;
                fresh = true;
                continue;
            }
        };
        fresh = false;
        let wait = t0.elapsed().as_secs_f64();
        let lr = plan.schedule.lr(plan.lr, pos.step, plan.steps);
        let (x, y) = batch_tensors::<B>(&batch, device);
        let (model, loss_value, probs) = step(out.model, &mut optim, x, y, lr, plan.loss);
        out.model = model;
        pos.step += 1;
        pos.epoch = batch.epoch;
        pos.next_batch = batch.index + 1;
        if pos.next_batch >= per_epoch {
            pos.epoch += 1;
            pos.next_batch = 0;
        }
        let step_s = t0.elapsed().as_secs_f64();
        let r = StepRecord {
            step: pos.step,
            loss: loss_value,
            dice: loss::dice_metric(&probs, &batch.masks_f32(), 0.5),
            patches_per_s: batch.patches.len() as f64 / step_s,
            loader_wait_s: wait,
            step_s,
            epoch: batch.epoch,
            batch: batch.index,
            lr,
            batch_fingerprint: batch_fingerprint(&batch),
        };
        // Its values are in tensors now: the workers build later batches in its buffers.
        plan.loader.recycle(batch);
        observer.step(&r);
        out.records.push(r);
        let stop = plan.stop.is_some_and(|s| s.load(Ordering::SeqCst));
        let last = pos.step == plan.steps;
        if let Some(v) = &plan.validation
            && !stop
            && (last || (v.every > 0 && pos.step.is_multiple_of(v.every)))
        {
            let inner = out.model.valid();
            let mut rec = validate(&inner, v.loader, plan.loss, pos.step, device)?;
            if let Some(sv) = &v.scans {
                let r = validate_scans::<B::InnerBackend, _>(&inner, sv, pos.step, device)?;
                rec.scans = Some(r.point);
                rec.scan_seconds = r.seconds;
                if let Some(c) = &plan.checkpoints
                    && r.point.cpm > best_cpm
                {
                    best_cpm = r.point.cpm;
                    let state = state(c, pos);
                    checkpoint::save_best::<B::InnerBackend, _>(
                        c.run_dir, &inner, &state, &r.point,
                    )?;
                }
            }
            observer.validated(&rec);
            out.validations.push(rec);
        }
        if let Some(c) = &plan.checkpoints
            && (stop || last || (c.every > 0 && pos.step.is_multiple_of(c.every)))
        {
            out.last_checkpoint = Some(save::<B, M, _>(c, &out.model, &optim, pos)?);
            observer.checkpointed(out.last_checkpoint.as_deref().unwrap_or(c.run_dir), &pos);
        }
        if stop {
            out.stopped = true;
            break;
        }
    }
    out.position = pos;
    Ok(out)
}

/// One optimisation step on images `x` and masks `y`: forward, loss, backward, Adam.
/// Returns the updated model, the loss and the probabilities (for the Dice metric), read
/// back to the host. `tools/bench` times exactly this.
pub fn step<B, M, O>(
    model: M,
    optim: &mut O,
    x: Tensor<B, 5>,
    y: Tensor<B, 5>,
    lr: f64,
    kind: LossKind,
) -> (M, f64, Vec<f32>)
where
    B: AutodiffBackend,
    M: Segmenter<B> + AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let p = model.predict(x);
    let l = loss::loss(kind, p.clone(), y);
    let loss_value: f64 = l.clone().into_scalar().elem();
    let probs: Vec<f32> = p.into_data().convert::<f32>().to_vec().unwrap_or_default();
    let grads = GradientsParams::from_grads(l.backward(), &model);
    (optim.step(lr, model, grads), loss_value, probs)
}

fn save<B, M, O>(
    c: &Checkpoints<'_>,
    model: &M,
    optim: &O,
    position: Position,
) -> Result<PathBuf, TrainError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    Ok(checkpoint::save::<B, M, O>(c.run_dir, model, optim, &state(c, position), c.keep)?)
}

fn state(c: &Checkpoints<'_>, position: Position) -> State {
    State {
        position,
        config: c.config.clone(),
        ctstream_version: env!("CARGO_PKG_VERSION").to_string(),
    }
}
