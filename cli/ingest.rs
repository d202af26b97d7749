//! `ctstream ingest`: scans + CSVs in, a store out.

use std::path::PathBuf;

use anyhow::Context;
use ctstream::ingest::{self, IngestConfig};
use ctstream::io::dicom::{DicomOptions, UnevenPolicy};

use crate::progress::Bars;
use crate::{Exit, ExitError, parse3};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A folder (or file) to search for scans: LUNA16 subsets, .mhd/.mha, .nii(.gz), DICOM.
    /// Repeat for several.
    #[arg(long, required_unless_present = "nnunet")]
    input: Vec<PathBuf>,
    /// An nnU-Net raw dataset folder (imagesTr/, labelsTr/, dataset.json): its cases are
    /// the scans, each with its label map as the label volume `labels`, named as
    /// dataset.json names its labels. Repeat for several; --input may add more scans.
    #[arg(long, value_name = "DIR")]
    nnunet: Vec<PathBuf>,
    #[command(flatten)]
    csv: crate::CsvArgs,
    /// The store to create (or add to, with --resume): a folder, or a URL on object
    /// storage (s3://bucket/prefix, gs://, az://; credentials and endpoint from the
    /// environment: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL,
    /// ...). On object storage each scan is written to --stage and then uploaded.
    #[arg(long)]
    out: String,
    /// The local folder each scan is written to before it is uploaded to an --out on object
    /// storage (needs room for --jobs scans); default: one under the system's temporary
    /// folder, per store and shard.
    #[arg(long, value_name = "DIR")]
    stage: Option<PathBuf>,
    /// Ingest only shard K of N (0 <= K < N): the series whose SHA-256 of the id, as a
    /// number, is K mod N. Run the N shards at once, on one machine or many, into one
    /// store (say --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT), then
    /// `ctstream index STORE` once they are done; docs/CLUSTER.md has a Slurm script and a
    /// Kubernetes Job.
    #[arg(long, value_name = "K/N", allow_hyphen_values = true)]
    shard: Option<ctstream::ingest::shard::Shard>,
    /// Target spacing X,Y,Z in mm.
    #[arg(long, value_parser = parse3::<f64>, default_value = "1,1,1")]
    spacing: [f64; 3],
    /// Chunk shape Z,Y,X in voxels.
    #[arg(long, value_parser = parse3::<usize>, default_value = "16,32,32")]
    chunk: [usize; 3],
    /// zstd level (1-22).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=22))]
    level: i32,
    /// Clamp stored HU to LO,HI.
    #[arg(long, value_parser = parse2, default_value = "-1024,3071", allow_hyphen_values = true)]
    clip: [i16; 2],
    /// Scans processed at once (each holds one decoded scan in memory); default: CPUs.
    #[arg(long)]
    jobs: Option<usize>,
    /// Add to an existing store; scans already stored with the same inputs are skipped.
    #[arg(long)]
    resume: bool,
    /// Resample DICOM series with uneven slice spacing instead of failing them (steps that
    /// are whole multiples of the series' step are missing slices, not uneven spacing).
    #[arg(long)]
    resample_uneven: bool,
    /// Store DICOM series with missing or damaged slices anyway, interpolating over the
    /// gaps; each is named in a warning in the summary and in the scan's record.
    #[arg(long)]
    allow_missing_slices: bool,
    /// Do not compute lung masks (by default each CT scan gets the label volume `lungs`:
    /// 0 outside, 1 right lung, 2 left lung; format/FORMAT.md, "Label volumes").
    #[arg(long)]
    no_lung_mask: bool,
    /// Label maps to store with their scans, as the label volume NAME (default `labels`):
    /// NIfTI and MetaImage files pair with the scan whose series id is their id, or their
    /// id plus nnU-Net's `_0000`; DICOM SEG files with the series they reference. Each must
    /// lie on its scan's grid and hold integers 0..=255. Repeat for several names.
    #[arg(long, value_name = "[NAME=]DIR")]
    labels: Vec<ctstream::labels::files::LabelSource>,
    /// A folder of LIDC-IDRI reader XML kept apart from the scans (TCIA's "XML only"
    /// archive, tcia-lidc-xml/NNN/*.xml): each file pairs with the series its
    /// SeriesInstanceUid names. XML files beside a DICOM series' slices are read without
    /// it. Each series' readers' nodules become the label volumes `nodules` (consensus) and
    /// `readers` (count), rows of nodules.parquet and annotations.parquet. Repeat for
    /// several.
    #[arg(long, value_name = "DIR")]
    lidc_xml: Vec<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// First time merely reading the inputs (the bound), then ingest, and report both
    /// throughputs and their ratio.
    #[arg(long)]
    measure_read: bool,
}

fn parse2(s: &str) -> Result<[i16; 2], String> {
    let v: Vec<i16> = s
        .split(',')
        .map(|p| p.trim().parse::<i16>().map_err(|_| format!("`{p}` is not an int16")))
        .collect::<Result<_, _>>()?;
    match v[..] {
        [lo, hi] if lo < hi => Ok([lo, hi]),
        _ => Err(format!("expected LO,HI with LO < HI, got `{s}`")),
    }
}

pub fn run(a: Args, bars: &Bars) -> Result<(), ExitError> {
    let mut cfg = IngestConfig::new(a.input, PathBuf::new());
    cfg.shard = a.shard;
    cfg.set_out(&a.out, a.stage).map_err(|e| ExitError(Exit::Usage, e.into()))?;
    cfg.annotations = a.csv.annotations;
    cfg.excluded = a.csv.excluded;
    cfg.candidates = a.csv.candidates;
    cfg.spacing_xyz = a.spacing;
    cfg.chunk_shape_zyx = a.chunk;
    cfg.level = a.level;
    cfg.clip = a.clip;
    if let Some(j) = a.jobs {
        cfg.jobs = j;
    }
    cfg.resume = a.resume;
    cfg.lung_mask = !a.no_lung_mask;
    cfg.labels = a.labels;
    cfg.lidc_xml = a.lidc_xml;
    for d in &a.nnunet {
        cfg.add_nnunet(d).map_err(|e| ExitError(Exit::Usage, e.into()))?;
    }
    cfg.dicom = DicomOptions {
        series: None,
        uneven: if a.resample_uneven { UnevenPolicy::Resample } else { UnevenPolicy::Refuse },
        allow_missing_slices: a.allow_missing_slices,
    };
    // Every flag checked before anything is read or written.
    cfg.validate().map_err(|e| ExitError(Exit::Usage, e.into()))?;
    let read = if a.measure_read {
        Some(ingest::measure_read(&cfg, bars).context("reading the inputs")?)
    } else {
        None
    };
    let dest = cfg.location().name();
    let s =
        ingest::ingest(&cfg, bars).with_context(|| format!("ingesting into {}", dest.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s).context("writing JSON")?);
    } else {
        let mb = |b: u64| b as f64 / 1e6;
        println!("ingest into {} finished in {:.1} s", dest.display(), s.seconds);
        println!(
            "  scans       {} stored, {} failed, {} skipped (already stored), {} duplicate ids; {} in the store",
            s.stored.len(),
            s.failed.len(),
            s.skipped.len(),
            s.duplicates.len(),
            s.scans_in_store
        );
        if let Some(k) = cfg.shard {
            println!(
                "  shard       {k}: {} series found belong to the other shards; run `ctstream index {}` (with the CSVs) when all are done",
                s.other_shards,
                dest.display()
            );
        }
        if cfg.remote.is_some() {
            println!(
                "  uploaded    {:.1} MB (volume files and records; staged in {})",
                mb(s.bytes_uploaded),
                cfg.out.display()
            );
        }
        println!(
            "  nodules     {} indexed, {} outside their scan; {} annotation rows for series not in the store",
            s.nodules_indexed, s.nodules_outside, s.annotations_without_scan
        );
        println!(
            "  candidates  {} indexed; {} for series not in the store",
            s.candidates_indexed, s.candidates_without_scan
        );
        if s.lidc_xml_files > 0 || !s.lidc_failed.is_empty() {
            println!(
                "  LIDC        {} reader XML files: {} nodules ({} reader annotations), {} small nodules and non-nodules, {} annotations or files not used",
                s.lidc_xml_files,
                s.lidc_nodules,
                s.lidc_annotations,
                s.lidc_points,
                s.lidc_failed.len()
            );
            let work = s.lidc_parse_seconds + s.lidc_mask_seconds;
            println!(
                "              XML {:.2} s, clusters and masks {:.2} s: {:.1} % of those scans' {:.1} s",
                s.lidc_parse_seconds,
                s.lidc_mask_seconds,
                100.0 * work / s.lidc_scan_seconds.max(1e-9),
                s.lidc_scan_seconds
            );
        }
        if cfg.lung_mask {
            println!(
                "  lung masks  {:.1} s of the workers' time ({:.2} s per stored scan)",
                s.lung_mask_seconds,
                s.lung_mask_seconds / s.stored.len().max(1) as f64
            );
        }
        println!(
            "  bytes       {:.1} MB read, {:.1} MB written ({:.1} MB of int16 voxels, ratio {:.2}); {:.1} MB/s of input",
            mb(s.bytes_in),
            mb(s.bytes_out),
            mb(s.bytes_raw),
            s.compression_ratio(),
            mb(s.bytes_in) / s.seconds.max(1e-9)
        );
        if let Some(r) = read {
            let ingest_mbs = mb(s.bytes_in) / s.seconds.max(1e-9);
            println!(
                "  throughput  read only {:.1} MB/s ({} scans, {:.1} s); ingest {:.1} MB/s = {:.2} x the read-only bound",
                r.mb_per_s(),
                r.scans,
                r.seconds,
                ingest_mbs,
                ingest_mbs / r.mb_per_s().max(1e-9)
            );
        }
        if s.temporary_files_removed > 0 {
            println!(
                "  tidied      {} temporary files of interrupted ingests removed",
                s.temporary_files_removed
            );
        }
        for w in &s.warnings {
            println!("  WARNING     {}", named_once(w));
        }
        for d in &s.damaged {
            println!(
                "  DAMAGED     {}: {} (not in the index; ingest --resume with its inputs stores it again)",
                d.path.display(),
                d.reason
            );
        }
        for f in &s.lidc_failed {
            println!("  LIDC        not used: {}", f.reason);
        }
        for f in &s.failed {
            println!("  FAILED      {}", named_once(f));
        }
    }
    if !s.failed.is_empty() {
        return Err(ExitError(
            Exit::Failed,
            anyhow::anyhow!(
                "{} scans failed (listed above); the others are stored",
                s.failed.len()
            ),
        ));
    }
    Ok(())
}

/// `source: reason`, with the source once: the readers' messages begin with the file they
/// name, which is the failure's source.
fn named_once(f: &ctstream::ingest::Failure) -> String {
    if f.reason.starts_with(&format!("{}: ", f.source)) {
        f.reason.clone()
    } else {
        format!("{}: {}", f.source, f.reason)
    }
}
