//! Nodules found in a probability map: threshold, 3D connected components (6-connected,
//! as `scipy.ndimage.label`'s default), and for each component its centre, size and
//! probabilities.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use serde::Serialize;

use crate::geometry::Geometry;
use crate::store::index::{batch, f64s, i32s, utf8};

/// One connected component of voxels at or above the threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Component {
    /// 1-based label, in order of first voxel (C order).
    pub label: u32,
    /// Voxels in it.
    pub voxels: usize,
    /// Mean voxel index (z, y, x) (the unweighted centroid).
    pub centre_zyx: [f64; 3],
    /// The centroid in world mm (x, y, z).
    pub centre_world_xyz: [f64; 3],
    /// Diameter of the sphere of the same volume, mm: `(6 V / pi)^(1/3)`, V = voxels x
    /// voxel volume.
    pub equivalent_diameter_mm: f64,
    /// Largest probability in it.
    pub max_probability: f64,
    /// Mean probability over it.
    pub mean_probability: f64,
}

/// Labels the voxels of `probs` (shape z, y, x, C order) with `p >= threshold` into
/// 6-connected components; returns the label of every voxel (0: background) and the
/// number of components.
pub fn label(probs: &[f32], shape_zyx: [usize; 3], threshold: f32) -> (Vec<u32>, u32) {
    let [nz, ny, nx] = shape_zyx;
    let mut labels = vec![0u32; probs.len()];
    let mut next = 0u32;
    let mut stack = Vec::new();
    for start in 0..probs.len() {
        if labels[start] != 0 || probs[start] < threshold {
            continue;
        }
        next += 1;
        labels[start] = next;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (z, y, x) = (i / (ny * nx), (i / nx) % ny, i % nx);
            let mut visit = |j: usize| {
                if labels[j] == 0 && probs[j] >= threshold {
                    labels[j] = next;
                    stack.push(j);
                }
            };
            if z > 0 {
                visit(i - ny * nx);
            }
            if z + 1 < nz {
                visit(i + ny * nx);
            }
            if y > 0 {
                visit(i - nx);
            }
            if y + 1 < ny {
                visit(i + nx);
            }
            if x > 0 {
                visit(i - 1);
            }
            if x + 1 < nx {
                visit(i + 1);
            }
        }
    }
    (labels, next)
}

/// The components of `probs` at `threshold`, measured on the grid `geometry`, largest
/// maximum probability first.
pub fn components(
    probs: &[f32],
    shape_zyx: [usize; 3],
    threshold: f32,
    geometry: &Geometry,
) -> Vec<Component> {
    let (labels, n) = label(probs, shape_zyx, threshold);
    let [_, ny, nx] = shape_zyx;
    #[derive(Default, Clone)]
    struct Acc {
        voxels: usize,
        sum: [f64; 3],
        max: f64,
        psum: f64,
    }
    let mut acc = vec![Acc::default(); n as usize];
    for (i, &l) in labels.iter().enumerate() {
        if l == 0 {
            continue;
        }
        let a = &mut acc[(l - 1) as usize];
        let p = probs[i] as f64;
        a.voxels += 1;
        a.sum[0] += (i / (ny * nx)) as f64;
        a.sum[1] += ((i / nx) % ny) as f64;
        a.sum[2] += (i % nx) as f64;
        a.max = a.max.max(p);
        a.psum += p;
    }
    let voxel_mm3: f64 = geometry.spacing_xyz.iter().product();
    let mut out: Vec<Component> = acc
        .iter()
        .enumerate()
        .map(|(k, a)| {
            let c = a.sum.map(|s| s / a.voxels as f64);
            Component {
                label: k as u32 + 1,
                voxels: a.voxels,
                centre_zyx: c,
                centre_world_xyz: geometry.index_to_world(c),
                equivalent_diameter_mm: (6.0 * a.voxels as f64 * voxel_mm3 / std::f64::consts::PI)
                    .cbrt(),
                max_probability: a.max,
                mean_probability: a.psum / a.voxels as f64,
            }
        })
        .collect();
    out.sort_by(|a, b| b.max_probability.total_cmp(&a.max_probability).then(a.label.cmp(&b.label)));
    out
}

/// The `findings` table `ctstream predict` writes (`PRED_DIR/findings.parquet`): one row
/// per connected component of a predicted probability map.
pub fn findings_batch(rows: &[(String, Component)]) -> RecordBatch {
    let mut cols: Vec<(&str, ArrayRef, bool)> = vec![
        ("series_id", utf8(rows.iter().map(|r| r.0.as_str())), false),
        ("label", i32s(rows.iter().map(|r| r.1.label as i32)), false),
        (
            "voxels",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1.voxels as i64))),
            false,
        ),
    ];
    for (a, n) in ["world_x", "world_y", "world_z"].iter().enumerate() {
        cols.push((n, f64s(rows.iter().map(|r| r.1.centre_world_xyz[a])), false));
    }
    for (a, n) in ["voxel_z", "voxel_y", "voxel_x"].iter().enumerate() {
        cols.push((n, f64s(rows.iter().map(|r| r.1.centre_zyx[a])), false));
    }
    cols.push(("diameter_mm", f64s(rows.iter().map(|r| r.1.equivalent_diameter_mm)), false));
    cols.push(("max_probability", f64s(rows.iter().map(|r| r.1.max_probability)), false));
    cols.push(("mean_probability", f64s(rows.iter().map(|r| r.1.mean_probability)), false));
    batch(cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(spacing: [f64; 3]) -> Geometry {
        Geometry {
            origin_xyz: [-100.0, 50.0, 10.0],
            spacing_xyz: spacing,
            direction: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
        }
    }

    /// Paints spheres (voxel centres within r of c) with probability `p`.
    fn spheres(shape: [usize; 3], balls: &[([f64; 3], f64, f32)]) -> Vec<f32> {
        let mut v = vec![0.0f32; shape.iter().product()];
        for z in 0..shape[0] {
            for y in 0..shape[1] {
                for x in 0..shape[2] {
                    for (c, r, p) in balls {
                        let d2 = (z as f64 - c[0]).powi(2)
                            + (y as f64 - c[1]).powi(2)
                            + (x as f64 - c[2]).powi(2);
                        if d2 <= r * r {
                            v[(z * shape[1] + y) * shape[2] + x] = *p;
                        }
                    }
                }
            }
        }
        v
    }

    /// Two spheres centred on voxel centres: their centroids are exact (symmetry), and
    /// their voxel counts are the lattice points with x^2 + y^2 + z^2 <= 16 and <= 4: 257
    /// and 33 (OEIS A000605), so the equivalent diameters at 0.5 mm^3 voxels are
    /// (6 x 257 x 0.5 / pi)^(1/3) = 6.2609 mm and (6 x 33 x 0.5 / pi)^(1/3) = 3.1586 mm.
    #[test]
    fn spheres_have_known_centres_and_sizes() {
        let shape = [20, 30, 40];
        let probs =
            spheres(shape, &[([10.0, 10.0, 10.0], 4.0, 0.9), ([10.0, 20.0, 30.0], 2.0, 0.7)]);
        let g = geometry([0.5, 1.0, 1.0]);
        let c = components(&probs, shape, 0.5, &g);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].voxels, c[1].voxels), (257, 33));
        assert_eq!(c[0].centre_zyx, [10.0, 10.0, 10.0]);
        assert_eq!(c[1].centre_zyx, [10.0, 20.0, 30.0]);
        // World: origin + index (x, y, z) * spacing.
        assert_eq!(c[1].centre_world_xyz, [-100.0 + 30.0 * 0.5, 50.0 + 20.0, 10.0 + 10.0]);
        assert!(
            (c[0].equivalent_diameter_mm - (6.0 * 257.0 * 0.5 / std::f64::consts::PI).cbrt()).abs()
                < 1e-12
        );
        assert!((c[0].equivalent_diameter_mm - 6.2609).abs() < 1e-4);
        assert!((c[1].equivalent_diameter_mm - 3.1586).abs() < 1e-4);
        assert_eq!((c[0].max_probability as f32, c[0].mean_probability as f32), (0.9, 0.9));
    }

    /// Six-connectivity: voxels touching only by an edge or a corner are separate.
    #[test]
    fn diagonal_neighbours_are_separate_components() {
        let shape = [2, 2, 2];
        let mut probs = vec![0.0f32; 8];
        probs[0] = 1.0; // (0,0,0)
        probs[7] = 1.0; // (1,1,1): corner contact
        probs[3] = 0.6; // (0,1,1): edge contact with (0,0,0) and face contact with (1,1,1)
        let (_, n) = label(&probs, shape, 0.5);
        assert_eq!(n, 2);
        let (l, n) = label(&probs, shape, 0.7);
        assert_eq!(n, 2);
        assert_eq!((l[0], l[7], l[3]), (1, 2, 0));
        assert_eq!(label(&probs, shape, 1.5).1, 0);
    }
}
