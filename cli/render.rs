//! `ctstream render`: one axial slice of a stored scan in a lung window, beside the
//! predicted and the annotated nodule masks over it, as PNG.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use ctstream::loader::Sphere;
use ctstream::loader::patch::rasterize;
use ctstream::picture::slice::{self, SliceView, Window};
use ctstream::store::{Region, Store, VolumeFile, index};
use ndarray::{Array2, Axis};

use crate::{Exit, ExitError};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Without --slice or --nodule: the slice through the largest annotated nodule, else the slice \
with the most predicted voxels, else the middle slice. The annotated mask is drawn from the store's index \
(index/nodules.parquet, spheres of the annotated diameters); the predicted mask from PRED_DIR/volumes/<id>.ctv."
)]
pub struct Args {
    /// The store holding the scan: a folder, or a URL on object storage (s3://bucket/prefix, ...).
    #[arg(long)]
    pub store: PathBuf,
    /// The scan's series id.
    #[arg(long)]
    pub series: String,
    /// Output of `ctstream predict` (its volumes/<id>.ctv): adds the predicted panel.
    #[arg(long)]
    pub pred: Option<PathBuf>,
    /// Axial slice index (z) on the stored grid.
    #[arg(long, conflicts_with = "nodule")]
    pub slice: Option<usize>,
    /// The slice through the centre of this nodule (`nodule_id` in index/nodules.parquet).
    #[arg(long)]
    pub nodule: Option<i32>,
    /// The annotated panel from a label volume instead of the annotations' spheres: NAME,
    /// or NAME:V,V for some of its values (say `labels:2`); without --slice or --nodule,
    /// the slice with the most such voxels.
    #[arg(long, value_name = "NAME[:V,...]")]
    pub label: Option<ctstream::loader::MaskLabel>,
    /// Probability from which a voxel counts as predicted nodule.
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Display window LEVEL,WIDTH in HU [default: lung, -600,1500].
    #[arg(long, value_parser = parse_window, allow_hyphen_values = true)]
    pub window: Option<[f64; 2]>,
    /// Show only a square field of view this many mm wide, centred on the nodule (or on
    /// the slice's centre) [default: the whole slice].
    #[arg(long)]
    pub crop: Option<f64>,
    /// Width of each panel in pixels.
    #[arg(long, default_value_t = 400)]
    pub panel_width: u32,
    /// The PNG to write.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub disk_cache: crate::DiskCacheArgs,
}

pub fn run(a: Args) -> Result<(), ExitError> {
    let store = crate::open_store(&a.store, &a.disk_cache)?;
    let volume = store.volume(&a.series)?;
    let [nz, ny, nx] = volume.shape_zyx();
    let nodules: Vec<index::NoduleRow> = store.nodules()?;
    let annotated: Vec<&index::NoduleRow> =
        nodules.iter().filter(|n| n.series_id == a.series && n.source == "annotations").collect();
    let spheres: Vec<Sphere> = annotated
        .iter()
        .filter_map(|n| n.radius_zyx.map(|r| Sphere { centre_zyx: n.voxel_zyx, radius_zyx: r }))
        .collect();
    let pred = match &a.pred {
        Some(dir) => Some(open_prediction(dir, &a.series, &volume)?),
        None => None,
    };

    if a.crop.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
        return Err(ExitError(Exit::Usage, anyhow!("--crop: a field of view in mm, > 0")));
    }
    let largest = annotated.iter().filter(|n| n.inside).max_by(|x, y| {
        x.diameter_mm
            .unwrap_or(0.0)
            .total_cmp(&y.diameter_mm.unwrap_or(0.0))
            .then(y.nodule_id.cmp(&x.nodule_id))
    });
    let mut centre_yx = [ny as f64 / 2.0, nx as f64 / 2.0];
    let (z, why) = if let Some(z) = a.slice {
        if z >= nz {
            return Err(ExitError(
                Exit::Usage,
                anyhow!("--slice {z}: {} has slices 0..{}", a.series, nz - 1),
            ));
        }
        (z, String::new())
    } else if let Some(k) = a.nodule {
        let n = annotated.iter().find(|n| n.nodule_id == k).ok_or_else(|| {
            let ids: Vec<String> = annotated.iter().map(|n| n.nodule_id.to_string()).collect();
            ExitError(
                Exit::Usage,
                anyhow!("--nodule {k}: {} has annotated nodules [{}]", a.series, ids.join(", ")),
            )
        })?;
        centre_yx = [n.voxel_zyx[1], n.voxel_zyx[2]];
        (centre_slice(n, nz), nodule_text(n))
    } else if let Some(ml) = &a.label {
        (busiest_label_slice(&store, &a.series, ml)?, format!(", most {} voxels", label_text(ml)))
    } else if let Some(n) = largest {
        centre_yx = [n.voxel_zyx[1], n.voxel_zyx[2]];
        (centre_slice(n, nz), nodule_text(n))
    } else if let Some(p) = &pred {
        (busiest_slice(p, a.threshold)?, ", most predicted voxels".into())
    } else {
        (nz / 2, ", middle slice".into())
    };

    let hu = volume
        .read_region(Region::new([z as i64, 0, 0], [z as i64 + 1, ny as i64, nx as i64]))?
        .index_axis_move(Axis(0), 0);
    let mask = match &a.label {
        Some(ml) => {
            store
                .scan(&a.series)?
                .label(&ml.name)
                .ok_or_else(|| anyhow!("{} has no label volume {}", a.series, ml.name))?;
            store
                .read_label_region(
                    &a.series,
                    &ml.name,
                    Region::new([z as i64, 0, 0], [z as i64 + 1, ny as i64, nx as i64]),
                )?
                .index_axis_move(Axis(0), 0)
                .mapv(|v| ml.is_foreground(v) as u8)
        }
        None => {
            Array2::from_shape_vec((ny, nx), rasterize(&spheres, [z as i64, 0, 0], [1, ny, nx]))
                .context("mask shape")?
        }
    };
    let why = match &a.label {
        Some(ml) if !why.contains("most") => format!("{why}, mask {}", label_text(ml)),
        _ => why,
    };
    let probs = match &pred {
        Some(p) => Some(
            p.read_region(Region::new([z as i64, 0, 0], [z as i64 + 1, ny as i64, nx as i64]))?
                .index_axis_move(Axis(0), 0)
                .mapv(|v| v as f32 / 1000.0),
        ),
        None => None,
    };
    let lungs = match store.scan(&a.series)?.label(ctstream::labels::LUNGS) {
        Some(_) => Some(
            store
                .read_label_region(
                    &a.series,
                    ctstream::labels::LUNGS,
                    Region::new([z as i64, 0, 0], [z as i64 + 1, ny as i64, nx as i64]),
                )?
                .index_axis_move(Axis(0), 0),
        ),
        None => None,
    };
    let g = volume.geometry();
    let world_z = g.index_to_world([z as f64, ny as f64 / 2.0, nx as f64 / 2.0])[2];
    let window = a.window.map_or(Window::LUNG, |[level, width]| Window { level, width });
    let spacing_yx = [g.spacing_xyz[1], g.spacing_xyz[0]];
    // The field of view: rows and columns within crop / 2 mm of the centre.
    let (rows, cols, field) = match a.crop {
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
    let cut = ndarray::s![rows.clone(), cols.clone()];
    let view = SliceView {
        hu: hu.slice(cut),
        spacing_yx,
        predicted: probs.as_ref().map(|p| p.slice(cut)),
        threshold: a.threshold,
        annotated: mask.slice(cut),
        lungs: lungs.as_ref().map(|m| m.slice(cut)),
        window,
        title: format!("{}   slice z {z} of {nz} (z = {world_z:.1} mm){why}{field}", a.series),
    };
    let (pic, _) = slice::render(&view, a.panel_width)?;
    pic.save(&a.out)?;
    println!("{} (slice {z}{why})", a.out.display());
    Ok(())
}

/// Parses `LEVEL,WIDTH` (HU, WIDTH > 0).
fn parse_window(s: &str) -> Result<[f64; 2], String> {
    match s.split(',').map(|p| p.trim().parse::<f64>()).collect::<Result<Vec<_>, _>>().as_deref() {
        Ok(&[level, width]) if width > 0.0 && level.is_finite() && width.is_finite() => {
            Ok([level, width])
        }
        _ => Err(format!("expected LEVEL,WIDTH in HU with WIDTH > 0, got `{s}`")),
    }
}

/// `NAME` or `NAME:V,V`.
fn label_text(ml: &ctstream::loader::MaskLabel) -> String {
    if ml.values.is_empty() {
        ml.name.clone()
    } else {
        format!("{}:{}", ml.name, ml.values.iter().map(u8::to_string).collect::<Vec<_>>().join(","))
    }
}

/// The slice with the most voxels of a label volume's chosen values (the first of equals).
fn busiest_label_slice(
    store: &Store,
    id: &str,
    ml: &ctstream::loader::MaskLabel,
) -> anyhow::Result<usize> {
    store
        .scan(id)?
        .label(&ml.name)
        .ok_or_else(|| anyhow!("{id} has no label volume {}", ml.name))?;
    let all = store.label(id, &ml.name)?.read_all_as::<u8>()?;
    let counts: Vec<usize> =
        all.outer_iter().map(|s| s.iter().filter(|&&v| ml.is_foreground(v)).count()).collect();
    Ok(counts
        .iter()
        .enumerate()
        .max_by_key(|&(i, &c)| (c, std::cmp::Reverse(i)))
        .map_or(0, |(i, _)| i))
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
fn open_prediction(dir: &Path, id: &str, scan: &VolumeFile) -> anyhow::Result<VolumeFile> {
    let path = dir.join("volumes").join(format!("{id}.ctv"));
    if !path.exists() {
        let mhd = dir.join(format!("{id}.mhd"));
        let hint = if mhd.exists() {
            " (render reads .ctv maps: predict again with --format ctv)"
        } else {
            ""
        };
        return Err(anyhow!("{}: no probability map for {id}{hint}", path.display()));
    }
    let v = VolumeFile::open(&path)?;
    if v.shape_zyx() != scan.shape_zyx() {
        return Err(anyhow!(
            "{}: shape {:?} differs from the stored scan's {:?} (predicted on another store?)",
            path.display(),
            v.shape_zyx(),
            scan.shape_zyx()
        ));
    }
    Ok(v)
}

/// The slice with the most voxels at or above `threshold` (per-mille map).
fn busiest_slice(p: &VolumeFile, threshold: f32) -> anyhow::Result<usize> {
    let all = p.read_all()?;
    let cut = (threshold * 1000.0).round() as i16;
    let counts: Vec<usize> =
        all.outer_iter().map(|s| s.iter().filter(|&&v| v >= cut).count()).collect();
    Ok(counts
        .iter()
        .enumerate()
        .max_by_key(|&(i, &c)| (c, std::cmp::Reverse(i)))
        .map_or(0, |(i, _)| i))
}
