//! Timing the network alone: training steps and prediction calls on synthetic input, with
//! the loader left out, as `ctstream bench-net` reports them and
//! `tools/bench/train_vs_pytorch.py` compares them with PyTorch's.
//!
//! A training step is [`fit::step`](super::fit::step), the step `ctstream train` runs;
//! a prediction call is [`Network::predict_batch`](crate::train::trained::Network), the
//! call `ctstream predict` makes per batch of tiles. The input is the same in both
//! frameworks: images uniform in [0, 1) from the seed, masks a centred ball of radius a
//! quarter of the patch's smallest side.
//!
//! ```no_run
//! use ctstream::train::bench::{NetBench, bench_network};
//! use ctstream::train::{CpuBackend, ModelKind};
//!
//! let b = NetBench { model: ModelKind::Unet3d, width: 0.25, patch_zyx: [16, 32, 32], batch_size: 4, ..NetBench::default() };
//! let t = bench_network::<CpuBackend>(&b, &Default::default());
//! println!("{} parameters, {:.3} s per step", t.params, t.median_step_s());
//! ```

use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::AdamConfig;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn::tensor::backend::AutodiffBackend;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::{LossKind, ModelKind, Segmenter, UNet3d, VNet, fit};

/// What to time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NetBench {
    /// The network.
    pub model: ModelKind,
    /// Its width multiplier.
    pub width: f64,
    /// Patch shape (z, y, x).
    pub patch_zyx: [usize; 3],
    /// Patches per training step.
    pub batch_size: usize,
    /// Timed training steps (after the warm-up).
    pub steps: usize,
    /// Untimed steps first (allocator, kernel selection).
    pub warmup: usize,
    /// Loss.
    pub loss: LossKind,
    /// Tiles per prediction call (0: no prediction timing).
    pub predict_batch: usize,
    /// Timed prediction calls (after one untimed call).
    pub predict_calls: usize,
    /// Seed of the weights and the input.
    pub seed: u64,
}

impl Default for NetBench {
    fn default() -> Self {
        NetBench {
            model: ModelKind::Unet3d,
            width: 1.0,
            patch_zyx: [32, 64, 64],
            batch_size: 2,
            steps: 10,
            warmup: 2,
            loss: LossKind::DiceBce,
            predict_batch: 8,
            predict_calls: 3,
            seed: 0,
        }
    }
}

/// What was measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NetTimes {
    /// Trainable values of the network ([`trainable_params`](super::models::trainable_params)).
    pub params: usize,
    /// Seconds of each timed training step.
    pub step_s: Vec<f64>,
    /// The loss of each timed step (a step that computes nothing would show here).
    pub loss: Vec<f64>,
    /// Seconds of each timed prediction call of `predict_batch` tiles.
    pub predict_call_s: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 { s[m] } else { 0.5 * (s[m - 1] + s[m]) }
}

impl NetTimes {
    /// Median seconds per training step.
    pub fn median_step_s(&self) -> f64 {
        median(&self.step_s)
    }
    /// Median seconds per predicted tile.
    pub fn median_tile_s(&self, predict_batch: usize) -> f64 {
        median(&self.predict_call_s) / predict_batch.max(1) as f64
    }
}

/// The benchmark's input: `n` patches, images uniform in [0, 1) and masks a centred ball
/// of radius min(patch) / 4 (also what `tools/bench/train_vs_pytorch.py` feeds PyTorch).
pub fn synthetic_batch(n: usize, patch: [usize; 3], seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let per = patch[0] * patch[1] * patch[2];
    let images: Vec<f32> = (0..n * per).map(|_| rng.random::<f32>()).collect();
    let r = patch.iter().copied().min().unwrap_or(0) as f64 / 4.0;
    let c = patch.map(|s| (s as f64 - 1.0) / 2.0);
    let mut mask = Vec::with_capacity(per);
    for z in 0..patch[0] {
        for y in 0..patch[1] {
            for x in 0..patch[2] {
                let d2 = (z as f64 - c[0]).powi(2)
                    + (y as f64 - c[1]).powi(2)
                    + (x as f64 - c[2]).powi(2);
                mask.push(if d2 <= r * r { 1.0 } else { 0.0 });
            }
        }
    }
    let masks = mask.repeat(n);
    (images, masks)
}

/// Times `b` on backend `B` (an autodiff backend; prediction runs on its inner backend, as
/// `ctstream predict` does). Seeds the backend with `b.seed` first.
pub fn bench_network<B: AutodiffBackend>(b: &NetBench, device: &B::Device) -> NetTimes {
    B::seed(device, b.seed);
    match b.model {
        ModelKind::Unet3d => run::<B, _>(UNet3d::<B>::new(b.width, device), b, device),
        ModelKind::Vnet => run::<B, _>(VNet::<B>::new(b.width, device), b, device),
    }
}

fn run<B, M>(model: M, b: &NetBench, device: &B::Device) -> NetTimes
where
    B: AutodiffBackend,
    M: Segmenter<B> + AutodiffModule<B>,
    M::InnerModule: Segmenter<B::InnerBackend>,
{
    let params = super::models::trainable_params(&model);
    let shape = [b.batch_size, 1, b.patch_zyx[0], b.patch_zyx[1], b.patch_zyx[2]];
    let (images, masks) = synthetic_batch(b.batch_size, b.patch_zyx, b.seed);
    let mut optim = AdamConfig::new().init::<B, M>();
    let mut model = model;
    let (mut step_s, mut loss) = (Vec::new(), Vec::new());
    for i in 0..b.warmup + b.steps {
        let t0 = Instant::now();
        // Made from host data each step, as the loader's batches are.
        let x = Tensor::<B, 5>::from_data(TensorData::new(images.clone(), shape), device);
        let y = Tensor::<B, 5>::from_data(TensorData::new(masks.clone(), shape), device);
        let (m, l, _probs) = fit::step(model, &mut optim, x, y, 1e-3, b.loss);
        model = m;
        if i >= b.warmup {
            step_s.push(t0.elapsed().as_secs_f64());
            loss.push(l);
        }
    }
    let mut predict_call_s = Vec::new();
    if b.predict_batch > 0 {
        let net = model.valid();
        let pshape = [b.predict_batch, 1, b.patch_zyx[0], b.patch_zyx[1], b.patch_zyx[2]];
        let (tiles, _) = synthetic_batch(b.predict_batch, b.patch_zyx, b.seed ^ 1);
        for i in 0..=b.predict_calls {
            let t0 = Instant::now();
            let x = Tensor::<B::InnerBackend, 5>::from_data(
                TensorData::new(tiles.clone(), pshape),
                device,
            );
            let p: Vec<f32> =
                net.predict(x).into_data().convert::<f32>().to_vec().unwrap_or_default();
            std::hint::black_box(p);
            if i > 0 {
                predict_call_s.push(t0.elapsed().as_secs_f64());
            }
        }
    }
    NetTimes { params, step_s, loss, predict_call_s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_mask_is_the_ball_counted_by_hand() {
        // Patch 4x8x8: centre (1.5, 3.5, 3.5), radius 1. Voxels within distance 1 of the
        // centre: none lie exactly on an axis line through it (half-integer centre), so
        // only offsets (+-0.5, +-0.5, +-0.5) qualify (distance sqrt(0.75)): 8 voxels.
        let (img, mask) = synthetic_batch(2, [4, 8, 8], 3);
        assert_eq!(img.len(), 2 * 256);
        assert_eq!(mask.iter().filter(|&&v| v == 1.0).count(), 2 * 8);
        assert!(img.iter().all(|v| (0.0..1.0).contains(v)));
        assert_eq!(synthetic_batch(2, [4, 8, 8], 3).0, img, "the same seed gives the same images");
    }

    #[test]
    fn a_tiny_benchmark_runs_and_learns_something() {
        let b = NetBench {
            width: 0.0625,
            patch_zyx: [16, 16, 16],
            batch_size: 1,
            steps: 3,
            warmup: 1,
            predict_batch: 2,
            predict_calls: 1,
            ..NetBench::default()
        };
        let t = bench_network::<crate::train::CpuBackend>(&b, &Default::default());
        assert_eq!(t.step_s.len(), 3);
        assert_eq!(t.predict_call_s.len(), 1);
        assert!(t.loss.iter().all(|l| l.is_finite() && *l > 0.0), "{:?}", t.loss);
        assert!(t.params > 0 && t.median_step_s() > 0.0);
    }
}
