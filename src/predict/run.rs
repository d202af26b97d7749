//! A prediction run: stored scans in, probability maps and findings out, with any model.
//! What `ctstream predict` does and `ctstream.predict` (Python) does with the user's own
//! network; the model is a function from a batch of windowed tiles to probabilities
//! ([`super::predict_volume_in`]).
//!
//! Per scan ([`predict_scan`]): the lung region from its `lungs` label volume (unless
//! [`PredictConfig::lung_roi`] is off, or the scan has no lung mask), the sliding window over
//! the tiles that are the nearest tile of some voxel of it ([`super::tiles_in`]), the
//! connected components of the map at the threshold, and of those the ones whose centre
//! lies in the region. A run ([`run`]) writes, in its folder:
//! `candidates.csv` (a LUNA16 submission), `findings.parquet` ([`super::components::findings_batch`]),
//! `series.txt` (the scans predicted, for `evaluate`'s series list) and each scan's map
//! ([`MapFormat`]), one scan at a time, so memory holds one scan's map.

use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::Array3;

use super::components::{self, Component};
use super::operating::{PostProcess, Score};
use super::{PredictError, Roi, SlidingWindow};
use crate::annotations::Detection;
use crate::geometry::Geometry;
use crate::progress::Progress;
use crate::store::Store;

/// How a probability map is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MapFormat {
    /// A store volume file (`volumes/<id>.ctv`) of probability x 1000 as int16 (per mille),
    /// readable as a stored volume (`ctstream export`).
    #[default]
    Ctv,
    /// A MetaImage (`<id>.mhd` with its zlib-compressed `.zraw`) of float32 probabilities.
    Mhd,
    /// Not written.
    None,
}

impl std::str::FromStr for MapFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ctv" => Ok(MapFormat::Ctv),
            "mhd" => Ok(MapFormat::Mhd),
            "none" => Ok(MapFormat::None),
            _ => Err(format!("map format {s:?}: give ctv, mhd or none")),
        }
    }
}

impl std::fmt::Display for MapFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MapFormat::Ctv => "ctv",
            MapFormat::Mhd => "mhd",
            MapFormat::None => "none",
        })
    }
}

/// Everything a prediction run needs besides the model and the scans, with the defaults
/// the CLI and Python take.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictConfig {
    /// The sliding window (tile shape, overlap, tiles per model call, HU window, cache).
    pub window: SlidingWindow,
    /// Batches predicted at once, one per thread (1 for a model that uses every core
    /// itself, or that must be called from one thread at a time).
    pub threads: usize,
    /// How the map becomes findings: threshold 0.5, every component, no merging (a run's
    /// operating point, [`super::operating`], when `ctstream predict` has one).
    pub post: PostProcess,
    /// Predict only in the lung region where the scan has a lung mask (only the tiles
    /// that are the nearest tile of some voxel of it are computed, [`super::tiles_in`];
    /// findings outside it are dropped): on.
    pub lung_roi: bool,
    /// How [`run`] writes each scan's probability map.
    pub map_format: MapFormat,
}

impl Default for PredictConfig {
    fn default() -> Self {
        PredictConfig {
            window: SlidingWindow::default(),
            threads: 1,
            post: PostProcess::default(),
            lung_roi: true,
            map_format: MapFormat::Ctv,
        }
    }
}

impl PredictConfig {
    /// Checks every value; each message names the setting.
    ///
    /// # Errors
    /// [`PredictError::Config`].
    pub fn validate(&self) -> Result<(), PredictError> {
        self.window.validate()?;
        let bad = |m: String| Err(PredictError::Config(m));
        if self.threads == 0 || self.threads > 1024 {
            return bad(format!("threads {}: give 1 to 1024", self.threads));
        }
        self.post.validate().map_err(PredictError::Config)?;
        Ok(())
    }
}

/// Where prediction looked in a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Looked {
    /// In the lung region.
    LungRegion,
    /// Everywhere: the scan has no lung mask (or an empty one).
    NoLungMask,
    /// Everywhere, as asked ([`PredictConfig::lung_roi`] off).
    Everywhere,
}

/// What prediction made of one scan.
#[derive(Debug, Clone)]
pub struct ScanPrediction {
    /// The scan.
    pub series_id: String,
    /// The probability of every voxel on the stored grid (z, y, x); 0 where no computed
    /// tile reaches.
    pub probabilities: Array3<f32>,
    /// The stored grid.
    pub geometry: Geometry,
    /// Tiles of the whole scan.
    pub tiles: usize,
    /// Tiles computed (the nearest tile of some voxel of the region, [`super::tiles_in`]).
    pub tiles_computed: usize,
    /// Where it looked.
    pub looked: Looked,
    /// The lung region it looked in (None: everywhere).
    pub roi: Option<Roi>,
    /// Findings: components at the threshold, of at least `min_voxels`, merged, in the
    /// region, highest score first ([`PostProcess::findings`]).
    pub findings: Vec<Component>,
    /// The score the findings are ranked by ([`PostProcess::score`]).
    pub score: Score,
    /// Components left out because their centre lies outside the region.
    pub outside_region: usize,
    /// Wall time of the scan, seconds.
    pub seconds: f64,
}

impl ScanPrediction {
    /// The findings as LUNA16 detections (centre, score).
    pub fn detections(&self) -> Vec<Detection> {
        super::operating::detections(&self.series_id, &self.findings, self.score)
    }
}

/// Predicts one stored scan with `model` (see the module doc).
///
/// # Errors
/// [`PredictError::Config`] for settings [`PredictConfig::validate`] refuses;
/// [`PredictError::Store`] for a scan the store lacks or cannot read;
/// [`PredictError::Model`] when the model fails.
pub fn predict_scan(
    store: &Store,
    series_id: &str,
    cfg: &PredictConfig,
    model: impl Fn(&[f32], [usize; 5]) -> Result<Vec<f32>, String> + Sync,
    progress: &dyn Progress,
) -> Result<ScanPrediction, PredictError> {
    cfg.validate()?;
    let t0 = Instant::now();
    let rec = store.scan(series_id)?;
    let volume = store.volume(series_id)?;
    let has_lungs = rec.label(crate::labels::LUNGS).is_some_and(|l| l.foreground_voxels() > 0);
    let (roi, looked) = match (cfg.lung_roi, has_lungs) {
        (false, _) => (None, Looked::Everywhere),
        (true, false) => (None, Looked::NoLungMask),
        (true, true) => (
            Some(Roi::lung_region(&*store.label(series_id, crate::labels::LUNGS)?)?),
            Looked::LungRegion,
        ),
    };
    let sw = &cfg.window;
    let tiles_total = super::tiles(volume.shape_zyx(), sw).len();
    let tiles_computed = super::tiles_in(volume.shape_zyx(), sw, roi.as_ref()).len();
    let probabilities =
        super::predict_volume_in(&volume, sw, cfg.threads, roi.as_ref(), model, progress)?;
    let geometry = volume.geometry();
    // A view of the map in C order: borrowed (no copy) as `predict_volume_in` returns it.
    let c_order = probabilities.as_standard_layout();
    let flat = c_order.as_slice().unwrap_or(&[]);
    let (findings, outside_region) =
        cfg.post.findings(flat, volume.shape_zyx(), &geometry, roi.as_ref());
    Ok(ScanPrediction {
        series_id: series_id.to_string(),
        outside_region,
        probabilities,
        roi,
        geometry,
        tiles: tiles_total,
        tiles_computed,
        looked,
        findings,
        score: cfg.post.score,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// The files a run writes in its folder.
#[derive(Debug)]
pub struct PredictionFiles {
    out: PathBuf,
    format: MapFormat,
    detections: Vec<Detection>,
    findings: Vec<(String, Component)>,
    series: Vec<String>,
}

/// What [`PredictionFiles::finish`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// `candidates.csv`: the LUNA16 submission.
    pub candidates: PathBuf,
    /// `findings.parquet`.
    pub findings: PathBuf,
    /// `series.txt`: the scans predicted.
    pub series: PathBuf,
}

impl PredictionFiles {
    /// Starts a run's files in folder `out` (made if missing), maps written as `format`.
    ///
    /// # Errors
    /// [`PredictError::Io`] naming the folder.
    pub fn create(out: &Path, format: MapFormat) -> Result<Self, PredictError> {
        let mk = |p: PathBuf| {
            std::fs::create_dir_all(&p).map_err(|source| PredictError::Io { path: p, source })
        };
        mk(out.to_path_buf())?;
        if format == MapFormat::Ctv {
            mk(out.join("volumes"))?;
        }
        Ok(PredictionFiles {
            out: out.to_path_buf(),
            format,
            detections: Vec::new(),
            findings: Vec::new(),
            series: Vec::new(),
        })
    }

    /// Writes the scan's map and keeps its findings for [`PredictionFiles::finish`].
    ///
    /// # Errors
    /// [`PredictError::Store`] or [`PredictError::MetaImage`] naming the map's file.
    pub fn add(&mut self, p: &ScanPrediction) -> Result<(), PredictError> {
        let id = &p.series_id;
        match self.format {
            MapFormat::Ctv => {
                let per_mille =
                    p.probabilities.mapv(|v| (v * 1000.0).round().clamp(0.0, 1000.0) as i16);
                let path = self.out.join("volumes").join(format!("{id}.ctv"));
                crate::store::writer::write_volume(
                    &path,
                    &per_mille,
                    &p.geometry,
                    &crate::store::writer::ChunkOptions {
                        chunk_shape_zyx: [16, 32, 32],
                        level: 3,
                        fill_value: 0,
                    },
                )?;
            }
            MapFormat::Mhd => {
                let path = self.out.join(format!("{id}.mhd"));
                crate::io::metaimage::write_f32(
                    &path,
                    &p.probabilities,
                    &p.geometry,
                    crate::io::metaimage::WriteOptions { compress: true },
                )?;
            }
            MapFormat::None => {}
        }
        self.detections.extend(p.detections());
        self.findings.extend(p.findings.iter().map(|c| (id.clone(), c.clone())));
        self.series.push(id.clone());
        Ok(())
    }

    /// Writes `candidates.csv`, `findings.parquet` and `series.txt`.
    ///
    /// # Errors
    /// [`PredictError::Csv`], [`PredictError::Store`] or [`PredictError::Io`] naming the file.
    pub fn finish(self) -> Result<Written, PredictError> {
        let w = Written {
            candidates: self.out.join("candidates.csv"),
            findings: self.out.join("findings.parquet"),
            series: self.out.join("series.txt"),
        };
        crate::annotations::write_predictions(&w.candidates, &self.detections)?;
        crate::store::index::write_table(&w.findings, &components::findings_batch(&self.findings))?;
        let list = self.series.iter().map(|s| format!("{s}\n")).collect::<String>();
        crate::fsutil::write_bytes_atomic(&w.series, list.as_bytes())
            .map_err(|source| PredictError::Io { path: w.series.clone(), source })?;
        Ok(w)
    }
}

/// Predicts `series` of `store` with `model` (see the module doc), each scan in turn;
/// with `out`, writes the run's files there ([`PredictionFiles`]). `on_scan` is handed each
/// scan's result once its map is written: a CLI prints a line and drops it, Python keeps
/// the findings (and the map, if asked), so memory holds what the caller keeps.
///
/// # Errors
/// As [`predict_scan`] and [`PredictionFiles`]; a scan the store lacks is refused before
/// anything is predicted.
pub fn run(
    store: &Store,
    series: &[String],
    cfg: &PredictConfig,
    out: Option<&Path>,
    model: impl Fn(&[f32], [usize; 5]) -> Result<Vec<f32>, String> + Sync,
    progress: &dyn Progress,
    mut on_scan: impl FnMut(ScanPrediction),
) -> Result<Option<Written>, PredictError> {
    cfg.validate()?;
    for id in series {
        store.scan(id)?;
    }
    let mut files = out.map(|o| PredictionFiles::create(o, cfg.map_format)).transpose()?;
    for id in series {
        let p = predict_scan(store, id, cfg, &model, progress)?;
        if let Some(f) = files.as_mut() {
            f.add(&p)?;
        }
        on_scan(p);
    }
    files.map(PredictionFiles::finish).transpose()
}
