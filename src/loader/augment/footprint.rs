//! Which boxes of the stored grid a rotated or scaled patch reads: its sample points
//! fill a parallelepiped (the patch's box under the affine map), which meets only about
//! two thirds of the chunks of its axis-aligned bounding box ([`super::sample::region`])
//! at nnU-Net's rotations. A chunk the parallelepiped does not come near is neither
//! decoded nor copied. The test is the separating axis theorem for two convex polytopes:
//! they are disjoint exactly when their projections on one of 15 axes (the box's three
//! face normals, the parallelepiped's three, the nine cross products of an edge of each)
//! do not overlap.

use super::spatial::{Interpolation, SpatialParams};

/// The parallelepiped of a patch's sample points (the stored grid's voxel coordinates),
/// ready to be tested against boxes.
#[derive(Debug, Clone)]
pub struct Footprint {
    /// Axes to project on (the parallelepiped's face normals and the edge cross
    /// products; the box's own axes are z, y and x and handled apart).
    axes: Vec<[f64; 3]>,
    /// The parallelepiped's extent on each of `axes`.
    spans: Vec<(f64, f64)>,
    /// Its extent on z, y and x.
    bounds: [(f64, f64); 3],
}

/// How far beyond its computed place a sample point may fall (f32 rounding of the rows'
/// arithmetic is below 1e-4 voxel in any region a patch reads).
const SLACK: f64 = 0.01;

impl Footprint {
    /// The footprint of a patch of `shape` starting at `start_zyx` under `p`, or None where
    /// the patch may read anywhere in its region: an elastic field moves each point on its
    /// own, and a B-spline's prefilter reads the whole region.
    pub fn new(p: &SpatialParams, shape: [usize; 3], start_zyx: [i64; 3]) -> Option<Footprint> {
        if p.elastic.is_some() || p.interpolation != Interpolation::Linear {
            return None;
        }
        let a = p.matrix.map(|row| row.map(f64::from));
        let c = shape.map(|n| (n as f64 - 1.0) / 2.0);
        let last = shape.map(|n| n.saturating_sub(1) as f64);
        // Point o of the patch reads at start + c + A (o - c) (SourceMap::at).
        let corners: Vec<[f64; 3]> = (0..8)
            .map(|k| {
                let v: [f64; 3] = std::array::from_fn(
                    |ax| if k & (4 >> ax) != 0 { last[ax] } else { 0.0 } - c[ax],
                );
                std::array::from_fn(|i| {
                    start_zyx[i] as f64 + c[i] + a[i][0] * v[0] + a[i][1] * v[1] + a[i][2] * v[2]
                })
            })
            .collect();
        // The parallelepiped's edges are A's columns.
        let edge = |j: usize| [a[0][j], a[1][j], a[2][j]];
        let unit = |k: usize| std::array::from_fn(|i| f64::from(u8::from(i == k)));
        let mut axes = Vec::with_capacity(12);
        for j in 0..3 {
            axes.push(cross(edge((j + 1) % 3), edge((j + 2) % 3)));
            for k in 0..3 {
                axes.push(cross(edge(j), unit(k)));
            }
        }
        // A zero cross product (an edge along a grid axis) separates nothing.
        axes.retain(|l| dot(*l, *l) > 1e-12);
        let span = |l: [f64; 3]| {
            corners
                .iter()
                .map(|&q| dot(q, l))
                .fold((f64::INFINITY, f64::NEG_INFINITY), |s, v| (s.0.min(v), s.1.max(v)))
        };
        let spans = axes.iter().map(|&l| span(l)).collect();
        let bounds = std::array::from_fn(|k| span(unit(k)));
        Some(Footprint { axes, spans, bounds })
    }

    /// Whether a sample point reads a voxel of the box of voxels `lo..hi` (first and one
    /// past the last, per axis): a point reads the voxel below it and the next on each
    /// axis, so the test is against the box widened by one voxel below (and a little
    /// slack for rounding). Never false for a box a point reads.
    pub fn reads(&self, lo: [i64; 3], hi: [i64; 3]) -> bool {
        let blo: [f64; 3] = std::array::from_fn(|k| lo[k] as f64 - 1.0 - SLACK);
        // A point reads voxel v when floor(p) is v - 1 or v: p in [lo - 1, hi).
        let bhi: [f64; 3] = std::array::from_fn(|k| hi[k] as f64 + SLACK);
        if (0..3).any(|k| self.bounds[k].1 < blo[k] || self.bounds[k].0 > bhi[k]) {
            return false;
        }
        let centre: [f64; 3] = std::array::from_fn(|k| (blo[k] + bhi[k]) / 2.0);
        let half: [f64; 3] = std::array::from_fn(|k| (bhi[k] - blo[k]) / 2.0);
        self.axes.iter().zip(&self.spans).all(|(&l, &(s0, s1))| {
            let m = dot(centre, l);
            let r: f64 = (0..3).map(|k| half[k] * l[k].abs()).sum();
            m + r >= s0 && m - r <= s1
        })
    }
}

fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

#[cfg(test)]
mod tests {
    use super::super::sample::SourceMap;
    use super::super::spatial::matrix;
    use super::*;

    /// Every voxel a sample point reads (the lower corner of its trilinear cube and the
    /// next on each axis, as [`SourceMap::at`] places it) lies in a box the footprint
    /// says it reads; and at nnU-Net-sized rotations, some chunks of the bounding box are
    /// found unread (the test can fail both ways).
    #[test]
    fn every_voxel_read_is_in_a_box_it_reads() {
        let shape = [8usize, 12, 10];
        let chunk = [3i64, 4, 5];
        let mut skipped = 0;
        for (angles, scale) in [
            ([0.5f32, -0.4, 0.3], 1.0f32),
            ([0.0, 0.0, 0.5], 0.7),
            ([-0.52, 0.52, -0.52], 1.4),
            ([0.0; 3], 1.0),
            ([0.0, 0.0, 0.0], 1.3),
        ] {
            let p = SpatialParams {
                angles_zyx: angles,
                scales_zyx: [scale; 3],
                matrix: matrix(angles, [scale; 3]),
                elastic: None,
                interpolation: Interpolation::Linear,
            };
            let start = [20i64, 30, 40];
            let f = Footprint::new(&p, shape, start).expect("linear, no field");
            let map = SourceMap::new(&p, shape);
            let chunk_of =
                |v: [i64; 3]| std::array::from_fn::<i64, 3, _>(|k| v[k].div_euclid(chunk[k]));
            let reads = |c: [i64; 3]| {
                f.reads(
                    std::array::from_fn(|k| c[k] * chunk[k]),
                    std::array::from_fn(|k| (c[k] + 1) * chunk[k]),
                )
            };
            let mut read = std::collections::BTreeSet::new();
            for z in 0..shape[0] {
                for y in 0..shape[1] {
                    for x in 0..shape[2] {
                        let q = map.at([z, y, x], [0.0; 3]);
                        let base: [i64; 3] =
                            std::array::from_fn(|k| start[k] + q[k].floor() as i64);
                        for d in 0..8 {
                            let v = std::array::from_fn(|k| base[k] + i64::from(d & (4 >> k) != 0));
                            read.insert(chunk_of(v));
                        }
                    }
                }
            }
            for &c in &read {
                assert!(
                    reads(c),
                    "{angles:?} x {scale}: chunk {c:?} is read but not in the footprint"
                );
            }
            let r = map.region(start);
            let first = chunk_of(r.start_zyx);
            let last =
                chunk_of(std::array::from_fn(|k| r.start_zyx[k] + r.shape_zyx[k] as i64 - 1));
            for cz in first[0]..=last[0] {
                for cy in first[1]..=last[1] {
                    for cx in first[2]..=last[2] {
                        skipped += usize::from(!reads([cz, cy, cx]));
                    }
                }
            }
        }
        assert!(skipped > 0, "no chunk of any bounding box was found unread");
    }

    #[test]
    fn no_footprint_for_an_elastic_field_or_a_b_spline() {
        let p = SpatialParams {
            angles_zyx: [0.1; 3],
            scales_zyx: [1.0; 3],
            matrix: matrix([0.1; 3], [1.0; 3]),
            elastic: None,
            interpolation: Interpolation::BSpline3,
        };
        assert!(Footprint::new(&p, [4, 4, 4], [0; 3]).is_none());
    }
}
