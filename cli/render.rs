//! `ctstream render`: one axial slice of a stored scan in a lung window, beside the
//! predicted and the annotated nodule masks over it, as PNG.

use std::path::PathBuf;

use anyhow::anyhow;
use ctstream::picture::PictureError;
use ctstream::picture::scan_slice::{self, SliceRequest};
use ctstream::picture::slice::Window;

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
    let req = SliceRequest {
        pred: a.pred,
        slice: a.slice,
        nodule: a.nodule,
        label: a.label,
        threshold: a.threshold,
        window: a.window.map_or(Window::LUNG, |[level, width]| Window { level, width }),
        crop_mm: a.crop,
        panel_width: a.panel_width,
        ..SliceRequest::new(&a.series)
    };
    let drawn = scan_slice::draw(&store, &req).map_err(|e| match e {
        // The library names the setting first ("slice 7: ...", "panel_width 0: ..."): the
        // flag is --slice, --panel-width.
        PictureError::Request(m) => {
            let (name, rest) = m.split_at(m.find([' ', ':']).unwrap_or(m.len()));
            ExitError(Exit::Usage, anyhow!("--{}{rest}", name.replace('_', "-")))
        }
        other => other.into(),
    })?;
    drawn.picture.save(&a.out)?;
    println!("{} (slice {}{})", a.out.display(), drawn.z, drawn.why);
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
