//! A trained network, loaded from a run folder, as the function that
//! [`crate::predict::predict_volume`] calls.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::TensorData;

use crate::predict::PredictError;
use crate::predict::operating::OperatingPoint;
use crate::train::checkpoint::{self, Checkpoint};
use crate::train::{ModelKind, RunConfig, Segmenter, UNet3d, VNet};

/// A trained U-Net or V-Net on an inference backend (no autodiff; batch norm uses its
/// running statistics).
#[derive(Debug)]
pub enum Network<B: Backend> {
    /// A 3D U-Net.
    Unet3d(Box<UNet3d<B>>),
    /// A V-Net.
    Vnet(Box<VNet<B>>),
}

/// A network loaded from a run, with the run's configuration and the checkpoint used.
#[derive(Debug)]
pub struct Trained<B: Backend> {
    /// The network.
    pub network: Network<B>,
    /// The run's `config.json`.
    pub config: RunConfig,
    /// The checkpoint its weights came from.
    pub checkpoint: Checkpoint,
    /// The operating point chosen for it on the held-out scans (the best checkpoint's).
    pub operating_point: Option<OperatingPoint>,
}

impl<B: Backend> Trained<B> {
    /// Loads the network of `run_dir` from checkpoint `step` (None: the best by validation
    /// CPM, `checkpoints/best/`, with its operating point; the newest without one).
    ///
    /// # Errors
    /// [`PredictError::Run`] naming the file that is missing or unreadable.
    pub fn load(
        run_dir: &Path,
        step: Option<usize>,
        device: &B::Device,
    ) -> Result<Self, PredictError> {
        let path = run_dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| PredictError::Run(format!("{}: {e}", path.display())))?;
        let config: RunConfig = serde_json::from_str(&text).map_err(|e| {
            PredictError::Run(format!("{}: not a ctstream run configuration: {e}", path.display()))
        })?;
        let run = |e: checkpoint::CheckpointError| PredictError::Run(e.to_string());
        let mut operating_point = None;
        let checkpoint = match step {
            None if checkpoint::best_folder(run_dir).exists() => {
                let (ck, op) = checkpoint::best(run_dir).map_err(run)?.ok_or_else(|| {
                    PredictError::Run(format!(
                        "{}: not a complete checkpoint",
                        checkpoint::best_folder(run_dir).display()
                    ))
                })?;
                operating_point = Some(op);
                ck
            }
            None => checkpoint::latest(run_dir).map_err(run)?.ok_or_else(|| {
                PredictError::Run(format!(
                    "{}: no checkpoint",
                    checkpoint::folder(run_dir).display()
                ))
            })?,
            Some(s) => {
                let dir = checkpoint::folder(run_dir).join(format!("step-{s:08}"));
                let available: Vec<String> = checkpoint::list(run_dir)
                    .map_err(run)?
                    .iter()
                    .map(|c| c.0.to_string())
                    .collect();
                if !dir.join("state.json").is_file() {
                    return Err(PredictError::Run(format!(
                        "{}: no checkpoint of step {s} (available: {})",
                        checkpoint::folder(run_dir).display(),
                        available.join(", ")
                    )));
                }
                Checkpoint::open(&dir).map_err(run)?
            }
        };
        let network = match config.model {
            ModelKind::Unet3d => Network::Unet3d(Box::new(
                checkpoint
                    .load_model(UNet3d::<B>::new(config.width, device), device)
                    .map_err(run)?,
            )),
            ModelKind::Vnet => Network::Vnet(Box::new(
                checkpoint.load_model(VNet::<B>::new(config.width, device), device).map_err(run)?,
            )),
        };
        Ok(Trained { network, config, checkpoint, operating_point })
    }
}

impl<B: Backend> Network<B> {
    /// Probabilities for a batch `input` of shape `shape` ([B, 1, D, H, W], C order).
    pub fn predict_batch(
        &self,
        input: &[f32],
        shape: [usize; 5],
        device: &B::Device,
    ) -> Result<Vec<f32>, String> {
        let x = Tensor::<B, 5>::from_data(TensorData::new(input.to_vec(), shape), device);
        let p = match self {
            Network::Unet3d(m) => m.predict(x),
            Network::Vnet(m) => m.predict(x),
        };
        p.into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| format!("reading the prediction back: {e:?}"))
    }
}
