//! LIDC-IDRI's reader annotations: the XML each series carries (`LidcReadMessage`), the
//! readers' nodules clustered into physical nodules as pylidc 0.2.3 does, and the masks
//! filled from their contours.
//!
//! Each of up to four radiologists read every series; a `readingSession` is one reader's
//! read. Nodules of 3 mm or more (`unblindedReadNodule` with `characteristics`) are drawn
//! slice by slice as closed outlines in pixel coordinates (`edgeMap`, drawn just outside
//! the nodule, so the outline pixels are not part of it); smaller nodules are one point,
//! and `nonNodule` loci are one point each.
//!
//! - [`read`] reads one XML file into a [`ReadMessage`]: every value as written, with the
//!   problems of each annotation kept beside it, so one bad annotation fails alone.
//! - [`resolve`] places one file's annotations on the slices of its series (by SOP
//!   Instance UID, else by z) and checks each; a bad one is listed and left out.
//! - [`cluster`] groups the readers' contoured annotations into nodules
//!   (`Scan.cluster_annotations`).
//! - [`mask`] fills an annotation's contours into a mask on the source grid
//!   (`Annotation.boolean_mask`), and the consensus of a nodule's masks
//!   (`pylidc.utils.consensus`).
//! - [`files`] finds the XML files of each series (beside its slices, or in folders given)
//!   by the series UID each names.
//! - [`luna16`] writes LUNA16's `annotations.csv` and `annotations_excluded.csv` from a
//!   store's LIDC annotations, by LUNA16's rule (3 readers or more).
//! - [`series`] does all of it for one series: its nodules, annotations and points as the
//!   store records them, and the label volumes `nodules` and `readers`.

pub mod cluster;
pub mod files;
pub mod luna16;
pub mod mask;
pub mod read;
pub mod resolve;
pub mod series;

use std::path::PathBuf;

/// The XML namespace of `LidcReadMessage`.
pub const NAMESPACE: &str = "http://www.nih.gov";

/// The most edge points one ROI may have: far more than the outline of any region of a
/// 512 x 512 slice (a chain of distinct pixels around the whole slice has 2,044), and a
/// bound on what a hostile file can make the reader hold.
pub const MAX_EDGE_POINTS: usize = 65_536;

/// The most contour points one annotation may have, all its ROIs together: three times
/// the largest in LIDC-IDRI (6,814), and a bound on what clustering compares.
pub const MAX_ANNOTATION_POINTS: usize = 20_000;

/// The most point-in-outline tests filling one annotation may take (its box's pixels times
/// its contour points): the largest LIDC annotation takes about 2.5 x 10^7.
pub const MAX_FILL_WORK: u64 = 500_000_000;

/// The largest reader XML read (real files are under 2 MB).
pub const MAX_XML_BYTES: u64 = 64 << 20;

/// A reader XML that cannot be used at all; a bad annotation inside a good file is a
/// [`Problem`] of that annotation instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LidcError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Larger than [`MAX_XML_BYTES`].
    #[error("{path}: {bytes} bytes; a reader XML is at most {max} (real ones are under 2 MB)", max = MAX_XML_BYTES)]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// Not well-formed XML (truncated, mismatched tags, a bad encoding).
    #[error("{path}: not well-formed XML at byte {position}: {message}")]
    Xml {
        /// The file.
        path: PathBuf,
        /// Where the reader stopped.
        position: u64,
        /// What it found.
        message: String,
    },
    /// Well-formed, but not an LIDC reader message (another root element or namespace).
    #[error("{path}: {message}")]
    NotLidc {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        message: String,
    },
}

/// One reader XML file: the series it annotates and every reader's read of it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadMessage {
    /// The file.
    pub path: PathBuf,
    /// `ResponseHeader/SeriesInstanceUid`: the series the reads are of.
    pub series_uid: Option<String>,
    /// `ResponseHeader/StudyInstanceUID`.
    pub study_uid: Option<String>,
    /// The CT reads (`readingSession`), in file order.
    pub sessions: Vec<ReadingSession>,
    /// Chest X-ray reads (`CXRreadingSession`, or a whole `IdriReadMessage`): skipped.
    pub cxr_sessions: usize,
}

/// One radiologist's read of the series.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadingSession {
    /// `servicingRadiologistID` (anonymised; may repeat across files), or `reader N` (its
    /// place in the file, from 1) where the file gives none.
    pub reader: String,
    /// Nodules, of 3 mm or more (contoured, with characteristics) and smaller (one point).
    pub nodules: Vec<ReaderNodule>,
    /// Non-nodule loci.
    pub non_nodules: Vec<NonNodule>,
}

/// One reader's nodule: `unblindedReadNodule`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReaderNodule {
    /// `noduleID`, as the reader named it (ids are per reader: they do not link readers).
    pub id: String,
    /// The nine scores; present for nodules of 3 mm or more.
    pub characteristics: Option<Characteristics>,
    /// The outlines, one per slice and region.
    pub rois: Vec<Roi>,
    /// What is wrong with this nodule's values; a nodule with any is not used.
    pub problems: Vec<Problem>,
    /// What is odd but does not stop it being used (a score out of its range, left out:
    /// LIDC-IDRI has one `internalStructure` of 5).
    pub notes: Vec<Problem>,
}

impl ReaderNodule {
    /// Whether it is contoured (3 mm or more): it has characteristics, or an outline of
    /// more than one point. Otherwise it is a small nodule, one point per ROI.
    pub fn is_contoured(&self) -> bool {
        self.characteristics.is_some() || self.rois.iter().any(|r| r.points.len() > 1)
    }
}

/// The nine scores a reader gave a nodule of 3 mm or more (each 1 to 5, calcification and
/// internal structure their own codes; `None` where the file has none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Characteristics {
    /// 1 (extremely subtle) to 5 (obvious).
    pub subtlety: Option<u8>,
    /// 1 soft tissue, 2 fluid, 3 fat, 4 air.
    pub internal_structure: Option<u8>,
    /// 1 popcorn, 2 laminated, 3 solid, 4 non-central, 5 central, 6 absent.
    pub calcification: Option<u8>,
    /// 1 linear to 5 round.
    pub sphericity: Option<u8>,
    /// 1 poorly defined to 5 sharp.
    pub margin: Option<u8>,
    /// 1 none to 5 marked.
    pub lobulation: Option<u8>,
    /// 1 none to 5 marked.
    pub spiculation: Option<u8>,
    /// 1 non-solid (ground glass) to 5 solid.
    pub texture: Option<u8>,
    /// 1 highly unlikely to 5 highly suspicious.
    pub malignancy: Option<u8>,
}

impl Characteristics {
    /// The names as the XML writes them, in this order, with the largest value each takes.
    pub const FIELDS: [(&'static str, u8); 9] = [
        ("subtlety", 5),
        ("internalStructure", 4),
        ("calcification", 6),
        ("sphericity", 5),
        ("margin", 5),
        ("lobulation", 5),
        ("spiculation", 5),
        ("texture", 5),
        ("malignancy", 5),
    ];

    /// The score of field `i` of [`Self::FIELDS`].
    pub fn get(&self, i: usize) -> Option<u8> {
        [
            self.subtlety,
            self.internal_structure,
            self.calcification,
            self.sphericity,
            self.margin,
            self.lobulation,
            self.spiculation,
            self.texture,
            self.malignancy,
        ]
        .get(i)
        .copied()
        .flatten()
    }

    fn slot(&mut self, i: usize) -> Option<&mut Option<u8>> {
        Some(match i {
            0 => &mut self.subtlety,
            1 => &mut self.internal_structure,
            2 => &mut self.calcification,
            3 => &mut self.sphericity,
            4 => &mut self.margin,
            5 => &mut self.lobulation,
            6 => &mut self.spiculation,
            7 => &mut self.texture,
            8 => &mut self.malignancy,
            _ => return None,
        })
    }
}

/// One outline (or, for a small nodule, one point) on one slice.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Roi {
    /// `imageZposition`: the slice's z in mm, as the reader's tool wrote it.
    pub z: f64,
    /// `imageSOP_UID`: the slice's SOP Instance UID.
    pub sop_uid: String,
    /// `inclusion`: true for a region of the nodule, false for a hole cut out of it.
    pub inclusion: bool,
    /// The `edgeMap` points, (x, y) = (column, row) pixel indices, in drawing order.
    pub points: Vec<[i32; 2]>,
}

/// A non-nodule locus (`nonNodule`): one point a reader marked as not a nodule.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NonNodule {
    /// `nonNoduleID`.
    pub id: String,
    /// `imageZposition` in mm.
    pub z: f64,
    /// `imageSOP_UID`.
    pub sop_uid: String,
    /// The locus, (x, y) pixel indices.
    pub point: [i32; 2],
    /// What is wrong with its values; one with any is not used.
    pub problems: Vec<Problem>,
}

/// A bad value inside an annotation: where and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Which part: `roi 3 imageZposition`, `characteristics malignancy`, ...
    pub field: String,
    /// What is wrong, with the value as written.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}
