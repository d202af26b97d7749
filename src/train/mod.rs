//! Training (cargo feature `train`): 3D U-Net and V-Net in Burn, fed by the loader.
//!
//! The CPU backend is Burn's pure-Rust `flex`; CUDA comes with the feature `cuda` (later).
//! [`train`] runs a number of steps of Adam on the loader's batches and reports, per step,
//! loss, Dice of the thresholded prediction, patches/s and how long the step waited for
//! the loader. Seed the weights with `B::seed(&device, seed)` before building the model.

pub mod loss;
pub mod models;

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::loader::{Batch, Loader, LoaderError};
pub use loss::LossKind;
pub use models::{UNet3d, VNet};

/// The CPU backend with autodiff.
pub type CpuBackend = burn::backend::Autodiff<burn::backend::Flex>;

/// A network that maps `[B, 1, D, H, W]` images to `[B, 1, D, H, W]` probabilities.
pub trait Segmenter<B: Backend>: Module<B> {
    /// The forward pass.
    fn predict(&self, x: Tensor<B, 5>) -> Tensor<B, 5>;
}

impl<B: Backend> Segmenter<B> for UNet3d<B> {
    fn predict(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        self.forward(x)
    }
}

impl<B: Backend> Segmenter<B> for VNet<B> {
    fn predict(&self, x: Tensor<B, 5>) -> Tensor<B, 5> {
        self.forward(x)
    }
}

/// Which network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// [`UNet3d`].
    Unet3d,
    /// [`VNet`].
    Vnet,
}

/// One training step's numbers (a row of `metrics.csv`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepRecord {
    /// 1-based step.
    pub step: usize,
    /// Loss.
    pub loss: f64,
    /// Dice of the prediction thresholded at 0.5.
    pub dice: f64,
    /// Patches trained per second in this step (including the wait).
    pub patches_per_s: f64,
    /// Seconds the step waited for its batch.
    pub loader_wait_s: f64,
    /// Seconds of the whole step.
    pub step_s: f64,
}

/// What to train and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainOptions {
    /// Steps to run.
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Loss.
    pub loss: LossKind,
}

/// Errors from training.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The loader failed (a corrupt chunk, ...).
    #[error(transparent)]
    Loader(#[from] LoaderError),
}

/// A batch as tensors on `device`: (images, masks).
pub fn batch_tensors<B: Backend>(b: &Batch, device: &B::Device) -> (Tensor<B, 5>, Tensor<B, 5>) {
    let x = Tensor::from_data(TensorData::new(b.images.clone(), b.shape), device);
    let y = Tensor::from_data(TensorData::new(b.masks.clone(), b.shape), device);
    (x, y)
}

/// One optimisation step on `batch`: returns the updated model, the loss before the step
/// and the predicted probabilities.
fn step<B, M, O>(model: M, optim: &mut O, batch: &Batch, opts: &TrainOptions, device: &B::Device) -> (M, f64, Vec<f32>)
where
    B: AutodiffBackend,
    M: Segmenter<B> + AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let (x, y) = batch_tensors::<B>(batch, device);
    let p = model.predict(x);
    let l = loss::loss(opts.loss, p.clone(), y);
    let loss_value: f64 = l.clone().into_scalar().elem();
    let probs: Vec<f32> = p.into_data().convert::<f32>().to_vec().unwrap_or_default();
    let grads = GradientsParams::from_grads(l.backward(), &model);
    (optim.step(opts.lr, model, grads), loss_value, probs)
}

/// Trains `model` for `opts.steps` steps on the loader's batches (epoch after epoch),
/// calling `on_step` after each. Returns the trained model and the records.
///
/// # Errors
/// [`TrainError::Loader`] when a batch cannot be built.
pub fn train<B, M>(mut model: M, loader: &Loader, opts: &TrainOptions, device: &B::Device, mut on_step: impl FnMut(&StepRecord)) -> Result<(M, Vec<StepRecord>), TrainError>
where
    B: AutodiffBackend,
    M: Segmenter<B> + AutodiffModule<B>,
{
    let mut optim = AdamConfig::new().init::<B, M>();
    let mut records = Vec::with_capacity(opts.steps);
    let mut epoch = 0u64;
    let mut batches = loader.epoch(epoch);
    let mut n = 0;
    while n < opts.steps {
        let t0 = Instant::now();
        let batch = match batches.next() {
            Some(b) => b?,
            None => {
                epoch += 1;
                batches = loader.epoch(epoch);
                continue;
            }
        };
        let wait = t0.elapsed().as_secs_f64();
        let (m, loss_value, probs) = step(model, &mut optim, &batch, opts, device);
        model = m;
        n += 1;
        let step_s = t0.elapsed().as_secs_f64();
        let r = StepRecord {
            step: n,
            loss: loss_value,
            dice: loss::dice_metric(&probs, &batch.masks, 0.5),
            patches_per_s: batch.patches.len() as f64 / step_s,
            loader_wait_s: wait,
            step_s,
        };
        on_step(&r);
        records.push(r);
    }
    Ok((model, records))
}

/// The device to train on, as `--device` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The CPU (flex backend).
    Cpu,
    /// CUDA device N.
    Cuda(usize),
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceChoice::Cpu => write!(f, "cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                _ => Err(format!("`{s}` is not a device: use cpu, cuda or cuda:N")),
            },
        }
    }
}

/// `metrics.csv` of a run: one row per step, flushed as it is written.
#[derive(Debug)]
pub struct MetricsCsv {
    path: std::path::PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl MetricsCsv {
    /// Header of the file.
    pub const HEADER: &'static str = "step,loss,dice,patches_per_s,loader_wait_s,step_s";

    /// Creates (or truncates) `path` and writes the header.
    ///
    /// # Errors
    /// The I/O error, with the path.
    pub fn create(path: &std::path::Path) -> Result<Self, std::io::Error> {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(file, "{}", Self::HEADER)?;
        file.flush()?;
        Ok(MetricsCsv { path: path.to_path_buf(), file })
    }

    /// Appends one row.
    ///
    /// # Errors
    /// The I/O error.
    pub fn write(&mut self, r: &StepRecord) -> Result<(), std::io::Error> {
        use std::io::Write;
        writeln!(self.file, "{},{},{},{},{},{}", r.step, r.loss, r.dice, r.patches_per_s, r.loader_wait_s, r.step_s)?;
        self.file.flush()
    }

    /// Where it is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}
