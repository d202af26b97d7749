//! The readers' annotations of one XML file placed on the slices of their series: each
//! ROI's slice found by its SOP Instance UID, else by its z position within a tolerance;
//! every annotation checked (its values, at least 3 outline points for a contoured nodule,
//! points inside the slice). One that fails is listed with the file, the reader, the
//! nodule and why, and the others are kept.

use std::collections::HashMap;
use std::path::PathBuf;

use super::mask::Outline;
use super::{Characteristics, ReadMessage};

/// The slices of a series in the volume's order (index = z of the volume): each one's SOP
/// Instance UID, where known, and its z position in mm (`ImagePositionPatient`'s third
/// value, as the readers' tool wrote `imageZposition`).
#[derive(Debug, Clone, Default)]
pub struct SeriesSlices {
    /// The series' UID.
    pub series_uid: String,
    by_uid: HashMap<String, usize>,
    z: Vec<f64>,
    /// Rows and columns of a slice.
    pub rows_columns: [u32; 2],
}

impl SeriesSlices {
    /// The slices, in volume order, of a series of `rows_columns` slices.
    pub fn new(
        series_uid: &str,
        slices: impl IntoIterator<Item = (Option<String>, f64)>,
        rows_columns: [u32; 2],
    ) -> SeriesSlices {
        let mut by_uid = HashMap::new();
        let mut z = Vec::new();
        for (k, (uid, zk)) in slices.into_iter().enumerate() {
            if let Some(u) = uid {
                by_uid.insert(u, k);
            }
            z.push(zk);
        }
        SeriesSlices { series_uid: series_uid.to_string(), by_uid, z, rows_columns }
    }

    /// The slice of an ROI: the one with SOP Instance UID `uid`, else the one nearest `z`
    /// when it lies within `tol_mm`.
    ///
    /// # Errors
    /// Why none fits, with the values.
    pub fn locate(&self, uid: &str, z: f64, tol_mm: f64) -> Result<usize, String> {
        if let Some(&k) = self.by_uid.get(uid) {
            return Ok(k);
        }
        // numpy's argmin: the first of equally near slices.
        let nearest = self
            .z
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .min_by(|a, b| (a.1 - z).abs().total_cmp(&(b.1 - z).abs()).then(a.0.cmp(&b.0)));
        match nearest {
            Some((k, zk)) if (zk - z).abs() <= tol_mm => Ok(k),
            Some((_, zk)) => Err(format!(
                "imageSOP_UID {uid} is no slice of the series, and no slice lies within {tol_mm} mm of imageZposition {z} (the nearest is at {zk})"
            )),
            None => Err("the series has no slices".to_string()),
        }
    }

    /// The number of slices.
    pub fn len(&self) -> usize {
        self.z.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.z.is_empty()
    }
}

/// A reader's contoured nodule (3 mm or more) on the series' grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Contoured {
    /// The reader (`servicingRadiologistID`, or `reader N`).
    pub reader: String,
    /// The reader's id for the nodule.
    pub nodule_id: String,
    /// The scores (all `None` where the file gives none).
    pub characteristics: Characteristics,
    /// Its outlines, in file order.
    pub outlines: Vec<Outline>,
}

/// A point finding: a small nodule (under 3 mm) or a non-nodule.
#[derive(Debug, Clone, PartialEq)]
pub struct PointFinding {
    /// The reader.
    pub reader: String,
    /// The reader's id for it.
    pub id: String,
    /// The voxel, (z, y, x).
    pub zyx: [i32; 3],
}

/// An annotation that could not be used: where, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The XML file.
    pub file: PathBuf,
    /// The reader.
    pub reader: String,
    /// The nodule's (or non-nodule's) id.
    pub id: String,
    /// Why, each problem with its field and value.
    pub reasons: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: reader {}, nodule {}: {}",
            self.file.display(),
            self.reader,
            self.id,
            self.reasons.join("; ")
        )
    }
}

/// What one XML file gives its series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolved {
    /// Contoured nodules, by reader, in file order.
    pub contoured: Vec<Contoured>,
    /// Small nodules.
    pub small: Vec<PointFinding>,
    /// Non-nodules.
    pub non_nodules: Vec<PointFinding>,
    /// Annotations left out, each with why.
    pub failed: Vec<Failure>,
    /// Annotations used, with something odd in them (a score out of range, left out; a
    /// contour of one or two points).
    pub notes: Vec<Failure>,
    /// Chest X-ray reads skipped.
    pub cxr_sessions: usize,
}

/// Places the annotations of `msg` on `slices`; `tol_mm` is how far an ROI's z may lie
/// from the nearest slice when its SOP Instance UID names none.
///
/// # Errors
/// When the file is of another series (or names none): the text says which.
pub fn resolve(msg: &ReadMessage, slices: &SeriesSlices, tol_mm: f64) -> Result<Resolved, String> {
    match msg.series_uid.as_deref() {
        Some(uid) if uid == slices.series_uid => {}
        Some(uid) => {
            return Err(format!(
                "{}: the reads are of series {uid}, not {}",
                msg.path.display(),
                slices.series_uid
            ));
        }
        None => {
            return Err(format!(
                "{}: no ResponseHeader/SeriesInstanceUid names the series read",
                msg.path.display()
            ));
        }
    }
    let [rows, cols] = slices.rows_columns.map(i64::from);
    let in_slice = |p: &[i32; 2]| i64::from(p[0]) < cols && i64::from(p[1]) < rows;
    let mut out = Resolved { cxr_sessions: msg.cxr_sessions, ..Default::default() };
    for s in &msg.sessions {
        let fail = |id: &str, reasons: Vec<String>| Failure {
            file: msg.path.clone(),
            reader: s.reader.clone(),
            id: id.to_string(),
            reasons,
        };
        for n in &s.nodules {
            let mut reasons: Vec<String> = n.problems.iter().map(|p| p.to_string()).collect();
            let mut notes: Vec<String> = n.notes.iter().map(|p| p.to_string()).collect();
            let contoured = n.is_contoured();
            let mut outlines = Vec::new();
            if n.rois.is_empty() {
                reasons.push("no roi".into());
            }
            for (i, r) in n.rois.iter().enumerate() {
                let at = format!("roi {}", i + 1);
                let k = match slices.locate(&r.sop_uid, r.z, tol_mm) {
                    Ok(k) => k,
                    Err(e) => {
                        reasons.push(format!("{at}: {e}"));
                        continue;
                    }
                };
                if let Some(p) = r.points.iter().find(|p| !in_slice(p)) {
                    reasons.push(format!(
                        "{at}: edge point (x {}, y {}) lies outside the slice of {cols} columns and {rows} rows",
                        p[0], p[1]
                    ));
                }
                if contoured && r.points.is_empty() {
                    reasons.push(format!(
                        "{at}: an outline of 0 point(s); a contour needs at least 3"
                    ));
                } else if contoured && r.points.len() < 3 {
                    // pylidc keeps it: it encloses nothing, only its points count (in the
                    // annotation's box and its distance to others).
                    notes.push(format!(
                        "{at}: an outline of {} point(s) encloses nothing (a contour needs at least 3); kept as pylidc keeps it",
                        r.points.len()
                    ));
                }
                if r.points.len() as u64 > (rows * cols) as u64 {
                    reasons.push(format!(
                        "{at}: {} edge points, more than the slice's {} pixels",
                        r.points.len(),
                        rows * cols
                    ));
                }
                outlines.push(Outline {
                    z: i32::try_from(k).unwrap_or(i32::MAX),
                    inclusion: r.inclusion,
                    points: r.points.clone(),
                });
            }
            let total: usize = outlines.iter().map(|o| o.points.len()).sum();
            if contoured && total > super::MAX_ANNOTATION_POINTS {
                reasons.push(format!(
                    "{total} contour points in all, more than {} (the largest LIDC annotation has under 7,000)",
                    super::MAX_ANNOTATION_POINTS
                ));
            } else if let Some((lo, hi)) = super::mask::bounds(&outlines).filter(|_| contoured) {
                let area = (i64::from(hi[1] - lo[1]) + 1) * (i64::from(hi[2] - lo[2]) + 1);
                let work = area as u64 * total as u64;
                if work > super::MAX_FILL_WORK {
                    reasons.push(format!(
                        "{total} contour points over a box of {area} pixels: filling it would take {work} point-in-outline tests, more than {} (real nodules take under 10^8)",
                        super::MAX_FILL_WORK
                    ));
                }
            }
            if !notes.is_empty() {
                out.notes.push(fail(&n.id, std::mem::take(&mut notes)));
            }
            if !reasons.is_empty() {
                out.failed.push(fail(&n.id, reasons));
            } else if contoured {
                out.contoured.push(Contoured {
                    reader: s.reader.clone(),
                    nodule_id: n.id.clone(),
                    characteristics: n.characteristics.unwrap_or_default(),
                    outlines,
                });
            } else if let Some(o) = outlines.first() {
                let p = o.points.first().copied().unwrap_or([0, 0]);
                out.small.push(PointFinding {
                    reader: s.reader.clone(),
                    id: n.id.clone(),
                    zyx: [o.z, p[1], p[0]],
                });
            }
        }
        for nn in &s.non_nodules {
            let mut reasons: Vec<String> = nn.problems.iter().map(|p| p.to_string()).collect();
            let mut zyx = None;
            if reasons.is_empty() {
                match slices.locate(&nn.sop_uid, nn.z, tol_mm) {
                    Ok(k) if in_slice(&nn.point) => {
                        zyx = Some([i32::try_from(k).unwrap_or(i32::MAX), nn.point[1], nn.point[0]]);
                    }
                    Ok(_) => reasons.push(format!(
                        "locus (x {}, y {}) lies outside the slice of {cols} columns and {rows} rows",
                        nn.point[0], nn.point[1]
                    )),
                    Err(e) => reasons.push(e),
                }
            }
            match zyx {
                Some(zyx) => out.non_nodules.push(PointFinding {
                    reader: s.reader.clone(),
                    id: nn.id.clone(),
                    zyx,
                }),
                None => out.failed.push(fail(&nn.id, reasons)),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lidc::{NonNodule, Problem, ReaderNodule, ReadingSession, Roi};

    fn slices() -> SeriesSlices {
        // Three slices at z -130, -127.5, -125; the middle one's UID unknown.
        SeriesSlices::new(
            "1.2.3.4",
            [(Some("u0".to_string()), -130.0), (None, -127.5), (Some("u2".to_string()), -125.0)],
            [512, 512],
        )
    }

    fn roi(uid: &str, z: f64, points: Vec<[i32; 2]>) -> Roi {
        Roi { z, sop_uid: uid.into(), inclusion: true, points }
    }

    #[test]
    fn rois_find_their_slice_by_uid_then_by_z() {
        let s = slices();
        assert_eq!(s.locate("u2", 999.0, 0.5), Ok(2), "the UID wins over z");
        assert_eq!(s.locate("other", -127.4, 0.5), Ok(1));
        let e = s.locate("other", -120.0, 0.5).unwrap_err();
        assert!(e.contains("within 0.5 mm of imageZposition -120") && e.contains("-125"), "{e}");
    }

    #[test]
    fn each_bad_annotation_fails_alone_naming_reader_and_nodule() {
        let tri = vec![[10, 10], [12, 10], [11, 12]];
        let msg = ReadMessage {
            path: "069.xml".into(),
            series_uid: Some("1.2.3.4".into()),
            sessions: vec![ReadingSession {
                reader: "540461523".into(),
                nodules: vec![
                    ReaderNodule {
                        id: "good".into(),
                        characteristics: Some(Characteristics {
                            malignancy: Some(4),
                            ..Default::default()
                        }),
                        rois: vec![roi("u0", -130.0, tri.clone()), roi("x", -127.5, tri.clone())],
                        problems: vec![],
                        notes: vec![],
                    },
                    ReaderNodule {
                        id: "lost".into(),
                        characteristics: Some(Characteristics::default()),
                        rois: vec![roi("nowhere", 40.0, tri.clone())],
                        problems: vec![],
                        notes: vec![],
                    },
                    ReaderNodule {
                        id: "thin".into(),
                        characteristics: Some(Characteristics::default()),
                        rois: vec![roi("u0", -130.0, vec![[1, 1], [2, 2]])],
                        problems: vec![],
                        notes: vec![],
                    },
                    ReaderNodule {
                        id: "nan".into(),
                        characteristics: None,
                        rois: vec![],
                        problems: vec![Problem {
                            field: "roi 1 imageZposition".into(),
                            message: "`NaN` is not a finite position in mm".into(),
                        }],
                        notes: vec![],
                    },
                    ReaderNodule {
                        id: "small".into(),
                        characteristics: None,
                        rois: vec![roi("u2", -125.0, vec![[300, 200]])],
                        problems: vec![],
                        notes: vec![],
                    },
                    ReaderNodule {
                        id: "off".into(),
                        characteristics: None,
                        rois: vec![roi("u2", -125.0, vec![[600, 200]])],
                        problems: vec![],
                        notes: vec![],
                    },
                ],
                non_nodules: vec![NonNodule {
                    id: "nn".into(),
                    z: -130.0,
                    sop_uid: "u0".into(),
                    point: [5, 6],
                    problems: vec![],
                }],
            }],
            ..Default::default()
        };
        let r = resolve(&msg, &slices(), 0.5).unwrap();
        assert_eq!(r.contoured[0].nodule_id, "good");
        assert_eq!(r.contoured[0].characteristics.malignancy, Some(4));
        assert_eq!(r.contoured[0].outlines.iter().map(|o| o.z).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(
            r.small,
            [PointFinding { reader: "540461523".into(), id: "small".into(), zyx: [2, 200, 300] }]
        );
        assert_eq!(r.non_nodules[0].zyx, [0, 6, 5]);
        let failed: Vec<String> = r.failed.iter().map(|f| f.to_string()).collect();
        assert_eq!(failed.len(), 3, "{failed:#?}");
        assert_eq!(r.contoured.len(), 2, "a two-point outline is kept, as pylidc keeps it");
        assert!(
            r.notes[0]
                .to_string()
                .contains("nodule thin: roi 1: an outline of 2 point(s) encloses nothing")
        );
        assert!(
            failed[0]
                .starts_with("069.xml: reader 540461523, nodule lost: roi 1: imageSOP_UID nowhere")
        );
        assert!(failed[1].contains(
            "nodule nan: roi 1 imageZposition: `NaN` is not a finite position in mm; no roi"
        ));
        assert!(
            failed[2]
                .contains("nodule off: roi 1: edge point (x 600, y 200) lies outside the slice")
        );
        // A file of another series fails whole.
        let other = ReadMessage { series_uid: Some("9.9".into()), ..msg };
        let e = resolve(&other, &slices(), 0.5).unwrap_err();
        assert!(e.contains("series 9.9, not 1.2.3.4"), "{e}");
    }
}
