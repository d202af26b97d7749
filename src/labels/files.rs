//! Label maps read from files (`ingest --labels [NAME=]DIR`): how they are found and paired
//! with scans, read as exact label values, and checked against their scan's grid.
//!
//! **Pairing.** `DIR` is searched recursively. A NIfTI (`.nii`, `.nii.gz`) or MetaImage
//! (`.mhd`, `.mha`) file pairs with the scan whose series id is the file's id (its name less
//! the extension, as for scans), or whose series id is the file's id followed by nnU-Net's
//! channel suffix `_0000` (scan `lung_001_0000.nii.gz`, label `lung_001.nii.gz`). A DICOM
//! SEG file pairs with the series its ReferencedSeriesSequence names ([`super::seg`]).
//! The scan stores it as the label volume `NAME` (`labels` when no name is given). Two
//! files that pair with one scan under one name are refused, naming both. Where `DIR` or
//! the folder above it holds an nnU-Net `dataset.json` ([`super::nnunet`]), its label
//! names become the classes, and a value it does not name is refused.
//!
//! **Values.** Every voxel must be an integer in 0..=255 (after NIfTI's `scl_slope` and
//! `scl_inter`): a fraction, a negative value, a NaN or a value over 255 is refused, with
//! the file, the voxel and how many voxels share the fault.
//!
//! **Grid.** A label map lies on its scan's grid as the scan's file gives it, before
//! ingest resamples: the same size; spacing within 1e-4 of it (relative); origin within 1 %
//! of a voxel per axis; direction cosines within 1e-4. Float32 headers (NIfTI) written by
//! another tool for the same grid agree far better than that; a map drawn on another grid
//! (say, at full resolution beside a down-sampled scan) is refused with both files and the
//! field. Stored, it is resampled with the scan onto the stored grid by nearest neighbour
//! ([`super::nearest`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ndarray::Array3;

use super::error::LabelFileError;
use super::{DIRECTION_TOLERANCE, ORIGIN_TOLERANCE_VOXELS, SPACING_TOLERANCE};
use crate::geometry::Geometry;
use crate::hu::Scalar;
use crate::io::{self, RawImage};

/// The label-volume name of `--labels DIR` given without a name.
pub const DEFAULT_NAME: &str = "labels";

/// nnU-Net's suffix of a single-channel image file's id.
pub const NNUNET_CHANNEL: &str = "_0000";

/// One `--labels [NAME=]DIR`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSource {
    /// The label-volume name the files become (format/FORMAT.md, "Label volumes").
    pub name: String,
    /// The folder searched.
    pub dir: PathBuf,
}

impl FromStr for LabelSource {
    type Err = String;

    /// `NAME=DIR` or `DIR` (named [`DEFAULT_NAME`]); `NAME` must be a valid label name.
    ///
    /// ```
    /// use ctstream::labels::files::LabelSource;
    /// let s: LabelSource = "tumour=labelsTr".parse().unwrap();
    /// assert_eq!((s.name.as_str(), s.dir.to_str().unwrap()), ("tumour", "labelsTr"));
    /// assert_eq!("masks".parse::<LabelSource>().unwrap().name, "labels");
    /// assert!("Tumour=labelsTr".parse::<LabelSource>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, dir) = match s.split_once('=') {
            Some((n, d)) if !n.contains('/') && !n.contains('\\') => (n, d),
            _ => (DEFAULT_NAME, s),
        };
        if !crate::store::format::valid_label_name(name) {
            return Err(format!(
                "{name:?} is not a label name (lower-case letters, digits and '_', starting with a letter, at most 32)"
            ));
        }
        if dir.is_empty() {
            return Err("no folder given".into());
        }
        Ok(LabelSource { name: name.to_string(), dir: PathBuf::from(dir) })
    }
}

/// What a label file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelFileKind {
    /// A NIfTI or MetaImage label map.
    Map,
    /// A DICOM SEG object.
    Seg,
}

/// One label file found under a [`LabelSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelFile {
    /// The label-volume name it becomes.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Map or SEG.
    pub kind: LabelFileKind,
    /// The `dataset.json` beside it and the names it gives the values other than 0, when
    /// there is one.
    pub classes: Option<(PathBuf, Vec<(u8, String)>)>,
}

/// The label files under some [`LabelSource`]s, by the id they pair on (file id or, for
/// SEG, the referenced SeriesInstanceUID).
#[derive(Debug, Clone, Default)]
pub struct LabelFiles {
    by_key: BTreeMap<String, Vec<LabelFile>>,
    /// DICOM files that could not be read far enough to pair (a damaged file, a SEG
    /// without its references), with why: each fails alone, the other files still pair.
    pub unreadable: Vec<(PathBuf, String)>,
}

impl LabelFiles {
    /// Searches every source (see the module docs for what is found).
    ///
    /// # Errors
    /// [`LabelFileError::Dir`] for a folder that cannot be searched or holds no label
    /// files; an unreadable `dataset.json`. A DICOM file that cannot be paired is listed
    /// in [`LabelFiles::unreadable`] instead.
    pub fn discover(sources: &[LabelSource]) -> Result<LabelFiles, LabelFileError> {
        let mut found = LabelFiles::default();
        for src in sources {
            let dir_err = |message: String| LabelFileError::Dir { path: src.dir.clone(), message };
            let files = io::dicom::list_files(&src.dir).map_err(|e| dir_err(e.to_string()))?;
            let before = found.len() + found.unreadable.len();
            // nnU-Net keeps dataset.json beside labelsTr/.
            let json = [src.dir.join("dataset.json"), src.dir.join("../dataset.json")]
                .into_iter()
                .find(|p| p.is_file());
            let classes = match json {
                Some(p) => Some((p.clone(), super::nnunet::read_dataset(&p)?.classes())),
                None => None,
            };
            for f in files {
                let map = |path| LabelFile {
                    name: src.name.clone(),
                    path,
                    kind: LabelFileKind::Map,
                    classes: classes.clone(),
                };
                if io::metaimage::is_metaimage(&f) {
                    let id =
                        f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                    found.push(id, map(f));
                } else if io::nifti::is_nifti(&f) {
                    found.push(io::nifti::series_id(&f), map(f));
                } else {
                    match super::seg::referenced_series(&f) {
                        Ok(Some(series)) => found.push(
                            series,
                            LabelFile {
                                name: src.name.clone(),
                                path: f,
                                kind: LabelFileKind::Seg,
                                classes: None,
                            },
                        ),
                        Ok(None) => {}
                        Err(e) => found.unreadable.push((f, e.to_string())),
                    }
                }
            }
            if found.len() + found.unreadable.len() == before {
                return Err(dir_err("holds no NIfTI, MetaImage or DICOM SEG label files".into()));
            }
        }
        Ok(found)
    }

    fn push(&mut self, key: String, f: LabelFile) {
        self.by_key.entry(key).or_default().push(f);
    }

    /// How many files were found.
    pub fn len(&self) -> usize {
        self.by_key.values().map(Vec::len).sum()
    }

    /// Whether none were.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The label files of the scan `series_id`, sorted by name.
    ///
    /// # Errors
    /// [`LabelFileError::Ambiguous`] when two pair under one name.
    pub fn for_series(&self, series_id: &str) -> Result<Vec<&LabelFile>, LabelFileError> {
        let mut out: Vec<&LabelFile> = self.by_key.get(series_id).into_iter().flatten().collect();
        if let Some(stem) = series_id.strip_suffix(NNUNET_CHANNEL) {
            out.extend(self.by_key.get(stem).into_iter().flatten());
        }
        out.sort_by(|a, b| (&a.name, &a.path).cmp(&(&b.name, &b.path)));
        if let Some(w) = out.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(LabelFileError::Ambiguous {
                series_id: series_id.to_string(),
                name: w[0].name.clone(),
                first: w[0].path.clone(),
                second: w[1].path.clone(),
            });
        }
        Ok(out)
    }

    /// The files that pair with none of `series_ids` (reported, not stored).
    pub fn unpaired<'a>(
        &'a self,
        series_ids: &std::collections::BTreeSet<&str>,
    ) -> Vec<&'a LabelFile> {
        self.by_key
            .iter()
            .filter(|(k, _)| {
                !series_ids.contains(k.as_str())
                    && !series_ids.contains(format!("{k}{NNUNET_CHANNEL}").as_str())
            })
            .flat_map(|(_, v)| v)
            .collect()
    }
}

/// Reads a NIfTI or MetaImage label map: its values (checked, [`to_labels`]) and its grid.
///
/// # Errors
/// The reader's error, or [`LabelFileError::Value`].
pub fn read_map(path: &Path) -> Result<(Array3<u8>, Geometry), LabelFileError> {
    let raw = if io::nifti::is_nifti(path) {
        io::nifti::read_raw(path).map_err(io::ReadError::from)?
    } else {
        io::metaimage::read_raw(path).map_err(io::ReadError::from)?
    };
    let m = to_labels(&raw)?;
    Ok((m, raw.geometry))
}

/// The label values of a raw image: each must be an integer in 0..=255.
///
/// ```
/// use ctstream::geometry::Geometry;
/// use ctstream::hu::Scalar;
/// use ctstream::io::RawImage;
/// use ctstream::labels::files::to_labels;
/// let raw = |bytes: Vec<u8>, scalar| RawImage { data_path: "m.nii".into(), bytes, scalar, big_endian: false, scale: None, shape_zyx: [1, 1, 2], geometry: Geometry::axis_aligned([0.0; 3], [1.0; 3]) };
/// let ok = raw([2.0f32, 0.0].iter().flat_map(|v| v.to_le_bytes()).collect(), Scalar::F32);
/// assert_eq!(to_labels(&ok).unwrap().into_raw_vec_and_offset().0, vec![2, 0]);
/// let half = raw([2.5f32, 0.0].iter().flat_map(|v| v.to_le_bytes()).collect(), Scalar::F32);
/// assert!(to_labels(&half).unwrap_err().to_string().contains("not an integer"));
/// let negative = raw([0i16, -1].iter().flat_map(|v| v.to_le_bytes()).collect(), Scalar::I16);
/// assert!(to_labels(&negative).unwrap_err().to_string().contains("(z, y, x) [0, 0, 1] is -1"));
/// ```
///
/// # Errors
/// [`LabelFileError::Value`] naming the first voxel that is none, and how many are alike.
pub fn to_labels(raw: &RawImage) -> Result<Array3<u8>, LabelFileError> {
    let n = raw.shape_zyx.iter().product::<usize>();
    let size = raw.scalar.size();
    let mut out = Vec::with_capacity(n);
    // (first index, value, count) per fault: negative, fraction, over 255, NaN.
    let mut faults: [(Option<(usize, f64)>, u64); 4] = [(None, 0); 4];
    for (i, c) in raw.bytes.chunks_exact(size).take(n).enumerate() {
        let v = value(c, raw.scalar, raw.big_endian);
        let v = match raw.scale {
            Some((s, b)) => v * s + b,
            None => v,
        };
        let fault = if v.is_nan() {
            Some(3)
        } else if v < 0.0 {
            Some(0)
        } else if v.fract() != 0.0 {
            Some(1)
        } else if v > 255.0 {
            Some(2)
        } else {
            None
        };
        match fault {
            None => out.push(v as u8),
            Some(f) => {
                faults[f].0.get_or_insert((i, v));
                faults[f].1 += 1;
                out.push(0);
            }
        }
    }
    const WHAT: [&str; 4] = [
        "negative; label values are integers 0..=255",
        "not an integer; label values are integers 0..=255",
        "over 255; label values are integers 0..=255 (uint16 label volumes are not stored yet)",
        "not a number; label values are integers 0..=255",
    ];
    if let Some((f, ((i, v), count))) =
        faults.iter().enumerate().find_map(|(f, (first, count))| first.map(|x| (f, (x, *count))))
    {
        let [_, ny, nx] = raw.shape_zyx;
        return Err(LabelFileError::Value {
            path: raw.data_path.clone(),
            voxel_zyx: [i / (ny * nx), (i / nx) % ny, i % nx],
            value: v,
            what: WHAT[f],
            count,
        });
    }
    Array3::from_shape_vec(raw.shape_zyx, out).map_err(|_| LabelFileError::Value {
        path: raw.data_path.clone(),
        voxel_zyx: [0; 3],
        value: f64::NAN,
        what: "short of the voxels its header gives",
        count: 0,
    })
}

/// One stored value as f64 (exact for every integer type up to 2^53; labels are < 256).
fn value(c: &[u8], t: Scalar, big: bool) -> f64 {
    macro_rules! get {
        ($t:ty, $n:expr) => {{
            let mut a = [0u8; $n];
            a.copy_from_slice(&c[..$n]);
            (if big { <$t>::from_be_bytes(a) } else { <$t>::from_le_bytes(a) }) as f64
        }};
    }
    match t {
        Scalar::U8 => c[0] as f64,
        Scalar::I8 => c[0] as i8 as f64,
        Scalar::U16 => get!(u16, 2),
        Scalar::I16 => get!(i16, 2),
        Scalar::U32 => get!(u32, 4),
        Scalar::I32 => get!(i32, 4),
        Scalar::U64 => get!(u64, 8),
        Scalar::I64 => get!(i64, 8),
        Scalar::F32 => get!(f32, 4),
        Scalar::F64 => get!(f64, 8),
    }
}

/// Checks that every value of `m` other than 0 is one `classes` names (from `dataset`).
///
/// # Errors
/// [`LabelFileError::Value`] naming the first voxel of the first value not named.
pub fn check_classes(
    path: &Path,
    m: &Array3<u8>,
    classes: &[(u8, String)],
) -> Result<(), LabelFileError> {
    let mut named = [false; 256];
    named[0] = true;
    for (v, _) in classes {
        named[*v as usize] = true;
    }
    let mut first = None;
    let mut count = 0u64;
    for (i, &v) in m.iter().enumerate() {
        if !named[v as usize] {
            first.get_or_insert((i, v));
            count += 1;
        }
    }
    let Some((i, v)) = first else { return Ok(()) };
    let (ny, nx) = (m.shape()[1], m.shape()[2]);
    Err(LabelFileError::Value {
        path: path.to_path_buf(),
        voxel_zyx: [i / (ny * nx), (i / nx) % ny, i % nx],
        value: v as f64,
        what: "a value dataset.json does not name",
        count,
    })
}

/// Checks that a label map (`label_shape_zyx`, `label_g`) lies on its scan's grid within the
/// tolerances above.
///
/// # Errors
/// [`LabelFileError::Grid`] naming both files and the first field that differs.
pub fn check_grid(
    label: &Path,
    label_shape_zyx: [usize; 3],
    label_g: &Geometry,
    scan: &Path,
    scan_shape_zyx: [usize; 3],
    scan_g: &Geometry,
) -> Result<(), LabelFileError> {
    let err = |field, label_value: String, scan_value: String| LabelFileError::Grid {
        label: label.to_path_buf(),
        scan: scan.to_path_buf(),
        field,
        label_value,
        scan_value,
    };
    let xyz = |s: [usize; 3]| format!("{} x {} x {} (x, y, z)", s[2], s[1], s[0]);
    if label_shape_zyx != scan_shape_zyx {
        return Err(err("size", xyz(label_shape_zyx), xyz(scan_shape_zyx)));
    }
    let (ls, ss) = (label_g.spacing_xyz, scan_g.spacing_xyz);
    if (0..3).any(|a| (ls[a] - ss[a]).abs() > SPACING_TOLERANCE * ss[a]) {
        return Err(err("spacing", format!("{ls:?} mm"), format!("{ss:?} mm")));
    }
    let (lo, so) = (label_g.origin_xyz, scan_g.origin_xyz);
    if (0..3).any(|a| (lo[a] - so[a]).abs() > ORIGIN_TOLERANCE_VOXELS * ss[a]) {
        return Err(err("origin", format!("{lo:?} mm"), format!("{so:?} mm")));
    }
    if (0..9).any(|i| (label_g.direction[i] - scan_g.direction[i]).abs() > DIRECTION_TOLERANCE) {
        return Err(err(
            "direction",
            format!("{:?}", label_g.direction),
            format!("{:?}", scan_g.direction),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(origin: [f64; 3], spacing: [f64; 3]) -> Geometry {
        Geometry::axis_aligned(origin, spacing)
    }

    /// Each field is refused beyond its tolerance and accepted within it.
    #[test]
    fn grids_differ_by_field() {
        let (l, s) = (Path::new("l.nii.gz"), Path::new("s.nii.gz"));
        let base = g([-100.0, -50.0, 20.0], [0.7, 0.7, 2.5]);
        check_grid(
            l,
            [10, 20, 30],
            &g([-100.0 + 0.006, -50.0, 20.0], [0.70005, 0.7, 2.5]),
            s,
            [10, 20, 30],
            &base,
        )
        .unwrap();
        let field = |shape, lg: Geometry| match check_grid(l, shape, &lg, s, [10, 20, 30], &base) {
            Err(LabelFileError::Grid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field([10, 20, 31], base), "size");
        assert_eq!(field([10, 20, 30], g([-100.0, -50.0, 20.0], [0.7, 0.7, 2.0])), "spacing");
        assert_eq!(field([10, 20, 30], g([-100.0, -50.0, 20.03], [0.7, 0.7, 2.5])), "origin");
        let mut flipped = base;
        flipped.direction[0] = -1.0;
        assert_eq!(field([10, 20, 30], flipped), "direction");
        let e = check_grid(l, [10, 20, 31], &base, s, [10, 20, 30], &base).unwrap_err().to_string();
        assert!(
            e.contains("l.nii.gz")
                && e.contains("s.nii.gz")
                && e.contains("31 x 20 x 10")
                && e.contains("30 x 20 x 10"),
            "{e}"
        );
    }

    /// Files pair on the id or on the id less nnU-Net's `_0000`; two under one name are refused.
    #[test]
    fn pairing_by_id_and_nnunet_suffix() {
        let mut f = LabelFiles::default();
        let file = |name: &str, p: &str| LabelFile {
            name: name.into(),
            path: p.into(),
            kind: LabelFileKind::Map,
            classes: None,
        };
        f.push("case_001".into(), file("labels", "a/case_001.nii.gz"));
        f.push("scan7".into(), file("labels", "a/scan7.mhd"));
        f.push("scan7".into(), file("tumour", "b/scan7.nii"));
        assert_eq!(f.for_series("case_001_0000").unwrap().len(), 1);
        assert_eq!(f.for_series("case_001").unwrap().len(), 1);
        assert!(f.for_series("case_002_0000").unwrap().is_empty());
        let names: Vec<_> = f.for_series("scan7").unwrap().iter().map(|l| l.name.clone()).collect();
        assert_eq!(names, ["labels", "tumour"]);
        f.push("scan7".into(), file("labels", "c/scan7.nii.gz"));
        let e = f.for_series("scan7").unwrap_err().to_string();
        assert!(e.contains("a/scan7.mhd") && e.contains("c/scan7.nii.gz"), "{e}");
        let ids = ["case_001_0000"].into_iter().collect();
        let un: Vec<_> = f.unpaired(&ids).iter().map(|l| l.path.clone()).collect();
        assert_eq!(un.len(), 3);
    }

    #[test]
    fn label_values_refused_by_kind() {
        let raw = |vals: &[f64], scale| RawImage {
            data_path: "m.nii".into(),
            bytes: vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
            scalar: Scalar::F64,
            big_endian: false,
            scale,
            shape_zyx: [1, 2, 2],
            geometry: g([0.0; 3], [1.0; 3]),
        };
        let what = |vals: &[f64]| match to_labels(&raw(vals, None)) {
            Err(LabelFileError::Value { what, count, voxel_zyx, .. }) => (what, count, voxel_zyx),
            other => panic!("{other:?}"),
        };
        assert_eq!(what(&[0.0, 1.0, 256.0, 300.0]).1, 2);
        assert_eq!(what(&[0.0, 1.0, 256.0, 300.0]).2, [0, 1, 0]);
        assert_eq!(
            what(&[f64::NAN, 1.0, 1.0, 1.0]).0,
            "not a number; label values are integers 0..=255"
        );
        assert_eq!(
            what(&[0.0, 0.5, 1.0, 1.0]).0,
            "not an integer; label values are integers 0..=255"
        );
        // NIfTI scaling applies first: 0.5 * 4 = 2.
        assert_eq!(
            to_labels(&raw(&[0.0, 0.5, 1.0, 127.5], Some((2.0, 0.0))))
                .unwrap()
                .into_raw_vec_and_offset()
                .0,
            vec![0, 1, 2, 255]
        );
    }
}
