//! The opened store behind `ctstream view`: its records and index tables read once, slices
//! of scans, label volumes and probability maps cut from the chunks through one
//! decoded-chunk cache with a byte budget ([`crate::loader::cache::ChunkCache`], the
//! loader's), and one thumbnail per scan, drawn on first request and kept.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::annotations::Detection;
use crate::loader::cache::ChunkCache;
use crate::picture::Picture;
use crate::picture::slice::{LUNG_CONTOUR, Window};
use crate::store::index::{CandidateRow, NoduleRow};
use crate::store::{Region, ScanRecord, Store, VolumeFile};

use super::cohort::{self, BySeries, ScanRow, by_series};
use super::{ViewConfig, ViewError};

/// Why a request is not answered with what it asked for; each maps to one HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The request is malformed (400): a path segment or number that cannot be read.
    #[error("{0}")]
    BadRequest(String),
    /// What it names does not exist (404): a scan, label volume, slice, route or file.
    #[error("{0}")]
    NotFound(String),
    /// The store or a file could not be read (500), named.
    #[error("{0}")]
    Failed(String),
}

/// A slice's axis, named as radiologists name the planes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// A z index: rows y, columns x.
    Axial,
    /// A y index: rows z, columns x.
    Coronal,
    /// An x index: rows z, columns y.
    Sagittal,
}

impl Plane {
    /// The plane named `s` (`axial`, `coronal`, `sagittal`).
    ///
    /// # Errors
    /// [`Refusal::BadRequest`] naming the word.
    pub fn parse(s: &str) -> Result<Plane, Refusal> {
        match s {
            "axial" => Ok(Plane::Axial),
            "coronal" => Ok(Plane::Coronal),
            "sagittal" => Ok(Plane::Sagittal),
            _ => Err(Refusal::BadRequest(format!("plane {s:?}: give axial, coronal or sagittal"))),
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Plane::Axial => "axial",
            Plane::Coronal => "coronal",
            Plane::Sagittal => "sagittal",
        }
    }

    /// The array axis (z 0, y 1, x 2) its index runs along.
    pub fn axis(self) -> usize {
        match self {
            Plane::Axial => 0,
            Plane::Coronal => 1,
            Plane::Sagittal => 2,
        }
    }

    /// The region of slice `index` of a volume of `shape` (z, y, x), and its (rows, columns).
    pub fn region(self, shape: [usize; 3], index: usize) -> (Region, [usize; 2]) {
        let mut start = [0i64; 3];
        let mut end = shape.map(|n| n as i64);
        start[self.axis()] = index as i64;
        end[self.axis()] = index as i64 + 1;
        let [nz, ny, nx] = shape;
        let rc = match self {
            Plane::Axial => [ny, nx],
            Plane::Coronal => [nz, nx],
            Plane::Sagittal => [nz, ny],
        };
        (Region::new(start, end), rc)
    }
}

/// Which volume of a scan a slice is cut from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// The scan's HU (int16).
    Image,
    /// A label volume by name (uint8).
    Label(String),
    /// The probability map of `--pred`, per mille (int16, 0..=1000).
    Probability,
}

/// One slice: its values in C order (rows, then columns), little-endian.
#[derive(Debug, Clone, PartialEq)]
pub struct Slice {
    /// Rows and columns.
    pub shape: [usize; 2],
    /// `int16` or `uint8`.
    pub dtype: &'static str,
    /// The values, little-endian.
    pub bytes: Vec<u8>,
}

/// The most thumbnails kept (PNGs of a few kB each).
const MAX_THUMBNAILS: usize = 4096;

/// The most scans whose files stay open (memory-mapped) at once: the least recently
/// looked at is closed when another opens, so the pages of the files a user has scrolled
/// past do not stay in the server's memory (its decoded chunks stay in the cache).
pub const OPEN_SCANS: usize = 2;

/// Width of a thumbnail, pixels.
pub const THUMBNAIL_WIDTH: u32 = 160;

/// A `ctstream predict` folder: its findings (`candidates.csv`) and probability maps.
struct Prediction {
    dir: PathBuf,
    findings: BySeries<Detection>,
    maps: Mutex<HashMap<String, Arc<VolumeFile>>>,
}

/// The opened store, its tables, and the caches of the slices and thumbnails.
pub struct Viewer {
    store: Arc<Store>,
    location: String,
    cache: ChunkCache,
    keys: Mutex<HashMap<(String, String), u32>>,
    recent: Mutex<std::collections::VecDeque<String>>,
    nodules: BySeries<NoduleRow>,
    candidates: BySeries<CandidateRow>,
    rows: Vec<ScanRow>,
    pred: Option<Prediction>,
    run: Option<PathBuf>,
    eval: Option<PathBuf>,
    thumbs: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl Viewer {
    /// Serves `store` as `cfg` says: reads its nodules and candidates tables and the
    /// prediction folder's findings, and checks that the run and evaluation folders exist.
    ///
    /// # Errors
    /// [`ViewError::Store`] for an index table that cannot be read; [`ViewError::Input`]
    /// naming a folder or file that is missing or unreadable; [`ViewError::Config`] for a
    /// cache of under 16 MiB.
    pub fn open(store: Arc<Store>, cfg: &ViewConfig) -> Result<Viewer, ViewError> {
        if cfg.cache_bytes < 16 << 20 {
            return Err(ViewError::Config(format!(
                "cache {} bytes: give at least 16 MiB",
                cfg.cache_bytes
            )));
        }
        let store_err = |source| ViewError::Store { location: cfg.store.clone(), source };
        let nodules = by_series(store.nodules().map_err(store_err)?, |n| n.series_id.as_str());
        let candidates =
            by_series(store.candidates().map_err(store_err)?, |c| c.series_id.as_str());
        let folder = |p: &Option<PathBuf>, what: &str| -> Result<Option<PathBuf>, ViewError> {
            match p {
                Some(p) if !p.is_dir() => Err(ViewError::Input {
                    path: p.clone(),
                    message: format!("not a folder ({what})"),
                }),
                Some(p) => Ok(Some(p.clone())),
                None => Ok(None),
            }
        };
        let run = folder(&cfg.run, "--run: a training run's folder")?;
        let pred_dir = folder(&cfg.pred, "--pred: a ctstream predict output folder")?;
        let mut eval = folder(&cfg.eval, "--eval: a ctstream evaluate output folder")?;
        if let Some(e) = &eval
            && !e.join("froc.json").is_file()
        {
            return Err(ViewError::Input { path: e.join("froc.json"), message: "missing".into() });
        }
        if eval.is_none() {
            // `ctstream demo`'s layout: run/, pred/ and eval/ side by side.
            eval = [&run, &pred_dir]
                .into_iter()
                .flatten()
                .flat_map(|d| [d.join("eval"), d.join("../eval")])
                .find(|d| d.join("froc.json").is_file());
        }
        let pred = match pred_dir {
            Some(dir) => {
                let path = dir.join("candidates.csv");
                let findings = if path.is_file() {
                    crate::annotations::read_predictions(&path).map_err(|e| ViewError::Input {
                        path: path.clone(),
                        message: e.to_string(),
                    })?
                } else {
                    Vec::new()
                };
                let findings = by_series(findings, |f| f.series_id.as_str());
                Some(Prediction { dir, findings, maps: Mutex::new(HashMap::new()) })
            }
            None => None,
        };
        let findings = pred.as_ref().map(|p| &p.findings);
        let rows = cohort::rows(store.scans(), &nodules, &candidates, findings);
        Ok(Viewer {
            store,
            location: cfg.store.clone(),
            cache: ChunkCache::new(cfg.cache_bytes),
            keys: Mutex::new(HashMap::new()),
            recent: Mutex::new(std::collections::VecDeque::new()),
            nodules,
            candidates,
            rows,
            pred,
            run,
            eval,
            thumbs: Mutex::new(HashMap::new()),
        })
    }

    /// The store's folder or URL, as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The scans table: a row per scan with its flags.
    pub fn rows(&self) -> &[ScanRow] {
        &self.rows
    }

    /// The run folder, if any.
    pub fn run(&self) -> Option<&Path> {
        self.run.as_deref()
    }

    /// The evaluation folder (holding `froc.json`), if any.
    pub fn eval(&self) -> Option<&Path> {
        self.eval.as_deref()
    }

    /// Whether a prediction folder was given.
    pub fn has_prediction(&self) -> bool {
        self.pred.is_some()
    }

    /// The decoded-chunk cache's counters.
    pub fn cache_stats(&self) -> crate::loader::cache::CacheStats {
        self.cache.stats()
    }

    /// The record of scan `id`.
    ///
    /// # Errors
    /// [`Refusal::NotFound`] for a scan the store does not hold.
    pub fn record(&self, id: &str) -> Result<&ScanRecord, Refusal> {
        self.store.scans().get(id).ok_or_else(|| {
            Refusal::NotFound(format!("scan {id:?}: the store holds no such series"))
        })
    }

    /// Scan `id`'s annotated nodules and excluded findings (the index's rows).
    pub fn nodules(&self, id: &str) -> &[NoduleRow] {
        self.nodules.get(id).map_or(&[], Vec::as_slice)
    }

    /// Scan `id`'s candidates (the index's rows).
    pub fn candidates(&self, id: &str) -> &[CandidateRow] {
        self.candidates.get(id).map_or(&[], Vec::as_slice)
    }

    /// Scan `id`'s findings from `--pred` (none without it).
    pub fn findings(&self, id: &str) -> &[Detection] {
        self.pred.as_ref().and_then(|p| p.findings.get(id)).map_or(&[], Vec::as_slice)
    }

    /// Whether scan `id` has a probability map in `--pred`.
    pub fn has_map(&self, id: &str) -> bool {
        self.pred.as_ref().is_some_and(|p| map_path(&p.dir, id).is_file())
    }

    /// The cache key of volume `layer` of scan `id` (one per volume, made on first use).
    fn key(&self, id: &str, layer: &str) -> u32 {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let next = keys.len() as u32;
        *keys.entry((id.to_string(), layer.to_string())).or_insert(next)
    }

    /// Slice `index` on `plane` of `layer` of scan `id`, as the bytes a route sends.
    ///
    /// # Errors
    /// [`Refusal::NotFound`] for a scan, label volume, probability map or slice that does
    /// not exist (the message gives the range); [`Refusal::Failed`] when the store cannot
    /// be read.
    pub fn slice(
        &self,
        id: &str,
        layer: &Layer,
        plane: Plane,
        index: usize,
    ) -> Result<Slice, Refusal> {
        let int16 = |(v, shape): (Vec<i16>, [usize; 2])| Slice {
            shape,
            dtype: "int16",
            bytes: v.into_iter().flat_map(i16::to_le_bytes).collect(),
        };
        match layer {
            Layer::Image => self.hu(id, plane, index).map(int16),
            Layer::Probability => self.probability(id, plane, index).map(int16),
            Layer::Label(name) => self.label(id, name, plane, index).map(|(bytes, shape)| Slice {
                shape,
                dtype: "uint8",
                bytes,
            }),
        }
    }

    /// The region of slice `index` on `plane` of scan `id` and its (rows, columns), once
    /// the slice is known to exist; notes the scan as being read.
    fn region(
        &self,
        id: &str,
        plane: Plane,
        index: usize,
    ) -> Result<(Region, [usize; 2]), Refusal> {
        let shape = self.record(id)?.shape_zyx;
        let n = shape[plane.axis()];
        if index >= n {
            return Err(Refusal::NotFound(format!(
                "{} slice {index}: scan {id} has {} slices 0 to {}",
                plane.name(),
                plane.name(),
                n - 1
            )));
        }
        self.touch(id);
        Ok(plane.region(shape, index))
    }

    /// An int16 volume's slice through the cache under `key`.
    fn int16(
        &self,
        id: &str,
        key: &str,
        v: &VolumeFile,
        (r, rc): (Region, [usize; 2]),
    ) -> Result<(Vec<i16>, [usize; 2]), Refusal> {
        let a = self.cache.read_region(self.key(id, key), v, r).map_err(failed)?;
        Ok((a.into_raw_vec_and_offset().0, rc))
    }

    /// The HU of slice `index` on `plane` of scan `id` (C order), with its rows and columns.
    fn hu(&self, id: &str, plane: Plane, index: usize) -> Result<(Vec<i16>, [usize; 2]), Refusal> {
        let at = self.region(id, plane, index)?;
        self.int16(id, "", &*self.store.volume(id).map_err(failed)?, at)
    }

    /// The probability map's slice (per mille), as [`Viewer::hu`].
    fn probability(
        &self,
        id: &str,
        plane: Plane,
        index: usize,
    ) -> Result<(Vec<i16>, [usize; 2]), Refusal> {
        let at = self.region(id, plane, index)?;
        let map = self.map(id, self.record(id)?.shape_zyx)?;
        // Keys of maps apart from every label name (which start with a letter).
        self.int16(id, "0pred", &map, at)
    }

    /// Label volume `name`'s slice, as [`Viewer::hu`].
    fn label(
        &self,
        id: &str,
        name: &str,
        plane: Plane,
        index: usize,
    ) -> Result<(Vec<u8>, [usize; 2]), Refusal> {
        let rec = self.record(id)?;
        if rec.label(name).is_none() {
            let names: Vec<&str> = rec.labels.iter().map(|l| l.name.as_str()).collect();
            return Err(Refusal::NotFound(format!(
                "label {name:?}: scan {id} has label volumes [{}]",
                names.join(", ")
            )));
        }
        let (r, rc) = self.region(id, plane, index)?;
        let v = self.store.label(id, name).map_err(failed)?;
        let a =
            self.cache.read_label_region(self.key(id, name), &v, r, |_| true).map_err(failed)?;
        Ok((a.into_raw_vec_and_offset().0, rc))
    }

    /// Notes that scan `id` is being read; closes the files of the least recently read
    /// scan beyond [`OPEN_SCANS`].
    fn touch(&self, id: &str) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.front().is_some_and(|f| f == id) {
            return;
        }
        recent.retain(|r| r != id);
        recent.push_front(id.to_string());
        while recent.len() > OPEN_SCANS {
            let Some(old) = recent.pop_back() else { break };
            self.store.close(&old);
            if let Some(p) = &self.pred {
                p.maps.lock().unwrap_or_else(|e| e.into_inner()).remove(&old);
            }
        }
    }

    /// Scan `id`'s probability map, opened once and checked against the scan's shape.
    fn map(&self, id: &str, shape: [usize; 3]) -> Result<Arc<VolumeFile>, Refusal> {
        let Some(p) = &self.pred else {
            return Err(Refusal::NotFound("no probability maps: start with --pred".into()));
        };
        let mut maps = p.maps.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = maps.get(id) {
            return Ok(v.clone());
        }
        let path = map_path(&p.dir, id);
        if !path.is_file() {
            return Err(Refusal::NotFound(format!(
                "{}: no probability map of {id}",
                path.display()
            )));
        }
        let v = VolumeFile::open(&path).map_err(failed)?;
        if v.shape_zyx() != shape {
            return Err(Refusal::Failed(format!(
                "{}: shape {:?} differs from the scan's {shape:?} (predicted on another store?)",
                path.display(),
                v.shape_zyx()
            )));
        }
        let v = Arc::new(v);
        maps.insert(id.to_string(), v.clone());
        Ok(v)
    }

    /// Slice `index` on `plane` of scan `id`'s HU through `window`, as a PNG the size of
    /// the slice (one pixel per voxel; rows as stored).
    ///
    /// # Errors
    /// As [`Viewer::slice`].
    pub fn slice_png(
        &self,
        id: &str,
        plane: Plane,
        index: usize,
        window: Window,
    ) -> Result<Vec<u8>, Refusal> {
        let (hu, [rows, cols]) = self.hu(id, plane, index)?;
        let rgb: Vec<u8> = hu.iter().flat_map(|&v| [window.grey(f64::from(v)); 3]).collect();
        png(cols as u32, rows as u32, rgb)
    }

    /// Scan `id`'s thumbnail: the coronal slice through the middle of its lungs (of the
    /// scan where it has no lung mask), in the lung window, head up, at the scan's
    /// physical aspect, [`THUMBNAIL_WIDTH`] pixels wide, with the lung contour drawn.
    ///
    /// # Errors
    /// As [`Viewer::slice`].
    pub fn thumbnail(&self, id: &str) -> Result<Arc<Vec<u8>>, Refusal> {
        if let Some(t) = self.thumbs.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Ok(t.clone());
        }
        let rec = self.record(id)?;
        let [nz, ny, nx] = rec.shape_zyx;
        let lungs = rec.label(crate::labels::LUNGS);
        let y = lungs.and_then(|l| l.bbox_zyx).map_or(ny / 2, |b| (b[0][1] + b[1][1]) / 2);
        let (hu, _) = self.hu(id, Plane::Coronal, y)?;
        let mask = match lungs {
            Some(_) => Some(self.label(id, crate::labels::LUNGS, Plane::Coronal, y)?.0),
            None => None,
        };
        let [sx, _, sz] = rec.spacing_xyz;
        let w = THUMBNAIL_WIDTH;
        let h = ((w as f64 * (nz as f64 * sz) / (nx as f64 * sx)).round() as u32).clamp(16, 480);
        // Pixel (px, py) shows voxel (z, x): z from the top down (head up), nearest.
        let col = |px: u32| ((px as f64 + 0.5) * nx as f64 / w as f64) as usize;
        let row =
            |py: u32| nz - 1 - (((py as f64 + 0.5) * nz as f64 / h as f64) as usize).min(nz - 1);
        let lung_at = |px: u32, py: u32| {
            mask.as_ref().is_some_and(|m| m[row(py) * nx + col(px).min(nx - 1)] != 0)
        };
        let mut rgb = Vec::with_capacity((w * h * 3) as usize);
        for py in 0..h {
            for px in 0..w {
                let i = row(py) * nx + col(px).min(nx - 1);
                let v = hu[i];
                let inside = lung_at(px, py);
                let edge = inside
                    && ((px > 0 && !lung_at(px - 1, py))
                        || (px + 1 < w && !lung_at(px + 1, py))
                        || (py > 0 && !lung_at(px, py - 1))
                        || (py + 1 < h && !lung_at(px, py + 1)));
                if edge {
                    rgb.extend(LUNG_CONTOUR);
                } else {
                    rgb.extend([Window::LUNG.grey(v as f64); 3]);
                }
            }
        }
        let t = Arc::new(png(w, h, rgb)?);
        let mut thumbs = self.thumbs.lock().unwrap_or_else(|e| e.into_inner());
        if thumbs.len() < MAX_THUMBNAILS {
            thumbs.insert(id.to_string(), t.clone());
        }
        Ok(t)
    }
}

/// Where `ctstream predict` keeps scan `id`'s probability map.
fn map_path(dir: &Path, id: &str) -> PathBuf {
    dir.join("volumes").join(format!("{id}.ctv"))
}

fn failed(e: crate::store::StoreError) -> Refusal {
    Refusal::Failed(e.to_string())
}

fn png(width: u32, height: u32, rgb: Vec<u8>) -> Result<Vec<u8>, Refusal> {
    Picture::from_rgb(width, height, rgb)
        .and_then(|p| p.png())
        .map_err(|e| Refusal::Failed(e.to_string()))
}
