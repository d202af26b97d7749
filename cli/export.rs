//! `ctstream export STORE --series UID [--label NAME] --out FILE.mhd|FILE.mha|FILE.nii|FILE.nii.gz`,
//! or `ctstream export STORE --luna16 DIR` (LUNA16's CSVs from the store's LIDC annotations).

use std::path::PathBuf;

use anyhow::anyhow;
use ctstream::io::{metaimage, nifti};

use crate::{Exit, ExitError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store: a folder, or a URL on object storage (s3://bucket/prefix, ...).
    store: PathBuf,
    /// The scan to export.
    #[arg(long, required_unless_present = "luna16")]
    series: Option<String>,
    /// Output file: .mhd (+ .raw), .mha, .nii or .nii.gz; opens in 3D Slicer and ITK-SNAP.
    #[arg(long, required_unless_present = "luna16")]
    out: Option<PathBuf>,
    /// Instead of a volume, write LUNA16's annotations.csv and annotations_excluded.csv
    /// into DIR from the store's LIDC reader annotations, by LUNA16's rule: nodules of 3 or
    /// more readers (consensus centroid, equivalent diameter) are annotations; nodules of
    /// fewer, small nodules and non-nodules are excluded.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["series", "out", "label"])]
    luna16: Option<PathBuf>,
    /// Export the scan's label volume NAME (e.g. `lungs`) instead of its HU, on the same
    /// grid as the exported scan, so a viewer overlays the two (values as stored, written
    /// as int16).
    #[arg(long, value_name = "NAME")]
    label: Option<String>,
    #[command(flatten)]
    disk_cache: crate::DiskCacheArgs,
}

/// The volume export asked for.
struct Resolved {
    series: String,
    out: PathBuf,
    label: Option<String>,
}

pub fn run(a: Args) -> Result<(), ExitError> {
    let store = crate::open_store(&a.store, &a.disk_cache)?;
    let (Some(series), Some(out)) = (a.series, a.out) else {
        let dir = a.luna16.ok_or_else(|| {
            ExitError(Exit::Usage, anyhow!("--luna16 DIR, or --series and --out"))
        })?;
        let l = ctstream::lidc::luna16::from_records(store.scans().values());
        l.write(&dir)?;
        println!(
            "wrote {} ({} nodules of >= {} readers) and {} ({} rows) from the LIDC annotations of {} scans",
            dir.join("annotations.csv").display(),
            l.annotations.len(),
            ctstream::lidc::luna16::MIN_READERS,
            dir.join("annotations_excluded.csv").display(),
            l.excluded.len(),
            store.scans().values().filter(|r| r.lidc.is_some()).count()
        );
        return Ok(());
    };
    let a = Resolved { series, out, label: a.label };
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
