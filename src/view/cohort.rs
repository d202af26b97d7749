//! The scans table of `ctstream view`: a row per scan from its record and the index's
//! tables, and the flags that say what looks wrong with it beside the rest of the store.
//!
//! The flags, each a phrase:
//! - `no lung mask`: the store has lung masks but this scan has none; `no lungs found`:
//!   its lung mask is empty;
//! - `lung volume ...`: its lung volume is under half or over twice the median of the
//!   store's non-empty lung masks (with at least [`MIN_COHORT`] of them; adult lungs on
//!   inspiration CT hold about 4 to 7 l, so a factor of two is a failed mask or a
//!   truncated scan rather than a person);
//! - `N nodules outside the lung region`: annotated nodules whose centre lies outside the
//!   lung region (the index's `in_lung_region`);
//! - `N nodules outside the scan`: annotated nodules whose centre lies outside the stored
//!   volume;
//! - `N ingest warnings`: what the reader noticed and the user accepted (`warnings`).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::annotations::Detection;
use crate::store::ScanRecord;
use crate::store::index::{CandidateRow, NoduleRow};

/// Rows of an index table (or a prediction's findings) by series id.
pub type BySeries<T> = HashMap<String, Vec<T>>;

/// `rows` grouped by the series id `id` gives each, in their order.
pub fn by_series<T>(rows: Vec<T>, id: impl Fn(&T) -> &str) -> BySeries<T> {
    let mut out: BySeries<T> = HashMap::new();
    for r in rows {
        out.entry(id(&r).to_string()).or_default().push(r);
    }
    out
}

/// The fewest non-empty lung masks the lung-volume flag compares against.
pub const MIN_COHORT: usize = 3;

/// One scan of the scans table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScanRow {
    /// Series id.
    pub series_id: String,
    /// Stored shape (z, y, x).
    pub shape_zyx: [usize; 3],
    /// Stored spacing (x, y, z) mm.
    pub spacing_xyz: [f64; 3],
    /// Smallest, largest and mean stored HU.
    pub hu_min: i16,
    /// Largest stored HU.
    pub hu_max: i16,
    /// Mean stored HU.
    pub hu_mean: f64,
    /// Lung volume in ml (the `lungs` label's voxels times a voxel's volume); None
    /// without a lung mask.
    pub lung_ml: Option<f64>,
    /// Annotated nodules (excluded findings not counted).
    pub nodules: usize,
    /// Excluded findings.
    pub excluded: usize,
    /// Candidates (class 1 and 0).
    pub candidates: usize,
    /// Findings of `--pred`; None without it.
    pub findings: Option<usize>,
    /// The label volumes' names.
    pub labels: Vec<String>,
    /// Ingest's warnings.
    pub warnings: Vec<String>,
    /// What looks wrong, one phrase each (the module doc lists them).
    pub flags: Vec<String>,
}

/// The scans table of `scans`, with the index's `nodules` and `candidates`, and the
/// `findings` of a prediction folder where one was given.
pub fn rows(
    scans: &BTreeMap<String, ScanRecord>,
    nodules: &BySeries<NoduleRow>,
    candidates: &BySeries<CandidateRow>,
    findings: Option<&BySeries<Detection>>,
) -> Vec<ScanRow> {
    let mut out: Vec<ScanRow> = scans
        .values()
        .map(|rec| {
            let id = rec.series_id.as_str();
            let mine = nodules.get(id).map_or(&[][..], Vec::as_slice);
            let annotated: Vec<&NoduleRow> = mine.iter().filter(|n| !n.is_excluded()).collect();
            let voxel_ml = rec.spacing_xyz.iter().product::<f64>() / 1000.0;
            let lung_ml =
                rec.label(crate::labels::LUNGS).map(|l| l.foreground_voxels() as f64 * voxel_ml);
            let mut flags = Vec::new();
            if lung_ml == Some(0.0) {
                flags.push("no lungs found".to_string());
            }
            let outside_region =
                annotated.iter().filter(|n| n.in_lung_region == Some(false)).count();
            if outside_region > 0 {
                flags.push(format!("{} outside the lung region", count(outside_region)));
            }
            let outside = annotated.iter().filter(|n| !n.inside).count();
            if outside > 0 {
                flags.push(format!("{} outside the scan", count(outside)));
            }
            if !rec.warnings.is_empty() {
                let n = rec.warnings.len();
                flags.push(format!("{n} ingest warning{}", if n == 1 { "" } else { "s" }));
            }
            ScanRow {
                series_id: id.to_string(),
                shape_zyx: rec.shape_zyx,
                spacing_xyz: rec.spacing_xyz,
                hu_min: rec.hu_min,
                hu_max: rec.hu_max,
                hu_mean: rec.hu_mean,
                lung_ml,
                nodules: annotated.len(),
                excluded: mine.len() - annotated.len(),
                candidates: candidates.get(id).map_or(0, Vec::len),
                findings: findings.map(|f| f.get(id).map_or(0, Vec::len)),
                labels: rec.labels.iter().map(|l| l.name.clone()).collect(),
                warnings: rec.warnings.clone(),
                flags,
            }
        })
        .collect();
    // The cohort's flags need every row.
    if out.iter().any(|r| r.lung_ml.is_some()) {
        for r in out.iter_mut().filter(|r| r.lung_ml.is_none()) {
            r.flags.insert(0, "no lung mask".into());
        }
    }
    let mut volumes: Vec<f64> = out.iter().filter_map(|r| r.lung_ml).filter(|&v| v > 0.0).collect();
    if volumes.len() >= MIN_COHORT {
        volumes.sort_by(f64::total_cmp);
        let n = volumes.len();
        let median =
            if n % 2 == 1 { volumes[n / 2] } else { (volumes[n / 2 - 1] + volumes[n / 2]) / 2.0 };
        for r in &mut out {
            if let Some(v) = r.lung_ml.filter(|&v| v > 0.0)
                && !(median / 2.0..=median * 2.0).contains(&v)
            {
                r.flags.push(format!(
                    "lung volume {v:.0} ml: {:.2} x the store's median ({median:.0} ml)",
                    v / median
                ));
            }
        }
    }
    out
}

fn count(n: usize) -> String {
    format!("{n} nodule{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, lung_voxels: Option<u64>, warnings: usize) -> ScanRecord {
        let json = serde_json::json!({
            "series_id": id, "source_path": "x", "source_format": "metaimage",
            "orig_shape_zyx": [10, 10, 10], "orig_spacing_xyz": [1.0, 1.0, 2.0],
            "orig_origin_xyz": [0.0, 0.0, 0.0],
            "orig_direction": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            "shape_zyx": [10, 10, 10], "spacing_xyz": [1.0, 1.0, 2.0],
            "origin_xyz": [0.0, 0.0, 0.0], "chunk_shape_zyx": [10, 10, 10],
            "bytes_raw": 2000, "bytes_stored": 100, "hu_min": -1000, "hu_max": 400,
            "hu_mean": -500.0, "fingerprint": "f", "volume_file": format!("volumes/{id}.ctv"),
            "warnings": vec!["w"; warnings],
            "labels": lung_voxels.map(|v| vec![serde_json::json!({
                "name": "lungs", "file": format!("labels/{id}/lungs.ctv"), "bytes_stored": 1,
                "source": "computed", "counts": if v > 0 { vec![[1, v]] } else { vec![] },
                "bbox_zyx": null, "components": []
            })]).unwrap_or_default(),
        });
        serde_json::from_value(json).expect("a record")
    }

    #[test]
    fn flags_name_what_looks_wrong_against_the_cohort() {
        // Voxels of 1 x 1 x 2 mm = 0.002 ml: 2,500,000 voxels are 5,000 ml.
        let scans: BTreeMap<String, ScanRecord> = [
            record("1.1", Some(2_500_000), 0),
            record("1.2", Some(2_400_000), 0),
            record("1.3", Some(2_600_000), 2),
            record("1.4", Some(1_000_000), 0), // 2,000 ml: 0.4 x the median (5,000 ml)
            record("1.5", Some(0), 0),
            record("1.6", None, 0),
        ]
        .into_iter()
        .map(|r| (r.series_id.clone(), r))
        .collect();
        let nodule = |id: &str, inside: bool, region: Option<bool>| NoduleRow {
            series_id: id.into(),
            nodule_id: 0,
            world_xyz: [0.0; 3],
            voxel_zyx: [0.0; 3],
            diameter_mm: Some(5.0),
            radius_zyx: Some([1.0; 3]),
            inside,
            source: "annotations",
            in_lung_region: region,
            readers: None,
            volume_ml: None,
            max_diameter_mm: None,
            characteristics: [None; 9],
        };
        let nodules = vec![nodule("1.1", true, Some(false)), nodule("1.2", false, None)];
        let nodules = by_series(nodules, |n| n.series_id.as_str());
        let rows = rows(&scans, &nodules, &HashMap::new(), None);
        let flags: Vec<(&str, Vec<&str>)> = rows
            .iter()
            .map(|r| (r.series_id.as_str(), r.flags.iter().map(String::as_str).collect()))
            .collect();
        // The median of 5,000, 4,800, 5,200 and 2,000 ml (1.5's empty mask is not counted)
        // is (4,800 + 5,000) / 2 = 4,900 ml; 2,000 / 4,900 = 0.41.
        assert_eq!(
            flags,
            vec![
                ("1.1", vec!["1 nodule outside the lung region"]),
                ("1.2", vec!["1 nodule outside the scan"]),
                ("1.3", vec!["2 ingest warnings"]),
                ("1.4", vec!["lung volume 2000 ml: 0.41 x the store's median (4900 ml)"]),
                ("1.5", vec!["no lungs found"]),
                ("1.6", vec!["no lung mask"]),
            ]
        );
        assert!((rows[0].lung_ml.unwrap_or(0.0) - 5000.0).abs() < 1e-6);
        assert_eq!((rows[0].nodules, rows[1].nodules, rows[2].nodules), (1, 1, 0));
    }
}
