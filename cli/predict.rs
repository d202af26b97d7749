//! `ctstream predict`: whole-scan sliding-window prediction with a trained run, nodules
//! found in the probability maps (cargo feature `train`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, anyhow};
use burn::prelude::Backend;
use burn::tensor::backend::AutodiffBackend;
use ctstream::evaluate::Detection;
use ctstream::io::metaimage;
use ctstream::predict::components::{self, Component};
use ctstream::predict::model::Trained;
use ctstream::predict::{self, SlidingWindow};
use ctstream::store::index;
use ctstream::store::writer::ChunkOptions;
use ctstream::train::DeviceChoice;
use ctstream::train::device::{self, BackendChoice, Engine, OnBackend};

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
    /// Checkpoint step [default: the newest].
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
    /// Overlap of neighbouring tiles (0 <= overlap < 1).
    #[arg(long, default_value_t = 0.5)]
    overlap: f64,
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
    /// Probability at which a voxel belongs to a nodule.
    #[arg(long, default_value_t = 0.5)]
    threshold: f32,
    /// Components smaller than this many voxels are dropped.
    #[arg(long, default_value_t = 1)]
    min_voxels: usize,
    /// Predict everywhere: by default, in a scan with a lung mask, tiles that hold none of
    /// the lung region (the lungs dilated by 10 mm) are not computed and findings outside
    /// it are dropped.
    #[arg(long)]
    no_lung_roi: bool,
    /// Format of the probability maps: ctv (store volume, per-mille), mhd (float32), none.
    #[arg(long, value_parser = ["ctv", "mhd", "none"], default_value = "ctv")]
    format: String,
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
    for id in &ids {
        store.scan(id)?;
    }
    let cfg = &trained.config;
    let sw = SlidingWindow {
        patch_zyx: cfg.loader.patch_zyx,
        overlap: a.overlap,
        batch_size: a.batch_size,
        hu_window: cfg.loader.hu_window,
        cache_bytes: 128 << 20,
    };
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    if a.format == "ctv" {
        std::fs::create_dir_all(a.out.join("volumes"))
            .with_context(|| format!("creating {}", a.out.join("volumes").display()))?;
    }
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
        sw.patch_zyx,
        sw.overlap,
        engine
    );
    let threads = a.threads.unwrap_or(if engine.threads_inside() {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    });
    let mut detections = Vec::new();
    let mut findings: Vec<(String, Component)> = Vec::new();
    for id in &ids {
        let t0 = Instant::now();
        let volume = store.volume(id)?;
        let has_lungs = store
            .scan(id)?
            .label(ctstream::labels::LUNGS)
            .is_some_and(|l| l.foreground_voxels() > 0);
        let roi = if a.no_lung_roi || !has_lungs {
            None
        } else {
            Some(predict::Roi::lung_region(&*store.label(id, ctstream::labels::LUNGS)?)?)
        };
        let all_tiles = predict::tiles(volume.shape_zyx(), &sw);
        let tiles = roi.as_ref().map_or(all_tiles.len(), |r| {
            all_tiles.iter().filter(|t| r.touches(**t, sw.patch_zyx)).count()
        });
        let probs = predict::predict_volume_in(
            &volume,
            &sw,
            threads,
            roi.as_ref(),
            |x, shape| trained.network.predict_batch(x, shape, &device),
            bars,
        )
        .with_context(|| format!("predicting {id}"))?;
        let seconds = t0.elapsed().as_secs_f64();
        let g = volume.geometry();
        let flat = probs.as_slice().ok_or_else(|| anyhow!("probability map not contiguous"))?;
        let found: Vec<Component> =
            components::components(flat, volume.shape_zyx(), a.threshold, &g)
                .into_iter()
                .filter(|c| c.voxels >= a.min_voxels)
                .collect();
        let before = found.len();
        let comps: Vec<Component> = found
            .into_iter()
            .filter(|c| roi.as_ref().is_none_or(|r| r.contains(c.centre_zyx)))
            .collect();
        write_map(a, id, &probs, &g)?;
        let where_ = match &roi {
            Some(_) => format!(
                " of {} in the lung region ({} findings outside it dropped)",
                all_tiles.len(),
                before - comps.len()
            ),
            None if !a.no_lung_roi => " (no lung mask: everywhere)".to_string(),
            None => String::new(),
        };
        println!(
            "  {id}: {tiles} tiles{where_} in {seconds:.1} s, {} finding(s) at p >= {}",
            comps.len(),
            a.threshold
        );
        for c in comps {
            detections.push(Detection {
                series_id: id.clone(),
                world_xyz: c.centre_world_xyz,
                probability: c.max_probability,
            });
            findings.push((id.clone(), c));
        }
    }
    let csv = a.out.join("candidates.csv");
    ctstream::annotations::write_predictions(&csv, &detections)?;
    let pq = a.out.join("findings.parquet");
    index::write_table(&pq, &index::findings_batch(&findings))?;
    let list = a.out.join("series.txt");
    ctstream::fsutil::write_bytes_atomic(&list, (ids.join("\n") + "\n").as_bytes())
        .with_context(|| format!("writing {}", list.display()))?;
    println!("  {}\n  {}\n  {}", csv.display(), pq.display(), list.display());
    Ok(())
}

/// Writes one probability map in the chosen format.
fn write_map(
    a: &Args,
    id: &str,
    probs: &ndarray::Array3<f32>,
    g: &ctstream::geometry::Geometry,
) -> anyhow::Result<()> {
    match a.format.as_str() {
        "ctv" => {
            let per_mille = probs.mapv(|p| (p * 1000.0).round().clamp(0.0, 1000.0) as i16);
            let path = a.out.join("volumes").join(format!("{id}.ctv"));
            ctstream::store::writer::write_volume(
                &path,
                &per_mille,
                g,
                &ChunkOptions { chunk_shape_zyx: [16, 32, 32], level: 3, fill_value: 0 },
            )
            .with_context(|| format!("writing {}", path.display()))?;
        }
        "mhd" => {
            let path = a.out.join(format!("{id}.mhd"));
            metaimage::write_f32(&path, probs, g, metaimage::WriteOptions { compress: true })?;
        }
        _ => {}
    }
    Ok(())
}
