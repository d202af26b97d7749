//! `ctstream bench --store STORE`: the loader's throughput against the machine's bounds.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use ctstream::loader::{Loader, bench};

use crate::ExitError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store to read: a folder, or a URL on object storage (s3://bucket/prefix, ...).
    #[arg(long)]
    store: PathBuf,
    /// Seconds to measure, after a warm-up of a quarter of that (at most 5 s).
    #[arg(long, default_value_t = 10.0, value_parser = parse_seconds)]
    seconds: f64,
    /// Loader worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Patches per batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Threads fetching the chunks of coming patches from a store on object storage
    /// (none are started for a local store).
    #[arg(long, default_value_t = ctstream::loader::DEFAULT_FETCHERS)]
    fetchers: usize,
    /// Decoded-chunk cache budget in MB.
    #[arg(long, default_value_t = 256)]
    cache: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where negatives come from, as `train --negatives` (sources lungs, body, dense, candidates,
    /// random; `lungs`, the loader's default, or shares: `lungs=0.5,body=0.5`).
    #[arg(long, default_value = "lungs", value_name = "SOURCE[=SHARE],...")]
    negatives: String,
    /// Augmentation, as `train --augment` (`nnunet`, `flip,rotation:p=0.5`, ...; none by
    /// default).
    #[arg(long, default_value = "none")]
    augment: String,
    /// Masks from a label volume (NAME or NAME:V,V), as `train --mask-label`.
    #[arg(long, value_name = "NAME[:V,...]")]
    mask_label: Option<ctstream::loader::MaskLabel>,
    #[command(flatten)]
    disk_cache: crate::DiskCacheArgs,
    /// Print JSON (keys: patches_per_s, decode_bound_patches_per_s, copy_bound_patches_per_s,
    /// numpy_f32_bound_patches_per_s, int16_copy_bound_patches_per_s, compact (null, or
    /// its patches_per_s, ratio_to_f32, ...), read_amplification, cache_hit_rate,
    /// peak_rss_bytes, ...).
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<(), ExitError> {
    let store = crate::open_store(&a.store, &a.disk_cache)?;
    let negatives = a
        .negatives
        .parse::<ctstream::loader::Negatives>()
        .map_err(|e| crate::ExitError(crate::Exit::Usage, anyhow::anyhow!("--negatives: {e}")))?;
    let augment = ctstream::loader::Augment::parse(
        &a.augment,
        ctstream::loader::LoaderConfig::default().patch_zyx,
    )
    .map_err(|e| crate::ExitError(crate::Exit::Usage, anyhow::anyhow!("--augment: {e}")))?;
    let loader = Loader::builder(&store)
        .augment(augment)
        .workers(a.workers)
        .fetchers(a.fetchers)
        .batch_size(a.batch_size)
        .cache_bytes(a.cache.saturating_mul(1 << 20))
        .seed(a.seed)
        .negatives(negatives);
    let loader = match &a.mask_label {
        Some(m) => loader.mask_label(&m.name, &m.values),
        None => loader,
    }
    .build()
    .map_err(crate::loader_exit)?;
    let warm = Duration::from_secs_f64((a.seconds / 4.0).min(5.0));
    for n in loader.notes() {
        eprintln!("note: {n}");
    }
    if !a.json {
        eprintln!(
            "measuring {} workers, batch {}, {} s after {:.1} s of warm-up ...",
            a.workers,
            a.batch_size,
            a.seconds,
            warm.as_secs_f64()
        );
    }
    let seconds = Duration::from_secs_f64(a.seconds);
    let mut r = bench::run(&loader, warm, seconds)?;
    // The same configuration delivering compact batches, where its augmentation allows.
    let compact = ctstream::loader::LoaderConfig { compact: true, ..loader.config().clone() };
    drop(loader);
    if compact.augment.needs_float().is_none() {
        let loader = Loader::builder(&store).config(compact).build().map_err(crate::loader_exit)?;
        bench::compact(&loader, warm, seconds, &mut r)?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).context("writing JSON")?);
        return Ok(());
    }
    let mb = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "loader        {:8.0} patches/s  ({:.0} MB/s of f32 image + mask; {} patches of {:?} in {:.1} s)",
        r.patches_per_s, r.mb_per_s, r.patches, r.patch_zyx, r.seconds
    );
    println!(
        "decode bound  {:8.0} patches/s  (every touched chunk decoded, {:.1} chunks/patch)   loader / bound = {:.2}",
        r.decode_bound_patches_per_s, r.chunks_per_patch, r.ratio_to_decode_bound
    );
    println!(
        "copy bound    {:8.0} patches/s  (window + mask + layout of decoded patches)        loader / bound = {:.2}",
        r.copy_bound_patches_per_s, r.ratio_to_copy_bound
    );
    println!(
        "NumPy f32     {:8.0} patches/s  (crop + cast to f32 of image and mask, whole scans in memory)  loader / bound = {:.2}",
        r.numpy_f32_bound_patches_per_s, r.ratio_to_numpy_f32_bound
    );
    match &r.compact {
        Some(c) => {
            println!(
                "compact       {:8.0} patches/s  ({:.0} MB/s of int16 image + uint8 mask; peak RSS {:.0} MiB)  compact / f32 = {:.2}",
                c.patches_per_s,
                c.mb_per_s,
                mb(c.peak_rss_bytes),
                c.ratio_to_f32
            );
            println!(
                "NumPy int16   {:8.0} patches/s  (int16 crop copy of the image alone)            compact / bound = {:.2}",
                r.int16_copy_bound_patches_per_s, c.ratio_to_int16_copy_bound
            );
        }
        None => println!("compact       not measured: --augment {} needs f32 values", a.augment),
    }
    println!(
        "cache         hit rate {:.3}, read amplification {:.2} (int16 decoded / delivered), budget {} MB",
        r.cache_hit_rate, r.read_amplification, a.cache
    );
    if let Some(rm) = &r.remote {
        println!(
            "remote        {:.2} requests/patch, {:.0} KB received/patch, {:.2} bytes received per byte used ({} requests)",
            rm.requests_per_patch,
            rm.bytes_per_patch / 1e3,
            rm.fetched_per_byte_wanted,
            rm.requests
        );
    }
    println!(
        "memory        peak RSS {:.0} MiB; RSS {:.0} -> {:.0} MiB over the measurement",
        mb(r.peak_rss_bytes),
        mb(r.rss_start_bytes),
        mb(r.rss_end_bytes)
    );
    Ok(())
}

/// The longest measurement `--seconds` asks for: a day.
const MAX_SECONDS: f64 = 86_400.0;

/// `--seconds`: a finite number of seconds above 0, at most a day.
fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{s}: {e}"))?;
    if v.is_finite() && v > 0.0 && v <= MAX_SECONDS {
        Ok(v)
    } else {
        Err(format!("{s}: give seconds above 0, at most {MAX_SECONDS}"))
    }
}
