//! The slice picture of a stored scan, chosen and composed as `ctstream render` draws it:
//! which axial slice (the one asked for; through a nodule's centre; with the most voxels
//! of a label volume; through the largest annotated nodule; with the most predicted
//! voxels; else the middle one), its HU, the probability map of a `ctstream predict`
//! folder, the annotated mask (the index's spheres, a label volume, or for an LIDC scan
//! its readers' consensus with each reader's outline beside it), the lung contour, and a
//! square field of view around the nodule. [`super::slice::render`] draws it.

use std::path::{Path, PathBuf};

use ndarray::{Array2, Axis};

use super::slice::{self, SliceView, Window};
use super::{Picture, PictureError};
use crate::ingest::{LIDC_NODULES, LIDC_READER_MASKS};
use crate::loader::patch::rasterize;
use crate::loader::{MaskLabel, Sphere};
use crate::store::{Region, Store, VolumeFile, index};

/// Which slice of which scan to draw, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceRequest {
    /// The scan's series id.
    pub series: String,
    /// A `ctstream predict` output folder (its `volumes/<id>.ctv`): adds the predicted panel.
    pub pred: Option<PathBuf>,
    /// The axial slice index (z) on the stored grid.
    pub slice: Option<usize>,
    /// The slice through the centre of this annotated nodule (`nodule_id` of the index).
    pub nodule: Option<i32>,
    /// The annotated panel from this label volume instead of the annotations' spheres;
    /// without `slice` or `nodule`, the slice with the most of its chosen voxels.
    pub label: Option<MaskLabel>,
    /// Probability from which a voxel counts as predicted nodule.
    pub threshold: f32,
    /// The display window.
    pub window: Window,
    /// Only a square field of view this many mm wide, centred on the nodule (or on the
    /// slice's centre); None: the whole slice.
    pub crop_mm: Option<f64>,
    /// Width of each panel in pixels.
    pub panel_width: u32,
}

impl SliceRequest {
    /// Checks the settings that do not depend on the scan: the panel width within
    /// [`slice::MIN_PANEL_WIDTH`]..=[`slice::MAX_PANEL_WIDTH`], the threshold a
    /// probability, the window finite with a positive width, the field of view positive.
    ///
    /// # Errors
    /// [`PictureError::Request`] naming the setting and its value.
    pub fn validate(&self) -> Result<(), PictureError> {
        let (lo, hi) = (slice::MIN_PANEL_WIDTH, slice::MAX_PANEL_WIDTH);
        if !(lo..=hi).contains(&self.panel_width) {
            return Err(request(format!(
                "panel_width {}: give {lo} to {hi} pixels",
                self.panel_width
            )));
        }
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(request(format!("threshold {}: a probability, 0 to 1", self.threshold)));
        }
        let Window { level, width } = self.window;
        if !(level.is_finite() && width.is_finite() && width > 0.0) {
            return Err(request(format!(
                "window {level},{width}: LEVEL and WIDTH finite HU, WIDTH > 0"
            )));
        }
        if let Some(c) = self.crop_mm
            && !(c > 0.0 && c.is_finite())
        {
            return Err(request(format!("crop {c}: a field of view in mm, > 0")));
        }
        Ok(())
    }

    /// The defaults of `ctstream render`: lung window, threshold 0.5, 400-pixel panels,
    /// the whole slice, the slice chosen as the module doc says.
    pub fn new(series: &str) -> SliceRequest {
        SliceRequest {
            series: series.to_string(),
            pred: None,
            slice: None,
            nodule: None,
            label: None,
            threshold: 0.5,
            window: Window::LUNG,
            crop_mm: None,
            panel_width: 400,
        }
    }
}

/// A drawn slice: the picture, the slice index and why that slice (", nodule 3 (6.2 mm)").
#[derive(Debug, Clone)]
pub struct DrawnSlice {
    /// The picture.
    pub picture: Picture,
    /// The slice drawn (z on the stored grid).
    pub z: usize,
    /// Why this slice, and what the annotated panel shows, as a phrase after the index.
    pub why: String,
}

/// A request that does not fit the scan, naming the setting.
fn request(message: String) -> PictureError {
    PictureError::Request(message)
}

/// Draws the slice `req` asks for from `store`.
///
/// # Errors
/// [`PictureError::Request`] for a slice, nodule, label or field of view the scan does
/// not have; [`PictureError::Store`] when the store cannot be read; [`PictureError::Input`]
/// for a probability map that is missing or on another grid.
pub fn draw(store: &Store, req: &SliceRequest) -> Result<DrawnSlice, PictureError> {
    req.validate()?;
    let id = req.series.as_str();
    let rec = store.scan(id)?;
    let volume = store.volume(id)?;
    let [nz, ny, nx] = volume.shape_zyx();
    let nodules: Vec<index::NoduleRow> = store.nodules()?;
    let annotated: Vec<&index::NoduleRow> =
        nodules.iter().filter(|n| n.series_id == id && !n.is_excluded()).collect();
    let spheres: Vec<Sphere> = annotated
        .iter()
        .filter_map(|n| n.radius_zyx.map(|r| Sphere { centre_zyx: n.voxel_zyx, radius_zyx: r }))
        .collect();
    let pred = match &req.pred {
        Some(dir) => Some(open_prediction(dir, id, &volume)?),
        None => None,
    };
    if let Some(ml) = &req.label
        && rec.label(&ml.name).is_none()
    {
        return Err(request(format!("label: {id} has no label volume {}", ml.name)));
    }
    let largest = annotated.iter().filter(|n| n.inside).max_by(|x, y| {
        x.diameter_mm
            .unwrap_or(0.0)
            .total_cmp(&y.diameter_mm.unwrap_or(0.0))
            .then(y.nodule_id.cmp(&x.nodule_id))
    });
    let mut centre_yx = [ny as f64 / 2.0, nx as f64 / 2.0];
    let (z, why) = if let Some(z) = req.slice {
        if z >= nz {
            return Err(request(format!("slice {z}: {id} has slices 0..{}", nz - 1)));
        }
        (z, String::new())
    } else if let Some(k) = req.nodule {
        let n = annotated.iter().find(|n| n.nodule_id == k).ok_or_else(|| {
            let ids: Vec<String> = annotated.iter().map(|n| n.nodule_id.to_string()).collect();
            request(format!("nodule {k}: {id} has annotated nodules [{}]", ids.join(", ")))
        })?;
        centre_yx = [n.voxel_zyx[1], n.voxel_zyx[2]];
        (centre_slice(n, nz), nodule_text(n))
    } else if let Some(ml) = &req.label {
        let all = store.label(id, &ml.name)?.read_all_as::<u8>()?;
        (busiest(&all.mapv(|v| ml.is_foreground(v))), format!(", most {ml} voxels"))
    } else if let Some(n) = largest {
        centre_yx = [n.voxel_zyx[1], n.voxel_zyx[2]];
        (centre_slice(n, nz), nodule_text(n))
    } else if let Some(p) = &pred {
        let cut = (req.threshold * 1000.0).round() as i16;
        (busiest(&p.read_all()?.mapv(|v| v >= cut)), ", most predicted voxels".into())
    } else {
        (nz / 2, ", middle slice".into())
    };

    let plane = Region::new([z as i64, 0, 0], [z as i64 + 1, ny as i64, nx as i64]);
    let hu = volume.read_region(plane)?.index_axis_move(Axis(0), 0);
    // An LIDC scan: the annotated panel is the readers' consensus, and a panel shows each
    // reader's outline over it.
    let lidc = req.label.is_none()
        && rec.label(LIDC_NODULES).is_some()
        && rec.label(LIDC_READER_MASKS).is_some();
    let reader_bits = if lidc {
        Some(store.read_label_region(id, LIDC_READER_MASKS, plane)?.index_axis_move(Axis(0), 0))
    } else {
        None
    };
    let mask = match &req.label {
        Some(ml) => store
            .read_label_region(id, &ml.name, plane)?
            .index_axis_move(Axis(0), 0)
            .mapv(|v| ml.is_foreground(v) as u8),
        None if lidc => store
            .read_label_region(id, LIDC_NODULES, plane)?
            .index_axis_move(Axis(0), 0)
            .mapv(|v| u8::from(v != 0)),
        None => {
            Array2::from_shape_vec((ny, nx), rasterize(&spheres, [z as i64, 0, 0], [1, ny, nx]))
                .map_err(|e| PictureError::Draw(format!("mask shape: {e}")))?
        }
    };
    let why = match &req.label {
        Some(ml) if !why.contains("most") => format!("{why}, mask {ml}"),
        _ => why,
    };
    let probs = match &pred {
        Some(p) => {
            Some(p.read_region(plane)?.index_axis_move(Axis(0), 0).mapv(|v| v as f32 / 1000.0))
        }
        None => None,
    };
    let lungs = match rec.label(crate::labels::LUNGS) {
        Some(_) => Some(
            store.read_label_region(id, crate::labels::LUNGS, plane)?.index_axis_move(Axis(0), 0),
        ),
        None => None,
    };
    let g = volume.geometry();
    let world_z = g.index_to_world([z as f64, ny as f64 / 2.0, nx as f64 / 2.0])[2];
    let spacing_yx = [g.spacing_xyz[1], g.spacing_xyz[0]];
    // The field of view: rows and columns within crop / 2 mm of the centre.
    let (rows, cols, field) = match req.crop_mm {
        Some(mm) => {
            let span = |c: f64, sp: f64, n: usize| {
                let half = mm / 2.0 / sp;
                let lo = (c - half).round().clamp(0.0, n as f64 - 1.0) as usize;
                let hi = ((c + half).round() as usize).clamp(lo + 1, n);
                lo..hi
            };
            (
                span(centre_yx[0], spacing_yx[0], ny),
                span(centre_yx[1], spacing_yx[1], nx),
                format!(", {mm} mm field"),
            )
        }
        None => (0..ny, 0..nx, String::new()),
    };
    let cut = ndarray::s![rows, cols];
    let view = SliceView {
        hu: hu.slice(cut),
        spacing_yx,
        predicted: probs.as_ref().map(|p| p.slice(cut)),
        threshold: req.threshold,
        annotated: mask.slice(cut),
        lungs: lungs.as_ref().map(|m| m.slice(cut)),
        readers: reader_bits.as_ref().map(|b| slice::ReaderMasks {
            bits: b.slice(cut),
            names: rec.lidc.as_ref().map(|l| l.readers.clone()).unwrap_or_default(),
        }),
        window: req.window,
        title: format!("{id}   slice z {z} of {nz} (z = {world_z:.1} mm){why}{field}"),
    };
    let (picture, _) = slice::render(&view, req.panel_width)?;
    Ok(DrawnSlice { picture, z, why })
}

/// The slice (z) with the most set voxels (the first of equals).
fn busiest(set: &ndarray::Array3<bool>) -> usize {
    set.outer_iter()
        .map(|s| s.iter().filter(|&&v| v).count())
        .enumerate()
        .max_by_key(|&(i, c)| (c, std::cmp::Reverse(i)))
        .map_or(0, |(i, _)| i)
}

/// The slice through a nodule's centre.
fn centre_slice(n: &index::NoduleRow, nz: usize) -> usize {
    (n.voxel_zyx[0].round().max(0.0) as usize).min(nz - 1)
}

fn nodule_text(n: &index::NoduleRow) -> String {
    format!(
        ", nodule {} ({} mm)",
        n.nodule_id,
        n.diameter_mm.map_or("?".into(), |d| format!("{d:.1}"))
    )
}

/// The probability map of `id` in a prediction folder, checked against the scan's grid.
fn open_prediction(dir: &Path, id: &str, scan: &VolumeFile) -> Result<VolumeFile, PictureError> {
    let path = dir.join("volumes").join(format!("{id}.ctv"));
    let input = |message: String| PictureError::Input { path: path.clone(), message };
    if !path.exists() {
        let hint = if dir.join(format!("{id}.mhd")).exists() {
            " (pictures read .ctv maps: predict again with the ctv map format)"
        } else {
            ""
        };
        return Err(input(format!("no probability map for {id}{hint}")));
    }
    let v = VolumeFile::open(&path)?;
    if v.shape_zyx() != scan.shape_zyx() {
        return Err(input(format!(
            "shape {:?} differs from the stored scan's {:?} (predicted on another store?)",
            v.shape_zyx(),
            scan.shape_zyx()
        )));
    }
    Ok(v)
}
