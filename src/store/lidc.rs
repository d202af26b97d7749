//! What a scan's record keeps of its LIDC-IDRI reader annotations (format 1.3,
//! `format/FORMAT.md` "LIDC annotations"): the nodules found by clustering the readers'
//! contours, each reader annotation, the point findings (small nodules, non-nodules) and
//! the annotations that could not be used. The rows of `nodules.parquet` (source `lidc`,
//! `lidc_excluded`) and `annotations.parquet` are built from these. Plain data: how they
//! are computed is `crate::lidc`'s.

use serde::{Deserialize, Serialize};

/// The nine reader scores, by their column names, in the order records and tables keep
/// them.
pub const CHARACTERISTICS: [&str; 9] = [
    "subtlety",
    "internal_structure",
    "calcification",
    "sphericity",
    "margin",
    "lobulation",
    "spiculation",
    "texture",
    "malignancy",
];

/// The largest value of each score (calcification has six codes, internal structure four).
pub const CHARACTERISTIC_MAX: [u8; 9] = [5, 4, 6, 5, 5, 5, 5, 5, 5];

/// The most annotations, nodules or points one record may list (a real series has a few
/// dozen; the bound keeps a damaged record from making an index of millions of rows).
pub const MAX_ITEMS: usize = 100_000;

/// A scan's LIDC annotations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LidcRecord {
    /// The reader XML files read for the scan, as given to ingest.
    pub xml_files: Vec<String>,
    /// The clustering tolerance it ended at (pylidc's `tol`; starts at the slice thickness).
    pub cluster_tolerance: f64,
    /// The readers whose annotations are in `nodules`, in order of first appearance: bit k
    /// of the label volume `reader_masks` is `readers[k]` (from the eighth on, bit 7).
    #[serde(default)]
    pub readers: Vec<String>,
    /// Nodules of 3 mm or more: readers' contoured annotations grouped, in pylidc's order.
    pub nodules: Vec<LidcNodule>,
    /// Every reader annotation of a nodule of 3 mm or more, by nodule.
    pub annotations: Vec<LidcAnnotation>,
    /// Small nodules (under 3 mm) and non-nodules: one point each, excluded from FROC.
    pub points: Vec<LidcPoint>,
    /// Annotations (or whole files) that could not be used, each naming the file, the
    /// reader, the nodule and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

/// One nodule: the consensus of its annotations (pylidc's `consensus(clevel=0.5)`) on the
/// source grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LidcNodule {
    /// 0-based, in pylidc's order (by mean contour slice).
    pub nodule_id: u32,
    /// Reader annotations in the cluster (1 to 4).
    pub readers: u8,
    /// Centroid of the consensus voxels (x, y, z) mm.
    pub world_xyz: [f64; 3],
    /// Consensus voxels on the source grid.
    pub voxels: u64,
    /// Consensus volume, ml (voxels x the source voxel volume).
    pub volume_ml: f64,
    /// Diameter of the sphere of that volume, mm.
    pub equivalent_diameter_mm: f64,
    /// The greatest distance between two consensus voxel centres on one slice, mm (the
    /// longest axial diameter).
    pub max_diameter_mm: f64,
    /// The median of each score over the annotations that give it (numpy's median: the
    /// mean of the middle two for an even count), in [`CHARACTERISTICS`] order.
    pub characteristics: [Option<f64>; 9],
}

/// One reader's annotation of a nodule of 3 mm or more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LidcAnnotation {
    /// The nodule it is part of ([`LidcNodule::nodule_id`]).
    pub nodule_id: u32,
    /// The reader (`servicingRadiologistID`, or `reader N`).
    pub reader: String,
    /// The reader's own id for the nodule (`noduleID`).
    pub reader_nodule_id: String,
    /// The XML file it came from.
    pub xml_file: String,
    /// Its scores, in [`CHARACTERISTICS`] order.
    pub characteristics: [Option<u8>; 9],
    /// Centroid of its mask (x, y, z) mm.
    pub world_xyz: [f64; 3],
    /// Mask voxels on the source grid.
    pub voxels: u64,
    /// Mask volume, ml.
    pub volume_ml: f64,
    /// pylidc's `Annotation.diameter`: the greatest distance between two points of one
    /// contour, mm.
    pub diameter_mm: f64,
    /// Slices its contours lie on.
    pub contour_slices: u32,
}

/// A point finding: a small nodule or a non-nodule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LidcPoint {
    /// `small_nodule` or `non_nodule`.
    pub kind: String,
    /// The reader.
    pub reader: String,
    /// The reader's id for it.
    pub reader_id: String,
    /// The XML file it came from.
    pub xml_file: String,
    /// Where (x, y, z) mm: the centre of the marked pixel.
    pub world_xyz: [f64; 3],
}

/// The kinds of [`LidcPoint`].
pub const POINT_KINDS: [&str; 2] = ["small_nodule", "non_nodule"];

impl LidcRecord {
    /// The checks a reader makes (FORMAT.md "LIDC annotations"), as a message naming the
    /// field.
    ///
    /// # Errors
    /// The first value no writer would write.
    pub fn check(&self) -> Result<(), String> {
        let n = self.nodules.len();
        for (what, len) in [
            ("nodules", n),
            ("annotations", self.annotations.len()),
            ("points", self.points.len()),
            ("failed", self.failed.len()),
        ] {
            if len > MAX_ITEMS {
                return Err(format!("lidc {what}: {len} entries, more than {MAX_ITEMS}"));
            }
        }
        if !(self.cluster_tolerance.is_finite() && self.cluster_tolerance >= 0.0) {
            return Err(format!(
                "lidc cluster_tolerance {} is not a distance",
                self.cluster_tolerance
            ));
        }
        let finite = |v: &[f64; 3]| v.iter().all(|c| c.is_finite());
        for (i, d) in self.nodules.iter().enumerate() {
            let at = format!("lidc nodules[{i}]");
            if d.nodule_id as usize != i {
                return Err(format!("{at}: nodule_id {} is not {i}", d.nodule_id));
            }
            if !(1..=4).contains(&d.readers) {
                return Err(format!("{at}: readers {} is not 1 to 4", d.readers));
            }
            let sizes = [d.volume_ml, d.equivalent_diameter_mm, d.max_diameter_mm];
            if !finite(&d.world_xyz) || sizes.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(format!("{at}: a position or size is not a finite number >= 0"));
            }
            for (k, c) in d.characteristics.iter().enumerate() {
                if c.is_some_and(|v| !(1.0..=f64::from(CHARACTERISTIC_MAX[k])).contains(&v)) {
                    return Err(format!("{at}: {} {c:?} is out of range", CHARACTERISTICS[k]));
                }
            }
        }
        for (i, a) in self.annotations.iter().enumerate() {
            let at = format!("lidc annotations[{i}]");
            if a.nodule_id as usize >= n {
                return Err(format!("{at}: nodule_id {} names no nodule", a.nodule_id));
            }
            let sizes = [a.volume_ml, a.diameter_mm];
            if !finite(&a.world_xyz) || sizes.iter().any(|v| !v.is_finite() || *v < 0.0) {
                return Err(format!("{at}: a position or size is not a finite number >= 0"));
            }
            for (k, c) in a.characteristics.iter().enumerate() {
                if c.is_some_and(|v| !(1..=CHARACTERISTIC_MAX[k]).contains(&v)) {
                    return Err(format!("{at}: {} {c:?} is out of range", CHARACTERISTICS[k]));
                }
            }
        }
        for (i, p) in self.points.iter().enumerate() {
            if !POINT_KINDS.contains(&p.kind.as_str()) || !finite(&p.world_xyz) {
                return Err(format!(
                    "lidc points[{i}]: kind {:?} or its position is not valid",
                    p.kind
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodule() -> LidcNodule {
        LidcNodule {
            nodule_id: 0,
            readers: 3,
            world_xyz: [1.0, 2.0, 3.0],
            voxels: 10,
            volume_ml: 0.01,
            equivalent_diameter_mm: 2.7,
            max_diameter_mm: 3.5,
            characteristics: [Some(3.0), None, Some(6.0), None, None, None, None, None, Some(4.5)],
        }
    }

    #[test]
    fn a_record_with_impossible_values_is_refused_naming_the_field() {
        let ok = LidcRecord { nodules: vec![nodule()], ..Default::default() };
        ok.check().unwrap();
        let mut r = ok.clone();
        r.nodules[0].readers = 5;
        assert!(r.check().unwrap_err().contains("nodules[0]: readers 5"));
        let mut r = ok.clone();
        r.nodules[0].characteristics[8] = Some(6.0);
        assert!(r.check().unwrap_err().contains("malignancy Some(6.0) is out of range"));
        let mut r = ok.clone();
        r.nodules[0].world_xyz[2] = f64::NAN;
        assert!(r.check().unwrap_err().contains("not a finite number"));
        let mut r = ok;
        r.points.push(LidcPoint {
            kind: "lesion".into(),
            reader: "1".into(),
            reader_id: "a".into(),
            xml_file: "x.xml".into(),
            world_xyz: [0.0; 3],
        });
        assert!(r.check().unwrap_err().contains("points[0]: kind \"lesion\""));
    }
}
