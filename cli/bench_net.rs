//! `ctstream bench-net`: time the network alone (training steps and prediction calls on
//! synthetic input) on a backend and device (cargo feature `train`).

use anyhow::anyhow;
use burn::tensor::backend::AutodiffBackend;
use ctstream::train::bench::{NetBench, NetTimes, bench_network};
use ctstream::train::device::{self, BackendChoice, Engine, OnBackend};
use ctstream::train::{DeviceChoice, LossKind, ModelKind};

use crate::{Exit, ExitError, parse3};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "The step timed is the one `ctstream train` runs (forward, loss, backward, Adam, loss and \
probabilities read back), on images uniform in [0, 1) and a ball mask; the loader is left out. A prediction call is \
the one `ctstream predict` makes per batch of tiles. tools/bench/train_vs_pytorch.py runs this beside the same \
networks in PyTorch."
)]
pub struct Args {
    /// unet3d or vnet.
    #[arg(long, value_parser = ["unet3d", "vnet"], default_value = "unet3d")]
    model: String,
    /// Channel width multiplier.
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    /// Patch shape Z,Y,X, each divisible by 16.
    #[arg(long, value_parser = parse3::<usize>, default_value = "32,64,64")]
    patch: [usize; 3],
    /// Patches per training step.
    #[arg(long, default_value_t = 2)]
    batch_size: usize,
    /// Timed training steps.
    #[arg(long, default_value_t = 10)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// dice, dice-bce or tversky.
    #[arg(long, value_parser = ["dice", "dice-bce", "tversky"], default_value = "dice-bce")]
    loss: String,
    /// Tiles per prediction call (0: no prediction timing).
    #[arg(long, default_value_t = 8)]
    predict_batch: usize,
    /// Timed prediction calls.
    #[arg(long, default_value_t = 3)]
    predict_calls: usize,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// auto, burn (flex on the CPU, CubeCL on CUDA) or libtorch.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// Seed of the weights and the input.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

struct Bench(NetBench);

impl OnBackend for Bench {
    type Output = NetTimes;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> NetTimes {
        bench_network::<B>(&self.0, &device)
    }
}

pub fn run(a: Args) -> Result<(), ExitError> {
    let usage = |m: String| ExitError(Exit::Usage, anyhow!(m));
    ctstream::train::run::check_patch(a.patch).map_err(|e| usage(format!("--{e}")))?;
    if !(a.width.is_finite() && a.width > 0.0 && a.width <= 4.0) {
        return Err(usage(format!("--width {}: must lie in (0, 4]", a.width)));
    }
    for (flag, batch) in [("batch-size", a.batch_size), ("predict-batch", a.predict_batch)] {
        ctstream::train::run::check_input(a.patch, batch, flag)
            .map_err(|e| usage(format!("--{e}")))?;
    }
    let most = ctstream::train::run::MAX_STEPS;
    for (flag, n, least) in
        [("steps", a.steps, 1), ("warmup", a.warmup, 0), ("predict-calls", a.predict_calls, 0)]
    {
        if n < least || n > most {
            return Err(usage(format!("--{flag} {n}: give {least} to {most}")));
        }
    }
    let engine: Engine = device::resolve(a.device, a.backend)
        .map_err(|e| usage(format!("--backend {} --device {}: {e}", a.backend, a.device)))?;
    let opened = device::open(engine).map_err(|e| anyhow!("--device: {e}"))?;
    let cfg = NetBench {
        model: if a.model == "vnet" { ModelKind::Vnet } else { ModelKind::Unet3d },
        width: a.width,
        patch_zyx: a.patch,
        batch_size: a.batch_size,
        steps: a.steps,
        warmup: a.warmup,
        loss: match a.loss.as_str() {
            "dice" => LossKind::Dice,
            "tversky" => LossKind::Tversky,
            _ => LossKind::DiceBce,
        },
        predict_batch: a.predict_batch,
        predict_calls: a.predict_calls,
        seed: a.seed,
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = opened.run(Bench(cfg));
    let step = t.median_step_s();
    let tile = t.median_tile_s(cfg.predict_batch);
    if a.json {
        let v = serde_json::json!({
            "engine": engine.to_string(),
            "cores": threads,
            "config": cfg,
            "params": t.params,
            "median_step_s": step,
            "median_tile_s": if t.predict_call_s.is_empty() { None } else { Some(tile) },
            "times": t,
        });
        println!("{v}");
    } else {
        println!(
            "{} width {} on {engine} ({threads} cores): {} parameters",
            a.model, a.width, t.params
        );
        println!(
            "  training step, batch {} of {:?}: median {step:.4} s over {} steps ({:.2} patches/s)",
            cfg.batch_size,
            cfg.patch_zyx,
            t.step_s.len(),
            cfg.batch_size as f64 / step
        );
        if !t.predict_call_s.is_empty() {
            println!(
                "  prediction, {} tiles per call: median {tile:.4} s per tile ({:.2} tiles/s)",
                cfg.predict_batch,
                1.0 / tile
            );
        }
    }
    Ok(())
}
