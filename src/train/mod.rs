//! Training (cargo feature `train`): 3D U-Net and V-Net in Burn, fed by the loader.
//!
//! Everything is generic over Burn's backend. [`CpuBackend`] is Burn's pure-Rust `flex`;
//! CUDA comes with the feature `cuda`, and LibTorch (PyTorch's kernels, on the CPU or
//! CUDA) with the feature `tch`; [`device`] chooses among them at run time, and
//! [`bench`] times a step and a prediction call alone. [`fit`](fit::fit) runs Adam on the loader's batches with validation,
//! checkpoints and resume, and reports per step the loss, the Dice of the thresholded
//! prediction, patches/s and how long the step waited for the loader; [`train`] is its
//! plain form. [`run`] is a whole run as `ctstream train` makes one: settings with their
//! defaults and checks, a new or resumed configuration, the run folder made ready. Seed the weights with `B::seed(&device, seed)` before building the model.
//!
//! ```no_run
//! use ctstream::loader::Loader;
//! use ctstream::store::Store;
//! use ctstream::train::{self, CpuBackend, LossKind, TrainOptions, UNet3d};
//!
//! let store = Store::open("store".as_ref())?;
//! let loader = Loader::builder(&store).patch([32, 64, 64]).batch_size(4).build()?;
//! let device = Default::default();
//! <CpuBackend as burn::prelude::Backend>::seed(&device, 0);
//! let model = UNet3d::<CpuBackend>::new(0.25, &device);
//! let opts = TrainOptions { steps: 100, lr: 1e-3, loss: LossKind::Dice };
//! let (model, records) = train::train(model, &loader, &opts, &device, |r| println!("{} {:.3}", r.step, r.loss))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bench;
pub mod checkpoint;
pub mod config;
pub mod device;
pub mod execute;
pub mod fit;
pub mod log;
pub mod loss;
pub mod models;
pub mod run;
pub mod schedule;
pub mod trained;
pub mod validate;

use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

use crate::loader::{Batch, Loader, LoaderError};
pub use checkpoint::{Checkpoint, CheckpointError, Position};
pub use config::RunConfig;
pub use device::{BackendChoice, DeviceChoice, DeviceError};
pub use fit::{Observer, Outcome, Plan, fit};
pub use log::CsvLog;
pub use loss::LossKind;
pub use models::{UNet3d, VNet};
pub use schedule::LrSchedule;
pub use validate::{ScanValidation, ValRecord};

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
    /// The batch's epoch.
    pub epoch: u64,
    /// The batch's index within its epoch.
    pub batch: usize,
    /// Learning rate of the step.
    pub lr: f64,
    /// [`fit::batch_fingerprint`] of the batch.
    pub batch_fingerprint: u64,
}

impl StepRecord {
    /// Header of `metrics.csv`.
    pub const HEADER: &'static str =
        "step,loss,dice,patches_per_s,loader_wait_s,step_s,epoch,batch,lr,batch_fingerprint";

    /// The record as a `metrics.csv` row (the fingerprint in hex).
    pub fn csv_row(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{:016x}",
            self.step,
            self.loss,
            self.dice,
            self.patches_per_s,
            self.loader_wait_s,
            self.step_s,
            self.epoch,
            self.batch,
            self.lr,
            self.batch_fingerprint
        )
    }
}

/// What to train and how, for [`train`] (constant rate, no validation or checkpoints;
/// use [`fit`] with a [`Plan`] for those).
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
    /// A checkpoint could not be read or written.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// Validation on whole scans failed (a scan unreadable, the model's output wrong).
    #[error("validation on the held-out scans: {0}")]
    ScanValidation(#[from] crate::predict::PredictError),
}

/// A batch as tensors on `device`: (images, masks). A compact batch
/// ([`crate::loader::Compact`]) goes to the device as integers and is normalised there,
/// operation by operation as the loader's f32 path (the same values bit for bit).
pub fn batch_tensors<B: Backend>(b: &Batch, device: &B::Device) -> (Tensor<B, 5>, Tensor<B, 5>) {
    let Some(c) = &b.compact else {
        let x = Tensor::from_data(TensorData::new(b.images.clone(), b.shape), device);
        let y = Tensor::from_data(TensorData::new(b.masks.clone(), b.shape), device);
        return (x, y);
    };
    let int = |d: TensorData| Tensor::<B, 5, Int>::from_data(d, device).float();
    let hu = int(TensorData::new(c.images.clone(), b.shape));
    let per_patch = |v: &Vec<f32>| {
        Tensor::<B, 5>::from_data(TensorData::new(v.clone(), [v.len(), 1, 1, 1, 1]), device)
    };
    let inv = 1.0 / (c.window[1] - c.window[0]);
    let x = (hu * per_patch(&c.hu_scale) + per_patch(&c.hu_shift))
        .sub_scalar(c.window[0])
        .mul_scalar(inv)
        .clamp(0.0, 1.0);
    (x, int(TensorData::new(c.masks.clone(), b.shape)))
}

/// Trains `model` for `opts.steps` steps on the loader's batches (epoch after epoch),
/// calling `on_step` after each. Returns the trained model and the records.
///
/// # Errors
/// [`TrainError::Loader`] when a batch cannot be built.
pub fn train<B, M>(
    model: M,
    loader: &Loader,
    opts: &TrainOptions,
    device: &B::Device,
    on_step: impl FnMut(&StepRecord),
) -> Result<(M, Vec<StepRecord>), TrainError>
where
    B: AutodiffBackend,
    M: Segmenter<B> + AutodiffModule<B>,
    M::InnerModule: Segmenter<B::InnerBackend> + Sync,
{
    struct OnStep<F>(F);
    impl<F: FnMut(&StepRecord)> Observer for OnStep<F> {
        fn step(&mut self, r: &StepRecord) {
            (self.0)(r)
        }
    }
    let plan = Plan::new(loader, opts.steps, opts.lr, opts.loss);
    let out = fit::<B, M>(model, &plan, device, &mut OnStep(on_step))?;
    Ok((out.model, out.records))
}
