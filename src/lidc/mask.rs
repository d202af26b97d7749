//! Masks from reader contours, on the source grid, as pylidc 0.2.3 fills them
//! (`Annotation.boolean_mask` with its defaults, and `pylidc.utils.consensus`):
//!
//! 1. The mask covers the box of the annotation's contour points (every ROI's, holes
//!    included), in (slice, row, column) = (z, y, x) voxel indices of the series.
//! 2. Each inclusion outline, in file order, turns on the pixel centres it encloses on
//!    its slice (OR-ed with what is on: several regions on one slice add up), then turns
//!    off its own points (the outline is drawn just outside the nodule).
//! 3. Then each exclusion outline (`inclusion = FALSE`, a hole) turns off the pixels it
//!    encloses and its own points.
//!
//! "Encloses" is matplotlib's `Path.contains_points` (radius 0), which pylidc calls: the
//! crossing-number test of its `point_in_path`, whose rule decides the lattice points
//! that lie on a straight stretch of the outline. It is reproduced here exactly, so the
//! masks are pylidc's, voxel for voxel.

/// A mask over a box of the series' voxels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxMask {
    /// The box's first voxel, (z, y, x).
    pub start_zyx: [i32; 3],
    /// The box's shape, (z, y, x).
    pub shape_zyx: [usize; 3],
    /// One flag per voxel of the box, z slowest.
    pub voxels: Vec<bool>,
}

impl BoxMask {
    /// A mask of `shape_zyx` at `start_zyx`, all off.
    pub fn empty(start_zyx: [i32; 3], shape_zyx: [usize; 3]) -> BoxMask {
        BoxMask { start_zyx, shape_zyx, voxels: vec![false; shape_zyx.iter().product()] }
    }

    /// The flag at series voxel `zyx`; off outside the box.
    pub fn get(&self, zyx: [i32; 3]) -> bool {
        self.offset(zyx).is_some_and(|i| self.voxels[i])
    }

    /// Voxels on.
    pub fn count(&self) -> usize {
        self.voxels.iter().filter(|&&v| v).count()
    }

    fn offset(&self, zyx: [i32; 3]) -> Option<usize> {
        let mut i = 0usize;
        for ((&v, &start), &len) in zyx.iter().zip(&self.start_zyx).zip(&self.shape_zyx) {
            let d = usize::try_from(i64::from(v) - i64::from(start)).ok()?;
            if d >= len {
                return None;
            }
            i = i * len + d;
        }
        Some(i)
    }

    fn set(&mut self, zyx: [i32; 3], on: bool) {
        if let Some(i) = self.offset(zyx) {
            self.voxels[i] = on;
        }
    }
}

/// One outline of an annotation on the series' grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Outline {
    /// The slice index (z) of the series it lies on.
    pub z: i32,
    /// A region of the nodule (true) or a hole in it (false).
    pub inclusion: bool,
    /// The points, (x, y) = (column, row) pixel indices, in drawing order.
    pub points: Vec<[i32; 2]>,
}

/// The box, (start, end inclusive) in (z, y, x), of every point of `outlines`; None for
/// no points.
pub fn bounds(outlines: &[Outline]) -> Option<([i32; 3], [i32; 3])> {
    let mut all = outlines.iter().flat_map(|o| o.points.iter().map(move |p| [o.z, p[1], p[0]]));
    let first = all.next()?;
    Some(all.fold((first, first), |(lo, hi), p| {
        (
            [lo[0].min(p[0]), lo[1].min(p[1]), lo[2].min(p[2])],
            [hi[0].max(p[0]), hi[1].max(p[1]), hi[2].max(p[2])],
        )
    }))
}

/// The mask of one annotation over the box `(start, end)` (inclusive; pylidc's
/// `bbox_matrix`, by default the annotation's own, [`bounds`]).
pub fn annotation_mask(outlines: &[Outline], bbox: ([i32; 3], [i32; 3])) -> BoxMask {
    let (lo, hi) = bbox;
    let shape = [0, 1, 2].map(|a| usize::try_from(hi[a] - lo[a] + 1).unwrap_or(0));
    let mut mask = BoxMask::empty(lo, shape);
    for pass_inclusion in [true, false] {
        for o in outlines.iter().filter(|o| o.inclusion == pass_inclusion) {
            if o.z < lo[0] || o.z > hi[0] {
                continue;
            }
            let poly = closed(&o.points);
            for y in lo[1]..=hi[1] {
                for x in lo[2]..=hi[2] {
                    // Inside an outline: on for a region, off for a hole.
                    if contains(&poly, [f64::from(y), f64::from(x)]) {
                        mask.set([o.z, y, x], o.inclusion);
                    }
                }
            }
            for p in &o.points {
                mask.set([o.z, p[1], p[0]], false);
            }
        }
    }
    mask
}

/// The consensus of one nodule's annotations: on where at least `level` of them are on
/// (pylidc's `consensus(anns, clevel=level)`: the mean of the masks `>= level`), over the
/// box that holds all their boxes. Also each annotation's mask over that box.
pub fn consensus(annotations: &[Vec<Outline>], level: f64) -> Option<(BoxMask, Vec<BoxMask>)> {
    let boxes: Vec<_> = annotations.iter().filter_map(|a| bounds(a)).collect();
    if boxes.len() != annotations.len() || boxes.is_empty() {
        return None;
    }
    let lo = [0, 1, 2].map(|a| boxes.iter().map(|b| b.0[a]).min().unwrap_or(0));
    let hi = [0, 1, 2].map(|a| boxes.iter().map(|b| b.1[a]).max().unwrap_or(0));
    let masks: Vec<BoxMask> = annotations.iter().map(|a| annotation_mask(a, (lo, hi))).collect();
    let mut out = BoxMask::empty(lo, masks[0].shape_zyx);
    let n = masks.len() as f64;
    for (i, v) in out.voxels.iter_mut().enumerate() {
        let on = masks.iter().filter(|m| m.voxels[i]).count() as f64;
        *v = on / n >= level;
    }
    Some((out, masks))
}

/// The outline as a polygon pylidc hands to matplotlib: (row, column) points, closed
/// (the first point appended when the last is not it), whose last vertex is then the
/// `CLOSEPOLY` back to the first.
fn closed(points: &[[i32; 2]]) -> Vec<[f64; 2]> {
    let mut poly: Vec<[f64; 2]> =
        points.iter().map(|p| [f64::from(p[1]), f64::from(p[0])]).collect();
    if let (Some(&first), Some(&last)) = (poly.first(), poly.last())
        && first != last
    {
        poly.push(first);
    }
    poly
}

/// matplotlib's `point_in_path` for one closed subpath, radius 0 (its `_path.h`, after
/// Eric Haines's crossings test): the edges run through the vertices in order and from
/// the last back to the first; point `(row, column)`.
fn contains(poly: &[[f64; 2]], p: [f64; 2]) -> bool {
    // matplotlib reads (x, y) = (the first, the second) coordinate of each vertex; pylidc
    // gives it (row, column), and the test points likewise.
    let (tx, ty) = (p[0], p[1]);
    let n = poly.len();
    if n < 3 {
        return false;
    }
    // The CLOSEPOLY vertex (the repeated first point) is not a vertex of its own: the
    // path closes from the one before it to the first.
    let verts = &poly[..n - 1];
    let mut inside = false;
    let [mut vx0, mut vy0] = verts[verts.len() - 1];
    let mut yflag0 = vy0 >= ty;
    for &[vx1, vy1] in verts {
        let yflag1 = vy1 >= ty;
        if yflag0 != yflag1 && (((vy1 - ty) * (vx0 - vx1) >= (vx1 - tx) * (vy0 - vy1)) == yflag1) {
            inside = !inside;
        }
        yflag0 = yflag1;
        vx0 = vx1;
        vy0 = vy1;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outline of the square of columns x0..=x1, rows y0..=y1, clockwise, as an
    /// 8-connected chain of pixels (not closed: the last point is next to the first).
    fn square(x0: i32, y0: i32, x1: i32, y1: i32) -> Vec<[i32; 2]> {
        let mut p = Vec::new();
        p.extend((x0..=x1).map(|x| [x, y0]));
        p.extend((y0 + 1..=y1).map(|y| [x1, y]));
        p.extend((x0..x1).rev().map(|x| [x, y1]));
        p.extend((y0 + 1..y1).rev().map(|y| [x0, y]));
        p
    }

    #[test]
    fn a_square_outline_fills_its_inside_without_the_outline() {
        // Outline pixels at columns 10..=14, rows 20..=24: inside, 3 x 3 pixels.
        let o = vec![Outline { z: 5, inclusion: true, points: square(10, 20, 14, 24) }];
        let b = bounds(&o).unwrap();
        assert_eq!(b, ([5, 20, 10], [5, 24, 14]));
        let m = annotation_mask(&o, b);
        assert_eq!(m.shape_zyx, [1, 5, 5]);
        assert_eq!(m.count(), 9);
        for y in 20..=24 {
            for x in 10..=14 {
                let inner = (21..=23).contains(&y) && (11..=13).contains(&x);
                assert_eq!(m.get([5, y, x]), inner, "({y}, {x})");
            }
        }
    }

    #[test]
    fn holes_are_cut_and_two_regions_on_one_slice_add_up() {
        let outer = Outline { z: 0, inclusion: true, points: square(0, 0, 10, 10) };
        // A hole: outline at 4..=6, so it cuts 5 (inside) and its own 8 points.
        let hole = Outline { z: 0, inclusion: false, points: square(4, 4, 6, 6) };
        let m = annotation_mask(&[outer.clone(), hole], ([0, 0, 0], [0, 10, 10]));
        assert_eq!(m.count(), 81 - 9);
        assert!(!m.get([0, 5, 5]) && !m.get([0, 4, 4]) && m.get([0, 3, 3]));
        // A second region beside the first on the same slice adds its own inside.
        let second = Outline { z: 0, inclusion: true, points: square(20, 0, 24, 4) };
        let m = annotation_mask(&[outer, second], ([0, 0, 0], [0, 10, 24]));
        assert_eq!(m.count(), 81 + 9);
    }

    #[test]
    fn the_crossing_rule_is_matplotlibs_on_the_outline() {
        // The triangle (0,0), (0,4), (4,0) as (row, column): a point on its hypotenuse
        // (2,2) and on its legs (0,2), (2,0) are outside, (1,1) inside.
        // (matplotlib 3.11.2 says the same of these six points.)
        let tri = closed(&[[0, 0], [4, 0], [0, 4]]);
        assert!(contains(&tri, [1.0, 1.0]));
        for p in [[3.0, 3.0], [-1.0, 1.0], [2.0, 2.0], [0.0, 2.0], [2.0, 0.0]] {
            assert!(!contains(&tri, p), "{p:?}");
        }
        // Every lattice point inside a convex polygon and off its edges is inside.
        let sq = closed(&[[0, 0], [0, 6], [6, 6], [6, 0]]);
        for r in 1..6 {
            for c in 1..6 {
                assert!(contains(&sq, [f64::from(r), f64::from(c)]), "({r}, {c})");
            }
        }
    }

    #[test]
    fn the_crossing_rule_agrees_with_matplotlib_on_every_lattice_point() {
        // tests/goldens/lidc_polygons.json (tools/goldens/lidc_polygons.py): pixel chains,
        // chains with gaps, random integer polygons (points on their edges), and what
        // matplotlib's contains_points says of every lattice point around each.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/goldens/lidc_polygons.json");
        let golden: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let pair = |v: &serde_json::Value| -> [i64; 2] {
            [v[0].as_i64().unwrap(), v[1].as_i64().unwrap()]
        };
        let cases = golden["cases"].as_array().unwrap();
        assert!(cases.len() >= 40);
        let (mut tested, mut inside_total) = (0, 0);
        for (n, case) in cases.iter().enumerate() {
            let pts: Vec<[f64; 2]> = case["points_row_col"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| pair(p).map(|v| v as f64))
                .collect();
            let mut poly = pts.clone();
            if pts.first() != pts.last() {
                poly.push(pts[0]);
            }
            let inside: std::collections::HashSet<[i64; 2]> =
                case["inside"].as_array().unwrap().iter().map(pair).collect();
            let (lo, hi) = (pair(&case["box_row_col"][0]), pair(&case["box_row_col"][1]));
            for r in lo[0]..=hi[0] {
                for c in lo[1]..=hi[1] {
                    let want = inside.contains(&[r, c]);
                    assert_eq!(contains(&poly, [r as f64, c as f64]), want, "case {n}: ({r}, {c})");
                    tested += 1;
                }
            }
            inside_total += inside.len();
        }
        assert!(tested > 5_000 && inside_total > 800, "{tested} points, {inside_total} inside");
    }

    #[test]
    fn the_consensus_is_where_half_the_readers_agree() {
        // Three readers: squares of insides 3x3 at three offsets along x; the consensus
        // at 0.5 is where at least 2 of 3 cover.
        let anns: Vec<Vec<Outline>> = [10, 11, 12]
            .iter()
            .map(|&x| vec![Outline { z: 2, inclusion: true, points: square(x, 20, x + 4, 24) }])
            .collect();
        let (c, masks) = consensus(&anns, 0.5).unwrap();
        assert_eq!(masks.len(), 3);
        assert!(masks.iter().all(|m| m.count() == 9 && m.shape_zyx == c.shape_zyx));
        // Columns covered: reader 1: 11..=13, 2: 12..=14, 3: 13..=15; by >= 2: 12..=14.
        for x in 10..=16 {
            assert_eq!(c.get([2, 22, x]), (12..=14).contains(&x), "column {x}");
        }
        assert_eq!(c.count(), 9);
        let (all, _) = consensus(&anns, 1.0).unwrap();
        assert_eq!(all.count(), 3);
    }
}
