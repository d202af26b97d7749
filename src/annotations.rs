//! LUNA16 annotation CSVs: nodules, excluded findings and candidates, in world mm.
//!
//! | file | columns |
//! |---|---|
//! | `annotations.csv` | `seriesuid,coordX,coordY,coordZ,diameter_mm` |
//! | `annotations_excluded.csv` | the same; `diameter_mm` is `-1` for unmeasured findings |
//! | `candidates.csv`, `candidates_V2.csv` | `seriesuid,coordX,coordY,coordZ,class` |
//!
//! Coordinates are world (x, y, z) in mm, as the scans' `Offset`; they stay in world
//! coordinates here, and [`crate::geometry::Geometry::world_to_index`] maps them to voxels.
//! Every bad row is an error naming the file, the line and the column.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::fsutil::write_atomic;

/// Errors reading annotation CSVs; each names the file, and the line where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnnotationError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CSV_BYTES`].
    #[error("{path}: {bytes} bytes is more than the {limit} bytes a CSV may have")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
        /// [`MAX_CSV_BYTES`].
        limit: u64,
    },
    /// The header lacks a required column.
    #[error("{path}: header has no column `{column}` (expected {expected})")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column.
        column: &'static str,
        /// The full expected header.
        expected: &'static str,
    },
    /// A row is malformed.
    #[error("{path}:{line}: {message}")]
    Row {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong, naming the column.
        message: String,
    },
}

type Result<T> = std::result::Result<T, AnnotationError>;

/// The largest CSV ctstream reads (1 GiB; LUNA16's largest, `candidates_V2.csv`, is 60 MB).
/// The rows are held in memory, so larger files are refused before reading.
pub const MAX_CSV_BYTES: u64 = 1 << 30;

/// A nodule or excluded finding: a sphere in world coordinates.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Annotation {
    /// The scan's series id (`seriesuid`).
    pub series_id: String,
    /// Centre (x, y, z) in world mm.
    pub world_xyz: [f64; 3],
    /// Diameter in mm; `None` where an excluded finding has `-1` (not measured).
    pub diameter_mm: Option<f64>,
}

/// A LUNA16 candidate location: class 1 for nodules, 0 for non-nodules.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The scan's series id.
    pub series_id: String,
    /// Location (x, y, z) in world mm.
    pub world_xyz: [f64; 3],
    /// 1 = nodule, 0 = not a nodule.
    pub class: u8,
}

const ANNOTATION_HEADER: &str = "seriesuid,coordX,coordY,coordZ,diameter_mm";
const CANDIDATE_HEADER: &str = "seriesuid,coordX,coordY,coordZ,class";
const PREDICTION_HEADER: &str = "seriesuid,coordX,coordY,coordZ,probability";

/// Reads rows of `path` with the five named columns, calling `row` with the line and
/// the five fields in header order.
fn read_rows<T>(
    path: &Path,
    columns: [&'static str; 5],
    expected: &'static str,
    mut row: impl FnMut(u64, [&str; 5]) -> std::result::Result<T, String>,
) -> Result<Vec<T>> {
    let io_err = |source| AnnotationError::Io { path: path.to_path_buf(), source };
    let file = crate::fsutil::open_regular(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    if len > MAX_CSV_BYTES {
        return Err(AnnotationError::TooLarge {
            path: path.to_path_buf(),
            bytes: len,
            limit: MAX_CSV_BYTES,
        });
    }
    // `take`: a file that grows while it is read stops at the limit, and is found short.
    // Fields are trimmed here rather than by the reader, so that a line break inside a
    // quoted field (a row that spans lines: a broken export) is seen and refused.
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::None)
        .from_reader(std::io::Read::take(file, MAX_CSV_BYTES));
    let headers = rdr.headers().map_err(|e| csv_err(path, e))?.clone();
    let mut idx = [0usize; 5];
    for (i, c) in columns.iter().enumerate() {
        idx[i] = headers.iter().position(|h| h.trim().trim_start_matches('\u{feff}') == *c).ok_or(
            AnnotationError::MissingColumn { path: path.to_path_buf(), column: c, expected },
        )?;
    }
    let mut out = Vec::new();
    let mut rec = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_err(path, e)),
        }
        let line = rec.position().map_or(0, |p| p.line());
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if let Some(k) = rec.iter().position(|f| f.contains(['\n', '\r'])) {
            let name = headers
                .get(k)
                .map_or_else(|| format!("field {}", k + 1), |h| format!("column `{}`", h.trim()));
            return Err(AnnotationError::Row {
                path: path.to_path_buf(),
                line,
                message: format!(
                    "{name} holds a line break inside quotes: the row spans lines (one row per line)"
                ),
            });
        }
        let mut fields = [""; 5];
        for (i, &j) in idx.iter().enumerate() {
            fields[i] = rec.get(j).map(str::trim).ok_or_else(|| AnnotationError::Row {
                path: path.to_path_buf(),
                line,
                message: format!(
                    "column `{}` is missing ({} fields, expected {})",
                    columns[i],
                    rec.len(),
                    headers.len()
                ),
            })?;
        }
        let v = row(line, fields).map_err(|message| AnnotationError::Row {
            path: path.to_path_buf(),
            line,
            message,
        })?;
        out.push(v);
    }
    Ok(out)
}

fn csv_err(path: &Path, e: csv::Error) -> AnnotationError {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(source) => AnnotationError::Io { path: path.to_path_buf(), source },
        other => {
            AnnotationError::Row { path: path.to_path_buf(), line, message: format!("{other:?}") }
        }
    }
}

/// A series id: non-empty, and one the store could name a file with (no path separators,
/// no `..`, no spaces; every DICOM UID and LUNA16 id qualifies), so an id read here can
/// never reach outside a folder whatever code uses it later.
fn series(s: &str) -> std::result::Result<String, String> {
    if s.is_empty() {
        return Err("column `seriesuid` is empty".into());
    }
    if !crate::store::format::valid_series_id(s) {
        let shown: String = s.chars().take(80).collect();
        return Err(format!(
            "column `seriesuid`: `{}` is not a series id (letters, digits, `.`, `_`, `-`, starting with a letter or digit, at most 128)",
            shown.escape_debug()
        ));
    }
    Ok(s.to_string())
}

fn number(column: &str, s: &str) -> std::result::Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ if s.is_empty() => Err(format!("column `{column}` is empty")),
        _ => Err(format!("column `{column}`: `{s}` is not a finite number")),
    }
}

fn xyz(f: &[&str; 5]) -> std::result::Result<[f64; 3], String> {
    Ok([number("coordX", f[1])?, number("coordY", f[2])?, number("coordZ", f[3])?])
}

/// Reads `annotations.csv`: every diameter must be a positive number.
///
/// # Errors
/// [`AnnotationError`] naming the file and line of the first bad row.
pub fn read_annotations(path: &Path) -> Result<Vec<Annotation>> {
    let cols = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"];
    read_rows(path, cols, ANNOTATION_HEADER, |_, f| {
        let d = number("diameter_mm", f[4])?;
        if d <= 0.0 {
            return Err(format!("column `diameter_mm`: {d} is not a positive diameter"));
        }
        Ok(Annotation { series_id: series(f[0])?, world_xyz: xyz(&f)?, diameter_mm: Some(d) })
    })
}

/// Reads `annotations_excluded.csv`: a diameter of `-1` means not measured (`None`).
///
/// # Errors
/// [`AnnotationError`] naming the file and line of the first bad row.
pub fn read_excluded(path: &Path) -> Result<Vec<Annotation>> {
    let cols = ["seriesuid", "coordX", "coordY", "coordZ", "diameter_mm"];
    read_rows(path, cols, ANNOTATION_HEADER, |_, f| {
        let d = number("diameter_mm", f[4])?;
        let diameter_mm = if d == -1.0 {
            None
        } else if d > 0.0 {
            Some(d)
        } else {
            return Err(format!("column `diameter_mm`: {d} is neither a positive diameter nor -1"));
        };
        Ok(Annotation { series_id: series(f[0])?, world_xyz: xyz(&f)?, diameter_mm })
    })
}

/// Reads `candidates.csv` or `candidates_V2.csv`: class must be 0 or 1.
///
/// # Errors
/// [`AnnotationError`] naming the file and line of the first bad row.
pub fn read_candidates(path: &Path) -> Result<Vec<Candidate>> {
    let cols = ["seriesuid", "coordX", "coordY", "coordZ", "class"];
    read_rows(path, cols, CANDIDATE_HEADER, |_, f| {
        let class = match f[4] {
            "0" => 0,
            "1" => 1,
            other => return Err(format!("column `class`: `{other}` is not 0 or 1")),
        };
        Ok(Candidate { series_id: series(f[0])?, world_xyz: xyz(&f)?, class })
    })
}

/// The distinct series ids of `rows`, sorted.
pub fn series_ids<'a>(rows: impl IntoIterator<Item = &'a Annotation>) -> BTreeSet<&'a str> {
    rows.into_iter().map(|a| a.series_id.as_str()).collect()
}

/// Writes `annotations.csv` (or the excluded file: `None` diameters are written as -1),
/// atomically.
///
/// # Errors
/// [`AnnotationError::Io`] naming the file.
pub fn write_annotations(path: &Path, rows: &[Annotation]) -> Result<()> {
    write_atomic(path, |w| {
        writeln!(w, "{ANNOTATION_HEADER}")?;
        for a in rows {
            let [x, y, z] = a.world_xyz;
            writeln!(w, "{},{x},{y},{z},{}", a.series_id, a.diameter_mm.unwrap_or(-1.0))?;
        }
        Ok(())
    })
    .map_err(|source| AnnotationError::Io { path: path.to_path_buf(), source })
}

/// Writes `candidates.csv`, atomically.
///
/// # Errors
/// [`AnnotationError::Io`] naming the file.
pub fn write_candidates(path: &Path, rows: &[Candidate]) -> Result<()> {
    write_atomic(path, |w| {
        writeln!(w, "{CANDIDATE_HEADER}")?;
        for c in rows {
            let [x, y, z] = c.world_xyz;
            writeln!(w, "{},{x},{y},{z},{}", c.series_id, c.class)?;
        }
        Ok(())
    })
    .map_err(|source| AnnotationError::Io { path: path.to_path_buf(), source })
}

/// The scans of a list file, one id per line (LUNA16's `seriesuids.csv`, `ctstream
/// predict`'s `series.txt`; a `seriesuid` header line and trailing commas are skipped).
///
/// # Errors
/// [`AnnotationError::Io`] for a file that cannot be read, [`AnnotationError::TooLarge`];
/// [`AnnotationError::Row`] naming the line of an id that is not a series id.
pub fn read_series_list(path: &Path) -> Result<Vec<String>> {
    let meta = std::fs::metadata(path)
        .map_err(|source| AnnotationError::Io { path: path.to_path_buf(), source })?;
    if meta.len() > MAX_CSV_BYTES {
        return Err(AnnotationError::TooLarge {
            path: path.to_path_buf(),
            bytes: meta.len(),
            limit: MAX_CSV_BYTES,
        });
    }
    let text = std::fs::read_to_string(path)
        .map_err(|source| AnnotationError::Io { path: path.to_path_buf(), source })?;
    let mut ids = Vec::new();
    for (n, l) in text.lines().enumerate() {
        let id = l.trim().trim_end_matches(',');
        if id.is_empty() || id == "seriesuid" {
            continue;
        }
        ids.push(series(id).map_err(|message| AnnotationError::Row {
            path: path.to_path_buf(),
            line: n as u64 + 1,
            message,
        })?);
    }
    Ok(ids)
}

/// A detection: a point in a scan with a probability (a row of a LUNA16 submission).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Detection {
    /// Series.
    pub series_id: String,
    /// World position (x, y, z) mm.
    pub world_xyz: [f64; 3],
    /// Probability (any monotone score).
    pub probability: f64,
}

/// Reads a LUNA16 submission (`seriesuid,coordX,coordY,coordZ,probability`), as
/// `ctstream predict` writes it.
///
/// # Errors
/// [`AnnotationError`] naming the file and line of the first bad row.
pub fn read_predictions(path: &Path) -> Result<Vec<Detection>> {
    let cols = ["seriesuid", "coordX", "coordY", "coordZ", "probability"];
    read_rows(path, cols, PREDICTION_HEADER, |_, f| {
        Ok(Detection {
            series_id: series(f[0])?,
            world_xyz: xyz(&f)?,
            probability: number("probability", f[4])?,
        })
    })
}

/// Writes a LUNA16 submission file (atomically).
///
/// # Errors
/// [`AnnotationError::Io`] naming the file.
pub fn write_predictions(path: &Path, rows: &[Detection]) -> Result<()> {
    write_atomic(path, |w| {
        writeln!(w, "{PREDICTION_HEADER}")?;
        for r in rows {
            let [x, y, z] = r.world_xyz;
            writeln!(w, "{},{x},{y},{z},{}", r.series_id, r.probability)?;
        }
        Ok(())
    })
    .map_err(|source| AnnotationError::Io { path: path.to_path_buf(), source })
}
