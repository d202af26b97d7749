//! The connected components of a label volume, per value: 6-connected (faces), as
//! `scipy.ndimage.label`'s default ([`super::runs`]). These are the rows of
//! `index/components.parquet` (format/INDEX.md).

use crate::geometry::Geometry;
use crate::store::LabelComponent;
use ndarray::Array3;

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
    let (nz, ny, nx) = m.dim();
    let owned;
    let data: &[u8] = match m.as_slice() {
        Some(s) => s,
        None => {
            owned = m.as_standard_layout().into_owned();
            owned.as_slice().unwrap_or(&[])
        }
    };
    let Some(lab) = super::runs::label(data, [nz, ny, nx], |&v| v) else { return Vec::new() };
    let voxel_mm3 = g.spacing_xyz.iter().product::<f64>();
    #[derive(Clone)]
    struct Acc {
        value: u8,
        voxels: u64,
        sum: [f64; 3],
        lo: [usize; 3],
        hi: [usize; 3],
    }
    let mut acc = vec![
        Acc { value: 0, voxels: 0, sum: [0.0; 3], lo: [usize::MAX; 3], hi: [0; 3] };
        lab.count
    ];
    for (r, &c) in lab.runs.iter().zip(&lab.component) {
        let (z, y) = (r.row as usize / ny, r.row as usize % ny);
        let (x0, x1, len) = (r.x0 as usize, r.x1 as usize, r.len());
        let a = &mut acc[c as usize];
        a.value = r.key;
        a.voxels += len;
        a.sum[0] += z as f64 * len as f64;
        a.sum[1] += y as f64 * len as f64;
        a.sum[2] += (x0 + x1 - 1) as f64 * len as f64 / 2.0;
        for (k, (lo, hi)) in [(z, z + 1), (y, y + 1), (x0, x1)].into_iter().enumerate() {
            a.lo[k] = a.lo[k].min(lo);
            a.hi[k] = a.hi[k].max(hi);
        }
    }
    // By value, then largest first; a stable sort keeps scipy's order (first voxel) for ties.
    acc.sort_by(|a, b| a.value.cmp(&b.value).then(b.voxels.cmp(&a.voxels)));
    let mut out: Vec<LabelComponent> = Vec::with_capacity(acc.len());
    for a in acc {
        let component = match out.last() {
            Some(prev) if prev.value == a.value => prev.component + 1,
            _ => 1,
        };
        let centroid_zyx = a.sum.map(|s| s / a.voxels as f64);
        out.push(LabelComponent {
            value: a.value,
            component,
            voxels: a.voxels,
            centroid_zyx,
            centroid_world_xyz: g.index_to_world(centroid_zyx),
            bbox_zyx: [a.lo, a.hi],
            equivalent_diameter_mm: (6.0 * a.voxels as f64 * voxel_mm3 / std::f64::consts::PI)
                .cbrt(),
        });
    }
    out
}
