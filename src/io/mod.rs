//! Readers (and the MetaImage writer) for CT scans on disk, and discovery of the scans
//! under a path.
//!
//! A path is a MetaImage file (`.mhd`/`.mha`), a NIfTI file (`.nii`/`.nii.gz`), a DICOM
//! file, or a folder searched recursively for all three: each MetaImage or NIfTI file is
//! a series (its id is the file name without the extension), and the DICOM files are
//! grouped into series by [`dicom::scan_files`]. [`discover`] lists
//! them; [`read_scan`] reads one.

pub mod dicom;
mod dicom_lengths;
pub mod metaimage;
pub mod nifti;

use std::path::{Path, PathBuf};

use crate::progress::Progress;
use crate::volume::{SourceFormat, Volume};

/// Errors from [`discover`] and [`read_scan`]; each names the file or folder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// From the MetaImage reader.
    #[error(transparent)]
    MetaImage(#[from] metaimage::MetaImageError),
    /// From the DICOM reader.
    #[error(transparent)]
    Dicom(#[from] dicom::DicomError),
    /// From the NIfTI reader.
    #[error(transparent)]
    Nifti(#[from] nifti::NiftiError),
    /// A reader returned a geometry no scan can have (each reader checks its own fields
    /// first; this is the last check, at the boundary every scan passes).
    #[error("{path}: {source}")]
    Geometry {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: crate::geometry::GeometryError,
    },
    /// The folder holds several series and none was chosen.
    #[error("{path}: holds {} series; choose one by its id (series; CLI --series):\n{}", series.len(), series.join("\n"))]
    MultipleSeries {
        /// The folder.
        path: PathBuf,
        /// One line per series: id, format, size.
        series: Vec<String>,
    },
    /// The chosen series is not under the path.
    #[error("{path}: no series {id}; found {}", found.join(", "))]
    SeriesNotFound {
        /// The folder.
        path: PathBuf,
        /// The id asked for.
        id: String,
        /// The ids present.
        found: Vec<String>,
    },
}

/// An image's voxels as its file stores them, before conversion to HU: what label maps
/// are read from.
#[derive(Debug, Clone)]
pub struct RawImage {
    /// The file the voxels came from (a MetaImage's data file).
    pub data_path: PathBuf,
    /// The voxel bytes, x fastest.
    pub bytes: Vec<u8>,
    /// Their type.
    pub scalar: crate::hu::Scalar,
    /// Big-endian bytes.
    pub big_endian: bool,
    /// NIfTI `scl_slope`, `scl_inter` where they apply.
    pub scale: Option<(f64, f64)>,
    /// Shape (z, y, x).
    pub shape_zyx: [usize; 3],
    /// Geometry (LPS).
    pub geometry: crate::geometry::Geometry,
}

/// Where a series' data is.
#[derive(Debug, Clone)]
pub enum SeriesSource {
    /// A MetaImage header file.
    MetaImage(PathBuf),
    /// A NIfTI file.
    Nifti(PathBuf),
    /// DICOM files under a root path.
    Dicom {
        /// The path that was searched.
        root: PathBuf,
        /// The series' files.
        files: dicom::SeriesFiles,
    },
}

/// One series found under a path.
#[derive(Debug, Clone)]
pub struct SeriesEntry {
    /// Series id: MetaImage file stem or DICOM SeriesInstanceUID (or derived id).
    pub id: String,
    /// Where its data is.
    pub source: SeriesSource,
}

impl SeriesEntry {
    /// Which reader reads it.
    pub fn format(&self) -> SourceFormat {
        match self.source {
            SeriesSource::MetaImage(_) => SourceFormat::MetaImage,
            SeriesSource::Nifti(_) => SourceFormat::Nifti,
            SeriesSource::Dicom { .. } => SourceFormat::Dicom,
        }
    }

    /// One line for listings: id, format, where or how many slices.
    pub fn describe(&self) -> String {
        match &self.source {
            SeriesSource::MetaImage(p) => format!("{}  metaimage  {}", self.id, p.display()),
            SeriesSource::Nifti(p) => format!("{}  nifti  {}", self.id, p.display()),
            SeriesSource::Dicom { files, .. } => format!(
                "{}  dicom {}  {} slices{}",
                self.id,
                files.modality,
                files.slices.len(),
                if files.description.is_empty() {
                    String::new()
                } else {
                    format!("  \"{}\"", files.description)
                }
            ),
        }
    }

    /// Reads the series.
    ///
    /// # Errors
    /// The reader's error, naming the file and the field.
    pub fn read(
        &self,
        opts: &dicom::DicomOptions,
        progress: &dyn Progress,
    ) -> Result<ScanRead, ReadError> {
        self.read_counting(opts, &dicom::Skipped::default(), progress)
    }

    /// Reads the series, adding `also_skipped` (files skipped while finding it) to the
    /// DICOM report.
    fn read_counting(
        &self,
        opts: &dicom::DicomOptions,
        also_skipped: &dicom::Skipped,
        progress: &dyn Progress,
    ) -> Result<ScanRead, ReadError> {
        let mut warnings = Vec::new();
        let (volume, dicom) = match &self.source {
            SeriesSource::MetaImage(p) => (metaimage::read(p)?, None),
            SeriesSource::Nifti(p) => (nifti::read(p)?, None),
            SeriesSource::Dicom { root, files } => {
                let mut d = dicom::read_series(root, files, opts, progress)?;
                d.skipped.add(also_skipped);
                warnings.extend(d.warnings.iter().cloned());
                if d.skipped.total() > 0 {
                    warnings.push(d.skipped.to_string());
                }
                (d.volume.clone(), Some(d))
            }
        };
        if let Err(source) = volume.geometry.check() {
            let path = match &self.source {
                SeriesSource::MetaImage(p) | SeriesSource::Nifti(p) => p.clone(),
                SeriesSource::Dicom { root, .. } => root.clone(),
            };
            return Err(ReadError::Geometry { path, source });
        }
        if volume.clamped > 0 {
            warnings
                .push(format!("{} voxels outside the int16 range were clamped", volume.clamped));
        }
        Ok(ScanRead { volume, warnings, dicom })
    }
}

/// What [`discover`] found.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// The path searched.
    pub path: PathBuf,
    /// Series: MetaImage and NIfTI files sorted by id, then DICOM series sorted by id.
    pub series: Vec<SeriesEntry>,
    /// Files that were not used.
    pub skipped: dicom::Skipped,
    /// Things to tell the user (derived DICOM series ids).
    pub warnings: Vec<String>,
}

/// A scan read from disk, with what the reader noticed.
#[derive(Debug, Clone)]
pub struct ScanRead {
    /// The volume.
    pub volume: Volume,
    /// Warnings for the user (derived ids, resampled gaps, skipped files, clamped voxels).
    pub warnings: Vec<String>,
    /// For DICOM: slices read, spacing, skipped files.
    pub dicom: Option<dicom::DicomVolume>,
}

/// Finds the series under `path`: itself if it is a MetaImage, NIfTI or DICOM file;
/// every MetaImage and NIfTI file and every DICOM series if it is a folder (searched
/// recursively; MetaImage data files are not probed as DICOM).
///
/// # Errors
/// [`ReadError`]: the path does not exist, a single file is not a scan, or a folder holds
/// no scans ([`dicom::DicomError::NoImages`], with what was skipped).
pub fn discover(path: &Path, progress: &dyn Progress) -> Result<Discovered, ReadError> {
    let files = dicom::list_files(path)?;
    let mut series = Vec::new();
    let mut rest = Vec::new();
    for f in files {
        if metaimage::is_metaimage(&f) {
            let id = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            series.push(SeriesEntry { id, source: SeriesSource::MetaImage(f) });
        } else if nifti::is_nifti(&f) {
            series.push(SeriesEntry { id: nifti::series_id(&f), source: SeriesSource::Nifti(f) });
        } else {
            rest.push(f);
        }
    }
    series.sort_by(|a, b| a.id.cmp(&b.id));
    let is_data = |f: &PathBuf| {
        f.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("raw") || e.eq_ignore_ascii_case("zraw"))
    };
    let probe: Vec<PathBuf> = rest.into_iter().filter(|f| !is_data(f)).collect();
    let (mut skipped, mut warnings) = (dicom::Skipped::default(), Vec::new());
    if !probe.is_empty() || series.is_empty() {
        match dicom::scan_files(path, &probe, progress) {
            Ok(scan) => {
                skipped = scan.skipped;
                warnings = scan.warnings;
                series.extend(scan.series.into_iter().map(|files| SeriesEntry {
                    id: files.id.clone(),
                    source: SeriesSource::Dicom { root: path.to_path_buf(), files },
                }));
            }
            // A folder of MetaImages with a stray file or two is fine.
            Err(dicom::DicomError::NoImages { skipped: s, .. }) if !series.is_empty() => {
                skipped = s
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Discovered { path: path.to_path_buf(), series, skipped, warnings })
}

impl Discovered {
    /// The series `id`, or the only one when `id` is `None`.
    ///
    /// # Errors
    /// [`ReadError::MultipleSeries`] (listing them) or [`ReadError::SeriesNotFound`].
    pub fn pick(&self, id: Option<&str>) -> Result<&SeriesEntry, ReadError> {
        match id {
            Some(id) => {
                self.series.iter().find(|s| s.id == id).ok_or_else(|| ReadError::SeriesNotFound {
                    path: self.path.clone(),
                    id: id.to_string(),
                    found: self.series.iter().map(|s| s.id.clone()).collect(),
                })
            }
            None if self.series.len() == 1 => Ok(&self.series[0]),
            None => Err(ReadError::MultipleSeries {
                path: self.path.clone(),
                series: self.series.iter().map(SeriesEntry::describe).collect(),
            }),
        }
    }
}

/// Reads the scan at `path` (see [`discover`]); `opts.series` chooses among several.
///
/// # Errors
/// [`ReadError`] wrapping the reader's error, which names the file and the field.
///
/// ```no_run
/// use ctstream::io::{read_scan, dicom::DicomOptions};
/// let scan = read_scan("scans/patient7".as_ref(), &DicomOptions::default(), &())?;
/// println!("{:?} voxels (z, y, x)", scan.volume.shape_zyx());
/// # Ok::<(), ctstream::io::ReadError>(())
/// ```
pub fn read_scan(
    path: &Path,
    opts: &dicom::DicomOptions,
    progress: &dyn Progress,
) -> Result<ScanRead, ReadError> {
    if path.is_file() {
        let source = if metaimage::is_metaimage(path) {
            Some(SeriesSource::MetaImage(path.to_path_buf()))
        } else if nifti::is_nifti(path) {
            Some(SeriesSource::Nifti(path.to_path_buf()))
        } else {
            None
        };
        if let Some(source) = source {
            return SeriesEntry { id: String::new(), source }.read(opts, progress);
        }
    }
    let found = discover(path, progress)?;
    let entry = found.pick(opts.series.as_deref())?;
    let mut r = entry.read_counting(opts, &found.skipped, progress)?;
    r.warnings.splice(0..0, found.warnings.iter().cloned());
    Ok(r)
}
