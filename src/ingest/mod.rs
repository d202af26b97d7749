//! Ingest: find scans under the inputs, resample each onto the store's grid, write its
//! volume file and record, then rewrite the parquet index. Run once; resumable; parallel
//! with bounded memory.
//!
//! - **Discovery**: every MetaImage (`subset*/*.mhd` and any other `.mhd`/`.mha`), NIfTI
//!   and DICOM series under each input ([`crate::io::discover`]). A series id seen twice
//!   is stored once; the second is reported as a duplicate.
//! - **Per scan**, on one of `jobs` worker threads (so at most `jobs` scans are decoded at
//!   once; inner work such as slice decoding and resampling uses the shared rayon pool):
//!   read, [`crate::resample::to_axis_aligned`], [`crate::resample::resample_linear`],
//!   [`crate::store::writer::write_volume`], then the scan's record (`.json`), each file
//!   written under a temporary name and renamed. A scan that fails is reported with its
//!   path and reason; the others go on.
//! - **Resume**: a scan whose record holds the same input fingerprint is skipped. The
//!   fingerprint covers the input files' names, sizes and modification times and the
//!   preprocessing parameters.
//! - **Index**: written last, from the records of every completely stored scan, each table
//!   renamed into place ([`reindex`], the tables built by [`tables`]).
//! - **Object storage** (`--out s3://bucket/luna`): each scan is written to a local staging
//!   folder and then uploaded, volume files first and its record last ([`upload`]).
//! - **Shards** (`--shard K/N`): N runs, on one machine or many, each take a stable share
//!   of the series ([`shard`]) into one store; `ctstream index` rebuilds the index from all
//!   records when they are done.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};

pub mod reindex;
pub mod shard;
pub mod tables;
pub mod upload;

use std::sync::Arc;

use crate::annotations::AnnotationError;
use crate::fsutil::write_bytes_atomic;
use crate::hu::HuStats;
use crate::io::{self, SeriesEntry, SeriesSource, dicom::DicomOptions};
use crate::labels;
use crate::progress::Progress;
use crate::resample;
use crate::store::format::{CodecSpec, Manifest, VERSION_MAJOR, VERSION_MINOR, valid_series_id};
use crate::store::remote::Remote;
use crate::store::writer::{ChunkOptions, write_volume};
use crate::store::{self, INDEX, LabelRecord, MANIFEST, ScanRecord, StoreError, VOLUMES};

/// The default chunk shape (z, y, x); see `format/CHUNKS.md` for the measurement.
pub const DEFAULT_CHUNK: [usize; 3] = [16, 32, 32];

/// What to ingest and how.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Folders (or files) to search for scans.
    pub inputs: Vec<PathBuf>,
    /// `annotations.csv`.
    pub annotations: Option<PathBuf>,
    /// `annotations_excluded.csv`.
    pub excluded: Option<PathBuf>,
    /// `candidates.csv`.
    pub candidates: Option<PathBuf>,
    /// The store folder; for a store on object storage ([`IngestConfig::remote`]), the
    /// local staging folder each scan is written to before it is uploaded.
    pub out: PathBuf,
    /// The store on object storage, when the store is there ([`IngestConfig::set_out`]).
    pub remote: Option<Arc<Remote>>,
    /// Ingest only this share of the series (`--shard K/N`, [`shard::Shard`]).
    pub shard: Option<shard::Shard>,
    /// Target spacing (x, y, z) mm.
    pub spacing_xyz: [f64; 3],
    /// Chunk shape (z, y, x).
    pub chunk_shape_zyx: [usize; 3],
    /// zstd level.
    pub level: i32,
    /// Stored HU are clamped to [lo, hi].
    pub clip: [i16; 2],
    /// Scans processed at once.
    pub jobs: usize,
    /// Add to an existing store, skipping scans already stored with the same fingerprint.
    pub resume: bool,
    /// How DICOM series are read (uneven spacing, missing slices).
    pub dicom: DicomOptions,
    /// The most voxels a scan's resampled grid may have; a scan whose grid would be
    /// larger fails before it is resampled. Default [`crate::volume::MAX_VOXELS`] (the
    /// format's limit, 4 GiB of int16); lower it to bound the memory one scan may take.
    pub max_voxels: u64,
    /// Compute each scan's lung mask and store it as the label volumes `lungs` and
    /// `lung_region` ([`crate::labels::lungs`]); on by default (`--no-lung-mask`).
    pub lung_mask: bool,
    /// Label maps to store with their scans (`--labels [NAME=]DIR`,
    /// [`crate::labels::files`]): NIfTI, MetaImage and DICOM SEG files, paired by id.
    pub labels: Vec<labels::files::LabelSource>,
    /// Folders of LIDC-IDRI reader XML kept apart from the scans (`--lidc-xml DIR`); the
    /// XML files beside a DICOM series' slices are always read ([`crate::lidc::files`]).
    pub lidc_xml: Vec<PathBuf>,
    /// The nnU-Net raw datasets added ([`IngestConfig::add_nnunet`]), case by case: a case
    /// whose label map is missing fails alone.
    pub nnunet: Vec<labels::nnunet::Cases>,
}

impl IngestConfig {
    /// Defaults: 1 mm isotropic, [`DEFAULT_CHUNK`], zstd level 3, clip [-1024, 3071],
    /// one job per CPU.
    pub fn new(inputs: Vec<PathBuf>, out: PathBuf) -> Self {
        IngestConfig {
            inputs,
            annotations: None,
            excluded: None,
            candidates: None,
            out,
            remote: None,
            shard: None,
            spacing_xyz: [1.0; 3],
            chunk_shape_zyx: DEFAULT_CHUNK,
            level: 3,
            clip: [-1024, 3071],
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            resume: false,
            dicom: DicomOptions::default(),
            max_voxels: crate::volume::MAX_VOXELS,
            lung_mask: true,
            labels: Vec::new(),
            lidc_xml: Vec::new(),
            nnunet: Vec::new(),
        }
    }

    /// Sets where the store is: a folder (or `file://` URL), or a URL on object storage
    /// (`s3://bucket/luna`, `gs://`, `az://`; [`crate::store::Location::parse`]), whose
    /// scans are staged in `stage` (default [`upload::default_stage`]) before they are
    /// uploaded. Set [`IngestConfig::shard`] first: the default staging folder is per shard.
    ///
    /// # Errors
    /// [`IngestError::Config`] for a URL the client cannot use, or a read-only (http) one.
    pub fn set_out(&mut self, out: &str, stage: Option<PathBuf>) -> Result<(), IngestError> {
        match crate::store::Location::parse(out)
            .map_err(|e| IngestError::Config(format!("out {out}: {e}")))?
        {
            crate::store::Location::Local(p) => {
                if let Some(s) = stage {
                    return Err(IngestError::Config(format!(
                        "stage {}: only a store on object storage is staged; out {out} is a folder",
                        s.display()
                    )));
                }
                self.out = p;
                self.remote = None;
            }
            crate::store::Location::Remote(r) => {
                if r.url().starts_with("http://") || r.url().starts_with("https://") {
                    return Err(IngestError::Config(format!(
                        "out {out}: an http(s) store is read-only; write to s3://, gs:// or az://"
                    )));
                }
                self.out = stage.unwrap_or_else(|| upload::default_stage(r.url(), self.shard));
                self.remote = Some(r);
            }
        }
        Ok(())
    }

    /// Where the store is: its folder, or its URL on object storage.
    pub fn location(&self) -> crate::store::Location {
        match &self.remote {
            Some(r) => crate::store::Location::Remote(r.clone()),
            None => crate::store::Location::Local(self.out.clone()),
        }
    }

    /// Adds an nnU-Net raw dataset ([`labels::nnunet::cases`]): its `imagesTr/` as an
    /// input and its `labelsTr/` as the label volume `labels`, with `dataset.json`'s names;
    /// each case must have its label map (one without fails alone).
    ///
    /// # Errors
    /// [`IngestError::Labels`] when `dir` is not such a dataset, holds a channel other
    /// than `_0000` or a file without its `file_ending`.
    pub fn add_nnunet(&mut self, dir: &std::path::Path) -> Result<(), IngestError> {
        let cases = labels::nnunet::cases(dir)?;
        self.inputs.push(cases.images.clone());
        self.labels.push(labels::files::LabelSource {
            name: labels::nnunet::LABEL_NAME.to_string(),
            dir: cases.labels.clone(),
        });
        self.nnunet.push(cases);
        Ok(())
    }

    /// Why the scan `series_id` read from `image` cannot be stored as its nnU-Net case
    /// (its label map is missing or unusable), given the label files paired with it.
    fn nnunet_case_fault(
        &self,
        series_id: &str,
        image: &std::path::Path,
        paired: &[&labels::files::LabelFile],
    ) -> Option<String> {
        self.nnunet.iter().find_map(|d| {
            let c = d.case_of(series_id, image)?;
            let has = paired.iter().any(|l| l.name == labels::nnunet::LABEL_NAME && l.path == c.label);
            (!has).then(|| {
                format!(
                    "nnunet {}: case {} has no label map: {}; nnU-Net trains on every case of imagesTr with labelsTr/{}{} (add it, or move the case out of imagesTr)",
                    d.dir.display(),
                    c.case,
                    c.label_missing.clone().unwrap_or_else(|| format!("{} was not found by the label search", c.label.display())),
                    c.case,
                    d.dataset.file_ending
                )
            })
        })
    }

    /// Checks every option where it enters, naming the flag: inputs given, `jobs` in
    /// 1..=1024, and the manifest these options make ([`Manifest::check`]: spacing, chunk
    /// shape, zstd level, clip), each key reported as the flag that sets it. [`ingest`]
    /// calls it first, so a manifest that no reader would open is never written.
    ///
    /// # Errors
    /// [`IngestError::Config`] naming the option (as the CLI and Python name it) and the value.
    pub fn validate(&self) -> Result<(), IngestError> {
        if self.inputs.is_empty() {
            return Err(IngestError::Config("inputs: none given".into()));
        }
        if self.out.as_os_str().is_empty() {
            // An empty path would build the store in the current folder.
            return Err(IngestError::Config("out: empty path; give the store's folder".into()));
        }
        if let Some(s) = self.labels.iter().find(|s| self.lung_mask && s.name == labels::LUNGS) {
            return Err(IngestError::Config(format!(
                "labels {}={}: `{}` is the lung mask ingest computes; store your own lung masks under that name with the lung mask off (lung_mask=False; CLI --no-lung-mask), or choose another name",
                s.name,
                s.dir.display(),
                labels::LUNGS
            )));
        }
        if !(1..=1024).contains(&self.jobs) {
            return Err(IngestError::Config(format!("jobs {}: must be 1..=1024", self.jobs)));
        }
        self.manifest().check().map_err(|e| {
            let option = match e.key {
                "spacing_xyz" => "spacing",
                "chunk_shape_zyx" => "chunk",
                "codec" => "level",
                "hu_clip" => "clip",
                other => other,
            };
            IngestError::Config(format!("{option}: {}", e.message))
        })
    }

    /// The manifest a store made with this configuration has.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            format: "ctstream-store".into(),
            format_version: [VERSION_MAJOR, VERSION_MINOR],
            ctstream_version: env!("CARGO_PKG_VERSION").into(),
            spacing_xyz: self.spacing_xyz,
            interpolation: "trilinear".into(),
            hu_clip: self.clip,
            fill_hu: -1024,
            chunk_shape_zyx: self.chunk_shape_zyx,
            codec: CodecSpec { name: "zstd".into(), level: self.level },
            checksum: "crc32".into(),
        }
    }
}

/// Errors that stop an ingest (a failing scan does not: it is counted in the summary).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// An annotation CSV is unreadable or has a bad row.
    #[error(transparent)]
    Annotations(#[from] AnnotationError),
    /// The store cannot be created, read or indexed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store exists with other parameters.
    #[error(
        "{path}: the store was made with other parameters ({existing}); ingest with the same ones or into a new store"
    )]
    Mismatch {
        /// The store.
        path: PathBuf,
        /// Its manifest, summarised.
        existing: String,
    },
    /// The store already holds scans (of this run's shard, for a sharded ingest) and
    /// `--resume` was not given.
    #[error("{path}: the store already holds {scans} scans{}; pass --resume to add to it (scans already stored are skipped)", shard.map(|s| format!(" of shard {s}")).unwrap_or_default())]
    NotEmpty {
        /// The store.
        path: PathBuf,
        /// How many.
        scans: usize,
        /// The shard they are of.
        shard: Option<shard::Shard>,
    },
    /// An index rebuild was not given a CSV whose rows the store's index holds
    /// ([`reindex::reindex`]): rebuilding without it would drop them.
    #[error(
        "{path}: its index lists {count} {what}; give {csv} again, as to ingest, or rebuild without them on purpose"
    )]
    CsvForgotten {
        /// The store.
        path: PathBuf,
        /// "nodules" or "candidates".
        what: &'static str,
        /// Rows the index holds.
        count: usize,
        /// The CSV to give: "annotations.csv (and annotations_excluded.csv)", "candidates.csv".
        csv: &'static str,
    },
    /// Bad configuration.
    #[error("{0}")]
    Config(String),
    /// A `--labels` folder cannot be searched.
    #[error(transparent)]
    Labels(#[from] labels::error::LabelFileError),
}

/// A scan that could not be stored, or one stored with a warning.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Failure {
    /// The file or folder.
    pub source: String,
    /// Why.
    pub reason: String,
}

/// What an ingest did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct IngestSummary {
    /// Scans stored by this run.
    pub stored: Vec<String>,
    /// Scans skipped because they were already stored with the same fingerprint.
    pub skipped: Vec<String>,
    /// Scans that failed.
    pub failed: Vec<Failure>,
    /// Scans stored with a warning (skipped files, accepted missing slices, clamped
    /// voxels); the same warnings are in each scan's record.
    pub warnings: Vec<Failure>,
    /// Records in the store that are damaged after the run (not re-ingested because
    /// their inputs were not given); the scans are not in the index.
    pub damaged: Vec<crate::store::DamagedRecord>,
    /// Temporary files of interrupted ingests removed before this one started.
    pub temporary_files_removed: usize,
    /// Series ids found more than once (stored once).
    pub duplicates: Vec<String>,
    /// Series found that belong to other shards (`--shard`), left to those.
    pub other_shards: usize,
    /// Bytes uploaded to object storage (volume files, records; not the index).
    pub bytes_uploaded: u64,
    /// Scans in the store after the run.
    pub scans_in_store: usize,
    /// Nodule rows indexed (annotations + excluded) for stored scans.
    pub nodules_indexed: usize,
    /// Of those, how many lie outside their scan.
    pub nodules_outside: usize,
    /// Annotation rows (annotations + excluded) whose series is not in the store.
    pub annotations_without_scan: usize,
    /// Candidate rows indexed.
    pub candidates_indexed: usize,
    /// Candidate rows whose series is not in the store.
    pub candidates_without_scan: usize,
    /// Bytes of input files read by this run.
    pub bytes_in: u64,
    /// Bytes of volume files written by this run.
    pub bytes_out: u64,
    /// Bytes of the stored voxels uncompressed (int16), for this run.
    pub bytes_raw: u64,
    /// Seconds spent computing and writing lung masks, summed over the scans of this run
    /// (they run on `jobs` workers at once, like the rest of a scan's work).
    pub lung_mask_seconds: f64,
    /// LIDC reader XML files read with the scans of this run.
    pub lidc_xml_files: usize,
    /// LIDC nodules (of 3 mm or more, readers' annotations clustered) in the scans of
    /// this run.
    pub lidc_nodules: usize,
    /// Reader annotations in those nodules.
    pub lidc_annotations: usize,
    /// Small nodules and non-nodules (points) in the scans of this run.
    pub lidc_points: usize,
    /// Reader XML files, and annotations in them, that could not be used (each fails
    /// alone: its scan and the rest of its file are stored): `source` the scan (or the
    /// file, for one paired with no scan), `reason` beginning with the XML file and naming
    /// the reader and the nodule.
    pub lidc_failed: Vec<Failure>,
    /// Seconds reading and placing the reader XML, summed over this run's scans.
    pub lidc_parse_seconds: f64,
    /// Seconds clustering, filling and measuring the LIDC masks, summed over this run's
    /// scans.
    pub lidc_mask_seconds: f64,
    /// Seconds the scans with reader XML took in all (read to record), summed: what
    /// `lidc_parse_seconds` and `lidc_mask_seconds` are a share of.
    pub lidc_scan_seconds: f64,
    /// Wall time of the run.
    pub seconds: f64,
}

impl IngestSummary {
    /// Stored voxels uncompressed over bytes written.
    pub fn compression_ratio(&self) -> f64 {
        if self.bytes_out == 0 { 0.0 } else { self.bytes_raw as f64 / self.bytes_out as f64 }
    }
}

/// The input files of a series (for the fingerprint and the input byte count).
fn input_files(entry: &SeriesEntry) -> Vec<PathBuf> {
    match &entry.source {
        SeriesSource::MetaImage(p) => {
            let mut v = vec![p.clone()];
            if let Ok(h) = io::metaimage::read_header(p)
                && let io::metaimage::DataFile::External(d) = h.data_file
            {
                v.push(d);
            }
            v
        }
        SeriesSource::Nifti(p) => vec![p.clone()],
        SeriesSource::Dicom { files, .. } => files.slices.iter().map(|s| s.path.clone()).collect(),
    }
}

/// Fingerprint and total size of a series' input files.
fn fingerprint(
    entry: &SeriesEntry,
    manifest: &Manifest,
    lung_mask: bool,
    label_files: &[&labels::files::LabelFile],
    xml: &[PathBuf],
) -> (String, u64) {
    let mut h = Sha256::new();
    h.update(
        serde_json::to_vec(&(
            &manifest.spacing_xyz,
            &manifest.hu_clip,
            &manifest.chunk_shape_zyx,
            &manifest.codec,
        ))
        .unwrap_or_default(),
    );
    // A scan stored without its lung mask is stored again when one is asked for (and the
    // other way round); fingerprints of stores made before lung masks stay as they were.
    if lung_mask {
        h.update(b"labels: lungs v3");
    }
    // Label files and reader XML count as inputs (their names too: the same file under
    // another name is another store), but not as bytes read.
    let others = label_files
        .iter()
        .map(|l| (format!("label {} {}", l.name, l.path.display()), &l.path))
        .chain(xml.iter().map(|p| (format!("lidc v1 {}", p.display()), p)));
    for (name, path) in others {
        h.update(name.as_bytes());
        if let Ok(m) = std::fs::metadata(path) {
            h.update(m.len().to_le_bytes());
            h.update(
                m.modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos())
                    .to_le_bytes(),
            );
        }
    }
    let mut files = input_files(entry);
    files.sort();
    let mut bytes = 0;
    for f in files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (len, mtime) = std::fs::metadata(&f)
            .map(|m| {
                (
                    m.len(),
                    m.modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos()),
                )
            })
            .unwrap_or((0, 0));
        bytes += len;
        h.update(name.as_bytes());
        h.update(len.to_le_bytes());
        h.update(mtime.to_le_bytes());
    }
    let d = h.finalize();
    (d[..16].iter().map(|b| format!("{b:02x}")).collect(), bytes)
}

fn source_path(entry: &SeriesEntry) -> String {
    match &entry.source {
        SeriesSource::MetaImage(p) | SeriesSource::Nifti(p) => p.display().to_string(),
        SeriesSource::Dicom { root, .. } => root.display().to_string(),
    }
}

/// Writes label volume `name` of scan `id` (on the scan's grid `g`) and returns its
/// record entry.
#[allow(clippy::too_many_arguments)] // the record entry's fields, each once
fn write_label(
    cfg: &IngestConfig,
    manifest: &Manifest,
    id: &str,
    name: &str,
    m: &ndarray::Array3<u8>,
    g: &crate::geometry::Geometry,
    source: &str,
    classes: &[(u8, &str)],
) -> Result<LabelRecord, String> {
    let rel = LabelRecord::file_for(id, name);
    let path = cfg.out.join(&rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let opts = ChunkOptions {
        chunk_shape_zyx: manifest.chunk_shape_zyx,
        level: manifest.codec.level,
        fill_value: 0u8,
    };
    let bytes_stored = write_volume(&path, m, g, &opts).map_err(|e| e.to_string())?;
    let mut components = labels::components::components(m, g);
    // The counts and the box follow from the components (every voxel is in one).
    let s = labels::Summary::of_components(&components);
    let mut components_not_listed = 0;
    let mut per_value: HashMap<u8, usize> = HashMap::new();
    components.retain(|c| {
        let n = per_value.entry(c.value).or_default();
        *n += 1;
        let keep = *n <= store::MAX_LISTED;
        components_not_listed += (!keep) as u64;
        keep
    });
    Ok(LabelRecord {
        name: name.to_string(),
        file: rel,
        bytes_stored,
        source: source.to_string(),
        counts: s.counts,
        classes: classes.iter().map(|(v, n)| (v.to_string(), n.to_string())).collect(),
        bbox_zyx: s.bbox_zyx,
        components,
        components_not_listed,
    })
}

/// Removes files of `labels/<id>/` that the scan's new record does not list (label
/// volumes of an earlier ingest of the scan), after the record is written.
fn remove_unlisted_labels(root: &std::path::Path, rec: &ScanRecord) {
    let dir = root.join(store::LABELS).join(&rec.series_id);
    let Ok(rd) = std::fs::read_dir(&dir) else { return };
    for e in rd.flatten() {
        let rel =
            format!("{}/{}/{}", store::LABELS, rec.series_id, e.file_name().to_string_lossy());
        if e.file_type().is_ok_and(|t| t.is_file()) && !rec.labels.iter().any(|l| l.file == rel) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Where one scan's time went.
#[derive(Debug, Clone, Copy, Default)]
struct ScanSeconds {
    /// The whole scan, read to record.
    total: f64,
    /// The lung mask.
    lungs: f64,
    /// Reading and placing its reader XML.
    lidc_parse: f64,
    /// Its LIDC clusters, masks and measures.
    lidc_masks: f64,
}

/// Reads, resamples and writes one scan (its lung mask, its label files, the label
/// volumes of its LIDC reader XML `xml`); returns its record and where the time went.
fn store_scan(
    entry: &SeriesEntry,
    cfg: &IngestConfig,
    manifest: &Manifest,
    fp: &str,
    label_files: &[&labels::files::LabelFile],
    xml: &[PathBuf],
) -> Result<(ScanRecord, ScanSeconds), String> {
    let t0 = Instant::now();
    let mut seconds = ScanSeconds::default();
    if !xml.is_empty()
        && let Some(l) = label_files
            .iter()
            .find(|l| [LIDC_NODULES, LIDC_READERS, LIDC_READER_MASKS].contains(&l.name.as_str()))
    {
        return Err(format!(
            "{}: the label volume {} is the one this scan's LIDC reader XML makes; store the label file under another name",
            l.path.display(),
            l.name
        ));
    }
    let read = entry.read(&cfg.dicom, &()).map_err(|e| e.to_string())?;
    let mut warnings = read.warnings;
    let v = read.volume;
    let (orig_shape_zyx, orig_geometry, source_format) = (v.shape_zyx(), v.geometry, v.format);
    // The reader XML, on the grid as read (before anything is resampled).
    let lidc = (!xml.is_empty()).then(|| {
        let grid = crate::lidc::series::SourceGrid::new(
            &entry.id,
            read.dicom.as_ref().map(|d| d.order.as_slice()),
            orig_shape_zyx,
            &orig_geometry,
        );
        crate::lidc::series::annotate(xml, &grid)
    });
    drop(read.dicom);
    let (aligned, ag) = resample::to_axis_aligned(v.hu, &v.geometry).map_err(|e| e.to_string())?;
    let (sz, sy, sx) = aligned.dim();
    let grid = resample::resampled_shape([sz, sy, sx], ag.spacing_xyz, manifest.spacing_xyz)
        .map_err(|e| e.to_string())?;
    let voxels: u64 = grid.iter().map(|&n| n as u64).product();
    if voxels > cfg.max_voxels {
        return Err(format!(
            "the resampled grid {grid:?} (z, y, x) would hold {voxels} voxels, more than the limit of {} set for this ingest",
            cfg.max_voxels
        ));
    }
    let (hu, g) = resample::resample_linear(&aligned, &ag, manifest.spacing_xyz, manifest.hu_clip)
        .map_err(|e| e.to_string())?;
    drop(aligned);
    let stats = HuStats::of(&hu).ok_or("the resampled volume is empty")?;
    let rel = format!("{VOLUMES}/{}.ctv", entry.id);
    let path = cfg.out.join(&rel);
    let opts = ChunkOptions {
        chunk_shape_zyx: manifest.chunk_shape_zyx,
        level: manifest.codec.level,
        fill_value: manifest.fill_hu,
    };
    let bytes_stored = write_volume(&path, &hu, &g, &opts).map_err(|e| e.to_string())?;
    let mut label_records = Vec::new();
    if cfg.lung_mask {
        let t = Instant::now();
        let m = labels::lungs::segment(&hu, &g, &labels::lungs::LungParams::default());
        if !m.found() {
            warnings.push(format!(
                "no lungs found (no air component of >= 5 ml that is mostly lung tissue; a phantom, a head CT or a crop?): the label volume {} is empty, and the loader draws negatives at random in this scan",
                labels::LUNGS
            ));
        }
        let lung_classes =
            [(labels::lungs::RIGHT, "right_lung"), (labels::lungs::LEFT, "left_lung")];
        label_records.push(write_label(
            cfg,
            manifest,
            &entry.id,
            labels::LUNGS,
            &m.lungs,
            &g,
            "computed",
            &lung_classes,
        )?);
        seconds.lungs = t.elapsed().as_secs_f64();
    }
    let mut lidc_record = None;
    if let Some(a) = lidc {
        seconds.lidc_parse = a.parse_seconds;
        let t = Instant::now();
        warnings.extend(a.notes);
        let shape = [hu.shape()[0], hu.shape()[1], hu.shape()[2]];
        let bits: Vec<(u8, &str)> = a
            .record
            .readers
            .iter()
            .take(8)
            .enumerate()
            .map(|(k, r)| (1u8 << k, r.as_str()))
            .collect();
        for (name, map, classes) in [
            (LIDC_NODULES, &a.nodules, &[(1u8, "nodule")][..]),
            (LIDC_READERS, &a.readers, &[][..]),
            (LIDC_READER_MASKS, &a.reader_masks, &bits[..]),
        ] {
            let m = labels::nearest::resample_nearest_within(
                map,
                a.painted_box,
                &orig_geometry,
                shape,
                &g,
            )
            .map_err(|e| format!("LIDC label volume {name}: {e}"))?;
            let source = a.record.xml_files.join(", ");
            label_records
                .push(write_label(cfg, manifest, &entry.id, name, &m, &g, &source, classes)?);
        }
        seconds.lidc_masks = a.mask_seconds + t.elapsed().as_secs_f64();
        lidc_record = Some(a.record);
    }
    for l in label_files {
        let (m, classes) =
            read_label_file(l, entry, orig_shape_zyx, &orig_geometry, &mut warnings)?;
        let m = labels::nearest::resample_nearest(
            &m,
            &orig_geometry,
            [hu.shape()[0], hu.shape()[1], hu.shape()[2]],
            &g,
        )
        .map_err(|e| format!("{}: {e}", l.path.display()))?;
        let classes: Vec<(u8, &str)> = classes.iter().map(|(v, n)| (*v, n.as_str())).collect();
        label_records.push(write_label(
            cfg,
            manifest,
            &entry.id,
            &l.name,
            &m,
            &g,
            &l.path.display().to_string(),
            &classes,
        )?);
    }
    // Records list their label volumes by name.
    label_records.sort_by(|a, b| a.name.cmp(&b.name));
    let rec = ScanRecord {
        series_id: entry.id.clone(),
        source_path: source_path(entry),
        source_format: source_format.name().into(),
        orig_shape_zyx,
        orig_spacing_xyz: orig_geometry.spacing_xyz,
        orig_origin_xyz: orig_geometry.origin_xyz,
        orig_direction: orig_geometry.direction,
        shape_zyx: [hu.shape()[0], hu.shape()[1], hu.shape()[2]],
        spacing_xyz: g.spacing_xyz,
        origin_xyz: g.origin_xyz,
        chunk_shape_zyx: manifest.chunk_shape_zyx,
        bytes_raw: hu.len() as u64 * 2,
        bytes_stored,
        hu_min: stats.min,
        hu_max: stats.max,
        hu_mean: stats.mean,
        fingerprint: fp.to_string(),
        volume_file: rel,
        warnings,
        labels: label_records,
        lidc: lidc_record,
    };
    let rec_path = cfg.out.join(VOLUMES).join(format!("{}.json", entry.id));
    // Write only what a reader accepts: the same check read_records makes.
    rec.check().map_err(|e| format!("{}: the record would be refused: {e}", rec_path.display()))?;
    let json = serde_json::to_vec_pretty(&rec).map_err(|e| e.to_string())?;
    write_bytes_atomic(&rec_path, &json).map_err(|e| format!("{}: {e}", rec_path.display()))?;
    remove_unlisted_labels(&cfg.out, &rec);
    seconds.total = t0.elapsed().as_secs_f64();
    Ok((rec, seconds))
}

/// The label volume of a scan's LIDC nodules: 1 where a nodule's consensus is.
pub const LIDC_NODULES: &str = "nodules";
/// The label volume of how many LIDC reader annotations cover each voxel.
pub const LIDC_READERS: &str = "readers";
/// The label volume of which LIDC readers' annotations cover each voxel (a bit each).
pub const LIDC_READER_MASKS: &str = "reader_masks";

/// A label map on a scan's grid and the names of its values.
type LabelMap = (ndarray::Array3<u8>, Vec<(u8, String)>);

/// Reads a label file of a scan on the scan's grid as its files give it (`shape_zyx`, `g`),
/// with its classes (segment labels, for DICOM SEG).
fn read_label_file(
    l: &labels::files::LabelFile,
    entry: &SeriesEntry,
    shape_zyx: [usize; 3],
    g: &crate::geometry::Geometry,
    warnings: &mut Vec<String>,
) -> Result<LabelMap, String> {
    use labels::files::{self as lf, LabelFileKind};
    let scan = PathBuf::from(source_path(entry));
    match l.kind {
        LabelFileKind::Map => {
            let (m, lg) = lf::read_map(&l.path).map_err(|e| e.to_string())?;
            let s = m.shape();
            lf::check_grid(&l.path, [s[0], s[1], s[2]], &lg, &scan, shape_zyx, g)
                .map_err(|e| e.to_string())?;
            match &l.classes {
                Some((dataset, classes)) => {
                    lf::check_classes(&l.path, &m, classes)
                        .map_err(|e| format!("{e} ({})", dataset.display()))?;
                    Ok((m, classes.clone()))
                }
                None => Ok((m, Vec::new())),
            }
        }
        LabelFileKind::Seg => {
            let seg = labels::seg::read(&l.path).map_err(|e| e.to_string())?;
            let placed = seg.place(&scan, shape_zyx, g).map_err(|e| e.to_string())?;
            if placed.overlapping > 0 {
                warnings.push(format!("{}: {} voxels lie in more than one segment; each keeps the highest segment number", l.path.display(), placed.overlapping));
            }
            Ok((placed.labels, seg.segments.into_iter().collect()))
        }
    }
}

/// The error for a store at `path` whose manifest `existing` has other parameters.
fn mismatch(path: PathBuf, existing: &Manifest) -> IngestError {
    IngestError::Mismatch {
        path,
        existing: format!(
            "spacing {:?} mm, chunk {:?}, clip {:?}, zstd level {}",
            existing.spacing_xyz, existing.chunk_shape_zyx, existing.hu_clip, existing.codec.level
        ),
    }
}

/// Creates the store folder (or checks an existing one against `manifest`).
fn prepare_store(cfg: &IngestConfig, manifest: &Manifest) -> Result<(), IngestError> {
    let root = &cfg.out;
    if root.join(MANIFEST).exists() {
        let existing = store::read_manifest(root)?;
        if !existing.same_parameters(manifest) {
            return Err(mismatch(root.clone(), &existing));
        }
    }
    for dir in [root.clone(), root.join(VOLUMES), root.join(INDEX)] {
        std::fs::create_dir_all(&dir)
            .map_err(|source| StoreError::Io { path: dir.clone(), source })?;
    }
    if !root.join(MANIFEST).exists() {
        let json =
            serde_json::to_vec_pretty(manifest).map_err(|e| IngestError::Config(e.to_string()))?;
        write_bytes_atomic(&root.join(MANIFEST), &json)
            .map_err(|source| StoreError::Io { path: root.join(MANIFEST), source })?;
    }
    Ok(())
}

/// Removes the temporary files (`.<name>.tmp-<pid>`, [`crate::fsutil::temp_path`]) that
/// interrupted ingests left in the store. Called holding the store's lock: every writer
/// holds it, so no live process owns them. Returns how many were removed.
fn remove_temporary_files(root: &std::path::Path) -> usize {
    let mut removed = 0;
    let mut dirs = vec![root.to_path_buf(), root.join(VOLUMES), root.join(INDEX)];
    if let Ok(rd) = std::fs::read_dir(root.join(store::LABELS)) {
        dirs.extend(
            rd.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()),
        );
    }
    for dir in dirs {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if crate::fsutil::is_temp_name(&name)
                && e.file_type().is_ok_and(|t| t.is_file())
                && std::fs::remove_file(e.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// The folders that hold the slices of the DICOM series among `entries` (where TCIA puts
/// a series' reader XML).
fn series_folders(entries: &[SeriesEntry]) -> Vec<PathBuf> {
    let mut dirs = BTreeSet::new();
    for e in entries {
        if let SeriesSource::Dicom { files, .. } = &e.source {
            dirs.extend(files.slices.iter().filter_map(|s| s.path.parent().map(PathBuf::from)));
        }
    }
    dirs.into_iter().collect()
}

/// Series found under the inputs, with those that cannot be stored.
struct Found {
    entries: Vec<SeriesEntry>,
    failed: Vec<Failure>,
    duplicates: Vec<String>,
}

/// Discovers the series under every input: the first of each id is kept, later ones are
/// duplicates; ids that cannot name a file, and inputs that cannot be searched, fail.
fn discover_all(inputs: &[PathBuf], progress: &dyn Progress) -> Found {
    let mut found = Found { entries: Vec::new(), failed: Vec::new(), duplicates: Vec::new() };
    let mut seen = BTreeSet::new();
    for input in inputs {
        match io::discover(input, progress) {
            Ok(d) => {
                for e in d.series {
                    if !seen.insert(e.id.clone()) {
                        found.duplicates.push(e.id.clone());
                    } else if !valid_series_id(&e.id) {
                        found.failed.push(Failure {
                            source: source_path(&e),
                            reason: format!("series id {:?} cannot name a file (allowed: letters, digits, '.', '_', '-'; no leading '.')", e.id),
                        });
                    } else {
                        found.entries.push(e);
                    }
                }
            }
            Err(e) => found
                .failed
                .push(Failure { source: input.display().to_string(), reason: e.to_string() }),
        }
    }
    found
}

/// Throughput of only reading the inputs (no resampling, no writing): the bound that
/// ingest throughput is measured against.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReadThroughput {
    /// Scans read.
    pub scans: usize,
    /// Input bytes.
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
}

impl ReadThroughput {
    /// Input MB/s.
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1e6 / self.seconds.max(1e-9)
    }
}

/// Reads every scan under `cfg.inputs` with `cfg.jobs` workers, as ingest does, and
/// discards it: how fast the inputs can merely be read on this machine.
///
/// # Errors
/// [`IngestError::Config`] when no worker thread can start.
pub fn measure_read(
    cfg: &IngestConfig,
    progress: &dyn Progress,
) -> Result<ReadThroughput, IngestError> {
    let t0 = Instant::now();
    let found = discover_all(&cfg.inputs, progress);
    let manifest = cfg.manifest();
    let sizes: Vec<u64> = on_workers(cfg.jobs, &found.entries, |e| {
        let ok = e.read(&cfg.dicom, &()).is_ok();
        if ok { fingerprint(e, &manifest, cfg.lung_mask, &[], &[]).1 } else { 0 }
    })?
    .into_iter()
    .map(|r| r.unwrap_or(0))
    .collect();
    Ok(ReadThroughput {
        scans: sizes.iter().filter(|b| **b > 0).count(),
        bytes: sizes.iter().sum(),
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The message of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Runs `f` on every item with `jobs` named worker threads (`ctstream.ingest.{n}`), each
/// taking the next item when it finishes one, so at most `jobs` items are in progress.
/// Results come back in item order. A panic in `f` is caught at this per-item boundary
/// and comes back as that item's `Err` (its message): one bad scan fails alone.
fn on_workers<T: Sync, R: Send>(
    jobs: usize,
    items: &[T],
    f: impl Fn(&T) -> R + Sync,
) -> Result<Vec<Result<R, String>>, IngestError> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<R, String>)>> =
        Mutex::new(Vec::with_capacity(items.len()));
    let spawn_error = std::thread::scope(|s| {
        for w in 0..jobs.min(items.len()).max(1) {
            let (next, results, f) = (&next, &results, &f);
            let worker = move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(item) = items.get(i) else { break };
                    // The closure only reads shared state; a panic leaves nothing half-updated
                    // that another item uses (each scan writes its own files, atomically).
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(item)))
                        .map_err(|p| panic_message(p.as_ref()));
                    if let Ok(mut v) = results.lock() {
                        v.push((i, r));
                    }
                }
            };
            if let Err(e) = std::thread::Builder::new()
                .name(format!("ctstream.ingest.{w}"))
                .spawn_scoped(s, worker)
            {
                // The workers already started finish the queue; only none at all is fatal.
                if w == 0 {
                    return Some(e);
                }
            }
        }
        None
    });
    if let Some(e) = spawn_error {
        return Err(IngestError::Config(format!("cannot start an ingest worker thread: {e}")));
    }
    let mut v = results.into_inner().unwrap_or_else(|p| p.into_inner());
    v.sort_by_key(|r| r.0);
    Ok(v.into_iter().map(|r| r.1).collect())
}

/// Runs an ingest (see the module docs).
///
/// # Errors
/// [`IngestError`] for what stops the whole run: unreadable CSVs, a store with other
/// parameters, a non-empty store without `resume`, I/O errors on the store itself.
/// Scans that fail are listed in [`IngestSummary::failed`] instead.
pub fn ingest(cfg: &IngestConfig, progress: &dyn Progress) -> Result<IngestSummary, IngestError> {
    let t0 = Instant::now();
    cfg.validate()?;
    // Read the CSVs first: a bad row stops the run before any work.
    let csv = reindex::Annotations::read(
        cfg.annotations.as_deref(),
        cfg.excluded.as_deref(),
        cfg.candidates.as_deref(),
    )?;

    let manifest = cfg.manifest();
    let location = cfg.location();
    let destination = location.name();
    // The writer's lock. An ingest into a local store holds it until this function returns,
    // so a second one is refused; shards share the store and take it only to write the
    // manifest and the index (waiting for each other). An ingest to object storage holds
    // the lock of its private staging folder.
    let mut temporary_files_removed = 0;
    let _lock = match (&cfg.remote, cfg.shard) {
        (Some(r), _) => {
            let lock = store::lock::StoreLock::acquire(&cfg.out)?;
            upload::prepare_stage(&cfg.out)?;
            upload::prepare(r, &manifest)?;
            Some(lock)
        }
        (None, None) => {
            let lock = store::lock::StoreLock::acquire(&cfg.out)?;
            temporary_files_removed = remove_temporary_files(&cfg.out);
            prepare_store(cfg, &manifest)?;
            Some(lock)
        }
        (None, Some(_)) => {
            // Temporary files may be another shard's, being written: left alone.
            let _brief = store::lock::StoreLock::wait(&cfg.out, SHARD_LOCK_WAIT)?;
            prepare_store(cfg, &manifest)?;
            None
        }
    };
    // Damaged records are not "stored": their scans are ingested again from the inputs.
    let existing = store::read_records_at(&location)?.scans;
    if !cfg.resume {
        let mine = existing.keys().filter(|id| cfg.shard.is_none_or(|s| s.contains(id))).count();
        if mine > 0 {
            return Err(IngestError::NotEmpty { path: destination, scans: mine, shard: cfg.shard });
        }
    }

    let mut summary = IngestSummary { temporary_files_removed, ..Default::default() };
    let found = discover_all(&cfg.inputs, progress);
    summary.failed = found.failed;
    summary.duplicates = found.duplicates;
    let mut entries = found.entries;
    // Label files, paired with the scans found; those that pair with none are reported.
    let label_files = labels::files::LabelFiles::discover(&cfg.labels)?;
    let ids: BTreeSet<&str> =
        entries.iter().map(|e| e.id.as_str()).chain(existing.keys().map(String::as_str)).collect();
    // A label file that cannot be paired fails alone (which scan it was for is unknown).
    for (path, why) in &label_files.unreadable {
        summary.failed.push(Failure {
            source: path.display().to_string(),
            reason: format!("{why} (label file not used)"),
        });
    }
    for l in label_files.unpaired(&ids) {
        summary.warnings.push(Failure { source: l.path.display().to_string(), reason: format!("pairs with no scan (label volume {}; see `ctstream ingest --help` for how label files pair with scans)", l.name) });
    }
    // LIDC reader XML: beside the DICOM series' slices and under --lidc-xml, paired by the
    // series each names.
    let xml = crate::lidc::files::XmlFiles::discover(&cfg.lidc_xml, &series_folders(&entries))
        .map_err(IngestError::Config)?;
    for (path, why) in &xml.unreadable {
        summary.lidc_failed.push(Failure {
            source: path.display().to_string(),
            reason: format!("{}: {why} (reader XML not used)", path.display()),
        });
    }
    for (uid, path) in xml.unpaired(&ids) {
        summary.warnings.push(Failure {
            source: path.display().to_string(),
            reason: format!("reader XML of series {uid}, which is not among the scans found"),
        });
    }
    drop(ids);
    // This run's share: the others' series are theirs.
    if let Some(s) = cfg.shard {
        let before = entries.len();
        entries.retain(|e| s.contains(&e.id));
        summary.other_shards = before - entries.len();
    }
    // Resume: skip what is stored with the same fingerprint.
    let mut todo = Vec::new();
    for e in entries {
        let mine = match label_files.for_series(&e.id) {
            Ok(v) => v,
            Err(err) => {
                summary.failed.push(Failure { source: source_path(&e), reason: err.to_string() });
                continue;
            }
        };
        let file = match &e.source {
            SeriesSource::MetaImage(p) | SeriesSource::Nifti(p) => Some(p.as_path()),
            SeriesSource::Dicom { .. } => None,
        };
        if let Some(why) = file.and_then(|f| cfg.nnunet_case_fault(&e.id, f, &mine)) {
            summary.failed.push(Failure { source: source_path(&e), reason: why });
            continue;
        }
        let readings = xml.for_series(&e.id).to_vec();
        let (fp, bytes) = fingerprint(&e, &manifest, cfg.lung_mask, &mine, &readings);
        if existing.get(&e.id).is_some_and(|r| r.fingerprint == fp) {
            summary.skipped.push(e.id.clone());
        } else {
            let mine: Vec<labels::files::LabelFile> = mine.into_iter().cloned().collect();
            todo.push((e, fp, bytes, (mine, readings)));
        }
    }

    // Store, `jobs` scans at a time; on object storage each is uploaded when written.
    let total_bytes: u64 = todo.iter().map(|t| t.2).sum();
    progress.start_bytes("ingesting", total_bytes);
    let done = AtomicUsize::new(0);
    let results = on_workers(cfg.jobs, &todo, |(entry, fp, bytes, (mine, readings))| {
        let r = store_scan(entry, cfg, &manifest, fp, &mine.iter().collect::<Vec<_>>(), readings)
            .and_then(|(rec, seconds)| match &cfg.remote {
                Some(remote) => {
                    upload::publish(remote, &cfg.out, &rec).map(|sent| (rec, seconds, sent))
                }
                None => Ok((rec, seconds, 0)),
            });
        let n = done.fetch_add(1, Ordering::SeqCst) + 1;
        progress.advance(*bytes);
        progress.set_message(&format!("{n}/{} scans", todo.len()));
        r
    })?;
    progress.finish();
    for ((entry, _, bytes, _), r) in todo.iter().zip(results) {
        match r {
            Ok(Ok((rec, seconds, sent))) => {
                summary.lung_mask_seconds += seconds.lungs;
                if let Some(l) = &rec.lidc {
                    summary.lidc_xml_files += l.xml_files.len();
                    summary.lidc_nodules += l.nodules.len();
                    summary.lidc_annotations += l.annotations.len();
                    summary.lidc_points += l.points.len();
                    summary.lidc_parse_seconds += seconds.lidc_parse;
                    summary.lidc_mask_seconds += seconds.lidc_masks;
                    summary.lidc_scan_seconds += seconds.total;
                    for f in &l.failed {
                        summary
                            .lidc_failed
                            .push(Failure { source: source_path(entry), reason: f.clone() });
                    }
                }
                summary.bytes_in += bytes;
                summary.bytes_out += rec.bytes_stored;
                summary.bytes_raw += rec.bytes_raw;
                summary.bytes_uploaded += sent;
                for w in &rec.warnings {
                    summary
                        .warnings
                        .push(Failure { source: source_path(entry), reason: w.clone() });
                }
                summary.stored.push(rec.series_id);
            }
            Ok(Err(reason)) => summary.failed.push(Failure { source: source_path(entry), reason }),
            Err(panic) => summary.failed.push(Failure {
                source: source_path(entry),
                reason: format!(
                    "internal error (a bug in ctstream; please report it with this file): {panic}"
                ),
            }),
        }
    }

    // The index, last, from every completely stored scan: always written, whatever
    // failed above (a shard waits for the lock, which other shards take for theirs).
    let index = {
        let _brief = if cfg.remote.is_none() && cfg.shard.is_some() {
            Some(store::lock::StoreLock::wait(&cfg.out, SHARD_LOCK_WAIT)?)
        } else {
            None
        };
        reindex::write_index(&store::Store::open_location(location)?, &csv)?
    };
    summary.damaged = index.damaged;
    summary.warnings.extend(index.warnings);
    summary.scans_in_store = index.scans_in_store;
    summary.nodules_indexed = index.nodules_indexed;
    summary.nodules_outside = index.nodules_outside;
    summary.annotations_without_scan = index.annotations_without_scan;
    summary.candidates_indexed = index.candidates_indexed;
    summary.candidates_without_scan = index.candidates_without_scan;
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

/// How long a shard waits for the store's lock (another shard writing the index, or an
/// ingest without `--shard` holding it throughout).
pub const SHARD_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic in one item is that item's error (with its message); the others finish.
    #[test]
    fn a_panic_fails_only_its_own_item() {
        let items: Vec<u32> = (0..7).collect();
        let r = on_workers(2, &items, |&i| if i == 3 { panic!("bad scan {i}") } else { i * 10 })
            .unwrap();
        assert_eq!(r.len(), 7);
        for (i, v) in r.iter().enumerate() {
            match v {
                Ok(x) => assert_eq!(*x, i as u32 * 10),
                Err(m) => assert_eq!((i, m.as_str()), (3, "bad scan 3")),
            }
        }
        assert_eq!(r.iter().filter(|v| v.is_err()).count(), 1);
    }
}
