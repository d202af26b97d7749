//! A written synthetic dataset checked against itself, as `ctstream demo` shows it: every
//! scan read back as MetaImage and as DICOM through ctstream's own readers must agree in
//! series id, shape, geometry (1e-4 mm) and every voxel, and every annotated nodule must
//! lie inside its scan.

use super::SynthSummary;
use crate::annotations::{self, AnnotationError};
use crate::geometry::Geometry;
use crate::io::{self, ReadError, dicom::DicomOptions};
use crate::progress::Progress;
use crate::volume::VolumeInfo;

/// Why a written dataset does not check out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// A scan could not be read back.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The annotations could not be read back.
    #[error(transparent)]
    Annotations(#[from] AnnotationError),
    /// The two copies of a scan, or a scan and its annotations, disagree.
    #[error("{0}")]
    Disagrees(String),
}

/// What the check found: each scan as both readers see it, and the nodules inside.
#[derive(Debug, Clone)]
pub struct Checked {
    /// Each scan (MetaImage and DICOM alike).
    pub scans: Vec<VolumeInfo>,
    /// Annotated nodules, all inside their scans.
    pub nodules_inside: usize,
}

/// Reads every scan of `s` (which must have been written with DICOM copies) both ways and
/// compares them, and places every annotation in its scan.
///
/// # Errors
/// [`CheckError::Disagrees`] naming both files and what differs, or the nodule outside;
/// [`CheckError::Read`] / [`CheckError::Annotations`] for files that do not read back.
pub fn check(s: &SynthSummary, progress: &dyn Progress) -> Result<Checked, CheckError> {
    let nodules = annotations::read_annotations(&s.annotations)?;
    if s.dicom_series.len() != s.scans.len() {
        return Err(CheckError::Disagrees(format!(
            "{} MetaImage scans but {} DICOM series: generate with DICOM copies",
            s.scans.len(),
            s.dicom_series.len()
        )));
    }
    let mut out = Checked { scans: Vec::new(), nodules_inside: 0 };
    for (mhd, dir) in s.scans.iter().zip(&s.dicom_series) {
        let m = io::read_scan(mhd, &DicomOptions::default(), progress)?.volume;
        let d = io::read_scan(dir, &DicomOptions::default(), progress)?.volume;
        let close = |a: &[f64; 3], b: &[f64; 3]| (0..3).all(|i| (a[i] - b[i]).abs() < 1e-4);
        let same_geometry = m.shape_zyx() == d.shape_zyx()
            && close(&m.geometry.origin_xyz, &d.geometry.origin_xyz)
            && close(&m.geometry.spacing_xyz, &d.geometry.spacing_xyz);
        if !same_geometry || m.hu != d.hu || m.series_id != d.series_id {
            return Err(CheckError::Disagrees(format!(
                "{} and {} disagree: MetaImage {:?} vs DICOM {:?}",
                mhd.display(),
                dir.display(),
                m.info(),
                d.info()
            )));
        }
        for n in nodules.iter().filter(|n| n.series_id == m.series_id) {
            let inside = m
                .geometry
                .world_to_index(n.world_xyz)
                .is_some_and(|zyx| Geometry::contains_index(m.shape_zyx(), zyx));
            if !inside {
                return Err(CheckError::Disagrees(format!(
                    "nodule at {:?} mm lies outside {}",
                    n.world_xyz, m.series_id
                )));
            }
            out.nodules_inside += 1;
        }
        out.scans.push(m.info());
    }
    Ok(out)
}
