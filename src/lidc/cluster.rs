//! The readers' contoured annotations grouped into physical nodules, as pylidc 0.2.3's
//! `Scan.cluster_annotations` does with its defaults: two annotations are linked when the
//! smallest distance between their contour points is at most `tol`; the nodules are the
//! connected components; while a nodule has more than 4 annotations (there are 4 readers),
//! `tol` is multiplied by 0.9 and the grouping redone, until `tol` would fall below 0.1.
//!
//! As in pylidc, the points are (i, j, k) *indices* (row, column, slice), though `tol`
//! starts at the series' slice thickness in mm: distances mix pixel and slice steps. This
//! is kept, so the nodules are pylidc's; the docs say so. The nodules come out in
//! pylidc's order: components numbered by their first annotation, then sorted (stably) by
//! the mean over their annotations of the mean contour slice index.

/// pylidc's `factor`: the tolerance's shrink per round.
pub const FACTOR: f64 = 0.9;
/// pylidc's `min_tol`: below it, grouping stops trying.
pub const MIN_TOL: f64 = 0.1;
/// The most annotations one nodule may have: one per reader.
pub const MAX_PER_NODULE: usize = 4;

/// The nodules found: for each, the indices of its annotations (ascending).
#[derive(Debug, Clone, PartialEq)]
pub struct Clusters {
    /// Each nodule's annotations, as indices into the input.
    pub nodules: Vec<Vec<usize>>,
    /// The tolerance the grouping ended at.
    pub tol: f64,
    /// True when some nodule still has more than [`MAX_PER_NODULE`] annotations (pylidc
    /// prints "Failed to reduce all groups to <= 4 Annotations").
    pub unresolved: bool,
}

/// Groups annotations given as their contour points, (i, j, k) indices each, starting at
/// tolerance `tol` (pylidc: the slice thickness). An annotation without points is a
/// nodule of its own.
pub fn cluster(points: &[Vec<[i32; 3]>], tol: f64) -> Clusters {
    let n = points.len();
    let tol0 = if tol.is_finite() && tol >= 0.0 { tol } else { 0.0 };
    // Only distances up to the first tolerance ever matter (it only shrinks): pairs whose
    // bounding boxes lie farther apart are never linked, and are not measured.
    let boxes: Vec<Option<([i32; 3], [i32; 3])>> = points.iter().map(|p| bounds(p)).collect();
    let mut dist = vec![f64::INFINITY; n * n];
    for a in 0..n {
        for b in a + 1..n {
            let (Some(ba), Some(bb)) = (boxes[a], boxes[b]) else { continue };
            if box_distance(ba, bb) > tol0 {
                continue;
            }
            let d = min_distance(&points[a], &points[b]);
            dist[a * n + b] = d;
            dist[b * n + a] = d;
        }
    }
    let mut tol = tol0;
    let mut labels = components(n, |a, b| dist[a * n + b] <= tol);
    let mut unresolved = false;
    while largest(&labels) > MAX_PER_NODULE {
        tol *= FACTOR;
        if tol < MIN_TOL {
            unresolved = true;
            break;
        }
        labels = components(n, |a, b| dist[a * n + b] <= tol);
    }
    let count = labels.iter().map(|&l| l + 1).max().unwrap_or(0);
    let mut nodules: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (i, &l) in labels.iter().enumerate() {
        nodules[l].push(i);
    }
    // pylidc: sorted by the mean of the annotations' centroid k (a stable sort).
    let mean_k = |members: &Vec<usize>| {
        let ks: Vec<f64> = members.iter().map(|&i| centroid_k(&points[i])).collect();
        ks.iter().sum::<f64>() / ks.len() as f64
    };
    let mut keyed: Vec<(f64, Vec<usize>)> = nodules.into_iter().map(|m| (mean_k(&m), m)).collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
    Clusters { nodules: keyed.into_iter().map(|(_, m)| m).collect(), tol, unresolved }
}

/// The mean slice index of an annotation's contour points (pylidc's `centroid[2]`); NaN
/// for none, which sorts last.
fn centroid_k(points: &[[i32; 3]]) -> f64 {
    if points.is_empty() {
        return f64::NAN;
    }
    points.iter().map(|p| f64::from(p[2])).sum::<f64>() / points.len() as f64
}

fn bounds(points: &[[i32; 3]]) -> Option<([i32; 3], [i32; 3])> {
    let first = *points.first()?;
    Some(points.iter().fold((first, first), |(lo, hi), p| {
        (
            [lo[0].min(p[0]), lo[1].min(p[1]), lo[2].min(p[2])],
            [hi[0].max(p[0]), hi[1].max(p[1]), hi[2].max(p[2])],
        )
    }))
}

/// The smallest distance between two boxes (0 when they overlap): a lower bound of every
/// distance between points inside them.
fn box_distance(a: ([i32; 3], [i32; 3]), b: ([i32; 3], [i32; 3])) -> f64 {
    let gap = |i: usize| {
        let g = (b.0[i] - a.1[i]).max(a.0[i] - b.1[i]).max(0);
        f64::from(g)
    };
    (gap(0).powi(2) + gap(1).powi(2) + gap(2).powi(2)).sqrt()
}

/// The smallest Euclidean distance between a point of `a` and a point of `b`
/// (scipy's `cdist(a, b).min()`).
fn min_distance(a: &[[i32; 3]], b: &[[i32; 3]]) -> f64 {
    let mut best = i64::MAX;
    for p in a {
        for q in b {
            let d = (0..3).map(|i| i64::from(p[i] - q[i]).pow(2)).sum::<i64>();
            best = best.min(d);
        }
    }
    (best as f64).sqrt()
}

/// Connected components of the graph where `linked(a, b)` (a < b): a label per node,
/// numbered in the order of each component's lowest node (as scipy's
/// `connected_components`).
fn components(n: usize, linked: impl Fn(usize, usize) -> bool) -> Vec<usize> {
    let mut label = vec![usize::MAX; n];
    let mut next = 0;
    for start in 0..n {
        if label[start] != usize::MAX {
            continue;
        }
        label[start] = next;
        let mut stack = vec![start];
        while let Some(a) = stack.pop() {
            for (b, l) in label.iter_mut().enumerate() {
                if *l == usize::MAX && a != b && linked(a.min(b), a.max(b)) {
                    *l = next;
                    stack.push(b);
                }
            }
        }
        next += 1;
    }
    label
}

fn largest(labels: &[usize]) -> usize {
    let mut counts = std::collections::HashMap::new();
    for &l in labels {
        *counts.entry(l).or_insert(0usize) += 1;
    }
    counts.into_values().max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-point annotation at (i, j, k).
    fn at(i: i32, j: i32, k: i32) -> Vec<[i32; 3]> {
        vec![[i, j, k]]
    }

    #[test]
    fn annotations_within_the_tolerance_are_one_nodule_in_pylidcs_order() {
        // Two nodules: {0, 2} at slice 10 (distance 2), {1} at slice 3 (far away).
        let pts = vec![at(100, 100, 10), at(300, 300, 3), at(102, 100, 10)];
        let c = cluster(&pts, 2.5);
        // Sorted by mean slice index: the slice-3 nodule first.
        assert_eq!(c.nodules, vec![vec![1], vec![0, 2]]);
        assert_eq!(c.tol, 2.5);
        assert!(!c.unresolved);
        // The distance is the smallest between any two points, k counted as an index.
        let a = vec![[0, 0, 0], [50, 50, 0]];
        let b = vec![[50, 52, 1], [0, 90, 0]];
        // sqrt(0 + 4 + 1) = 2.236 <= 2.5
        assert_eq!(cluster(&[a.clone(), b.clone()], 2.5).nodules, vec![vec![0, 1]]);
        assert_eq!(cluster(&[a, b], 2.2).nodules.len(), 2);
    }

    #[test]
    fn more_than_four_annotations_shrink_the_tolerance_by_ninety_percent_steps() {
        // A chain 0-1-2-3-4 with gaps 10, 10, 22, 10 (along i): at tol 25 one group of 5;
        // 25 x 0.9 = 22.5 still links the 22 gap (5 again); 22.5 x 0.9 = 20.25 cuts it.
        let pts: Vec<_> = [0, 10, 20, 42, 52].iter().map(|&i| at(i, 0, 0)).collect();
        let c = cluster(&pts, 25.0);
        assert_eq!(c.nodules, vec![vec![0, 1, 2], vec![3, 4]]);
        assert!((c.tol - 25.0 * 0.9 * 0.9).abs() < 1e-12, "{}", c.tol);
        // Five annotations on one point cannot be split: pylidc gives up below 0.1.
        let same: Vec<_> = (0..5).map(|_| at(1, 1, 1)).collect();
        let c = cluster(&same, 1.0);
        assert!(c.unresolved && c.tol < MIN_TOL / FACTOR && c.tol >= MIN_TOL * FACTOR);
        assert_eq!(c.nodules, vec![vec![0, 1, 2, 3, 4]]);
    }
}
