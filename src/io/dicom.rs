//! DICOM series: find the files of each series, order the slices by position, decode
//! them in parallel, and assemble a [`Volume`] in HU whose geometry matches SimpleITK's
//! `ImageSeriesReader`.
//!
//! **Grouping.** A path is one file or a folder searched recursively. Files are grouped
//! by SeriesInstanceUID. Where that is empty or missing, files are grouped by study,
//! frame of reference, orientation and image size, the series gets a derived id
//! (`derived-<16 hex digits>`), and a warning says so.
//!
//! **Selection.** Within a series, the slices kept are single-frame, single-sample
//! images with a position and orientation, not marked `LOCALIZER` in ImageType, with the
//! size and orientation most of the series has. Everything else is skipped and counted
//! in [`Skipped`].
//!
//! **Order and spacing.** Slices are sorted by their position along the slice normal
//! (`row cosine x column cosine` from ImageOrientationPatient), never by file name or
//! InstanceNumber. The slice spacing comes from the positions: as ITK does it, the
//! distance between the first and last position over `n - 1`. A single slice takes
//! SpacingBetweenSlices, else 1 mm (as ITK/GDCM; SliceThickness is not a spacing).
//! Duplicate positions are an error. Uneven spacing (any step further than 1% + 0.001 mm
//! from the median step; gaps are steps over 1.5 x the median) is an error unless
//! [`UnevenPolicy::Resample`] is chosen, which interpolates linearly along the normal onto
//! a uniform grid with the median step. A series whose positions do not lie on a line
//! along the normal (gantry tilt, shear) is refused.
//!
//! **Values.** Each slice is rescaled with its own RescaleSlope and RescaleIntercept.
//! Stored values use BitsStored bits, sign-extended when PixelRepresentation is 1. The
//! result goes to `i16` by the rule of [`crate::hu`]; HU match pydicom's
//! `apply_modality_lut` voxel for voxel (see `tests/goldens/`).
//!
//! **Transfer syntaxes.** Implicit and explicit VR little endian, explicit big endian,
//! deflated, RLE, JPEG baseline/extended/lossless, JPEG 2000 (pure Rust, `openjp2`), and
//! JPEG-LS when built with the cargo feature `jpegls` (CharLS). Anything else is an error
//! that names the transfer syntax.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, OpenFileOptions, Tag};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use ndarray::Array3;
use rayon::prelude::*;
use serde::Serialize;

use crate::geometry::{Geometry, cross, dot};
use crate::hu;
use crate::progress::Progress;
use crate::volume::{SourceFormat, Volume};

/// Errors from reading DICOM. Every variant names the file or folder, and the field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DicomError {
    /// The path does not exist or a folder could not be listed.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The path holds no DICOM image files.
    #[error("{path}: no DICOM images found ({skipped})")]
    NoImages {
        /// The file or folder.
        path: PathBuf,
        /// What was found and skipped.
        skipped: Skipped,
    },
    /// A single file was given and it is not DICOM.
    #[error("{path}: not a DICOM file: {message}")]
    NotDicom {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        message: String,
    },
    /// A DICOM file that does not parse, or a slice with a value no image can have.
    #[error("{path}: damaged DICOM file: {message}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file has no Pixel Data (7FE0,0010).
    #[error("{path}: no Pixel Data (7FE0,0010) element; not an image")]
    NoPixelData {
        /// The file.
        path: PathBuf,
    },
    /// A required attribute is missing or unreadable.
    #[error("{path}: {field} {tag}: {message}")]
    BadField {
        /// The file.
        path: PathBuf,
        /// The attribute's keyword, e.g. `ImagePositionPatient`.
        field: &'static str,
        /// Its tag, e.g. `(0020,0032)`.
        tag: String,
        /// What is wrong.
        message: String,
    },
    /// The pixel data is in a transfer syntax this build cannot decode.
    #[error("{path}: cannot decode transfer syntax {uid} ({name}){hint}")]
    UnsupportedTransferSyntax {
        /// The file.
        path: PathBuf,
        /// The TransferSyntaxUID.
        uid: String,
        /// Its name, where known.
        name: String,
        /// How to get it decoded, where possible.
        hint: String,
    },
    /// A valid DICOM feature ctstream does not read (multi-frame images, colour, ...).
    #[error("{path}: {what} is not supported")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What.
        what: String,
    },
    /// The decoder failed.
    #[error("{path}: pixel data could not be decoded: {message}")]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// Two slices of a series lie at the same position.
    #[error(
        "{path}: series {series}: {first} and {second} are both at {position_mm:.3} mm along the slice normal (duplicate slices)"
    )]
    DuplicatePosition {
        /// The folder.
        path: PathBuf,
        /// The series.
        series: String,
        /// One file.
        first: PathBuf,
        /// The other.
        second: PathBuf,
        /// Their position along the normal.
        position_mm: f64,
    },
    /// Files that look like slices of the series (DICOM Part 10 files, or `.dcm`, in its
    /// folder) cannot be read, or hold values no slice can have: the series would be
    /// stored with slices missing.
    #[error("{path}: series {series}: {} file(s) that may be its slices are damaged: {}; the series would be missing slices (repair or replace them; allow_missing_slices (CLI --allow-missing-slices) stores it without them, recorded as a warning)", files.len(), files.iter().map(|(f, m)| format!("{} ({m})", f.display())).collect::<Vec<_>>().join("; "))]
    DamagedSlices {
        /// The folder.
        path: PathBuf,
        /// The series.
        series: String,
        /// Each damaged file, with why.
        files: Vec<(PathBuf, String)>,
    },
    /// Steps between slice positions are whole multiples of the series' step: slices are
    /// missing there.
    #[error("{path}: series {series}: slices are missing: {}; the series is incomplete (find the missing files; allow_missing_slices (CLI --allow-missing-slices) interpolates over the gap, recorded as a warning)", gaps.join("; "))]
    MissingSlices {
        /// The folder.
        path: PathBuf,
        /// The series.
        series: String,
        /// One line per gap: the files on either side, the step, the slices missing.
        gaps: Vec<String>,
    },
    /// Slice positions are unevenly spaced and resampling was not asked for.
    #[error("{path}: series {series}: uneven slice spacing ({}); resample_uneven (CLI --resample-uneven) resamples it onto a uniform grid", .spacing.describe())]
    UnevenSpacing {
        /// The folder.
        path: PathBuf,
        /// The series.
        series: String,
        /// What was measured.
        spacing: SliceSpacing,
    },
    /// The series would hold more voxels than [`crate::io::metaimage::MAX_VOXELS`].
    #[error("{path}: series {series}: {voxels} voxels ({what}) is more than the limit of {limit}")]
    TooLarge {
        /// The folder.
        path: PathBuf,
        /// The series.
        series: String,
        /// What was counted.
        what: String,
        /// The count.
        voxels: u64,
        /// The limit.
        limit: u64,
    },
    /// Slice positions do not lie along the slice normal.
    #[error(
        "{path}: series {series}: slice positions drift {offset_mm:.3} mm sideways from the slice normal (gantry tilt or sheared series), which a 3D grid cannot hold"
    )]
    Sheared {
        /// The folder.
        path: PathBuf,
        /// The series.
        series: String,
        /// Largest sideways offset.
        offset_mm: f64,
    },
}

type Result<T> = std::result::Result<T, DicomError>;

/// Counts of files that were not used, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Not DICOM at all.
    pub not_dicom: usize,
    /// DICOM, but not an image with a position (DICOMDIR, reports, ...).
    pub not_image: usize,
    /// Localizers/scouts (ImageType contains LOCALIZER).
    pub localizer: usize,
    /// Another size or orientation than most of the series.
    pub other_geometry: usize,
    /// Multi-frame or multi-sample (colour) images.
    pub multiframe: usize,
    /// DICOM Part 10 files (or `.dcm` files) that cannot be parsed, or slices with values
    /// no image can have; listed by name in [`DicomScan::damaged`] and
    /// [`SeriesFiles::damaged`].
    pub damaged: usize,
}

impl Skipped {
    /// Total files skipped.
    pub fn total(&self) -> usize {
        self.not_dicom
            + self.not_image
            + self.localizer
            + self.other_geometry
            + self.multiframe
            + self.damaged
    }

    /// Adds another count to this one.
    pub fn add(&mut self, o: &Skipped) {
        self.not_dicom += o.not_dicom;
        self.not_image += o.not_image;
        self.localizer += o.localizer;
        self.other_geometry += o.other_geometry;
        self.multiframe += o.multiframe;
        self.damaged += o.damaged;
    }
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "skipped {}: {} not DICOM, {} not images, {} localizers, {} other size/orientation, {} multi-frame/colour",
            self.total(),
            self.not_dicom,
            self.not_image,
            self.localizer,
            self.other_geometry,
            self.multiframe
        )?;
        if self.damaged > 0 {
            write!(f, ", {} damaged", self.damaged)?;
        }
        Ok(())
    }
}

/// The steps between consecutive slice positions of a series, in mm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SliceSpacing {
    /// Smallest step.
    pub min: f64,
    /// Largest step.
    pub max: f64,
    /// Median step.
    pub median: f64,
    /// Steps over 1.5 x the median: (file before, file after, step mm).
    pub gaps: Vec<(PathBuf, PathBuf, f64)>,
}

impl SliceSpacing {
    /// One line for errors and reports.
    pub fn describe(&self) -> String {
        let mut s =
            format!("steps {:.4}..{:.4} mm, median {:.4} mm", self.min, self.max, self.median);
        for (a, b, d) in &self.gaps {
            s += &format!("; gap of {d:.3} mm between {} and {}", a.display(), b.display());
        }
        s
    }
}

/// What to do with a series whose slices are unevenly spaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UnevenPolicy {
    /// Refuse with [`DicomError::UnevenSpacing`].
    #[default]
    Refuse,
    /// Interpolate linearly along the normal onto a grid with the median step.
    Resample,
}

/// Options for reading a series.
#[derive(Debug, Clone, Default)]
pub struct DicomOptions {
    /// Which series to read from a folder that holds several.
    pub series: Option<String>,
    /// Uneven spacing: refuse (default) or resample.
    pub uneven: UnevenPolicy,
    /// Store a series with missing or damaged slices anyway (interpolating over the
    /// gaps), with a warning naming them, instead of refusing it (the default).
    pub allow_missing_slices: bool,
}

/// The header facts of one slice file that grouping, selection and ordering need.
#[derive(Debug, Clone)]
pub struct SliceHeader {
    /// The file.
    pub path: PathBuf,
    /// ImagePositionPatient (x, y, z) mm.
    pub position_xyz: [f64; 3],
    /// ImageOrientationPatient: row cosine then column cosine.
    pub orientation: [f64; 6],
    /// PixelSpacing as (x, y) = (column spacing, row spacing) mm.
    pub pixel_spacing_xy: [f64; 2],
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub columns: u32,
    /// SpacingBetweenSlices, when present.
    pub spacing_between_slices: Option<f64>,
    /// TransferSyntaxUID.
    pub transfer_syntax: String,
    /// InstanceNumber, when present (used to describe gaps).
    pub instance: Option<i64>,
    /// SOPInstanceUID, when present (LIDC reader XML names slices by it).
    pub sop_instance_uid: Option<String>,
    /// SliceThickness in mm, when present and positive (not a spacing: pylidc's clustering
    /// tolerance).
    pub slice_thickness: Option<f64>,
}

/// The files of one series, ready to read.
#[derive(Debug, Clone)]
pub struct SeriesFiles {
    /// SeriesInstanceUID, or a derived id when the files have none.
    pub id: String,
    /// Whether `id` was derived.
    pub derived_id: bool,
    /// Modality (0008,0060), e.g. `CT`.
    pub modality: String,
    /// SeriesDescription, when present.
    pub description: String,
    /// The slices kept, in no particular order.
    pub slices: Vec<SliceHeader>,
    /// Files of this series that were skipped.
    pub skipped: Skipped,
    /// Files that may be slices of this series but cannot be used, with why: slices of it
    /// with impossible values, and unreadable DICOM files in the same folder.
    pub damaged: Vec<(PathBuf, String)>,
}

/// What [`scan_files`] found under a path.
#[derive(Debug, Clone)]
pub struct DicomScan {
    /// The path scanned.
    pub path: PathBuf,
    /// Series, sorted by id.
    pub series: Vec<SeriesFiles>,
    /// Files that belong to no series (not DICOM, not images).
    pub skipped: Skipped,
    /// Things a user should know (derived series ids).
    pub warnings: Vec<String>,
    /// DICOM files that cannot be read (with why), wherever they are.
    pub damaged: Vec<(PathBuf, String)>,
}

/// A series read into a volume, with what was found on the way.
#[derive(Debug, Clone)]
pub struct DicomVolume {
    /// The volume.
    pub volume: Volume,
    /// Number of slices read.
    pub slices: usize,
    /// Step statistics (None for a single slice).
    pub spacing: Option<SliceSpacing>,
    /// Whether the series was resampled onto a uniform grid.
    pub resampled: bool,
    /// Files skipped in this series and under the path.
    pub skipped: Skipped,
    /// Warnings (derived id, gaps resampled over, ...).
    pub warnings: Vec<String>,
    /// The slices read, in the volume's order (along the normal).
    pub order: Vec<PlacedSlice>,
}

/// Where one slice file went in the volume.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedSlice {
    /// Its SOPInstanceUID, when it has one.
    pub sop_instance_uid: Option<String>,
    /// ImagePositionPatient (x, y, z) mm.
    pub position_xyz: [f64; 3],
    /// SliceThickness mm, when given.
    pub slice_thickness: Option<f64>,
    /// Its place along the volume's z axis, in voxels: the slice index, or (where uneven
    /// slices were resampled onto a uniform grid) the continuous index of its position.
    pub index_z: f64,
}

fn tag_str(tag: Tag) -> String {
    format!("({:04X},{:04X})", tag.group(), tag.element())
}

fn get_str(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok()??;
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string();
    Some(s)
}

/// Decimal strings, split on `\`; errors name the field.
fn get_f64s(
    obj: &DefaultDicomObject,
    path: &Path,
    tag: Tag,
    field: &'static str,
) -> Result<Option<Vec<f64>>> {
    let Some(s) = get_str(obj, tag) else { return Ok(None) };
    if s.is_empty() {
        return Ok(None);
    }
    let bad = |message: String| DicomError::BadField {
        path: path.to_path_buf(),
        field,
        tag: tag_str(tag),
        message,
    };
    s.split('\\')
        .map(|p| {
            let p = p.trim_matches(|c: char| c == '\0' || c.is_whitespace());
            match p.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(v),
                _ => Err(bad(format!("`{p}` is not a number"))),
            }
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn get_u32(obj: &DefaultDicomObject, tag: Tag) -> Option<u32> {
    obj.element_opt(tag).ok()??.to_int::<u32>().ok()
}

/// Why a file is not a slice.
enum Reject {
    NotDicom(String),
    /// A DICOM file (Part 10 preamble, or named `.dcm`) that does not parse.
    Damaged(String),
    /// A slice of the series `key` with a value no image can have.
    Invalid(Box<GroupKey>, String),
    NotImage,
    Localizer,
    Multiframe,
}

/// SOP classes of single-frame cross-sectional images (CT, MR, PET Image Storage): a file of
/// one of these without Rows, Columns and a position is damaged, not some other object.
const CROSS_SECTIONAL: [&str; 3] =
    ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.128"];

/// Whether a file that failed to parse was meant to be DICOM: `DICM` at byte 128, or a
/// `.dcm` name. Such a file is damaged, not merely "not DICOM".
pub(crate) fn looks_like_dicom(path: &Path) -> bool {
    use std::io::Read;
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("dcm")) {
        return true;
    }
    let mut head = [0u8; 132];
    crate::fsutil::open_regular(path).and_then(|mut f| f.read_exact(&mut head)).is_ok()
        && &head[128..132] == b"DICM"
}

/// Checks a DICOM file's element lengths before dicom-rs parses it (a length past the end
/// of the file, a FIFO, a device): `Err` says what.
pub(crate) fn check_lengths(path: &Path) -> std::result::Result<(), String> {
    super::dicom_lengths::check_file(path)
}

/// ImageOrientationPatient must be two orthogonal unit vectors (within 1e-3).
fn check_orientation(iop: &[f64; 6]) -> std::result::Result<(), String> {
    let (r, c) = ([iop[0], iop[1], iop[2]], [iop[3], iop[4], iop[5]]);
    let (nr, nc) = (dot(r, r).sqrt(), dot(c, c).sqrt());
    if (nr - 1.0).abs() > 1e-3 || (nc - 1.0).abs() > 1e-3 || dot(r, c).abs() > 1e-3 {
        return Err(format!(
            "ImageOrientationPatient {iop:?} is not two orthogonal unit vectors (lengths {nr:.4}, {nc:.4}, dot {:.4})",
            dot(r, c)
        ));
    }
    Ok(())
}

/// Reads the header of one file (up to Pixel Data).
fn read_slice_header(
    path: &Path,
) -> std::result::Result<(GroupKey, SliceHeader, String, String), Reject> {
    let unreadable =
        |m: String| if looks_like_dicom(path) { Reject::Damaged(m) } else { Reject::NotDicom(m) };
    super::dicom_lengths::check_file(path).map_err(unreadable)?;
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| unreadable(e.to_string()))?;
    // A file of a cross-sectional image class (CT, MR, PET) without the attributes every
    // such image has was cut short or damaged: it is a missing slice, not "not an image".
    let sop_class = obj.meta().media_storage_sop_class_uid().trim_end_matches('\0').to_string();
    let not_image = || {
        if CROSS_SECTIONAL.contains(&sop_class.as_str()) {
            Reject::Damaged(format!(
                "an image of SOP class {sop_class} without Rows, Columns, ImagePositionPatient or ImageOrientationPatient (truncated or damaged)"
            ))
        } else {
            Reject::NotImage
        }
    };
    let (Some(rows), Some(columns)) = (get_u32(&obj, tags::ROWS), get_u32(&obj, tags::COLUMNS))
    else {
        return Err(not_image());
    };
    if get_str(&obj, tags::IMAGE_TYPE)
        .is_some_and(|t| t.to_ascii_uppercase().split('\\').any(|p| p.trim() == "LOCALIZER"))
    {
        return Err(Reject::Localizer);
    }
    if get_u32(&obj, tags::NUMBER_OF_FRAMES).is_some_and(|n| n > 1)
        || get_u32(&obj, tags::SAMPLES_PER_PIXEL).is_some_and(|n| n != 1)
    {
        return Err(Reject::Multiframe);
    }
    let f = |tag, field| get_f64s(&obj, path, tag, field).ok().flatten();
    let (Some(ipp), Some(iop)) = (
        f(tags::IMAGE_POSITION_PATIENT, "ImagePositionPatient"),
        f(tags::IMAGE_ORIENTATION_PATIENT, "ImageOrientationPatient"),
    ) else {
        return Err(not_image());
    };
    if ipp.len() != 3 || iop.len() != 6 {
        return Err(not_image());
    }
    let orientation = [iop[0], iop[1], iop[2], iop[3], iop[4], iop[5]];
    let series_uid = get_str(&obj, tags::SERIES_INSTANCE_UID).unwrap_or_default();
    // The series UID groups; only where it is empty do study, frame of reference,
    // orientation and size stand in for it.
    let key = if series_uid.is_empty() {
        GroupKey {
            series_uid: String::new(),
            study: get_str(&obj, tags::STUDY_INSTANCE_UID).unwrap_or_default(),
            frame_of_reference: get_str(&obj, tags::FRAME_OF_REFERENCE_UID).unwrap_or_default(),
            orientation: rounded(&orientation),
            size: (rows, columns),
        }
    } else {
        GroupKey {
            series_uid,
            study: String::new(),
            frame_of_reference: String::new(),
            orientation: [0; 6],
            size: (0, 0),
        }
    };
    // Values no slice can have make the file a damaged slice of its series: never a
    // silent default (PixelSpacing "0", "-1" or "abc" is not 1 mm).
    let invalid = |m: String| Reject::Invalid(Box::new(key.clone()), m);
    if rows == 0 || columns == 0 {
        return Err(invalid(format!("Rows {rows} x Columns {columns} is an empty image")));
    }
    check_orientation(&orientation).map_err(invalid)?;
    // PixelSpacing is required in CT; where it is absent, 1 mm as ITK and pydicom assume.
    let ps = match get_f64s(&obj, path, tags::PIXEL_SPACING, "PixelSpacing") {
        Ok(None) => vec![1.0, 1.0],
        Ok(Some(v))
            if v.len() == 2
                && v.iter().all(|s| {
                    (crate::geometry::MIN_SPACING_MM..=crate::geometry::MAX_SPACING_MM).contains(s)
                }) =>
        {
            v
        }
        Ok(Some(v)) => {
            return Err(invalid(format!("PixelSpacing {v:?} is not two spacings in mm")));
        }
        Err(e) => return Err(invalid(e.to_string())),
    };
    let header = SliceHeader {
        path: path.to_path_buf(),
        position_xyz: [ipp[0], ipp[1], ipp[2]],
        orientation,
        pixel_spacing_xy: [ps[1], ps[0]],
        rows,
        columns,
        spacing_between_slices: f(tags::SPACING_BETWEEN_SLICES, "SpacingBetweenSlices")
            .and_then(|v| v.first().copied()),
        transfer_syntax: obj.meta().transfer_syntax().trim_end_matches('\0').to_string(),
        instance: get_str(&obj, tags::INSTANCE_NUMBER).and_then(|v| v.parse::<i64>().ok()),
        sop_instance_uid: get_str(&obj, tags::SOP_INSTANCE_UID).filter(|u| !u.is_empty()),
        slice_thickness: f(tags::SLICE_THICKNESS, "SliceThickness")
            .and_then(|v| v.first().copied())
            .filter(|t| t.is_finite() && *t > 0.0),
    };
    let modality = get_str(&obj, tags::MODALITY).unwrap_or_default();
    let description = get_str(&obj, tags::SERIES_DESCRIPTION).unwrap_or_default();
    Ok((key, header, modality, description))
}

fn rounded(o: &[f64; 6]) -> [i64; 6] {
    o.map(|v| (v * 1e4).round() as i64)
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    series_uid: String,
    study: String,
    frame_of_reference: String,
    orientation: [i64; 6],
    size: (u32, u32),
}

fn list_dir(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let rd = std::fs::read_dir(path)
        .map_err(|source| DicomError::Io { path: path.to_path_buf(), source })?;
    for entry in rd {
        let entry = entry.map_err(|source| DicomError::Io { path: path.to_path_buf(), source })?;
        let p = entry.path();
        let ft = entry.file_type().map_err(|source| DicomError::Io { path: p.clone(), source })?;
        if ft.is_dir() {
            list_dir(&p, out)?;
        } else if ft.is_file() || (ft.is_symlink() && p.is_file()) {
            out.push(p);
        }
    }
    Ok(())
}

/// Lists the files under `path` (itself if it is a file; recursively if a folder), sorted.
///
/// # Errors
/// [`DicomError::Io`] when the path does not exist or cannot be listed.
pub fn list_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path)
        .map_err(|source| DicomError::Io { path: path.to_path_buf(), source })?;
    let mut files = Vec::new();
    if meta.is_dir() {
        list_dir(path, &mut files)?;
        files.sort();
    } else {
        files.push(path.to_path_buf());
    }
    Ok(files)
}

/// Groups `files` (found under `path`) into DICOM series, reading headers only, in
/// parallel. When `path` is a single file that is not a usable image, the error says why.
///
/// # Errors
/// [`DicomError::NotDicom`] or [`DicomError::Unsupported`] when `path` is a single file
/// that is not a DICOM image; [`DicomError::NoImages`] when nothing usable is found.
pub fn scan_files(path: &Path, files: &[PathBuf], progress: &dyn Progress) -> Result<DicomScan> {
    let single_file = files.len() == 1 && files[0] == path;
    progress.start("reading DICOM headers", Some(files.len() as u64));
    let headers: Vec<_> = files
        .par_iter()
        .map(|f| {
            let r = read_slice_header(f);
            progress.advance(1);
            r
        })
        .collect();
    progress.finish();

    let mut skipped = Skipped::default();
    type Group = (Vec<SliceHeader>, Skipped, String, String, Vec<(PathBuf, String)>);
    let mut groups: BTreeMap<GroupKey, Group> = BTreeMap::new();
    let mut first_reject = None;
    let mut damaged = Vec::new();
    for (f, r) in files.iter().zip(headers) {
        match r {
            Ok((key, h, modality, description)) => {
                let g = groups.entry(key).or_insert_with(|| {
                    (Vec::new(), Skipped::default(), modality, description, Vec::new())
                });
                g.0.push(h);
            }
            Err(Reject::Invalid(key, m)) => {
                let g = groups.entry(*key).or_insert_with(|| {
                    (Vec::new(), Skipped::default(), String::new(), String::new(), Vec::new())
                });
                g.1.damaged += 1;
                g.4.push((f.clone(), m.clone()));
                first_reject.get_or_insert((f.clone(), Some(m)));
            }
            Err(Reject::NotDicom(m)) => {
                skipped.not_dicom += 1;
                first_reject.get_or_insert((f.clone(), Some(m)));
            }
            Err(Reject::Damaged(m)) => {
                skipped.damaged += 1;
                damaged.push((f.clone(), m.clone()));
                first_reject.get_or_insert((f.clone(), Some(m)));
            }
            Err(Reject::NotImage) => {
                skipped.not_image += 1;
                first_reject.get_or_insert((f.clone(), None));
            }
            Err(Reject::Localizer) => skipped.localizer += 1,
            Err(Reject::Multiframe) => {
                skipped.multiframe += 1;
                first_reject.get_or_insert((f.clone(), None));
            }
        }
    }
    if single_file && groups.values().all(|g| g.0.is_empty()) {
        if let Some((f, m)) =
            damaged.first().cloned().or_else(|| groups.values().find_map(|g| g.4.first().cloned()))
        {
            return Err(DicomError::Damaged { path: f, message: m });
        }
        if let Some((f, Some(message))) = first_reject {
            return Err(DicomError::NotDicom { path: f, message });
        }
        if skipped.multiframe > 0 {
            return Err(DicomError::Unsupported {
                path: path.to_path_buf(),
                what: "a multi-frame or multi-sample (colour) image".into(),
            });
        }
    }
    let mut warnings = Vec::new();
    let mut series: Vec<SeriesFiles> = Vec::new();
    for (key, (mut slices, mut sk, modality, description, mut bad)) in groups {
        if slices.is_empty() {
            // Only damaged slices: nothing to read, but they are not silently dropped.
            skipped.damaged += bad.len();
            damaged.extend(bad);
            continue;
        }
        let derived_id = key.series_uid.is_empty();
        let id = if derived_id {
            let ident = format!(
                "{}|{}|{:?}|{:?}",
                key.study, key.frame_of_reference, key.orientation, key.size
            );
            let id = format!("derived-{:016x}", crate::seed::fnv1a(ident.as_bytes()));
            warnings.push(format!(
                "{} files have no SeriesInstanceUID; grouped by study, frame of reference, orientation and size as series {id}",
                slices.len()
            ));
            id
        } else {
            key.series_uid.clone()
        };
        // Keep the most common (size, orientation); skip the others.
        let mut counts: BTreeMap<((u32, u32), [i64; 6]), usize> = BTreeMap::new();
        for s in &slices {
            *counts.entry(((s.rows, s.columns), rounded(&s.orientation))).or_default() += 1;
        }
        if let Some((best, _)) = counts.iter().max_by_key(|(_, n)| **n) {
            let best = *best;
            let before = slices.len();
            slices.retain(|s| ((s.rows, s.columns), rounded(&s.orientation)) == best);
            sk.other_geometry += before - slices.len();
        }
        // Unreadable DICOM files in a folder of this series may be its slices.
        let folders: std::collections::BTreeSet<&Path> =
            slices.iter().filter_map(|s| s.path.parent()).collect();
        bad.extend(
            damaged
                .iter()
                .filter(|(f, _)| f.parent().is_some_and(|p| folders.contains(p)))
                .cloned(),
        );
        series.push(SeriesFiles {
            id,
            derived_id,
            modality,
            description,
            slices,
            skipped: sk,
            damaged: bad,
        });
    }
    if series.is_empty() {
        return Err(DicomError::NoImages { path: path.to_path_buf(), skipped });
    }
    series.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(DicomScan { path: path.to_path_buf(), series, skipped, warnings, damaged })
}

/// Decodes one slice file to HU; returns (values in row-major y, x order, clamped count).
fn decode_slice(h: &SliceHeader) -> Result<(Vec<i16>, u64)> {
    let path = &h.path;
    let ts = TransferSyntaxRegistry.get(&h.transfer_syntax);
    match ts {
        Some(ts) if ts.can_decode_all() => {}
        other => {
            let name = other.map(|t| t.name().to_string()).unwrap_or_else(|| "unknown".into());
            let hint = if h.transfer_syntax.starts_with("1.2.840.10008.1.2.4.8")
                && !cfg!(feature = "jpegls")
            {
                "; JPEG-LS needs ctstream built with --features jpegls".to_string()
            } else {
                String::new()
            };
            return Err(DicomError::UnsupportedTransferSyntax {
                path: path.clone(),
                uid: h.transfer_syntax.clone(),
                name,
                hint,
            });
        }
    }
    super::dicom_lengths::check_file(path)
        .map_err(|message| DicomError::NotDicom { path: path.clone(), message })?;
    let obj = OpenFileOptions::new()
        .open_file(path)
        .map_err(|e| DicomError::NotDicom { path: path.clone(), message: e.to_string() })?;
    if obj.element_opt(tags::PIXEL_DATA).ok().flatten().is_none() {
        return Err(DicomError::NoPixelData { path: path.clone() });
    }
    if obj.element_opt(tags::MODALITY_LUT_SEQUENCE).ok().flatten().is_some()
        && obj.element_opt(tags::RESCALE_SLOPE).ok().flatten().is_none()
    {
        return Err(DicomError::Unsupported {
            path: path.clone(),
            what: "a Modality LUT Sequence (0028,3000) instead of RescaleSlope/Intercept".into(),
        });
    }
    let num = |tag, field| -> Result<Option<f64>> {
        Ok(get_f64s(&obj, path, tag, field)?.and_then(|v| v.first().copied()))
    };
    let slope = num(tags::RESCALE_SLOPE, "RescaleSlope")?.unwrap_or(1.0);
    if slope == 0.0 {
        return Err(DicomError::BadField {
            path: path.clone(),
            field: "RescaleSlope",
            tag: tag_str(tags::RESCALE_SLOPE),
            message: "0 maps every voxel to the intercept".into(),
        });
    }
    let intercept = num(tags::RESCALE_INTERCEPT, "RescaleIntercept")?.unwrap_or(0.0);
    let px = obj
        .decode_pixel_data()
        .map_err(|e| DicomError::Decode { path: path.clone(), message: e.to_string() })?;
    let (rows, cols) = (px.rows() as usize, px.columns() as usize);
    if rows != h.rows as usize || cols != h.columns as usize {
        return Err(DicomError::Decode {
            path: path.clone(),
            message: format!("decoded {rows}x{cols}, header says {}x{}", h.rows, h.columns),
        });
    }
    let (ba, bs, hb) = (px.bits_allocated(), px.bits_stored(), px.high_bit());
    let signed = matches!(px.pixel_representation(), dicom_pixeldata::PixelRepresentation::Signed);
    if bs == 0 || bs > ba || hb + 1 != bs {
        return Err(DicomError::BadField {
            path: path.clone(),
            field: "BitsStored",
            tag: tag_str(tags::BITS_STORED),
            message: format!(
                "BitsAllocated {ba}, BitsStored {bs}, HighBit {hb}: ctstream reads HighBit = BitsStored - 1 <= BitsAllocated - 1"
            ),
        });
    }
    let n = rows * cols;
    let data = px.data();
    let bytes_per = match ba {
        8 => 1,
        16 => 2,
        32 => 4,
        _ => {
            return Err(DicomError::Unsupported {
                path: path.clone(),
                what: format!("BitsAllocated {ba}"),
            });
        }
    };
    if data.len() < n * bytes_per {
        return Err(DicomError::Decode {
            path: path.clone(),
            message: format!(
                "pixel data holds {} bytes, {rows}x{cols} at {ba} bits needs {}",
                data.len(),
                n * bytes_per
            ),
        });
    }
    let mask: u64 = if bs >= 64 { u64::MAX } else { (1u64 << bs) - 1 };
    let stored = |i: usize| -> i64 {
        let raw: u64 = match bytes_per {
            1 => data[i] as u64,
            2 => u16::from_le_bytes([data[2 * i], data[2 * i + 1]]) as u64,
            _ => {
                u32::from_le_bytes([data[4 * i], data[4 * i + 1], data[4 * i + 2], data[4 * i + 3]])
                    as u64
            }
        } & mask;
        if signed && raw >> (bs - 1) & 1 == 1 { raw as i64 - (1i64 << bs) } else { raw as i64 }
    };
    let mut clamped = 0u64;
    let mut out = Vec::with_capacity(n);
    if slope == 1.0 && intercept.fract() == 0.0 && intercept.abs() < 1e9 {
        let ic = intercept as i64;
        for i in 0..n {
            let v = stored(i) + ic;
            let c = v.clamp(i16::MIN as i64, i16::MAX as i64);
            clamped += (c != v) as u64;
            out.push(c as i16);
        }
    } else {
        for i in 0..n {
            // Same arithmetic as pydicom: value * slope + intercept in float64.
            let (v, c) = hu::to_i16(stored(i) as f64 * slope + intercept).unwrap_or((0, false));
            clamped += c as u64;
            out.push(v);
        }
    }
    Ok((out, clamped))
}

/// Reads one series into a volume: orders the slices along the normal, checks spacing,
/// decodes the slices in parallel.
///
/// # Errors
/// Any [`DicomError`]: duplicate positions, uneven spacing under
/// [`UnevenPolicy::Refuse`], sheared stacks, undecodable files (naming the file and the
/// transfer syntax), files without pixel data.
pub fn read_series(
    folder: &Path,
    series: &SeriesFiles,
    opts: &DicomOptions,
    progress: &dyn Progress,
) -> Result<DicomVolume> {
    if series.slices.is_empty() {
        return Err(DicomError::NoImages { path: folder.to_path_buf(), skipped: series.skipped });
    }
    let mut warnings = Vec::new();
    if !series.damaged.is_empty() {
        if !opts.allow_missing_slices {
            return Err(DicomError::DamagedSlices {
                path: folder.to_path_buf(),
                series: series.id.clone(),
                files: series.damaged.clone(),
            });
        }
        let list: Vec<String> =
            series.damaged.iter().map(|(f, m)| format!("{} ({m})", f.display())).collect();
        warnings.push(format!(
            "stored without {} damaged file(s) that may be its slices (--allow-missing-slices): {}",
            list.len(),
            list.join("; ")
        ));
    }
    let o = series.slices[0].orientation;
    let (row, col) = ([o[0], o[1], o[2]], [o[3], o[4], o[5]]);
    let normal = cross(row, col);
    let mut slices: Vec<(f64, &SliceHeader)> =
        series.slices.iter().map(|s| (dot(s.position_xyz, normal), s)).collect();
    slices.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.path.cmp(&b.1.path)));
    let n = slices.len();
    let first = slices[0].1;

    // Steps along the normal; duplicates; shear.
    let mut spacing_info = None;
    let mut z_spacing = first.spacing_between_slices.filter(|s| *s > 0.0).unwrap_or(1.0);
    let mut uneven = false;
    if n > 1 {
        let steps: Vec<f64> = slices.windows(2).map(|w| w[1].0 - w[0].0).collect();
        for (i, &d) in steps.iter().enumerate() {
            if d.abs() < 1e-2 {
                return Err(DicomError::DuplicatePosition {
                    path: folder.to_path_buf(),
                    series: series.id.clone(),
                    first: slices[i].1.path.clone(),
                    second: slices[i + 1].1.path.clone(),
                    position_mm: slices[i].0,
                });
            }
        }
        let mut sorted = steps.clone();
        sorted.sort_by(f64::total_cmp);
        let m = sorted.len();
        let median =
            if m % 2 == 1 { sorted[m / 2] } else { 0.5 * (sorted[m / 2 - 1] + sorted[m / 2]) };
        let gaps = steps
            .iter()
            .enumerate()
            .filter(|(_, d)| **d > 1.5 * median)
            .map(|(i, d)| (slices[i].1.path.clone(), slices[i + 1].1.path.clone(), *d))
            .collect();
        let info = SliceSpacing { min: sorted[0], max: sorted[sorted.len() - 1], median, gaps };
        uneven = steps.iter().any(|d| (d - median).abs() > 0.01 * median + 1e-3);
        let min_ps = first.pixel_spacing_xy[0].min(first.pixel_spacing_xy[1]);
        let shear = slices
            .iter()
            .map(|(t, s)| {
                let d: Vec<f64> = (0..3)
                    .map(|a| {
                        s.position_xyz[a] - first.position_xyz[a] - (t - slices[0].0) * normal[a]
                    })
                    .collect();
                (d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt()
            })
            .fold(0.0, f64::max);
        if shear > 0.05 * min_ps.max(0.1) {
            return Err(DicomError::Sheared {
                path: folder.to_path_buf(),
                series: series.id.clone(),
                offset_mm: shear,
            });
        }
        // A step that is a whole multiple (2x, 3x, ...) of the median is where slices are
        // missing: damage, refused unless the user accepts it by name. Only unevenness
        // that is not explained by missing slices may be resampled by --resample-uneven.
        let is_gap = |d: f64| {
            let k = (d / median).round();
            k >= 2.0 && (d - k * median).abs() <= 0.1 * median
        };
        let missing: Vec<String> = steps
            .iter()
            .enumerate()
            .filter(|(_, d)| is_gap(**d))
            .map(|(i, &d)| {
                let (a, b) = (slices[i].1, slices[i + 1].1);
                let k = (d / median).round() as usize - 1;
                let numbers = match (a.instance, b.instance) {
                    (Some(x), Some(y)) => format!(", InstanceNumber {x} -> {y}"),
                    _ => String::new(),
                };
                format!(
                    "{} at {:.3} mm and {} at {:.3} mm are {d:.3} mm apart, {} x the step of {median:.3} mm: {k} slice(s) missing{numbers}",
                    a.path.display(),
                    slices[i].0,
                    b.path.display(),
                    slices[i + 1].0,
                    k + 1
                )
            })
            .collect();
        if !missing.is_empty() {
            if !opts.allow_missing_slices {
                return Err(DicomError::MissingSlices {
                    path: folder.to_path_buf(),
                    series: series.id.clone(),
                    gaps: missing,
                });
            }
            warnings.push(format!("slices missing, resampled over the gap onto a uniform grid (--allow-missing-slices): {}", missing.join("; ")));
        }
        let uneven_otherwise =
            steps.iter().any(|&d| !is_gap(d) && (d - median).abs() > 0.01 * median + 1e-3);
        if uneven {
            if uneven_otherwise && opts.uneven == UnevenPolicy::Refuse {
                return Err(DicomError::UnevenSpacing {
                    path: folder.to_path_buf(),
                    series: series.id.clone(),
                    spacing: info,
                });
            }
            if uneven_otherwise {
                warnings.push(format!(
                    "uneven slice spacing ({}); resampled to {:.4} mm",
                    info.describe(),
                    median
                ));
            }
            z_spacing = median;
        } else {
            // ITK's rule: distance from the first to the last position over n - 1.
            let last = slices[n - 1].1.position_xyz;
            let d: f64 =
                (0..3).map(|a| (last[a] - first.position_xyz[a]).powi(2)).sum::<f64>().sqrt();
            z_spacing = d / (n - 1) as f64;
        }
        spacing_info = Some(info);
    }

    // Refuse sizes no CT has before allocating anything.
    let nz_out = if uneven {
        ((slices[n - 1].0 - slices[0].0) / z_spacing).round() as u64 + 1
    } else {
        n as u64
    };
    let voxels = nz_out.saturating_mul(first.rows as u64 * first.columns as u64);
    if voxels > crate::io::metaimage::MAX_VOXELS {
        return Err(DicomError::TooLarge {
            path: folder.to_path_buf(),
            series: series.id.clone(),
            what: format!("{nz_out} slices of {} x {}", first.rows, first.columns),
            voxels,
            limit: crate::io::metaimage::MAX_VOXELS,
        });
    }

    // Decode in parallel, in position order.
    progress.start("decoding slices", Some(n as u64));
    let decoded: Vec<Result<(Vec<i16>, u64)>> = slices
        .par_iter()
        .map(|(_, s)| {
            let r = decode_slice(s);
            progress.advance(1);
            r
        })
        .collect();
    progress.finish();
    let (rows, cols) = (first.rows as usize, first.columns as usize);
    let mut planes = Vec::with_capacity(n);
    let mut clamped = 0;
    for r in decoded {
        let (p, c) = r?;
        clamped += c;
        planes.push(p);
    }

    let (hu, resampled) = if uneven {
        let t0 = slices[0].0;
        let nz = nz_out as usize;
        let mut out = Vec::with_capacity(nz * rows * cols);
        let mut j = 0usize;
        for k in 0..nz {
            let t = t0 + k as f64 * z_spacing;
            while j + 2 < n && slices[j + 1].0 <= t {
                j += 1;
            }
            let (ta, tb) = (slices[j].0, slices[j + 1].0);
            let w = ((t - ta) / (tb - ta)).clamp(0.0, 1.0);
            let (a, b) = (&planes[j], &planes[j + 1]);
            for i in 0..rows * cols {
                let v = a[i] as f64 * (1.0 - w) + b[i] as f64 * w;
                out.push(hu::to_i16(v).map_or(0, |x| x.0));
            }
        }
        (Array3::from_shape_vec((nz, rows, cols), out), true)
    } else {
        (Array3::from_shape_vec((n, rows, cols), planes.concat()), false)
    };
    let hu =
        hu.map_err(|e| DicomError::Decode { path: folder.to_path_buf(), message: e.to_string() })?;

    let normal_len = dot(normal, normal).sqrt();
    let nrm = normal.map(|v| v / normal_len);
    let geometry = Geometry {
        origin_xyz: first.position_xyz,
        spacing_xyz: [first.pixel_spacing_xy[0], first.pixel_spacing_xy[1], z_spacing],
        direction: [row[0], col[0], nrm[0], row[1], col[1], nrm[1], row[2], col[2], nrm[2]],
    };
    if series.derived_id {
        warnings.push(format!("series has no SeriesInstanceUID; its id {} is derived from study, frame of reference, orientation and size", series.id));
    }
    Ok(DicomVolume {
        volume: Volume {
            series_id: series.id.clone(),
            hu,
            geometry,
            format: SourceFormat::Dicom,
            clamped,
        },
        slices: n,
        spacing: spacing_info,
        resampled,
        skipped: series.skipped,
        warnings,
        order: slices
            .iter()
            .enumerate()
            .map(|(k, (t, s))| PlacedSlice {
                sop_instance_uid: s.sop_instance_uid.clone(),
                position_xyz: s.position_xyz,
                slice_thickness: s.slice_thickness,
                index_z: if resampled { (t - slices[0].0) / z_spacing } else { k as f64 },
            })
            .collect(),
    })
}
