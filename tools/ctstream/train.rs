//! `ctstream train`: train a U-Net or V-Net on a store (cargo feature `train`).

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use ctstream::loader::Loader;
use ctstream::store::Store;
use ctstream::train::{self, CpuBackend, DeviceChoice, LossKind, MetricsCsv, ModelKind, TrainOptions, UNet3d, VNet};

use crate::progress::Bars;
use crate::{Exit, ExitError, parse3};
use ctstream::progress::Progress;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store to train on.
    #[arg(long)]
    store: PathBuf,
    /// The network.
    #[arg(long, value_parser = ["unet3d", "vnet"], default_value = "unet3d")]
    model: String,
    /// Channel width multiplier (1.0 = the published widths).
    #[arg(long, default_value_t = 1.0)]
    width: f64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// Patches per step.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Steps to train.
    #[arg(long, default_value_t = 100)]
    steps: usize,
    /// Run folder: metrics.csv and config.json go here.
    #[arg(long)]
    out: PathBuf,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// dice, dice-bce or tversky.
    #[arg(long, value_parser = ["dice", "dice-bce", "tversky"], default_value = "dice")]
    loss: String,
    /// Patch shape Z,Y,X (each divisible by 16).
    #[arg(long, value_parser = parse3::<usize>, default_value = "32,64,64")]
    patch: [usize; 3],
    /// Share of nodule-centred patches.
    #[arg(long, default_value_t = 0.8)]
    positive_share: f64,
    /// Loader worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Seed of weights and patches.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(a: Args, bars: &Bars) -> Result<(), ExitError> {
    if let DeviceChoice::Cuda(_) = a.device {
        return Err(ExitError(Exit::Usage, anyhow!("--device {}: this ctstream was built without CUDA support (the `cuda` feature is not available yet); use --device cpu", a.device)));
    }
    if a.patch.iter().any(|p| p % 16 != 0) {
        return Err(ExitError(Exit::Usage, anyhow!("--patch {:?}: every side must be divisible by 16 (four 2x down-samplings)", a.patch)));
    }
    let model_kind = if a.model == "vnet" { ModelKind::Vnet } else { ModelKind::Unet3d };
    let loss = match a.loss.as_str() {
        "dice-bce" => LossKind::DiceBce,
        "tversky" => LossKind::Tversky,
        _ => LossKind::Dice,
    };
    let store = Store::open(&a.store).with_context(|| format!("opening {}", a.store.display()))?;
    let loader = Loader::builder(&store).patch(a.patch).batch_size(a.batch_size).positive_share(a.positive_share).workers(a.workers).seed(a.seed).build()?;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let config = serde_json::json!({
        "store": a.store, "store_manifest": store.manifest(), "model": model_kind, "width": a.width,
        "device": a.device.to_string(), "batch_size": a.batch_size, "steps": a.steps, "lr": a.lr,
        "loss": loss, "patch_zyx": a.patch, "positive_share": a.positive_share, "workers": a.workers,
        "seed": a.seed, "ctstream_version": env!("CARGO_PKG_VERSION"), "burn_version": "0.21.0",
    });
    let cfg_path = a.out.join("config.json");
    ctstream::fsutil::write_bytes_atomic(&cfg_path, serde_json::to_string_pretty(&config).context("config JSON")?.as_bytes()).with_context(|| format!("writing {}", cfg_path.display()))?;
    let mut csv = MetricsCsv::create(&a.out.join("metrics.csv")).with_context(|| format!("creating {}", a.out.join("metrics.csv").display()))?;
    let device = Default::default();
    <CpuBackend as burn::prelude::Backend>::seed(&device, a.seed);
    let opts = TrainOptions { steps: a.steps, lr: a.lr, loss };
    bars.start("training", Some(a.steps as u64));
    let mut write_err = None;
    let mut on_step = |r: &train::StepRecord| {
        if let Err(e) = csv.write(r) {
            write_err.get_or_insert(e);
        }
        bars.advance(1);
        bars.set_message(&format!("loss {:.3} dice {:.3} wait {:.0}%", r.loss, r.dice, 100.0 * r.loader_wait_s / r.step_s.max(1e-9)));
    };
    let records = match model_kind {
        ModelKind::Unet3d => train::train(UNet3d::<CpuBackend>::new(a.width, &device), &loader, &opts, &device, &mut on_step)?.1,
        ModelKind::Vnet => train::train(VNet::<CpuBackend>::new(a.width, &device), &loader, &opts, &device, &mut on_step)?.1,
    };
    bars.finish();
    if let Some(e) = write_err {
        return Err(anyhow!("writing {}: {e}", csv.path().display()).into());
    }
    let n = records.len().max(1) as f64;
    let wait: f64 = records.iter().map(|r| r.loader_wait_s).sum();
    let total: f64 = records.iter().map(|r| r.step_s).sum();
    let tail = &records[records.len().saturating_sub(10)..];
    println!(
        "trained {} steps in {:.1} s: {:.1} patches/s, mean step {:.3} s, loader wait {:.1} % of step time; last {} steps: loss {:.3}, Dice {:.3}",
        records.len(),
        total,
        (records.len() * a.batch_size) as f64 / total.max(1e-9),
        total / n,
        100.0 * wait / total.max(1e-9),
        tail.len(),
        tail.iter().map(|r| r.loss).sum::<f64>() / tail.len().max(1) as f64,
        tail.iter().map(|r| r.dice).sum::<f64>() / tail.len().max(1) as f64,
    );
    println!("  {}\n  {}", csv.path().display(), cfg_path.display());
    Ok(())
}
