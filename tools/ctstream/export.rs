//! `ctstream export STORE --series UID --out FILE.mhd|FILE.mha|FILE.nii|FILE.nii.gz`.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use ctstream::io::{metaimage, nifti};
use ctstream::store::Store;

use crate::{Exit, ExitError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store folder.
    store: PathBuf,
    /// The scan to export.
    #[arg(long)]
    series: String,
    /// Output file: .mhd (+ .raw), .mha, .nii or .nii.gz; opens in 3D Slicer and ITK-SNAP.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<(), ExitError> {
    let store = Store::open(&a.store).with_context(|| format!("opening {}", a.store.display()))?;
    let vol = store.volume(&a.series)?;
    let hu = vol.read_all()?;
    let g = vol.geometry();
    if metaimage::is_metaimage(&a.out) {
        metaimage::write(&a.out, &hu, &g, metaimage::WriteOptions::default())?;
    } else if nifti::is_nifti(&a.out) {
        nifti::write(&a.out, &hu, &g)?;
    } else {
        return Err(ExitError(Exit::Usage, anyhow!("{}: the output must end in .mhd, .mha, .nii or .nii.gz", a.out.display())));
    }
    println!("wrote {} ({} x {} x {} voxels, z, y, x)", a.out.display(), hu.shape()[0], hu.shape()[1], hu.shape()[2]);
    Ok(())
}
