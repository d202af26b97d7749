//! `ctstream predict`: whole-scan sliding-window prediction with a trained run, nodules
//! found in the probability maps (cargo feature `train`).

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;
use ctstream::predict::SlidingWindow;
use ctstream::predict::run::{self, Looked, MapFormat, PredictConfig};
use ctstream::train::DeviceChoice;
use ctstream::train::device::{self, BackendChoice, Engine, OnBackend};
use ctstream::train::trained::Trained;

use crate::progress::Bars;
use crate::{Exit, ExitError};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Writes PRED_DIR/candidates.csv (LUNA16 submission: seriesuid,coordX,coordY,coordZ,probability), \
findings.parquet (centre, voxel centre, equivalent diameter, voxels, max and mean probability of each component), \
series.txt (the scans predicted, for `evaluate --series-list`), and the probability maps: volumes/<id>.ctv \
(store volume files holding probability x 1000 as int16; `ctstream export`-able) or <id>.mhd (float32)."
)]
pub struct Args {
    /// The store holding the scans: a folder, or a URL on object storage (s3://bucket/prefix, ...).
    #[arg(long)]
    store: PathBuf,
    /// The training run (its config.json and checkpoints).
    #[arg(long)]
    run: PathBuf,
    /// Checkpoint step [default: the best by validation CPM (checkpoints/best/) with its
    /// operating point; the newest where the run has none].
    #[arg(long)]
    checkpoint: Option<usize>,
    /// Scans to predict.
    #[arg(long, num_args = 1.., conflicts_with_all = ["split", "all"])]
    series: Vec<String>,
    /// Predict the run's validation (or training) scans.
    #[arg(long, value_parser = ["val", "train"], conflicts_with = "all")]
    split: Option<String>,
    /// Predict every scan of the store.
    #[arg(long)]
    all: bool,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    /// Overlap of neighbouring tiles (0 <= overlap < 1) [default: the operating point's,
    /// else 0.5].
    #[arg(long)]
    overlap: Option<f64>,
    /// Test-time mirroring: also predict each tile mirrored along every combination of these
    /// axes and average, as nnU-Net does (zyx: 8 network calls per tile; yx: 4; none: 1).
    #[arg(long, default_value = "none", value_parser = ctstream::predict::window::parse_mirror)]
    mirror: [bool; 3],
    /// Tiles per network call.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Batches predicted at once, one per thread [default: the cores with flex; 1 with
    /// LibTorch, whose calls use every core, and on a GPU].
    #[arg(long)]
    threads: Option<usize>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: DeviceChoice,
    /// auto (LibTorch on the CPU when built in, Burn's CUDA backend on GPUs), burn (flex on
    /// the CPU, CubeCL on CUDA) or libtorch.
    #[arg(long, default_value = "auto")]
    backend: BackendChoice,
    /// Probability at which a voxel belongs to a nodule [default: the operating point's,
    /// else 0.5].
    #[arg(long)]
    threshold: Option<f32>,
    /// Components smaller than this many voxels are dropped [default: the operating
    /// point's, else 1].
    #[arg(long)]
    min_voxels: Option<usize>,
    /// Findings within this distance (mm) of a more probable one are merged into it
    /// [default: the operating point's, else 0: none].
    #[arg(long)]
    merge_mm: Option<f64>,
    /// The score findings are ranked and merged by, written as candidates.csv's
    /// probability: max (the component's largest probability) or mean (its mean)
    /// [default: the operating point's, else max].
    #[arg(long)]
    score: Option<ctstream::predict::operating::Score>,
    /// Predict everywhere: by default, in a scan with a lung mask, only the tiles that are
    /// the nearest tile (by centre) of some voxel of the lung region (the lungs dilated by
    /// 10 mm) are computed and findings outside it are dropped.
    #[arg(long)]
    no_lung_roi: bool,
    /// Format of the probability maps: ctv (store volume, per-mille), mhd (float32), none.
    #[arg(long, default_value_t = MapFormat::default())]
    format: MapFormat,
    #[command(flatten)]
    disk_cache: crate::DiskCacheArgs,
}

pub fn run(a: Args, bars: &Bars) -> Result<(), ExitError> {
    let engine = device::resolve(a.device, a.backend).map_err(|e| {
        ExitError(Exit::Usage, anyhow!("--backend {} --device {}: {e}", a.backend, a.device))
    })?;
    let opened = device::open(engine).map_err(|e| anyhow!("--device: {e}"))?;
    opened.run(PredictOn { a: &a, bars, engine })
}

/// Prediction on the opened backend (its inference half: no autodiff).
struct PredictOn<'a> {
    a: &'a Args,
    bars: &'a Bars,
    engine: Engine,
}

impl OnBackend for PredictOn<'_> {
    type Output = Result<(), ExitError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        run_on::<B::InnerBackend>(device, self.a, self.bars, self.engine)
    }
}

fn run_on<B: Backend>(
    device: B::Device,
    a: &Args,
    bars: &Bars,
    engine: Engine,
) -> Result<(), ExitError> {
    let trained = Trained::<B>::load(&a.run, a.checkpoint, &device)?;
    let store = crate::open_store(&a.store, &a.disk_cache)?;
    let ids: Vec<String> = if a.all {
        store.series_ids().map(String::from).collect()
    } else if let Some(split) = &a.split {
        let ids = if split == "val" {
            trained.config.val_series.clone()
        } else {
            trained.config.train_series.clone()
        };
        if ids.is_empty() {
            return Err(ExitError(
                Exit::Usage,
                anyhow!(
                    "{}: the run has no {split} scans (config.json {split}_series is empty)",
                    a.run.display()
                ),
            ));
        }
        ids
    } else if !a.series.is_empty() {
        a.series.clone()
    } else {
        return Err(ExitError(
            Exit::Usage,
            anyhow!("choose the scans: --series UID ..., --split val, or --all"),
        ));
    };
    let cfg = &trained.config;
    let op = trained.operating_point;
    let base = op.map(|o| o.post).unwrap_or_default();
    let post = ctstream::predict::operating::PostProcess {
        threshold: a.threshold.unwrap_or(base.threshold),
        min_voxels: a.min_voxels.unwrap_or(base.min_voxels),
        merge_mm: a.merge_mm.unwrap_or(base.merge_mm),
        score: a.score.unwrap_or(base.score),
    };
    let overlap = a.overlap.or(op.map(|o| o.overlap)).unwrap_or(0.5);
    let pc = PredictConfig {
        window: SlidingWindow {
            patch_zyx: cfg.loader.patch_zyx,
            overlap,
            batch_size: a.batch_size,
            hu_window: cfg.loader.hu_window,
            mirror_zyx: a.mirror,
            ..SlidingWindow::default()
        },
        threads: a.threads.unwrap_or(if engine.threads_inside() {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }),
        post,
        lung_roi: !a.no_lung_roi,
        map_format: a.format,
    };
    pc.validate().map_err(|e| ExitError(Exit::Usage, e.into()))?;
    println!(
        "{} ({} width {}) from {}, {} scan(s), tiles {:?} overlap {}, on {}",
        a.run.display(),
        match cfg.model {
            ctstream::train::ModelKind::Unet3d => "unet3d",
            ctstream::train::ModelKind::Vnet => "vnet",
        },
        cfg.width,
        trained.checkpoint.dir.display(),
        ids.len(),
        pc.window.patch_zyx,
        pc.window.overlap,
        engine
    );
    let told = a.threshold.is_some()
        || a.min_voxels.is_some()
        || a.merge_mm.is_some()
        || a.score.is_some();
    match op {
        Some(o) => println!(
            "operating point{}: {} (chosen on {} held-out scans at step {}: CPM {:.3}, sensitivity {:.3} at {:.2} false positives per scan{})",
            if told { " (changed by the flags given)" } else { "" },
            pc.post,
            o.scans,
            o.step,
            o.cpm,
            o.sensitivity,
            o.fps_per_scan,
            if o.within_fp_bound { "" } else { "; no choice kept within 8 per scan" }
        ),
        None => println!(
            "operating point: {} (the run chose none: it did not validate on whole scans)",
            pc.post
        ),
    }
    let flips = ctstream::predict::window::mirrorings(a.mirror);
    if !flips.is_empty() {
        println!(
            "test-time mirroring: each tile predicted {} times (as is and mirrored {}), averaged",
            flips.len() + 1,
            flips
                .iter()
                .map(|f| ["z", "y", "x"]
                    .iter()
                    .zip(f)
                    .filter(|(_, on)| **on)
                    .map(|(n, _)| *n)
                    .collect::<String>())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let model = |x: &[f32], shape| trained.network.predict_batch(x, shape, &device);
    let written = run::run(&store, &ids, &pc, Some(&a.out), model, bars, |p| {
        let where_ = match p.looked {
            Looked::LungRegion => format!(
                " of {} in the lung region ({} findings outside it dropped)",
                p.tiles, p.outside_region
            ),
            Looked::NoLungMask => " (no lung mask: everywhere)".to_string(),
            Looked::Everywhere => String::new(),
        };
        println!(
            "  {}: {} tiles{where_} in {:.1} s, {} finding(s) at p >= {}",
            p.series_id,
            p.tiles_computed,
            p.seconds,
            p.findings.len(),
            pc.post.threshold
        );
    })
    .context("predicting")?
    .ok_or_else(|| anyhow!("no files written"))?;
    println!(
        "  {}\n  {}\n  {}",
        written.candidates.display(),
        written.findings.display(),
        written.series.display()
    );
    Ok(())
}
