//! `ctstream export STORE --series UID [--label NAME] --out FILE.mhd|FILE.mha|FILE.nii|FILE.nii.gz`.

use std::path::PathBuf;

use anyhow::anyhow;
use ctstream::io::{metaimage, nifti};

use crate::{Exit, ExitError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store: a folder, or a URL on object storage (s3://bucket/prefix, ...).
    store: PathBuf,
    /// The scan to export.
    #[arg(long)]
    series: String,
    /// Output file: .mhd (+ .raw), .mha, .nii or .nii.gz; opens in 3D Slicer and ITK-SNAP.
    #[arg(long)]
    out: PathBuf,
    /// Export the scan's label volume NAME (e.g. `lungs`) instead of its HU, on the same
    /// grid as the exported scan, so a viewer overlays the two (values as stored, written
    /// as int16).
    #[arg(long, value_name = "NAME")]
    label: Option<String>,
    #[command(flatten)]
    disk_cache: crate::DiskCacheArgs,
}

pub fn run(a: Args) -> Result<(), ExitError> {
    let store = crate::open_store(&a.store, &a.disk_cache)?;
    let vol = store.volume(&a.series)?;
    let g = vol.geometry();
    let hu = match &a.label {
        None => vol.read_all()?,
        Some(name) => store.label(&a.series, name)?.read_all_as::<u8>()?.mapv(i16::from),
    };
    if metaimage::is_metaimage(&a.out) {
        metaimage::write(&a.out, &hu, &g, metaimage::WriteOptions::default())?;
    } else if nifti::is_nifti(&a.out) {
        nifti::write(&a.out, &hu, &g)?;
    } else {
        return Err(ExitError(
            Exit::Usage,
            anyhow!("{}: the output must end in .mhd, .mha, .nii or .nii.gz", a.out.display()),
        ));
    }
    println!(
        "wrote {} ({} x {} x {} voxels, z, y, x)",
        a.out.display(),
        hu.shape()[0],
        hu.shape()[1],
        hu.shape()[2]
    );
    Ok(())
}
