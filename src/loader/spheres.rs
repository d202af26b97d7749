//! A spatial index of a scan's nodule spheres, so that building a patch's mask looks only
//! at the spheres near the patch: its cost does not grow with the nodules elsewhere in
//! the scan (1M nodules on 2 scans made each patch scan all 500k of its scan's).

use std::collections::HashMap;

use super::Sphere;

/// Side of a grid cell in voxels.
const CELL: f64 = 32.0;
/// A sphere whose box covers more cells than this is kept in a list checked for every
/// patch instead (no real nodule comes near: 64 cells are 128 x 128 x 128 voxels).
const MAX_CELLS_PER_SPHERE: f64 = 64.0;

/// The spheres of one scan, bucketed by the 32-voxel cells their bounding boxes touch.
#[derive(Debug, Clone, Default)]
pub struct SphereGrid {
    cells: HashMap<[i64; 3], Vec<u32>>,
    large: Vec<u32>,
}

/// The cell range (inclusive) an extent `[lo, hi]` (voxels) touches along one axis.
fn cells(lo: f64, hi: f64) -> (f64, f64) {
    ((lo / CELL).floor(), (hi / CELL).floor())
}

impl SphereGrid {
    /// Buckets `spheres` (indices into the slice). Spheres with a non-finite centre or
    /// radius cannot cover a voxel and are left out.
    pub fn build(spheres: &[Sphere]) -> SphereGrid {
        let mut g = SphereGrid::default();
        for (i, s) in spheres.iter().enumerate() {
            if !s.centre_zyx.iter().chain(&s.radius_zyx).all(|v| v.is_finite()) {
                continue;
            }
            let r: [(f64, f64); 3] = std::array::from_fn(|a| {
                cells(
                    s.centre_zyx[a] - s.radius_zyx[a].abs(),
                    s.centre_zyx[a] + s.radius_zyx[a].abs(),
                )
            });
            let count: f64 = r.iter().map(|(a, b)| b - a + 1.0).product();
            if count > MAX_CELLS_PER_SPHERE {
                g.large.push(i as u32);
                continue;
            }
            for z in r[0].0 as i64..=r[0].1 as i64 {
                for y in r[1].0 as i64..=r[1].1 as i64 {
                    for x in r[2].0 as i64..=r[2].1 as i64 {
                        g.cells.entry([z, y, x]).or_default().push(i as u32);
                    }
                }
            }
        }
        g
    }

    /// Indices of the spheres whose bounding boxes may meet the box of `shape` voxels at
    /// `start_zyx`, sorted, each once. Every sphere that covers a voxel of the box is
    /// among them.
    pub fn near(&self, start_zyx: [i64; 3], shape: [usize; 3]) -> Vec<usize> {
        let mut out: Vec<usize> = self.large.iter().map(|&i| i as usize).collect();
        if !self.cells.is_empty() {
            let r: [(f64, f64); 3] = std::array::from_fn(|a| {
                cells(start_zyx[a] as f64, (start_zyx[a] + shape[a] as i64 - 1) as f64)
            });
            for z in r[0].0 as i64..=r[0].1 as i64 {
                for y in r[1].0 as i64..=r[1].1 as i64 {
                    for x in r[2].0 as i64..=r[2].1 as i64 {
                        if let Some(v) = self.cells.get(&[z, y, x]) {
                            out.extend(v.iter().map(|&i| i as usize));
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::patch::rasterize;

    /// The mask from the spheres `near` a patch equals the mask from all spheres, for
    /// patches everywhere, including spheres on cell borders and across several cells.
    #[test]
    fn near_spheres_give_the_same_mask_as_all() {
        let mut spheres = Vec::new();
        for k in 0..200 {
            let f = k as f64;
            spheres.push(Sphere {
                centre_zyx: [(f * 7.3) % 150.0 - 10.0, (f * 13.1) % 300.0, (f * 29.7) % 300.0],
                radius_zyx: [1.0 + f % 9.0, 2.0 + f % 17.0, 2.0 + (f * 3.0) % 23.0],
            });
        }
        spheres.push(Sphere { centre_zyx: [64.0, 64.0, 64.0], radius_zyx: [300.0, 300.0, 300.0] });
        let g = SphereGrid::build(&spheres);
        let shape = [32, 64, 64];
        for start in [[0, 0, 0], [-16, 31, 33], [60, 100, 200], [120, 250, 250], [-40, -70, -70]] {
            let near: Vec<Sphere> = g.near(start, shape).into_iter().map(|i| spheres[i]).collect();
            assert!(near.len() < spheres.len(), "the index must select");
            assert_eq!(
                rasterize(&near, start, shape),
                rasterize(&spheres, start, shape),
                "patch at {start:?}"
            );
        }
    }
}
