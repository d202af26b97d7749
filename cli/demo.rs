//! `ctstream demo --out DIR`: the pipeline end to end on the embedded synthetic default.
//!
//! Today the pipeline is: generate a LUNA-like dataset (MetaImage and DICOM), read every
//! scan back through both readers and check that they agree voxel for voxel and in
//! geometry and that every annotation lies inside its scan; ingest the MetaImage scans
//! into a store; show what the store holds; stream patches from it for a few seconds;
//! train a small 3D U-Net on the CPU (or `--device cuda`) with one scan held out for
//! validation; predict the held-out scan whole (sliding window) and score the nodules
//! found against its annotations (LUNA16 FROC); draw the pictures: the held-out scan's
//! slice through a nodule with the predicted and annotated masks, the training curves
//! and the FROC curve.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use ctstream::annotations;
use ctstream::geometry::Geometry;
use ctstream::ingest::{self, IngestConfig};
use ctstream::io::{self, dicom::DicomOptions};
use ctstream::loader::{Loader, bench};
use ctstream::store::Store;
use ctstream::synth::{self, SynthConfig};

use crate::ExitError;
use crate::progress::Bars;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder for everything the demo makes.
    #[arg(long, default_value = "ctstream-demo")]
    out: PathBuf,
    /// Number of synthetic scans.
    #[arg(long, default_value_t = 3)]
    scans: usize,
    /// Seed.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Small scans, for a quick run.
    #[arg(long)]
    small: bool,
    /// Training steps (0: no training).
    #[arg(long, default_value_t = 80)]
    train_steps: usize,
    /// Device to train on: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Backend to train and predict with: auto, burn or libtorch (see `ctstream train --help`).
    #[arg(long, default_value = "auto")]
    backend: String,
}

pub fn run(a: Args, bars: &Bars) -> Result<(), ExitError> {
    let t0 = Instant::now();
    let data = a.out.join("data");
    let cfg = SynthConfig { small: a.small, dicom: true, ..SynthConfig::new(a.scans, a.seed) };
    println!("1. synth: {} LUNA-like scans (MetaImage + DICOM) -> {}", a.scans, data.display());
    let s = synth::generate(&data, &cfg, bars).context("generating the synthetic dataset")?;
    let nodules = annotations::read_annotations(&s.annotations)?;
    println!("   {} nodules in {}", nodules.len(), s.annotations.display());

    println!("2. read every scan as MetaImage and as DICOM, and compare");
    let mut inside = 0;
    for (mhd, dir) in s.scans.iter().zip(&s.dicom_series) {
        let m = io::read_scan(mhd, &DicomOptions::default(), bars)?.volume;
        let d = io::read_scan(dir, &DicomOptions::default(), bars)?.volume;
        let same_geometry = m.shape_zyx() == d.shape_zyx()
            && (0..3).all(|i| (m.geometry.origin_xyz[i] - d.geometry.origin_xyz[i]).abs() < 1e-4)
            && (0..3).all(|i| (m.geometry.spacing_xyz[i] - d.geometry.spacing_xyz[i]).abs() < 1e-4);
        if !same_geometry || m.hu != d.hu || m.series_id != d.series_id {
            return Err(anyhow!(
                "{} and {} disagree: MetaImage {:?} vs DICOM {:?}",
                mhd.display(),
                dir.display(),
                m.info(),
                d.info()
            )
            .into());
        }
        let info = m.info();
        for n in nodules.iter().filter(|n| n.series_id == m.series_id) {
            let zyx = m.geometry.world_to_index(n.world_xyz).context("degenerate geometry")?;
            if !Geometry::contains_index(m.shape_zyx(), zyx) {
                return Err(
                    anyhow!("nodule at {:?} mm lies outside {}", n.world_xyz, m.series_id).into()
                );
            }
            inside += 1;
        }
        println!(
            "   {}  {}x{}x{} (z,y,x)  spacing {:.3},{:.3},{:.3} mm  HU {}..{}  MetaImage == DICOM",
            info.series_id,
            info.shape[0],
            info.shape[1],
            info.shape[2],
            info.spacing[0],
            info.spacing[1],
            info.spacing[2],
            info.hu.min,
            info.hu.max
        );
    }
    println!("   all {inside} nodules lie inside their scans");

    let store = a.out.join("store");
    println!(
        "3. ingest the MetaImage scans -> {} (1 mm, 16x32x32 zstd chunks, lung masks, parquet index)",
        store.display()
    );
    let mut cfg = IngestConfig::new(vec![data.join("subset0")], store.clone());
    cfg.annotations = Some(s.annotations.clone());
    cfg.candidates = Some(s.candidates.clone());
    cfg.resume = true; // a second demo run into the same folder finds everything stored
    let sum = ingest::ingest(&cfg, bars).context("ingesting the synthetic scans")?;
    println!(
        "   {} scans stored ({} already there), {} nodules and {} candidates indexed, {:.1} MB -> {:.1} MB in {:.1} s",
        sum.stored.len(),
        sum.skipped.len(),
        sum.nodules_indexed,
        sum.candidates_indexed,
        sum.bytes_in as f64 / 1e6,
        sum.bytes_out as f64 / 1e6,
        sum.seconds
    );
    if !sum.failed.is_empty() {
        return Err(anyhow!("{} scans failed to ingest: {:?}", sum.failed.len(), sum.failed).into());
    }
    if !sum.stored.is_empty() {
        println!(
            "   lung masks: {:.2} s per scan of the workers' time (label volume `lungs`: 1 right, 2 left)",
            sum.lung_mask_seconds / sum.stored.len() as f64
        );
    }

    println!("4. inspect the store");
    println!();
    crate::inspect::print_store(&store)?;
    println!();

    println!("5. stream 32x64x64 patches + masks from the store (2 workers, batch 8, 3 s)");
    let opened = Store::open(&store).context("opening the store")?;
    let loader = Loader::builder(&opened).workers(2).batch_size(8).seed(a.seed).build()?;
    for n in loader.notes() {
        println!("   note: {n}");
    }
    let r = bench::run(&loader, Duration::from_secs(1), Duration::from_secs(3))?;
    println!(
        "   {:.0} patches/s ({:.0} MB/s of f32); decode-only bound {:.0}, copy-only bound {:.0} patches/s; cache hit rate {:.2}",
        r.patches_per_s,
        r.mb_per_s,
        r.decode_bound_patches_per_s,
        r.copy_bound_patches_per_s,
        r.cache_hit_rate
    );
    let run_dir = a.out.join("run");
    let predicted = train_step(&a, &opened, &store, &run_dir, bars)?
        && predict_step(&a, &store, &run_dir, &s.annotations, bars).map(|()| true)?;
    let pictures = pictures_step(&a, &opened, &store, &run_dir, predicted)?;
    println!();
    println!("done in {:.1} s", t0.elapsed().as_secs_f64());
    println!("  look at a scan:     ctstream info {}", s.scans[0].display());
    println!(
        "  query the index:    duckdb -c \"SELECT * FROM '{}/index/nodules.parquet'\"",
        store.display()
    );
    println!("  measure the loader: ctstream bench --store {}", store.display());
    println!(
        "  export for Slicer:  ctstream export {} --series {} --out scan.nii.gz",
        store.display(),
        sum.stored.first().or(sum.skipped.first()).map_or("<id>", |v| v)
    );
    if cfg!(feature = "train") && a.train_steps > 0 {
        println!("  training log:       {}/metrics.csv and val.csv", run_dir.display());
    }
    if predicted {
        println!(
            "  findings:           {} (LUNA16 format), {}",
            a.out.join("pred/candidates.csv").display(),
            a.out.join("pred/findings.parquet").display()
        );
        println!("  FROC:               {} and froc.csv", a.out.join("eval/froc.json").display());
    }
    for (what, path) in &pictures {
        println!("  {:<19} {}", format!("{what}:"), path.display());
    }
    Ok(())
}

/// Step 9: the pictures. The slice through the largest nodule of the held-out scan with
/// the predicted and annotated masks, whole and as a 64 mm close-up (without a
/// prediction: of the first scan, annotated only), the training curves, and the FROC
/// curve `evaluate` drew.
fn pictures_step(
    a: &Args,
    store: &Store,
    store_path: &std::path::Path,
    run_dir: &std::path::Path,
    predicted: bool,
) -> Result<Vec<(&'static str, PathBuf)>, ExitError> {
    let dir = a.out.join("pictures");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!("9. draw the pictures -> {}", dir.display());
    let pred = a.out.join("pred");
    let series = if predicted {
        let list = pred.join("series.txt");
        let text = std::fs::read_to_string(&list)
            .with_context(|| format!("reading {}", list.display()))?;
        text.lines()
            .next()
            .map(String::from)
            .ok_or_else(|| anyhow!("{}: no scan listed", list.display()))?
    } else {
        store
            .series_ids()
            .next()
            .map(String::from)
            .ok_or_else(|| anyhow!("the store holds no scan"))?
    };
    let mut out = Vec::new();
    for (name, what, crop) in
        [("slice.png", "slice", None), ("nodule.png", "nodule close up", Some(64.0))]
    {
        let path = dir.join(name);
        print!("   ");
        crate::render::run(crate::render::Args {
            store: store_path.to_path_buf(),
            series: series.clone(),
            pred: predicted.then(|| pred.clone()),
            slice: None,
            nodule: None,
            label: None,
            threshold: 0.5,
            window: None,
            crop,
            panel_width: 400,
            out: path.clone(),
            disk_cache: crate::DiskCacheArgs::default(),
        })?;
        out.push((what, path));
    }
    if run_dir.join("metrics.csv").exists() {
        let curves = dir.join("curves.png");
        print!("   ");
        crate::plot::run(crate::plot::Args {
            run: run_dir.to_path_buf(),
            out: Some(curves.clone()),
        })?;
        out.push(("training curves", curves));
    }
    let froc = a.out.join("eval/froc.png");
    if predicted && froc.exists() {
        out.push(("FROC curve", froc));
    }
    Ok(out)
}

/// Step 6: a small U-Net on 16x32x32 patches, through `ctstream train` itself. The scan
/// whose id hashes lowest is held out for validation (the `--val-fraction` just above its
/// hash), so even three scans give a validation set.
#[cfg(feature = "train")]
fn train_step(
    a: &Args,
    store: &Store,
    store_path: &std::path::Path,
    run_dir: &std::path::Path,
    bars: &Bars,
) -> Result<bool, ExitError> {
    use clap::Parser;
    #[derive(Parser)]
    struct Train {
        #[command(flatten)]
        args: crate::train::Args,
    }
    if a.train_steps == 0 {
        return Ok(false);
    }
    let lowest =
        store.series_ids().map(ctstream::loader::split_fraction).fold(f64::INFINITY, f64::min);
    let val_fraction = if store.scans().len() >= 2 { lowest + 1e-9 } else { 0.0 };
    println!(
        "6. train a small 3D U-Net (width 0.25, 16x32x32 patches, batch 4, Dice + BCE) for {} steps on {}, one scan held out for validation -> {}",
        a.train_steps,
        a.device,
        run_dir.display()
    );
    if run_dir.exists() {
        std::fs::remove_dir_all(run_dir)
            .with_context(|| format!("removing the previous demo run {}", run_dir.display()))?;
    }
    let (steps, vf, every) = (
        a.train_steps.to_string(),
        val_fraction.to_string(),
        (a.train_steps / 4).max(1).to_string(),
    );
    let argv = [
        "train",
        "--store",
        &store_path.to_string_lossy(),
        "--out",
        &run_dir.to_string_lossy(),
        "--model",
        "unet3d",
        "--width",
        "0.25",
        "--patch",
        "16,32,32",
        "--batch-size",
        "4",
        "--steps",
        &steps,
        "--lr",
        "3e-3",
        "--loss",
        "dice-bce",
        "--positive-share",
        "0.75",
        "--jitter",
        "3,3,3",
        "--val-fraction",
        &vf,
        "--val-every",
        &every,
        "--val-batches",
        "4",
        "--seed",
        &a.seed.to_string(),
        "--device",
        &a.device,
        "--backend",
        &a.backend,
    ];
    let t = Train::try_parse_from(argv)
        .map_err(|e| crate::ExitError(crate::Exit::Usage, anyhow!("demo training options: {e}")))?;
    crate::train::run(t.args, bars)?;
    Ok(store.scans().len() >= 2)
}

#[cfg(not(feature = "train"))]
fn train_step(
    _: &Args,
    _: &Store,
    _: &std::path::Path,
    _: &std::path::Path,
    _: &Bars,
) -> Result<bool, ExitError> {
    println!("6. train: skipped (this ctstream was built without the `train` feature)");
    Ok(false)
}

/// Steps 7 and 8: predict the held-out scan whole with the trained network (tiles
/// overlapping by a quarter, to keep the demo short on two cores; `ctstream predict`
/// defaults to a half), then score the findings against the annotations.
#[cfg(feature = "train")]
fn predict_step(
    a: &Args,
    store_path: &std::path::Path,
    run_dir: &std::path::Path,
    annotations: &std::path::Path,
    bars: &Bars,
) -> Result<(), ExitError> {
    use clap::Parser;
    #[derive(Parser)]
    struct Predict {
        #[command(flatten)]
        args: crate::predict::Args,
    }
    #[derive(Parser)]
    struct Evaluate {
        #[command(flatten)]
        args: crate::evaluate::Args,
    }
    let usage = |e: clap::Error| crate::ExitError(crate::Exit::Usage, anyhow!("demo options: {e}"));
    let pred = a.out.join("pred");
    println!(
        "7. predict the held-out scan whole: sliding window of 16x32x32 tiles, overlap 0.25, Gaussian blending -> {}",
        pred.display()
    );
    let (st, rd, pd) =
        (store_path.to_string_lossy(), run_dir.to_string_lossy(), pred.to_string_lossy());
    let argv = [
        "predict",
        "--store",
        &st,
        "--run",
        &rd,
        "--split",
        "val",
        "--out",
        &pd,
        "--overlap",
        "0.25",
        "--device",
        &a.device,
        "--backend",
        &a.backend,
    ];
    crate::predict::run(Predict::try_parse_from(argv).map_err(usage)?.args, bars)?;
    let eval = a.out.join("eval");
    println!(
        "8. evaluate the findings against the annotations (LUNA16 FROC, 200 bootstrap samples) -> {}",
        eval.display()
    );
    let (an, cands, list, ev) = (
        annotations.to_string_lossy(),
        pred.join("candidates.csv"),
        pred.join("series.txt"),
        eval.to_string_lossy(),
    );
    let (cands, list) = (cands.to_string_lossy(), list.to_string_lossy());
    let argv = [
        "evaluate",
        "--annotations",
        &an,
        "--predictions",
        &cands,
        "--series-list",
        &list,
        "--bootstrap",
        "200",
        "--out",
        &ev,
    ];
    crate::evaluate::run(Evaluate::try_parse_from(argv).map_err(usage)?.args)
}

#[cfg(not(feature = "train"))]
fn predict_step(
    _: &Args,
    _: &std::path::Path,
    _: &std::path::Path,
    _: &std::path::Path,
    _: &Bars,
) -> Result<(), ExitError> {
    Ok(())
}
