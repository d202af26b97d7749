//! `ctstream batches --store STORE`: what the loader delivers, batch by batch, as digests
//! and patch lists, so two runs (or the Python package and the Rust library) can be
//! compared byte for byte without moving the arrays.

use std::path::PathBuf;

use ctstream::loader::{Augment, Loader, MaskLabel, Negatives};
use sha2::{Digest, Sha256};

use crate::{Exit, ExitError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store to read.
    #[arg(long)]
    store: PathBuf,
    /// The epoch.
    #[arg(long, default_value_t = 0)]
    epoch: u64,
    /// The first batch.
    #[arg(long, default_value_t = 0)]
    first: usize,
    /// How many batches [default: to the end of the epoch].
    #[arg(long)]
    count: Option<usize>,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Patches per batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Patch shape Z,Y,X.
    #[arg(long, value_parser = crate::parse3::<usize>, default_value = "32,64,64")]
    patch: [usize; 3],
    /// Share of nodule-centred patches.
    #[arg(long, default_value_t = 0.8)]
    positive_share: f64,
    /// Largest shift Z,Y,X (voxels) of a positive patch's centre.
    #[arg(long, value_parser = crate::parse3::<usize>, default_value = "8,8,8")]
    jitter: [usize; 3],
    /// Where negatives come from, as `train --negatives` (`lungs`, `lungs=0.5,body=0.5`,
    /// ...; sources lungs, body, dense, candidates, random, hard).
    #[arg(long, default_value = "lungs", value_name = "SOURCE[=SHARE],...")]
    negatives: String,
    /// Findings to centre `hard` negatives on, as `train --hard-negatives`.
    #[arg(long, value_name = "FINDINGS.csv")]
    hard_negatives: Option<std::path::PathBuf>,
    /// Augmentations, as `train --augment` (`nnunet`, `flip,rotation:p=0.5`, ...).
    #[arg(long, default_value = "none")]
    augment: String,
    /// Masks from a label volume (NAME or NAME:V,V).
    #[arg(long, value_name = "NAME[:V,...]")]
    mask_label: Option<MaskLabel>,
    #[command(flatten)]
    nodules: crate::NoduleFilterArgs,
    /// Batches per epoch [default: enough for every nodule once].
    #[arg(long)]
    batches_per_epoch: Option<usize>,
    /// Loader worker threads (the batches do not depend on it).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Print JSON lines, one per batch: epoch, index, image_sha256 and mask_sha256 (of the
    /// f32 little-endian bytes, C order), and the patches.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    disk_cache: crate::DiskCacheArgs,
}

fn usage(flag: &str, e: impl std::fmt::Display) -> ExitError {
    ExitError(Exit::Usage, anyhow::anyhow!("{flag}: {e}"))
}

fn sha256_f32(v: &[f32]) -> String {
    let mut h = Sha256::new();
    for x in v {
        h.update(x.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn run(a: Args) -> Result<(), ExitError> {
    let store = crate::open_store(&a.store, &a.disk_cache)?;
    let negatives = a.negatives.parse::<Negatives>().map_err(|e| usage("--negatives", e))?;
    let augment = Augment::parse(&a.augment, a.patch).map_err(|e| usage("--augment", e))?;
    let b = Loader::builder(&store)
        .seed(a.seed)
        .batch_size(a.batch_size)
        .patch(a.patch)
        .positive_share(a.positive_share)
        .jitter(a.jitter)
        .negatives(negatives)
        .hard_negatives(a.hard_negatives.clone())
        .augment(augment)
        .workers(a.workers)
        .batches_per_epoch(a.batches_per_epoch)
        .nodule_filter(a.nodules.filter());
    let loader = match &a.mask_label {
        Some(m) => b.mask_label(&m.name, &m.values),
        None => b,
    }
    .build()
    .map_err(crate::loader_exit)?;
    let end = loader.batches_per_epoch();
    let count = a.count.unwrap_or(end.saturating_sub(a.first));
    let batches = loader.batches(a.epoch, a.first, count).map_err(|e| {
        ExitError(Exit::Usage, anyhow::anyhow!("--first {} --count {count}: {e}", a.first))
    })?;
    for batch in batches {
        let batch = batch?;
        let (img, mask) = (sha256_f32(&batch.images), sha256_f32(&batch.masks));
        if a.json {
            let patches: Vec<serde_json::Value> = batch
                .patches
                .iter()
                .map(|p| serde_json::json!({"series_id": p.series_id, "start_zyx": p.start_zyx, "positive": p.positive, "nodule_id": p.nodule_id, "source": p.negative_source.map_or("positive", |s| s.name())}))
                .collect();
            let line = serde_json::json!({"epoch": batch.epoch, "index": batch.index, "shape": batch.shape, "image_sha256": img, "mask_sha256": mask, "patches": patches});
            println!("{line}");
        } else {
            println!(
                "epoch {} batch {:4}  image {}  mask {}",
                batch.epoch,
                batch.index,
                &img[..16],
                &mask[..16]
            );
            for p in &batch.patches {
                let kind = match (p.positive, p.negative_source) {
                    (true, _) => format!("nodule {}", p.nodule_id.unwrap_or(-1)),
                    (false, Some(s)) => format!("negative ({s})"),
                    (false, None) => "negative".to_string(),
                };
                println!("    {} at {:?}  {kind}", p.series_id, p.start_zyx);
            }
        }
    }
    Ok(())
}
