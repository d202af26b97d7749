//! DICOM Segmentation objects (SEG, SOP class 1.2.840.10008.5.1.4.1.1.66.4) as label
//! volumes of the series they reference, read with dicom-rs.
//!
//! A SEG names its series in ReferencedSeriesSequence (the key [`super::files`] pairs on),
//! its segments in SegmentSequence (number and label: the label volume's classes), and for
//! each frame the segment it belongs to (SegmentIdentificationSequence) and where it lies
//! (PlanePositionSequence's ImagePositionPatient, per frame). A frame is placed on the slice
//! of the scan whose position it has: its position, in the scan's index space, must be an
//! integer slice (within 1 % of a slice) at in-plane index (0, 0) (within 1 % of a voxel),
//! with the scan's Rows, Columns, PixelSpacing and ImageOrientationPatient. Each voxel set
//! in a frame takes the frame's segment number; where segments overlap (allowed in DICOM,
//! not in a label map) the higher number is kept and the overlap is reported.
//!
//! Only BINARY segmentations (1 bit per pixel, uncompressed) are read; FRACTIONAL ones and
//! encapsulated (compressed) pixel data are refused, naming the file. Segment numbers
//! must be 1..=255.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use dicom_object::{InMemDicomObject, OpenFileOptions, Tag};
use ndarray::Array3;

use crate::geometry::Geometry;

/// The SOP class UID of Segmentation Storage.
pub const SEGMENTATION_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.66.4";

/// Why a SEG object cannot be a label volume; each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegError {
    /// The file cannot be parsed as DICOM.
    #[error("{path}: cannot be read as DICOM: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A required attribute is missing or has a value no SEG can have.
    #[error("{path}: {field}: {message}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The attribute's keyword.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A kind of SEG not read.
    #[error(
        "{path}: {what} is not supported (only BINARY segmentations with uncompressed pixel data)"
    )]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// A frame that does not lie on a slice of the scan, or the SEG's grid is not the scan's.
    #[error("{path}: {message} (scan {scan})")]
    Placement {
        /// The SEG file.
        path: PathBuf,
        /// The scan's folder.
        scan: PathBuf,
        /// What does not fit, with the values.
        message: String,
    },
}

type Result<T> = std::result::Result<T, SegError>;

/// One frame: its segment and the position of its first pixel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Frame {
    /// ReferencedSegmentNumber.
    pub segment: u8,
    /// ImagePositionPatient (x, y, z) mm.
    pub position_xyz: [f64; 3],
}

/// A BINARY DICOM SEG, read whole.
#[derive(Debug, Clone)]
pub struct Segmentation {
    /// The file.
    pub path: PathBuf,
    /// The SeriesInstanceUID it references.
    pub referenced_series: String,
    /// Segment number to SegmentLabel.
    pub segments: BTreeMap<u8, String>,
    /// Rows, Columns.
    pub rows: usize,
    /// Columns.
    pub columns: usize,
    /// ImageOrientationPatient (shared or per frame; one for all frames).
    pub orientation: [f64; 6],
    /// PixelSpacing as (x, y) = (column spacing, row spacing) mm.
    pub pixel_spacing_xy: [f64; 2],
    /// The frames, in pixel-data order.
    pub frames: Vec<Frame>,
    /// The pixel data, one bit per pixel, the first pixel in the lowest bit.
    pub bits: Vec<u8>,
}

fn open(path: &Path, until_pixels: bool) -> Result<dicom_object::DefaultDicomObject> {
    let read = |message: String| SegError::Read { path: path.to_path_buf(), message };
    crate::io::dicom::check_lengths(path).map_err(read)?;
    let opts = OpenFileOptions::new();
    let opts = if until_pixels { opts.read_until(tags::PIXEL_DATA) } else { opts };
    opts.open_file(path).map_err(|e| read(e.to_string()))
}

/// The series a SEG file references: `Ok(None)` for files that are not DICOM, or DICOM of
/// another SOP class (ignored where label files are searched for).
///
/// # Errors
/// [`SegError::Read`] for a DICOM file that cannot be parsed; [`SegError::Field`] for a
/// SEG without ReferencedSeriesSequence.
pub fn referenced_series(path: &Path) -> Result<Option<String>> {
    if !crate::io::dicom::looks_like_dicom(path) {
        return Ok(None);
    }
    let obj = open(path, true)?;
    if obj.meta().media_storage_sop_class_uid().trim_end_matches('\0') != SEGMENTATION_STORAGE {
        return Ok(None);
    }
    series_of(path, &obj).map(Some)
}

fn series_of(path: &Path, obj: &InMemDicomObject) -> Result<String> {
    let item = first_item(path, obj, tags::REFERENCED_SERIES_SEQUENCE, "ReferencedSeriesSequence")?;
    let uid = text(item, tags::SERIES_INSTANCE_UID).unwrap_or_default();
    if uid.is_empty() {
        return Err(field(path, "ReferencedSeriesSequence", "has no SeriesInstanceUID".into()));
    }
    Ok(uid)
}

fn field(path: &Path, field: &'static str, message: String) -> SegError {
    SegError::Field { path: path.to_path_buf(), field, message }
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.element_opt(tag).ok()??;
    let s = e.to_str().ok()?;
    Some(s.trim_matches(|c: char| c == '\0' || c.is_whitespace()).to_string())
}

fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.element_opt(tag).ok()??.to_multi_float64().ok()
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.element_opt(tag).ok()??.to_int::<i64>().ok()
}

fn items(obj: &InMemDicomObject, tag: Tag) -> Option<&[InMemDicomObject]> {
    obj.element_opt(tag).ok()??.items()
}

fn first_item<'a>(
    path: &Path,
    obj: &'a InMemDicomObject,
    tag: Tag,
    name: &'static str,
) -> Result<&'a InMemDicomObject> {
    items(obj, tag)
        .and_then(|v| v.first())
        .ok_or_else(|| field(path, name, "missing or empty".into()))
}

/// A functional group's value: per frame where the frame has it, else shared.
fn group<'a>(
    frame: Option<&'a InMemDicomObject>,
    shared: Option<&'a InMemDicomObject>,
    seq: Tag,
) -> Option<&'a InMemDicomObject> {
    frame
        .and_then(|f| items(f, seq))
        .or_else(|| shared.and_then(|s| items(s, seq)))
        .and_then(|v| v.first())
}

/// The most pixels a SEG may hold (as many as the largest scan ctstream reads).
const MAX_PIXELS: u64 = crate::volume::MAX_VOXELS;

/// Reads a BINARY SEG whole.
///
/// # Errors
/// [`SegError`] naming the file and the attribute.
pub fn read(path: &Path) -> Result<Segmentation> {
    let obj = open(path, false)?;
    if obj.meta().media_storage_sop_class_uid().trim_end_matches('\0') != SEGMENTATION_STORAGE {
        return Err(field(
            path,
            "SOPClassUID",
            format!(
                "{} is not Segmentation Storage ({SEGMENTATION_STORAGE})",
                obj.meta().media_storage_sop_class_uid().trim_end_matches('\0')
            ),
        ));
    }
    let referenced_series = series_of(path, &obj)?;
    let kind = text(&obj, tags::SEGMENTATION_TYPE).unwrap_or_default();
    if kind != "BINARY" {
        return Err(SegError::Unsupported {
            path: path.to_path_buf(),
            what: format!("SegmentationType {kind:?}"),
        });
    }
    let bits_allocated = int(&obj, tags::BITS_ALLOCATED);
    if bits_allocated != Some(1) {
        return Err(SegError::Unsupported {
            path: path.to_path_buf(),
            what: format!("BitsAllocated {bits_allocated:?} in a BINARY segmentation"),
        });
    }
    let dim = |tag, name| match int(&obj, tag) {
        Some(n) if (1..=65535).contains(&n) => Ok(n as usize),
        other => Err(field(path, name, format!("{other:?} is not a size"))),
    };
    let (rows, columns) = (dim(tags::ROWS, "Rows")?, dim(tags::COLUMNS, "Columns")?);
    let n_frames = match int(&obj, tags::NUMBER_OF_FRAMES) {
        Some(n) if n >= 1 && (n as u64) * (rows * columns) as u64 <= MAX_PIXELS => n as usize,
        other => {
            return Err(field(
                path,
                "NumberOfFrames",
                format!("{other:?} is not 1 or more frames of at most {MAX_PIXELS} pixels in all"),
            ));
        }
    };

    let mut segments = BTreeMap::new();
    for s in items(&obj, tags::SEGMENT_SEQUENCE).unwrap_or_default() {
        let n = int(s, tags::SEGMENT_NUMBER);
        let Some(n) = n.filter(|n| (1..=255).contains(n)) else {
            return Err(field(
                path,
                "SegmentNumber",
                format!("{n:?} is not 1..=255 (label values are uint8)"),
            ));
        };
        segments.insert(n as u8, text(s, tags::SEGMENT_LABEL).unwrap_or_default());
    }
    if segments.is_empty() {
        return Err(field(path, "SegmentSequence", "missing or empty".into()));
    }

    let shared = items(&obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE).and_then(|v| v.first());
    let per_frame = items(&obj, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE).unwrap_or_default();
    if per_frame.len() != n_frames {
        return Err(field(
            path,
            "PerFrameFunctionalGroupsSequence",
            format!("{} items for NumberOfFrames {n_frames}", per_frame.len()),
        ));
    }
    let mut frames = Vec::with_capacity(n_frames);
    let (mut orientation, mut spacing) = (None::<[f64; 6]>, None::<[f64; 2]>);
    for (k, f) in per_frame.iter().enumerate() {
        let bad = |name, message: String| field(path, name, format!("frame {}: {message}", k + 1));
        let segment = group(Some(f), shared, tags::SEGMENT_IDENTIFICATION_SEQUENCE)
            .and_then(|g| int(g, tags::REFERENCED_SEGMENT_NUMBER));
        let segment = match segment {
            Some(n) if (1..=255).contains(&n) && segments.contains_key(&(n as u8)) => n as u8,
            other => {
                return Err(bad(
                    "ReferencedSegmentNumber",
                    format!("{other:?} is not a segment of SegmentSequence"),
                ));
            }
        };
        let position = group(Some(f), shared, tags::PLANE_POSITION_SEQUENCE)
            .and_then(|g| floats(g, tags::IMAGE_POSITION_PATIENT));
        let position_xyz = match position.as_deref() {
            Some([x, y, z]) if [x, y, z].iter().all(|v| v.is_finite()) => [*x, *y, *z],
            other => {
                return Err(bad(
                    "ImagePositionPatient",
                    format!("{other:?} is not a position (x, y, z)"),
                ));
            }
        };
        let iop = group(Some(f), shared, tags::PLANE_ORIENTATION_SEQUENCE)
            .and_then(|g| floats(g, tags::IMAGE_ORIENTATION_PATIENT));
        let iop: [f64; 6] = match iop.as_deref() {
            Some(v) if v.len() == 6 && v.iter().all(|x| x.is_finite()) => {
                std::array::from_fn(|i| v[i])
            }
            other => {
                return Err(bad(
                    "ImageOrientationPatient",
                    format!("{other:?} is not two direction cosines"),
                ));
            }
        };
        let ps = group(Some(f), shared, tags::PIXEL_MEASURES_SEQUENCE)
            .and_then(|g| floats(g, tags::PIXEL_SPACING));
        let ps = match ps.as_deref() {
            Some([r, c])
                if [r, c].iter().all(|s| {
                    (crate::geometry::MIN_SPACING_MM..=crate::geometry::MAX_SPACING_MM).contains(*s)
                }) =>
            {
                [*c, *r]
            }
            other => {
                return Err(bad("PixelSpacing", format!("{other:?} is not two spacings in mm")));
            }
        };
        if orientation.is_some_and(|o| o.iter().zip(&iop).any(|(a, b)| (a - b).abs() > 1e-4))
            || spacing.is_some_and(|s| s.iter().zip(&ps).any(|(a, b)| (a - b).abs() > 1e-4 * b))
        {
            return Err(bad(
                "ImageOrientationPatient",
                "frames of one SEG with different orientations or pixel spacings are not supported"
                    .into(),
            ));
        }
        orientation = Some(iop);
        spacing = Some(ps);
        frames.push(Frame { segment, position_xyz });
    }
    let (Some(orientation), Some(pixel_spacing_xy)) = (orientation, spacing) else {
        return Err(field(path, "PerFrameFunctionalGroupsSequence", "no frames".into()));
    };

    let pixels =
        obj.element(tags::PIXEL_DATA).map_err(|e| field(path, "PixelData", e.to_string()))?;
    if pixels.value().fragments().is_some() {
        return Err(SegError::Unsupported {
            path: path.to_path_buf(),
            what: format!(
                "encapsulated pixel data (transfer syntax {})",
                obj.meta().transfer_syntax().trim_end_matches('\0')
            ),
        });
    }
    let bits = pixels.to_bytes().map_err(|e| field(path, "PixelData", e.to_string()))?.into_owned();
    let need = (n_frames * rows * columns).div_ceil(8);
    if bits.len() < need {
        return Err(field(
            path,
            "PixelData",
            format!(
                "{} bytes, {n_frames} frames of {rows} x {columns} one-bit pixels need {need}",
                bits.len()
            ),
        ));
    }
    Ok(Segmentation {
        path: path.to_path_buf(),
        referenced_series,
        segments,
        rows,
        columns,
        orientation,
        pixel_spacing_xy,
        frames,
        bits,
    })
}

/// What placing a SEG on its scan's grid gave.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The label map on the scan's grid (as the scan's files give it).
    pub labels: Array3<u8>,
    /// Voxels set in more than one segment (the higher number kept).
    pub overlapping: u64,
}

impl Segmentation {
    /// Places every frame on the slice of the scan (`shape_zyx`, geometry `g`, read from
    /// `scan`) at its position (see the module docs).
    ///
    /// # Errors
    /// [`SegError::Placement`] naming the frame or the field that does not fit.
    pub fn place(&self, scan: &Path, shape_zyx: [usize; 3], g: &Geometry) -> Result<Placed> {
        let bad = |message: String| SegError::Placement {
            path: self.path.clone(),
            scan: scan.to_path_buf(),
            message,
        };
        let [nz, ny, nx] = shape_zyx;
        if (self.rows, self.columns) != (ny, nx) {
            return Err(bad(format!(
                "Rows x Columns {} x {} in the SEG, {ny} x {nx} in the scan",
                self.rows, self.columns
            )));
        }
        let (ps, ss) = (self.pixel_spacing_xy, [g.spacing_xyz[0], g.spacing_xyz[1]]);
        if (0..2).any(|a| (ps[a] - ss[a]).abs() > super::SPACING_TOLERANCE * ss[a]) {
            return Err(bad(format!(
                "PixelSpacing (x, y) {ps:?} mm in the SEG, {ss:?} mm in the scan"
            )));
        }
        let d = &g.direction;
        let scan_iop = [d[0], d[3], d[6], d[1], d[4], d[7]];
        if (0..6).any(|i| (self.orientation[i] - scan_iop[i]).abs() > super::DIRECTION_TOLERANCE) {
            return Err(bad(format!(
                "ImageOrientationPatient {:?} in the SEG, {scan_iop:?} in the scan",
                self.orientation
            )));
        }
        let mut labels = Array3::<u8>::zeros((nz, ny, nx));
        let mut overlapping = 0u64;
        let plane = ny * nx;
        for (k, f) in self.frames.iter().enumerate() {
            let Some([z, y, x]) = g.world_to_index(f.position_xyz) else {
                return Err(bad("the scan's grid cannot be inverted".into()));
            };
            let slice = z.round();
            if (z - slice).abs() > 0.01
                || y.abs() > 0.01
                || x.abs() > 0.01
                || slice < 0.0
                || slice >= nz as f64
            {
                return Err(bad(format!(
                    "frame {}: ImagePositionPatient {:?} is at index (z, y, x) ({z:.3}, {y:.3}, {x:.3}) of the scan, not on one of its {nz} slices",
                    k + 1,
                    f.position_xyz
                )));
            }
            let mut out = labels.index_axis_mut(ndarray::Axis(0), slice as usize);
            let out = out.as_slice_mut().expect("a fresh array is contiguous");
            let first = k * plane;
            for (p, o) in out.iter_mut().enumerate() {
                let b = first + p;
                if self.bits[b / 8] >> (b % 8) & 1 == 1 {
                    if *o != 0 && *o != f.segment {
                        overlapping += 1;
                    }
                    *o = (*o).max(f.segment);
                }
            }
        }
        Ok(Placed { labels, overlapping })
    }
}
