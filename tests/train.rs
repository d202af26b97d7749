//! Training on the CPU (feature `train`): a tiny U-Net and a tiny V-Net learn the nodules
//! of a small synthetic store (16x32x32 patches, all centred on nodules, batch 4, Adam
//! 3e-3, Dice + BCE; 100 steps for the U-Net, 150 for the slower-starting V-Net).
//! Threshold (documented): the mean training Dice of the last 10 steps exceeds that of
//! the first 5 by at least 0.2 and reaches 0.3.
#![cfg(feature = "train")]

mod common;

use std::path::Path;

use common::*;
use ctstream::ingest::{self, IngestConfig};
use ctstream::loader::Loader;
use ctstream::store::Store;
use ctstream::synth::{self, SynthConfig};
use ctstream::train::{self, CpuBackend, LossKind, StepRecord, TrainOptions, UNet3d, VNet};

fn store(dir: &Path) -> Store {
    let data = dir.join("data");
    synth::generate(&data, &SynthConfig { scans: 3, seed: 41, small: true, dicom: false }, &()).unwrap();
    let out = dir.join("store");
    let mut cfg = IngestConfig::new(vec![data.clone()], out.clone());
    cfg.annotations = Some(data.join("annotations.csv"));
    ingest::ingest(&cfg, &()).unwrap();
    Store::open(&out).unwrap()
}

fn loader(store: &Store) -> Loader {
    Loader::builder(store).patch([16, 32, 32]).batch_size(4).positive_share(1.0).jitter([3, 3, 3]).workers(2).seed(1).build().unwrap()
}

fn mean_dice(r: &[StepRecord]) -> f64 {
    r.iter().map(|s| s.dice).sum::<f64>() / r.len() as f64
}

fn check(name: &str, records: &[StepRecord]) {
    let (first, last) = (mean_dice(&records[..5]), mean_dice(&records[records.len() - 10..]));
    eprintln!("{name}: Dice {first:.3} over the first 5 steps -> {last:.3} over the last 10; loss {:.3} -> {:.3}", records[0].loss, records[records.len() - 1].loss);
    assert!(last >= first + 0.2 && last >= 0.3, "{name}: Dice {first:.3} -> {last:.3}");
}

#[test]
fn tiny_unet_learns_nodules() {
    let dir = tempdir();
    let store = store(dir.path());
    let device = Default::default();
    <CpuBackend as burn::prelude::Backend>::seed(&device, 3);
    let model = UNet3d::<CpuBackend>::new(0.25, &device);
    let opts = TrainOptions { steps: 100, lr: 3e-3, loss: LossKind::DiceBce };
    let (_, records) = train::train(model, &loader(&store), &opts, &device, |_| {}).unwrap();
    check("U-Net", &records);
}

#[test]
fn tiny_vnet_learns_nodules() {
    let dir = tempdir();
    let store = store(dir.path());
    let device = Default::default();
    <CpuBackend as burn::prelude::Backend>::seed(&device, 3);
    let model = VNet::<CpuBackend>::new(0.25, &device);
    let opts = TrainOptions { steps: 150, lr: 3e-3, loss: LossKind::DiceBce };
    let (_, records) = train::train(model, &loader(&store), &opts, &device, |_| {}).unwrap();
    check("V-Net", &records);
}

/// Both networks keep the patch shape and yield probabilities.
#[test]
fn forward_passes_keep_shape_and_yield_probabilities() {
    let dir = tempdir();
    let store = store(dir.path());
    let device = Default::default();
    let batch = loader(&store).build_batch(0, 0).unwrap();
    let check = |p: burn::prelude::Tensor<CpuBackend, 5>| {
        assert_eq!(p.dims(), [4, 1, 16, 32, 32]);
        let v: Vec<f32> = p.into_data().convert::<f32>().to_vec().unwrap();
        assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
    };
    let (x, _) = train::batch_tensors::<CpuBackend>(&batch, &device);
    check(VNet::<CpuBackend>::new(0.125, &device).forward(x.clone()));
    check(UNet3d::<CpuBackend>::new(0.125, &device).forward(x));
}

/// `ctstream train` writes config.json and one metrics.csv row per step; asking for CUDA
/// in a build without it is a clear usage error.
#[test]
fn train_command_writes_metrics_and_refuses_cuda_clearly() {
    let dir = tempdir();
    let _ = store(dir.path());
    let run = dir.path().join("run");
    let ctstream = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_ctstream")).args(args).output().unwrap();
    let store_path = dir.path().join("store");
    let s = store_path.to_str().unwrap();
    let o = ctstream(&["--quiet", "train", "--store", s, "--width", "0.125", "--patch", "16,32,32", "--batch-size", "2", "--steps", "3", "--out", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "step,loss,dice,patches_per_s,loader_wait_s,step_s");
    assert_eq!(lines.len(), 4);
    assert!(lines[3].starts_with("3,"));
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model"], "unet3d");
    assert_eq!(cfg["seed"], 0);
    assert_eq!(cfg["store_manifest"]["chunk_shape_zyx"], serde_json::json!([16, 32, 32]));
    let o = ctstream(&["train", "--store", s, "--device", "cuda", "--out", run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("cuda:0") && err.contains("without CUDA"), "{err}");
    let o = ctstream(&["train", "--store", s, "--device", "tpu", "--out", run.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}
