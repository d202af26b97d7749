//! `ctstream info PATH [--series UID] [--json]`: a scan's geometry and HU range.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use ctstream::io::{
    self, ReadError,
    dicom::{DicomOptions, UnevenPolicy},
};

use crate::progress::Bars;
use crate::{Exit, ExitError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A MetaImage (.mhd/.mha) or NIfTI (.nii/.nii.gz) file, a DICOM file, or a folder holding any of them.
    path: PathBuf,
    /// Which series to show when the folder holds several.
    #[arg(long)]
    series: Option<String>,
    /// Print JSON: {"series_id", "format", "shape": [z, y, x], "spacing": [x, y, z],
    /// "origin": [x, y, z], "direction": [9, row-major], "hu": {"min", "max", "mean"}}.
    #[arg(long)]
    json: bool,
    /// Resample a DICOM series with uneven slice spacing onto a uniform grid instead of
    /// refusing it.
    #[arg(long)]
    resample_uneven: bool,
    /// Read a DICOM series with missing or damaged slices anyway, interpolating over the
    /// gaps, with a warning naming them.
    #[arg(long)]
    allow_missing_slices: bool,
}

pub fn run(a: Args, bars: &Bars) -> Result<(), ExitError> {
    let opts = DicomOptions {
        series: a.series.clone(),
        uneven: if a.resample_uneven { UnevenPolicy::Resample } else { UnevenPolicy::Refuse },
        allow_missing_slices: a.allow_missing_slices,
    };
    let scan = match io::read_scan(&a.path, &opts, bars) {
        Ok(s) => s,
        Err(e @ ReadError::MultipleSeries { .. }) => {
            return Err(ExitError(Exit::NeedsChoice, e.into()));
        }
        Err(e) => {
            return Err(ExitError(
                Exit::Failed,
                anyhow::Error::new(e).context("cannot read the scan"),
            ));
        }
    };
    for w in &scan.warnings {
        bars.println(&format!("warning: {w}"));
    }
    let info = scan.volume.info();
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer_pretty(&mut out, &info).context("writing JSON")?;
        writeln!(out)?;
        return Ok(());
    }
    let f = |v: &[f64]| v.iter().map(|x| format!("{x}")).collect::<Vec<_>>().join(", ");
    writeln!(out, "series     {}", info.series_id)?;
    writeln!(out, "format     {}", info.format)?;
    writeln!(out, "path       {}", a.path.display())?;
    writeln!(
        out,
        "shape      {} x {} x {} voxels (z, y, x)",
        info.shape[0], info.shape[1], info.shape[2]
    )?;
    writeln!(out, "spacing    {} mm (x, y, z)", f(&info.spacing))?;
    writeln!(out, "origin     {} mm (x, y, z)", f(&info.origin))?;
    writeln!(
        out,
        "direction  [{}] [{}] [{}]",
        f(&info.direction[0..3]),
        f(&info.direction[3..6]),
        f(&info.direction[6..9])
    )?;
    let g = &scan.volume.geometry;
    let s = info.shape;
    let far = g.index_to_world([(s[0] - 1) as f64, (s[1] - 1) as f64, (s[2] - 1) as f64]);
    writeln!(
        out,
        "extent     {} to {} mm (x, y, z of the first and last voxel centres)",
        f(&info.origin),
        f(&far)
    )?;
    writeln!(out, "HU         min {}, max {}, mean {:.1}", info.hu.min, info.hu.max, info.hu.mean)?;
    if let Some(d) = &scan.dicom {
        writeln!(
            out,
            "slices     {} read{}",
            d.slices,
            if d.resampled { ", resampled onto a uniform grid" } else { "" }
        )?;
        if let Some(sp) = &d.spacing {
            writeln!(out, "steps      {}", sp.describe())?;
        }
    }
    if scan.volume.clamped > 0 {
        writeln!(out, "clamped    {} voxels outside the int16 range", scan.volume.clamped)?;
    }
    Ok(())
}
