//! [`Volume`]: a scan's voxels in Hounsfield units together with its geometry.

use ndarray::Array3;
use serde::{Deserialize, Serialize};

use crate::geometry::Geometry;
use crate::hu::HuStats;

/// The most voxels a scan or stored volume may have (2^31, e.g. 1024 x 1024 x 2048):
/// every reader refuses larger headers before anything is allocated, and ingest refuses a
/// resampled grid that would be larger.
pub const MAX_VOXELS: u64 = 1 << 31;

/// Which reader produced a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    /// MetaImage, `.mhd` + data file or single-file `.mha`.
    MetaImage,
    /// A DICOM series (one or more files).
    Dicom,
    /// NIfTI-1, `.nii` or `.nii.gz`.
    Nifti,
}

impl SourceFormat {
    /// The name used in `ctstream info --json` (`"metaimage"`, `"dicom"`, `"nifti"`).
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::MetaImage => "metaimage",
            SourceFormat::Dicom => "dicom",
            SourceFormat::Nifti => "nifti",
        }
    }
}

/// A CT scan: HU voxels in array order **(z, y, x)**, x fastest (exactly SimpleITK's
/// `GetArrayFromImage`), plus where the grid lies in the world.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Series id: the `.mhd`/`.mha` file stem, or the DICOM SeriesInstanceUID (or a
    /// derived id where the files have none; see [`crate::io::dicom`]).
    pub series_id: String,
    /// Hounsfield units, shape (z, y, x).
    pub hu: Array3<i16>,
    /// Origin, spacing, direction.
    pub geometry: Geometry,
    /// Which reader made it.
    pub format: SourceFormat,
    /// Voxels whose value lay outside the `i16` range and were clamped ([`crate::hu`]).
    pub clamped: u64,
}

impl Volume {
    /// Shape as (z, y, x).
    pub fn shape_zyx(&self) -> [usize; 3] {
        let s = self.hu.shape();
        [s[0], s[1], s[2]]
    }

    /// Minimum, maximum and mean HU (`None` only for an empty volume).
    pub fn stats(&self) -> Option<HuStats> {
        HuStats::of(&self.hu)
    }
}

/// A volume's geometry and HU range: the stable JSON of `ctstream info --json`.
///
/// `{"series_id", "format", "shape": [z, y, x], "spacing": [x, y, z], "origin": [x, y, z],
/// "direction": [9 numbers, row-major], "hu": {"min", "max", "mean"}}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// Series id.
    pub series_id: String,
    /// `"metaimage"` or `"dicom"`.
    pub format: String,
    /// Shape (z, y, x).
    pub shape: [usize; 3],
    /// Spacing (x, y, z) mm.
    pub spacing: [f64; 3],
    /// Origin (x, y, z) mm.
    pub origin: [f64; 3],
    /// Direction, row-major (SimpleITK `GetDirection()`).
    pub direction: [f64; 9],
    /// HU range and mean.
    pub hu: HuStats,
}

impl Volume {
    /// The summary `ctstream info` prints.
    pub fn info(&self) -> VolumeInfo {
        VolumeInfo {
            series_id: self.series_id.clone(),
            format: self.format.name().to_string(),
            shape: self.shape_zyx(),
            spacing: self.geometry.spacing_xyz,
            origin: self.geometry.origin_xyz,
            direction: self.geometry.direction,
            hu: self.stats().unwrap_or(HuStats { min: 0, max: 0, mean: 0.0 }),
        }
    }
}
