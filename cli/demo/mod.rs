//! `ctstream demo --out DIR`: the pipeline end to end on the embedded synthetic default.
//!
//! Today the pipeline is: generate a LUNA-like dataset (MetaImage and DICOM), read every
//! scan back through both readers and check that they agree voxel for voxel and in
//! geometry and that every annotation lies inside its scan; ingest the MetaImage scans
//! into a store; show what the store holds; stream patches from it for a few seconds;
//! train a small 3D U-Net on the CPU (or `--device cuda`) with one scan held out for
//! validation (it chooses the operating point) and one for the test; predict the test scan
//! whole (sliding window) and score the nodules found against its annotations (LUNA16
//! FROC); draw the pictures: the test scan's
//! slice through a nodule with the predicted and annotated masks, the training curves
//! and the FROC curve.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use ctstream::annotations;
use ctstream::ingest::{self, IngestConfig};
use ctstream::loader::{Loader, bench};
use ctstream::store::Store;
use ctstream::synth::{self, SynthConfig};

use crate::ExitError;
use crate::progress::Bars;

mod steps;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Folder for everything the demo makes.
    #[arg(long, default_value = "ctstream-demo")]
    pub(super) out: PathBuf,
    /// Number of synthetic scans.
    #[arg(long, default_value_t = 4)]
    pub(super) scans: usize,
    /// Seed.
    #[arg(long, default_value_t = 7)]
    pub(super) seed: u64,
    /// Small scans, for a quick run.
    #[arg(long)]
    pub(super) small: bool,
    /// Training steps (0: no training).
    #[arg(long, default_value_t = 480)]
    pub(super) train_steps: usize,
    /// Device to train on: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub(super) device: String,
    /// Backend to train and predict with: auto, burn or libtorch (see `ctstream train --help`).
    #[arg(long, default_value = "auto")]
    pub(super) backend: String,
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
    let checked = synth::check::check(&s, bars).context("checking the synthetic dataset")?;
    for info in &checked.scans {
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
    println!("   all {} nodules lie inside their scans", checked.nodules_inside);

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
    let predicted = match steps::train(&a, &opened, &store, &run_dir, bars)? {
        Some(split) => {
            steps::predict(&a, &store, &run_dir, &s.annotations, &split, bars)?;
            true
        }
        None => false,
    };
    let pictures = steps::pictures(&a, &opened, &run_dir, predicted)?;
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
    let mut view = format!("ctstream view {}", store.display());
    if cfg!(feature = "train") && a.train_steps > 0 {
        view += &format!(" --run {}", run_dir.display());
    }
    if predicted {
        view += &format!(" --pred {}", a.out.join("pred").display());
    }
    println!("  in the browser:     {view}");
    Ok(())
}
