//! The operating point: how a probability map becomes findings (the probability threshold
//! of a finding's voxels, the smallest finding, the merging of findings whose centres lie
//! close together, and the score that ranks them), chosen on the held-out scans during
//! training, stored with the checkpoint (`operating_point.json`) and used by `predict`
//! unless told otherwise.
//!
//! The choice ([`choose`]) scores every combination of [`THRESHOLDS`], [`MIN_VOXELS`],
//! [`MERGE_MM`] and [`Score::ALL`] by the LUNA16 CPM of its findings on the held-out scans
//! and takes the best
//! among those with at most [`MAX_FP_PER_SCAN`] false positives per scan (the CPM's
//! largest rate: findings beyond it do not raise the CPM, they only add marks); ties go
//! to fewer false positives, then to the higher threshold. When no combination stays
//! within the bound, the one with the fewest false positives is taken, and says so.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::Roi;
use super::components::{self, Component};
use crate::annotations::{Annotation, Detection};
use crate::evaluate::{self, Froc};
use crate::geometry::Geometry;

/// Probability thresholds tried.
pub const THRESHOLDS: [f32; 7] = [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9];
/// Smallest findings tried, voxels.
pub const MIN_VOXELS: [usize; 4] = [1, 8, 27, 64];
/// Merging distances tried, mm (0: no merging).
pub const MERGE_MM: [f64; 3] = [0.0, 5.0, 10.0];
/// The most false positives per scan a chosen operating point may have.
pub const MAX_FP_PER_SCAN: f64 = 8.0;
/// The file of a checkpoint that holds its operating point.
pub const FILE: &str = "operating_point.json";

/// The score a finding carries (`candidates.csv`'s `probability`), by which findings are
/// ranked for the FROC and merged.
///
/// The maximum probability of a component is what one hot voxel says; the mean is what
/// the whole component says. On the 12-scan recipe store, the same findings (every
/// component at p >= 0.3 of one checkpoint's maps of the 3 held-out scans) scored CPM
/// 0.071 ranked by the maximum and 0.214 by the mean; a vessel cross-section or a rib at
/// the lung's edge often holds a voxel as confident as a nodule's, rarely a component as
/// confident throughout. Which ranks better is chosen on the held-out scans with the rest
/// of the operating point, not assumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Score {
    /// The largest probability in the finding (operating points made before the field).
    #[default]
    Max,
    /// The mean probability over the finding's voxels.
    Mean,
}

impl Score {
    /// Every score, in the order the choice tries them (ties keep the first).
    pub const ALL: [Score; 2] = [Score::Max, Score::Mean];

    /// Its name on the command line and in `operating_point.json`.
    pub fn name(self) -> &'static str {
        match self {
            Score::Max => "max",
            Score::Mean => "mean",
        }
    }

    /// The score of component `c`.
    pub fn of(self, c: &Component) -> f64 {
        match self {
            Score::Max => c.max_probability,
            Score::Mean => c.mean_probability,
        }
    }
}

impl std::fmt::Display for Score {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Score {
    type Err = String;

    /// `max` or `mean`.
    fn from_str(s: &str) -> Result<Self, String> {
        Score::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| format!("score `{s}`: give max or mean"))
    }
}

/// How a probability map becomes findings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PostProcess {
    /// Voxels at or above this probability belong to a finding.
    pub threshold: f32,
    /// Findings smaller than this many voxels are dropped.
    pub min_voxels: usize,
    /// A finding whose centre lies within this distance (mm) of a finding with a higher
    /// score is merged into it (dropped); 0: none merged.
    pub merge_mm: f64,
    /// The score findings carry and are ranked and merged by; absent in operating points
    /// made before it (the maximum, as they used).
    #[serde(default)]
    pub score: Score,
}

impl Default for PostProcess {
    /// Threshold 0.5, every component, no merging, ranked by the maximum probability
    /// (`predict` without an operating point).
    fn default() -> Self {
        PostProcess { threshold: 0.5, min_voxels: 1, merge_mm: 0.0, score: Score::Max }
    }
}

/// In words: `p >= 0.5, at least 8 voxels, findings within 5 mm merged, ranked by mean
/// probability`.
impl std::fmt::Display for PostProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p >= {}, at least {} voxels, findings within {} mm merged, ranked by {} probability",
            self.threshold, self.min_voxels, self.merge_mm, self.score
        )
    }
}

impl PostProcess {
    /// Checks every value, naming it.
    ///
    /// # Errors
    /// A message naming the value.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.threshold.is_finite() && self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(format!("threshold {}: give 0 < threshold <= 1", self.threshold));
        }
        if !(self.merge_mm.is_finite() && (0.0..=1000.0).contains(&self.merge_mm)) {
            return Err(format!("merge_mm {} (mm): give 0 to 1000", self.merge_mm));
        }
        Ok(())
    }

    /// The findings of map `probs` (z, y, x, C order) on `geometry`: components at the
    /// threshold of at least `min_voxels`, merged, and of those the ones whose centre lies
    /// in `roi` (if any). Returns them (highest score first) and how many were left out
    /// for lying outside the region.
    pub fn findings(
        &self,
        probs: &[f32],
        shape_zyx: [usize; 3],
        geometry: &Geometry,
        roi: Option<&Roi>,
    ) -> (Vec<Component>, usize) {
        let found = components::components(probs, shape_zyx, self.threshold, geometry);
        self.select(found, roi)
    }

    /// [`Self::findings`] from the components at this threshold, `found` (any order).
    fn select(&self, mut found: Vec<Component>, roi: Option<&Roi>) -> (Vec<Component>, usize) {
        found.retain(|c| c.voxels >= self.min_voxels);
        let score = self.score;
        found.sort_by(|a, b| score.of(b).total_cmp(&score.of(a)).then(a.label.cmp(&b.label)));
        let found = merge(found, self.merge_mm);
        let before = found.len();
        let kept: Vec<Component> =
            found.into_iter().filter(|c| roi.is_none_or(|r| r.contains(c.centre_zyx))).collect();
        let outside = before - kept.len();
        (kept, outside)
    }
}

/// Drops every finding whose centre lies within `mm` of a kept one with a higher score
/// (greedy, in order of score; `found` comes in that order).
fn merge(found: Vec<Component>, mm: f64) -> Vec<Component> {
    if mm <= 0.0 {
        return found;
    }
    let mut kept: Vec<Component> = Vec::with_capacity(found.len());
    for c in found {
        let near = kept.iter().any(|k| {
            let d2: f64 =
                (0..3).map(|i| (k.centre_world_xyz[i] - c.centre_world_xyz[i]).powi(2)).sum();
            d2 <= mm * mm
        });
        if !near {
            kept.push(c);
        }
    }
    kept
}

/// Every combination tried, in a fixed order (by threshold first).
pub fn grid() -> Vec<PostProcess> {
    let mut out = Vec::new();
    for &threshold in &THRESHOLDS {
        for &min_voxels in &MIN_VOXELS {
            for &merge_mm in &MERGE_MM {
                for score in Score::ALL {
                    out.push(PostProcess { threshold, min_voxels, merge_mm, score });
                }
            }
        }
    }
    out
}

/// The findings of one held-out scan under every combination of [`grid`], as detections
/// ([`detections`]); the components are found once per threshold.
pub fn detections_per_combination(
    series_id: &str,
    probs: &[f32],
    shape_zyx: [usize; 3],
    geometry: &Geometry,
    roi: Option<&Roi>,
) -> Vec<Vec<Detection>> {
    let mut at: Option<(f32, Vec<Component>)> = None;
    grid()
        .iter()
        .map(|pp| {
            let found = match &at {
                Some((t, found)) if *t == pp.threshold => found.clone(),
                _ => {
                    let found = components::components(probs, shape_zyx, pp.threshold, geometry);
                    at = Some((pp.threshold, found.clone()));
                    found
                }
            };
            detections(series_id, &pp.select(found, roi).0, pp.score)
        })
        .collect()
}

/// `findings` of scan `series_id` as LUNA16 detections: centre and `score`.
pub fn detections(series_id: &str, findings: &[Component], score: Score) -> Vec<Detection> {
    findings
        .iter()
        .map(|c| Detection {
            series_id: series_id.to_string(),
            world_xyz: c.centre_world_xyz,
            probability: score.of(c),
        })
        .collect()
}

/// An operating point chosen on held-out scans.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// The post-processing.
    pub post: PostProcess,
    /// CPM of its findings on the held-out scans.
    pub cpm: f64,
    /// Sensitivity of all its findings.
    pub sensitivity: f64,
    /// False positives per held-out scan.
    pub fps_per_scan: f64,
    /// Held-out scans it was chosen on.
    pub scans: usize,
    /// Annotated nodules in them.
    pub nodules: usize,
    /// Whether it keeps within [`MAX_FP_PER_SCAN`] (false: no combination did; this one
    /// has the fewest false positives).
    pub within_fp_bound: bool,
    /// Training step of the checkpoint it was chosen for.
    pub step: usize,
    /// Overlap of the sliding window's tiles in the predictions it was chosen on
    /// (`predict` uses it unless told otherwise, so its findings are the ones scored).
    pub overlap: f64,
}

impl OperatingPoint {
    /// Reads a checkpoint's `operating_point.json`; None when it has none.
    ///
    /// # Errors
    /// A message naming the file when it exists but cannot be read.
    pub fn read(checkpoint_dir: &Path) -> Result<Option<OperatingPoint>, String> {
        let path = checkpoint_dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let op: OperatingPoint = serde_json::from_str(&text)
                    .map_err(|e| format!("{}: not an operating point: {e}", path.display()))?;
                op.post.validate().map_err(|e| format!("{}: {e}", path.display()))?;
                Ok(Some(op))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        }
    }

    /// Writes it as `operating_point.json` in `checkpoint_dir` (atomically).
    ///
    /// # Errors
    /// The I/O error.
    pub fn write(&self, checkpoint_dir: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::fsutil::write_bytes_atomic(&checkpoint_dir.join(FILE), text.as_bytes())
    }
}

/// Chooses the operating point (see the module doc) from each held-out scan's detections
/// per combination ([`detections_per_combination`], scans in the order of `series`).
/// Returns it with the FROC of its findings.
pub fn choose(
    series: &[String],
    per_scan: &[Vec<Vec<Detection>>],
    annotations: &[Annotation],
    excluded: &[Annotation],
    step: usize,
    overlap: f64,
) -> (OperatingPoint, Froc) {
    let combos = grid();
    let mut best: Option<(OperatingPoint, Froc)> = None;
    for (k, post) in combos.iter().enumerate() {
        let dets: Vec<Detection> =
            per_scan.iter().flat_map(|s| s.get(k).into_iter().flatten().cloned()).collect();
        let f = evaluate::froc(series, annotations, excluded, &dets, 0, 0);
        let scans = series.len().max(1) as f64;
        let op = OperatingPoint {
            post: *post,
            cpm: f.cpm,
            sensitivity: if f.nodules == 0 { 0.0 } else { f.detected as f64 / f.nodules as f64 },
            fps_per_scan: f.false_positives as f64 / scans,
            scans: series.len(),
            nodules: f.nodules,
            within_fp_bound: f.false_positives as f64 / scans <= MAX_FP_PER_SCAN,
            step,
            overlap,
        };
        let better = match &best {
            None => true,
            Some((b, _)) => match (op.within_fp_bound, b.within_fp_bound) {
                (true, false) => true,
                (false, true) => false,
                (true, true) => {
                    op.cpm > b.cpm + 1e-12
                        || ((op.cpm - b.cpm).abs() <= 1e-12
                            && (op.fps_per_scan < b.fps_per_scan
                                || (op.fps_per_scan == b.fps_per_scan
                                    && op.post.threshold > b.post.threshold)))
                }
                (false, false) => op.fps_per_scan < b.fps_per_scan,
            },
        };
        if better {
            best = Some((op, f));
        }
    }
    best.unwrap_or_else(|| {
        let f = evaluate::froc(series, annotations, excluded, &[], 0, 0);
        let op = OperatingPoint {
            post: PostProcess::default(),
            cpm: f.cpm,
            sensitivity: 0.0,
            fps_per_scan: 0.0,
            scans: series.len(),
            nodules: f.nodules,
            within_fp_bound: true,
            step,
            overlap,
        };
        (op, f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(label: u32, world: [f64; 3], p: f64) -> Component {
        Component {
            label,
            voxels: 10,
            centre_zyx: [0.0; 3],
            centre_world_xyz: world,
            equivalent_diameter_mm: 3.0,
            max_probability: p,
            mean_probability: p,
        }
    }

    /// Three findings: B lies 4 mm from A (merged at 5 mm, kept at 3 mm), C 20 mm away.
    #[test]
    fn merging_keeps_the_most_probable_of_close_findings() {
        let found = vec![
            comp(1, [0.0, 0.0, 0.0], 0.9),
            comp(2, [4.0, 0.0, 0.0], 0.8),
            comp(3, [20.0, 0.0, 0.0], 0.7),
        ];
        let labels = |v: Vec<Component>| v.iter().map(|c| c.label).collect::<Vec<_>>();
        assert_eq!(labels(merge(found.clone(), 5.0)), vec![1, 3]);
        assert_eq!(labels(merge(found.clone(), 3.0)), vec![1, 2, 3]);
        assert_eq!(labels(merge(found, 0.0)), vec![1, 2, 3]);
    }

    /// A map with a nodule (a 3x3x3 block at p 0.95, centred on the annotation) and a false
    /// positive (a single voxel at p 0.6): the choice keeps the nodule and drops the false
    /// positive (threshold above 0.6 or at least 8 voxels), CPM 1, 0 false positives.
    #[test]
    fn the_choice_keeps_the_nodule_and_drops_the_small_false_positive() {
        let shape = [12, 12, 12];
        let mut probs = vec![0.0f32; 12 * 12 * 12];
        for z in 2..5 {
            for y in 2..5 {
                for x in 2..5 {
                    probs[(z * 12 + y) * 12 + x] = 0.95;
                }
            }
        }
        probs[(9 * 12 + 9) * 12 + 9] = 0.6;
        let g = Geometry::axis_aligned([0.0; 3], [1.0; 3]);
        let series = vec!["s".to_string()];
        let truth = vec![Annotation {
            series_id: "s".into(),
            world_xyz: [3.0, 3.0, 3.0],
            diameter_mm: Some(4.0),
        }];
        let per = vec![detections_per_combination("s", &probs, shape, &g, None)];
        let (op, f) = choose(&series, &per, &truth, &[], 7, 0.25);
        assert_eq!(
            (op.cpm, op.fps_per_scan, op.sensitivity, op.step, op.overlap),
            (1.0, 0.0, 1.0, 7, 0.25)
        );
        assert_eq!((f.detected, f.false_positives), (1, 0));
        assert!(op.post.threshold > 0.6 || op.post.min_voxels > 1, "{op:?}");
        // Of the combinations that tie, the one with the fewest false positives and then
        // the highest threshold: 0.9 (the block's 0.95 passes).
        assert_eq!(op.post.threshold, 0.9);
        // and of those the first score tried: both rank the one finding first.
        assert_eq!(op.post.score, Score::Max);
    }

    /// Sets the 4x4x4 block at `at` to `p`, and its first voxel to `first`.
    fn block(probs: &mut [f32], n: usize, at: [usize; 3], p: f32, first: f32) {
        for z in at[0]..at[0] + 4 {
            for y in at[1]..at[1] + 4 {
                for x in at[2]..at[2] + 4 {
                    probs[(z * n + y) * n + x] = p;
                }
            }
        }
        probs[(at[0] * n + at[1]) * n + at[2]] = first;
    }

    /// A nodule (a 4x4x4 block at p 0.95) and a false positive (a 4x4x4 block at 0.92 but
    /// one voxel at 0.99) that no threshold of the grid (at most 0.9) or smallest size
    /// separates. By the maximum the false positive ranks first: the nodule is found at
    /// 1 false positive per scan, sensitivity 0 at 1/8, 1/4, 1/2 and 1 at 1, 2, 4, 8,
    /// CPM 4/7. By the mean (0.95 against (63 x 0.92 + 0.99) / 64 = 0.921) the nodule
    /// ranks first: CPM 1. The choice takes the mean, and its findings carry the mean.
    #[test]
    fn the_choice_ranks_by_the_mean_where_that_puts_the_nodule_first() {
        let n = 16;
        let mut probs = vec![0.0f32; n * n * n];
        block(&mut probs, n, [2, 2, 2], 0.95, 0.95);
        block(&mut probs, n, [10, 10, 10], 0.92, 0.99);
        let g = Geometry::axis_aligned([0.0; 3], [1.0; 3]);
        let series = vec!["s".to_string()];
        let truth = vec![Annotation {
            series_id: "s".into(),
            world_xyz: [3.5, 3.5, 3.5],
            diameter_mm: Some(5.0),
        }];
        let per = vec![detections_per_combination("s", &probs, [n; 3], &g, None)];
        let (op, f) = choose(&series, &per, &truth, &[], 1, 0.5);
        assert_eq!(op.post.score, Score::Mean, "{op:?}");
        assert_eq!((op.cpm, op.fps_per_scan, f.detected), (1.0, 1.0, 1));
        for (k, pp) in grid().iter().enumerate() {
            let froc = evaluate::froc(&series, &truth, &[], &per[0][k], 0, 0);
            let want = if pp.score == Score::Max { 4.0 / 7.0 } else { 1.0 };
            assert!((froc.cpm - want).abs() < 1e-12, "{pp}: CPM {}", froc.cpm);
        }
        let (found, _) = op.post.findings(&probs, [n; 3], &g, None);
        let d = detections("s", &found, op.post.score);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].world_xyz, [3.5, 3.5, 3.5]);
        assert!((d[0].probability - 0.95).abs() < 1e-6, "{:?}", d[0]);
        assert!((d[1].probability - (63.0 * 0.92 + 0.99) / 64.0).abs() < 1e-6, "{:?}", d[1]);
    }

    /// The components found once per threshold give, for every combination, the findings
    /// `PostProcess::findings` finds from the map: blobs of several sizes and
    /// probabilities, two close enough to merge, one outside the region.
    #[test]
    fn shared_components_equal_each_combinations_own() {
        let n = 24;
        let mut probs = vec![0.0f32; n * n * n];
        block(&mut probs, n, [1, 1, 1], 0.55, 0.97);
        block(&mut probs, n, [1, 7, 1], 0.85, 0.86);
        block(&mut probs, n, [12, 12, 12], 0.35, 0.65);
        block(&mut probs, n, [18, 2, 18], 0.75, 0.75);
        probs[(20 * n + 20) * n + 3] = 0.45;
        let g = Geometry::axis_aligned([-5.0, 3.0, 1.0], [0.8, 0.8, 1.5]);
        let mut mask = ndarray::Array3::<u8>::zeros((n, n, n));
        mask.slice_mut(ndarray::s![..16, .., ..]).fill(1);
        let roi = Roi::new(mask);
        let per = detections_per_combination("s", &probs, [n; 3], &g, Some(&roi));
        for (k, pp) in grid().iter().enumerate() {
            let own = detections("s", &pp.findings(&probs, [n; 3], &g, Some(&roi)).0, pp.score);
            assert_eq!(per[k], own, "{pp}");
        }
        assert!(per.iter().any(|d| d.len() >= 3), "some combination keeps several findings");
    }
}
