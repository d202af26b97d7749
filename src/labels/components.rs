//! The connected components of a label volume, per value: 6-connected (faces), as
//! `scipy.ndimage.label`'s default, labelled by `ndarray-ndimage` (a port of scipy's
//! algorithm). These are the rows of `index/components.parquet` (format/INDEX.md).

use ndarray::Array3;
use ndarray_ndimage::{Kernel3d, label};
use serde::{Deserialize, Serialize};

use crate::geometry::Geometry;

/// One connected component of the voxels of one value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelComponent {
    /// The label value (1..=255).
    pub value: u8,
    /// 1-based number among the components of that value, largest first (ties: first
    /// voxel in C order first).
    pub component: u32,
    /// Voxels in it.
    pub voxels: u64,
    /// Mean voxel index (z, y, x).
    pub centroid_zyx: [f64; 3],
    /// The centroid in world mm (x, y, z).
    pub centroid_world_xyz: [f64; 3],
    /// First voxel and one past the last (z, y, x).
    pub bbox_zyx: [[usize; 3]; 2],
    /// Diameter of the sphere of the same volume, mm: `(6 V / pi)^(1/3)`.
    pub equivalent_diameter_mm: f64,
}

/// The most components of one value a record lists (the largest); the record says how
/// many there were.
pub const MAX_LISTED: usize = 1000;

/// The components of every value other than 0 in `m` (on grid `g`), ordered by value, then
/// largest first.
///
/// ```
/// use ndarray::Array3;
/// use ctstream::geometry::Geometry;
/// use ctstream::labels::components::components;
/// let mut m = Array3::<u8>::zeros((3, 3, 3));
/// m[[0, 0, 0]] = 1;
/// m[[2, 2, 2]] = 1; m[[2, 2, 1]] = 1; // two pieces of value 1 (diagonal voxels do not join)
/// let c = components(&m, &Geometry::axis_aligned([0.0; 3], [1.0; 3]));
/// assert_eq!(c.len(), 2);
/// assert_eq!((c[0].voxels, c[0].centroid_zyx), (2, [2.0, 2.0, 1.5]));
/// ```
pub fn components(m: &Array3<u8>, g: &Geometry) -> Vec<LabelComponent> {
    let mut present = [false; 256];
    m.iter().for_each(|&v| present[v as usize] = true);
    let voxel_mm3 = g.spacing_xyz.iter().product::<f64>();
    let kernel = Kernel3d::Star.generate();
    let mut out = Vec::new();
    for value in (1..=255u8).filter(|&v| present[v as usize]) {
        let mask = m.mapv(|v| v == value);
        let (labels, n) = label::<u32>(&mask, &kernel);
        #[derive(Clone)]
        struct Acc {
            voxels: u64,
            sum: [f64; 3],
            lo: [usize; 3],
            hi: [usize; 3],
        }
        let mut acc = vec![Acc { voxels: 0, sum: [0.0; 3], lo: [usize::MAX; 3], hi: [0; 3] }; n + 1];
        for ((z, y, x), &l) in labels.indexed_iter() {
            if l == 0 {
                continue;
            }
            let a = &mut acc[l as usize];
            a.voxels += 1;
            for (k, i) in [z, y, x].into_iter().enumerate() {
                a.sum[k] += i as f64;
                a.lo[k] = a.lo[k].min(i);
                a.hi[k] = a.hi[k].max(i + 1);
            }
        }
        // scipy numbers components in order of first voxel; keep that order for ties.
        let mut list: Vec<&Acc> = acc[1..].iter().filter(|a| a.voxels > 0).collect();
        list.sort_by(|a, b| b.voxels.cmp(&a.voxels));
        for (k, a) in list.into_iter().enumerate() {
            let centroid_zyx = a.sum.map(|s| s / a.voxels as f64);
            out.push(LabelComponent {
                value,
                component: k as u32 + 1,
                voxels: a.voxels,
                centroid_zyx,
                centroid_world_xyz: g.index_to_world(centroid_zyx),
                bbox_zyx: [a.lo, a.hi],
                equivalent_diameter_mm: (6.0 * a.voxels as f64 * voxel_mm3 / std::f64::consts::PI).cbrt(),
            });
        }
    }
    out
}
