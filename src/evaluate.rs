//! The LUNA16 evaluation: FROC sensitivities and the CPM, as the challenge's
//! `noduleCADEvaluationLUNA16.py` computes them.
//!
//! For each scan of the list:
//! - a candidate **hits** a nodule when its squared distance to the nodule's centre is
//!   below the squared radius (strictly, as the script);
//! - each annotated nodule is detected with the **highest** probability among the
//!   candidates that hit it (several hits on one nodule count once); an undetected nodule
//!   still counts in the total;
//! - candidates that hit an excluded finding (`annotations_excluded.csv`; a diameter of -1
//!   is taken as 10 mm, as the script does) and no nodule are neither true nor false
//!   positives; every other candidate that hits no nodule is a false positive.
//!
//! Sweeping a threshold over the probabilities gives the FROC curve: sensitivity
//! (detected nodules / all nodules) against false positives per scan (false positives /
//! scans in the list). Sensitivities at 1/8, 1/4, 1/2, 1, 2, 4 and 8 false positives per
//! scan are read off the curve by linear interpolation (`numpy.interp`: where the curve
//! rises vertically, the top of the step; past its end, its last value); their mean is the
//! CPM. A bootstrap over scans (resampled with replacement) gives confidence intervals.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::Rng;
use serde::Serialize;

use crate::annotations::{Annotation, Detection};
use crate::store::{Store, StoreError};

/// The false-positive rates of the CPM.
pub const FP_RATES: [f64; 7] = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0];

/// The most bootstrap resamplings an evaluation takes (each holds 8 numbers; LUNA16's
/// script draws 1000).
pub const MAX_BOOTSTRAP: usize = 100_000;

/// Diameter the LUNA16 script gives excluded findings without one, mm.
pub const EXCLUDED_DEFAULT_DIAMETER_MM: f64 = 10.0;

/// One point of the FROC curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrocPoint {
    /// Detections with at least this probability count.
    pub threshold: f64,
    /// False positives per scan.
    pub fps_per_scan: f64,
    /// Sensitivity.
    pub sensitivity: f64,
}

/// The evaluation's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Froc {
    /// Scans in the list.
    pub scans: usize,
    /// Annotated nodules in those scans.
    pub nodules: usize,
    /// Nodules hit by at least one detection.
    pub detected: usize,
    /// Detections that are false positives (at any threshold).
    pub false_positives: usize,
    /// Detections ignored because they hit only excluded findings.
    pub ignored: usize,
    /// Extra hits on already-hit nodules (counted once).
    pub double_hits: usize,
    /// The curve, from the highest threshold down.
    pub curve: Vec<FrocPoint>,
    /// Sensitivity at each of [`FP_RATES`].
    pub sensitivities: [f64; 7],
    /// Mean of `sensitivities`.
    pub cpm: f64,
    /// Bootstrap 95% intervals (2.5th, 97.5th percentile) of each sensitivity, then of
    /// the CPM; empty without bootstrap.
    pub intervals: Vec<[f64; 2]>,
}

/// What each scan contributes: the best probability of each nodule (None: undetected)
/// and the probabilities of its false positives.
#[derive(Debug, Clone, Default)]
struct ScanScores {
    nodules: Vec<Option<f64>>,
    false_positives: Vec<f64>,
}

fn hits(c: &[f64; 3], centre: &[f64; 3], diameter: f64) -> bool {
    let d2: f64 = (0..3).map(|i| (c[i] - centre[i]).powi(2)).sum();
    d2 < (diameter / 2.0).powi(2)
}

/// Matches one scan's detections to its nodules and excluded findings.
fn score_scan(
    nodules: &[&Annotation],
    excluded: &[&Annotation],
    detections: &[&Detection],
    counts: &mut (usize, usize),
) -> ScanScores {
    let mut used = vec![false; detections.len()];
    let mut out = ScanScores::default();
    for n in nodules {
        let d = n.diameter_mm.unwrap_or(EXCLUDED_DEFAULT_DIAMETER_MM);
        let mut best: Option<f64> = None;
        let mut matches = 0;
        for (i, c) in detections.iter().enumerate() {
            if hits(&c.world_xyz, &n.world_xyz, d) {
                used[i] = true;
                matches += 1;
                best = Some(best.map_or(c.probability, |b: f64| b.max(c.probability)));
            }
        }
        counts.1 += matches.max(1) - 1;
        out.nodules.push(best);
    }
    for e in excluded {
        let d = e.diameter_mm.unwrap_or(EXCLUDED_DEFAULT_DIAMETER_MM);
        for (i, c) in detections.iter().enumerate() {
            if !used[i] && hits(&c.world_xyz, &e.world_xyz, d) {
                used[i] = true;
                counts.0 += 1;
            }
        }
    }
    out.false_positives =
        detections.iter().zip(&used).filter(|(_, u)| !**u).map(|(c, _)| c.probability).collect();
    out
}

/// The FROC curve of the pooled scores: one point per distinct threshold, from the
/// highest down, starting at (0, 0) as scikit-learn's `roc_curve` does.
fn curve(scores: &[&ScanScores]) -> Vec<FrocPoint> {
    let scans = scores.len().max(1) as f64;
    let total: usize = scores.iter().map(|s| s.nodules.len()).sum();
    let mut marks: Vec<(f64, bool)> = Vec::new();
    for s in scores {
        marks.extend(s.nodules.iter().flatten().map(|p| (*p, true)));
        marks.extend(s.false_positives.iter().map(|p| (*p, false)));
    }
    marks.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out = vec![FrocPoint { threshold: f64::INFINITY, fps_per_scan: 0.0, sensitivity: 0.0 }];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < marks.len() {
        let t = marks[i].0;
        while i < marks.len() && marks[i].0 == t {
            if marks[i].1 {
                tp += 1
            } else {
                fp += 1
            }
            i += 1;
        }
        out.push(FrocPoint {
            threshold: t,
            fps_per_scan: fp as f64 / scans,
            sensitivity: if total == 0 { 0.0 } else { tp as f64 / total as f64 },
        });
    }
    out
}

/// `numpy.interp(x, fps, sens)` on a curve whose `fps` never decreases.
fn interp(curve: &[FrocPoint], x: f64) -> f64 {
    let Some(first) = curve.first() else { return 0.0 };
    if x < first.fps_per_scan {
        return first.sensitivity;
    }
    // The last point with fps <= x (the top of a vertical step at x).
    let j = curve.partition_point(|p| p.fps_per_scan <= x) - 1;
    match curve.get(j + 1) {
        None => curve[j].sensitivity,
        Some(next) => {
            let (a, b) = (&curve[j], next);
            let span = b.fps_per_scan - a.fps_per_scan;
            if span <= 0.0 {
                a.sensitivity
            } else {
                a.sensitivity + (b.sensitivity - a.sensitivity) * (x - a.fps_per_scan) / span
            }
        }
    }
}

fn sensitivities(c: &[FrocPoint]) -> [f64; 7] {
    FP_RATES.map(|r| interp(c, r))
}

/// The annotated nodules and the excluded findings of a store, as [`froc`] takes them:
/// the rows of its `nodules` table of source `annotations` and `excluded` (the world
/// positions and diameters the CSVs gave at ingest), and of its LIDC reader XML as LUNA16
/// drew them from LIDC: nodules that at least [`crate::lidc::luna16::MIN_READERS`] readers
/// annotated are nodules (at the consensus centroid, with its equivalent diameter), the
/// others and every small nodule and non-nodule are excluded findings.
///
/// # Errors
/// The store's, reading its nodules table.
pub fn truth_from_store(store: &Store) -> Result<(Vec<Annotation>, Vec<Annotation>), StoreError> {
    let (mut nodules, mut excluded) = (Vec::new(), Vec::new());
    for r in store.nodules()? {
        let is_excluded = r.is_excluded()
            || (r.source == "lidc"
                && r.readers.is_some_and(|n| n < i32::from(crate::lidc::luna16::MIN_READERS)));
        let a = Annotation {
            series_id: r.series_id,
            world_xyz: r.world_xyz,
            diameter_mm: r.diameter_mm,
        };
        if is_excluded { excluded.push(a) } else { nodules.push(a) }
    }
    Ok((nodules, excluded))
}

/// Writes an evaluation's `froc.json` (the whole result) and `froc.csv` (the curve:
/// threshold, false positives per scan, sensitivity) into `dir`, made if missing;
/// returns their paths. (Its picture, `froc.png`, is `picture::froc`'s.)
///
/// # Errors
/// The folder or a file that cannot be written, named.
pub fn write_report(dir: &Path, r: &Froc) -> Result<[PathBuf; 2], std::io::Error> {
    let named = |p: &Path, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{}: {e}", p.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| named(dir, e))?;
    let json = dir.join("froc.json");
    let text = serde_json::to_string_pretty(r).map_err(std::io::Error::other)?;
    crate::fsutil::write_bytes_atomic(&json, text.as_bytes()).map_err(|e| named(&json, e))?;
    let mut csv = String::from("threshold,fps_per_scan,sensitivity\n");
    for p in &r.curve {
        csv += &format!("{},{},{}\n", p.threshold, p.fps_per_scan, p.sensitivity);
    }
    let path = dir.join("froc.csv");
    crate::fsutil::write_bytes_atomic(&path, csv.as_bytes()).map_err(|e| named(&path, e))?;
    Ok([json, path])
}

/// Evaluates `detections` against `annotations` (and `excluded`) on the scans `series`
/// (the divisor of false positives per scan; detections on other scans are ignored).
/// `bootstrap` resamplings of the scans (0: none) with `seed` give the intervals.
pub fn froc(
    series: &[String],
    annotations: &[Annotation],
    excluded: &[Annotation],
    detections: &[Detection],
    bootstrap: usize,
    seed: u64,
) -> Froc {
    let (nod, exc) = (group(annotations), group(excluded));
    let mut det: BTreeMap<&str, Vec<&Detection>> = BTreeMap::new();
    for d in detections {
        det.entry(d.series_id.as_str()).or_default().push(d);
    }
    let mut counts = (0usize, 0usize);
    let per_scan: Vec<ScanScores> = series
        .iter()
        .map(|id| {
            let none: &[&Annotation] = &[];
            let n = nod.get(id.as_str()).map_or(none, Vec::as_slice);
            let e = exc.get(id.as_str()).map_or(none, Vec::as_slice);
            score_scan(n, e, det.get(id.as_str()).map(Vec::as_slice).unwrap_or(&[]), &mut counts)
        })
        .collect();
    let refs: Vec<&ScanScores> = per_scan.iter().collect();
    let c = curve(&refs);
    let sens = sensitivities(&c);
    let mut intervals = Vec::new();
    if bootstrap > 0 && !per_scan.is_empty() {
        let mut rng = crate::seed::rng(&[seed, 0x46524f43]);
        let mut samples: Vec<[f64; 8]> = Vec::with_capacity(bootstrap);
        for _ in 0..bootstrap {
            let pick: Vec<&ScanScores> = (0..per_scan.len())
                .map(|_| &per_scan[rng.random_range(0..per_scan.len())])
                .collect();
            let s = sensitivities(&curve(&pick));
            let mut row = [0.0; 8];
            row[..7].copy_from_slice(&s);
            row[7] = s.iter().sum::<f64>() / 7.0;
            samples.push(row);
        }
        for k in 0..8 {
            let mut v: Vec<f64> = samples.iter().map(|r| r[k]).collect();
            v.sort_by(f64::total_cmp);
            intervals.push([percentile(&v, 2.5), percentile(&v, 97.5)]);
        }
    }
    Froc {
        scans: series.len(),
        nodules: per_scan.iter().map(|s| s.nodules.len()).sum(),
        detected: per_scan.iter().map(|s| s.nodules.iter().flatten().count()).sum(),
        false_positives: per_scan.iter().map(|s| s.false_positives.len()).sum(),
        ignored: counts.0,
        double_hits: counts.1,
        curve: c,
        sensitivities: sens,
        cpm: sens.iter().sum::<f64>() / 7.0,
        intervals,
    }
}

/// Rows grouped by series.
fn group(rows: &[Annotation]) -> BTreeMap<&str, Vec<&Annotation>> {
    let mut m: BTreeMap<&str, Vec<&Annotation>> = BTreeMap::new();
    for r in rows {
        m.entry(r.series_id.as_str()).or_default().push(r);
    }
    m
}

/// Percentile of sorted values with linear interpolation (numpy's default).
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nod(id: &str, xyz: [f64; 3], d: Option<f64>) -> Annotation {
        Annotation { series_id: id.into(), world_xyz: xyz, diameter_mm: d }
    }
    fn det(id: &str, xyz: [f64; 3], p: f64) -> Detection {
        Detection { series_id: id.into(), world_xyz: xyz, probability: p }
    }

    /// Two scans, three nodules, one excluded finding; worked by hand:
    ///
    /// scan A: nodule a1 at (0,0,0) d 10 (r 5), nodule a2 at (50,0,0) d 6 (r 3),
    ///         excluded e1 at (0,50,0) without diameter (-> 10 mm, r 5).
    ///   detections: (1,1,1) p 0.9 -> a1 (dist^2 3 < 25); (0,-4,0) p 0.6 -> a1 again
    ///   (double hit, a1 keeps 0.9); (52,0,0) p 0.4 -> a2 (4 < 9); (0,52,0) p 0.8 ->
    ///   e1 only: ignored; (0,5,0) p 0.7 -> dist^2 25, not < 25: false positive;
    ///   (100,100,100) p 0.3 -> false positive.
    /// scan B: nodule b1 at (0,0,0) d 4, never hit; detection (30,0,0) p 0.5 -> FP.
    /// detection on scan C (not in the list): ignored entirely.
    ///
    /// Nodule scores: a1 0.9, a2 0.4, b1 none. FPs: 0.7, 0.5, 0.3. Two scans.
    /// Thresholds from the top: 0.9 (tp 1) -> (0, 1/3); 0.7 (fp 1) -> (0.5, 1/3);
    /// 0.5 (fp 2) -> (1, 1/3); 0.4 (tp 2) -> (1, 2/3); 0.3 (fp 3) -> (1.5, 2/3).
    /// Interpolated: 0.125 -> 1/3; 0.25 -> 1/3; 0.5 -> 1/3 (top of the step at 0.5 is
    /// still 1/3); 1 -> 2/3 (the top of the vertical step at 1); 2, 4, 8 -> 2/3 (past the
    /// end). CPM = (3 * 1/3 + 4 * 2/3) / 7 = (1 + 8/3) / 7 = 11/21.
    #[test]
    fn hand_worked_two_scans() {
        let annotations = [
            nod("A", [0.0; 3], Some(10.0)),
            nod("A", [50.0, 0.0, 0.0], Some(6.0)),
            nod("B", [0.0; 3], Some(4.0)),
        ];
        let excluded = [nod("A", [0.0, 50.0, 0.0], None)];
        let detections = [
            det("A", [1.0, 1.0, 1.0], 0.9),
            det("A", [0.0, -4.0, 0.0], 0.6),
            det("A", [52.0, 0.0, 0.0], 0.4),
            det("A", [0.0, 52.0, 0.0], 0.8),
            det("A", [0.0, 5.0, 0.0], 0.7),
            det("A", [100.0; 3], 0.3),
            det("B", [30.0, 0.0, 0.0], 0.5),
            det("C", [0.0; 3], 0.99),
        ];
        let r = froc(&["A".into(), "B".into()], &annotations, &excluded, &detections, 0, 0);
        assert_eq!(
            (r.scans, r.nodules, r.detected, r.false_positives, r.ignored, r.double_hits),
            (2, 3, 2, 3, 1, 1)
        );
        let pts: Vec<(f64, f64)> =
            r.curve.iter().map(|p| (p.fps_per_scan, p.sensitivity)).collect();
        let third = 1.0 / 3.0;
        assert_eq!(
            pts,
            [
                (0.0, 0.0),
                (0.0, third),
                (0.5, third),
                (1.0, third),
                (1.0, 2.0 * third),
                (1.5, 2.0 * third)
            ]
        );
        assert_eq!(
            r.sensitivities,
            [third, third, third, 2.0 * third, 2.0 * third, 2.0 * third, 2.0 * third]
        );
        assert!((r.cpm - 11.0 / 21.0).abs() < 1e-12);
    }

    /// Interpolation between points: one scan, nodules n1 (p 0.9) and n2 (p 0.2) and
    /// FPs at 0.8, 0.6, 0.4: curve (0,0) (0,.5) (1,.5) (2,.5) (3,.5) (3,1). At 0.125..2:
    /// 0.5; at 4 and 8: 1 (past the end). With 2 scans (the second empty), the FP axis
    /// halves: (0.5, .5) (1, .5) (1.5, .5) (1.5, 1): at 0.125..1: 0.5, at 2..8: 1.
    #[test]
    fn false_positives_per_scan_divide_by_the_scan_list() {
        let annotations = [nod("A", [0.0; 3], Some(10.0)), nod("A", [40.0, 0.0, 0.0], Some(10.0))];
        let detections = [
            det("A", [0.0; 3], 0.9),
            det("A", [40.0, 0.0, 0.0], 0.2),
            det("A", [90.0; 3], 0.8),
            det("A", [80.0; 3], 0.6),
            det("A", [70.0; 3], 0.4),
        ];
        let one = froc(&["A".into()], &annotations, &[], &detections, 0, 0);
        assert_eq!(one.sensitivities, [0.5, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0]);
        let two = froc(&["A".into(), "B".into()], &annotations, &[], &detections, 0, 0);
        assert_eq!(two.sensitivities, [0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 1.0]);
        assert!((two.cpm - 5.0 / 7.0).abs() < 1e-12);
    }

    /// A diagonal segment: a nodule and a false positive tie at p 0.5 (one scan, one
    /// nodule): the curve jumps from (0, 0) to (1, 1), so at 0.5 FP/scan the sensitivity
    /// is 0.5 (interpolated), at 0.125 it is 0.125, at 0.25 0.25, from 1 on 1.
    #[test]
    fn ties_between_hits_and_false_positives_interpolate() {
        let r = froc(
            &["A".into()],
            &[nod("A", [0.0; 3], Some(10.0))],
            &[],
            &[det("A", [0.0; 3], 0.5), det("A", [50.0; 3], 0.5)],
            0,
            0,
        );
        assert_eq!(r.sensitivities, [0.125, 0.25, 0.5, 1.0, 1.0, 1.0, 1.0]);
    }

    #[test]
    fn bootstrap_intervals_bracket_the_estimate_and_are_reproducible() {
        let mut annotations = Vec::new();
        let mut detections = Vec::new();
        let mut series = Vec::new();
        for s in 0..20 {
            let id = format!("S{s}");
            annotations.push(nod(&id, [0.0; 3], Some(10.0)));
            detections.push(det(&id, [0.0; 3], if s % 3 == 0 { 0.2 } else { 0.9 }));
            detections.push(det(&id, [60.0; 3], 0.1 * (s % 10) as f64));
            series.push(id);
        }
        let a = froc(&series, &annotations, &[], &detections, 200, 1);
        let b = froc(&series, &annotations, &[], &detections, 200, 1);
        assert_eq!(a.intervals, b.intervals);
        assert_eq!(a.intervals.len(), 8);
        for (k, iv) in a.intervals.iter().enumerate() {
            let est = if k < 7 { a.sensitivities[k] } else { a.cpm };
            assert!(iv[0] <= est + 1e-9 && est <= iv[1] + 1e-9, "{k}: {iv:?} vs {est}");
        }
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
    }
}
