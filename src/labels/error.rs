//! Why a label file (a label map, a DICOM SEG object, an nnU-Net `dataset.json`) cannot be
//! used: one error type for [`super::files`], [`super::nnunet`] and [`super::seg`]'s
//! callers.

use std::path::PathBuf;

use crate::io;

/// Why a label file cannot be used; each names the file (and the scan's, for grids).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabelFileError {
    /// The folder cannot be searched.
    #[error("labels {path}: {message}")]
    Dir {
        /// The folder.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An nnU-Net raw dataset (`--nnunet DIR`) that cannot be read as one.
    #[error("nnunet {path}: {message}")]
    Nnunet {
        /// The dataset folder (or its `dataset.json`).
        path: PathBuf,
        /// What is wrong, naming the file.
        message: String,
    },
    /// The file cannot be read as an image.
    #[error(transparent)]
    Read(#[from] io::ReadError),
    /// A voxel value that is no label.
    #[error("{path}: voxel (z, y, x) {voxel_zyx:?} is {value}: {what} ({count} voxels like it)")]
    Value {
        /// The file.
        path: PathBuf,
        /// The first such voxel.
        voxel_zyx: [usize; 3],
        /// Its value.
        value: f64,
        /// Negative, not an integer, over 255, NaN.
        what: &'static str,
        /// How many voxels are refused for the same reason.
        count: u64,
    },
    /// The label map's grid is not its scan's.
    #[error(
        "label map {label} does not lie on the grid of its scan {scan}: {field} is {label_value} in the label map, {scan_value} in the scan"
    )]
    Grid {
        /// The label file.
        label: PathBuf,
        /// The scan's file or folder.
        scan: PathBuf,
        /// `size`, `spacing`, `origin` or `direction`.
        field: &'static str,
        /// The label map's value.
        label_value: String,
        /// The scan's value.
        scan_value: String,
    },
    /// Two files pair with one scan under one name.
    #[error(
        "scan {series_id}: both {first} and {second} would be its label volume {name}; keep one, or give them different names (labels NAME=DIR)"
    )]
    Ambiguous {
        /// The scan.
        series_id: String,
        /// The label-volume name.
        name: String,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },
    /// A DICOM SEG object that cannot be used.
    #[error(transparent)]
    Seg(#[from] super::seg::SegError),
}
