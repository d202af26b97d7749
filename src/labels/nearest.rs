//! Nearest-neighbour resampling of a label map onto a stored grid (format/FORMAT.md,
//! "Label volumes", "Resampling"): each target voxel centre takes the value of the source
//! voxel whose centre is nearest in index space, halves rounded up, 0 outside the
//! source. This is SimpleITK's `sitkNearestNeighbor` with default value 0
//! (`tests/integration/labels.rs` checks the two agree).

use ndarray::Array3;
use rayon::prelude::*;

use crate::geometry::Geometry;

/// Why a label map cannot be resampled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NearestError {
    /// The source grid's direction and spacing do not make an invertible map.
    #[error("the label map's grid is degenerate (a zero spacing or a singular direction)")]
    Degenerate,
    /// The target has more voxels than the limit.
    #[error("the target grid {shape_zyx:?} has more than {} voxels", crate::volume::MAX_VOXELS)]
    TooLarge {
        /// Target shape (z, y, x).
        shape_zyx: [usize; 3],
    },
}

/// The source index a continuous index rounds to, if it lies in the source (ITK's
/// `RoundHalfIntegerUp`: `floor(i + 0.5)`, inside when in `[-0.5, n - 0.5)`).
fn nearest_index(i: f64, n: usize) -> Option<usize> {
    let r = (i + 0.5).floor();
    (r >= 0.0 && r < n as f64).then_some(r as usize)
}

/// Resamples `src` (on grid `src_g`, any direction) onto the grid `dst_g` of
/// `dst_shape_zyx` voxels by nearest neighbour; voxels whose nearest source index lies
/// outside `src` are 0.
///
/// ```
/// use ndarray::Array3;
/// use ctstream::geometry::Geometry;
/// use ctstream::labels::nearest::resample_nearest;
/// // A 2 mm source voxel grid, resampled to 1 mm: each source voxel covers 2 target voxels
/// // per axis, the half-way centres going to the upper voxel.
/// let mut src = Array3::<u8>::zeros((1, 1, 2));
/// src[[0, 0, 1]] = 7;
/// let src_g = Geometry::axis_aligned([0.0, 0.0, 0.0], [2.0, 2.0, 2.0]);
/// let dst_g = Geometry::axis_aligned([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]);
/// let out = resample_nearest(&src, &src_g, [1, 1, 4], &dst_g).unwrap();
/// assert_eq!(out.iter().copied().collect::<Vec<_>>(), vec![0, 7, 7, 0]);
/// ```
///
/// # Errors
/// [`NearestError::Degenerate`] for a source grid that cannot be inverted;
/// [`NearestError::TooLarge`] for a target over the voxel limit.
pub fn resample_nearest(
    src: &Array3<u8>,
    src_g: &Geometry,
    dst_shape_zyx: [usize; 3],
    dst_g: &Geometry,
) -> Result<Array3<u8>, NearestError> {
    resample_nearest_within(src, nonzero_box(src), src_g, dst_shape_zyx, dst_g)
}

/// As [`resample_nearest`], for a `src` whose non-zero voxels all lie in `src_box` (first
/// and last index, (z, y, x); None: none), which the caller knows: the source is not
/// searched for them.
///
/// # Errors
/// As [`resample_nearest`].
pub fn resample_nearest_within(
    src: &Array3<u8>,
    src_box: Option<([usize; 3], [usize; 3])>,
    src_g: &Geometry,
    dst_shape_zyx: [usize; 3],
    dst_g: &Geometry,
) -> Result<Array3<u8>, NearestError> {
    let voxels = dst_shape_zyx.iter().map(|&n| n as u128).product::<u128>();
    if voxels > crate::volume::MAX_VOXELS as u128 {
        return Err(NearestError::TooLarge { shape_zyx: dst_shape_zyx });
    }
    // The affine map from a target index (z, y, x) to a source continuous index (z, y, x):
    // its value at 0 and its steps along each target axis.
    let at = |zyx: [f64; 3]| {
        src_g.world_to_index(dst_g.index_to_world(zyx)).ok_or(NearestError::Degenerate)
    };
    let base = at([0.0; 3])?;
    let steps: [[f64; 3]; 3] = {
        let mut s = [[0.0; 3]; 3];
        for (a, step) in s.iter_mut().enumerate() {
            let mut e = [0.0; 3];
            e[a] = 1.0;
            let p = at(e)?;
            *step = std::array::from_fn(|b| p[b] - base[b]);
        }
        s
    };
    let [sz, sy, sx] = [src.shape()[0], src.shape()[1], src.shape()[2]];
    let mut out = Array3::<u8>::zeros((dst_shape_zyx[0], dst_shape_zyx[1], dst_shape_zyx[2]));
    let (ny, nx) = (dst_shape_zyx[1], dst_shape_zyx[2]);
    // Only target voxels that map into the box of the source's non-zero voxels can be
    // non-zero: the box's corners (half a voxel out) mapped back, widened by a voxel,
    // bound them (a sparse map, such as a few nodules, costs its box, not the volume).
    let Some((lo, hi)) = src_box else { return Ok(out) };
    let back = |zyx: [f64; 3]| src_g.index_to_world(zyx);
    let mut t_lo = [f64::INFINITY; 3];
    let mut t_hi = [f64::NEG_INFINITY; 3];
    for corner in 0..8 {
        let c: [f64; 3] = std::array::from_fn(|a| {
            if corner >> a & 1 == 0 { lo[a] as f64 - 0.5 } else { hi[a] as f64 + 0.5 }
        });
        let t = dst_g.world_to_index(back(c)).ok_or(NearestError::Degenerate)?;
        for a in 0..3 {
            t_lo[a] = t_lo[a].min(t[a]);
            t_hi[a] = t_hi[a].max(t[a]);
        }
    }
    let range = |a: usize| {
        let n = dst_shape_zyx[a] as f64;
        let start = (t_lo[a].floor() - 1.0).clamp(0.0, n) as usize;
        let end = (t_hi[a].ceil() + 2.0).clamp(0.0, n) as usize;
        start..end.max(start)
    };
    let (zr, yr, xr) = (range(0), range(1), range(2));
    let Some(voxels) = out.as_slice_mut() else { return Ok(out) }; // a new array is contiguous
    voxels.par_chunks_mut((ny * nx).max(1)).enumerate().for_each(|(z, plane)| {
        if !zr.contains(&z) {
            return;
        }
        for y in yr.clone() {
            for x in xr.clone() {
                // Computed afresh per voxel (not accumulated), so rounding matches a
                // direct evaluation of the map.
                let i: [f64; 3] = std::array::from_fn(|b| {
                    base[b]
                        + z as f64 * steps[0][b]
                        + y as f64 * steps[1][b]
                        + x as f64 * steps[2][b]
                });
                if let (Some(iz), Some(iy), Some(ix)) =
                    (nearest_index(i[0], sz), nearest_index(i[1], sy), nearest_index(i[2], sx))
                {
                    plane[y * nx + x] = src[[iz, iy, ix]];
                }
            }
        }
    });
    Ok(out)
}

/// The box of `m`'s non-zero voxels: first and last index (z, y, x), None when all are 0.
fn nonzero_box(m: &Array3<u8>) -> Option<([usize; 3], [usize; 3])> {
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    for ((z, y, x), &v) in m.indexed_iter() {
        if v != 0 {
            for (a, i) in [z, y, x].into_iter().enumerate() {
                lo[a] = lo[a].min(i);
                hi[a] = hi[a].max(i);
            }
        }
    }
    (lo[0] != usize::MAX).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The box shortcut changes nothing: a sparse map under an oblique, anisotropic grid
    /// resamples to what the whole-volume loop gives.
    #[test]
    fn the_box_shortcut_gives_the_whole_volume_answer() {
        let mut src = Array3::<u8>::zeros((9, 20, 17));
        src[[3, 5, 6]] = 1;
        src[[4, 12, 9]] = 2;
        src[[8, 19, 16]] = 3;
        let (c, s) = (0.3f64.cos(), 0.3f64.sin());
        let src_g = Geometry {
            origin_xyz: [-4.0, 2.5, 10.0],
            spacing_xyz: [0.7, 0.9, 2.5],
            direction: [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0],
        };
        let dst_g = Geometry::axis_aligned([-8.0, -3.0, 9.0], [0.5, 0.5, 1.0]);
        let shape = [26, 44, 40];
        let got = resample_nearest(&src, &src_g, shape, &dst_g).unwrap();
        let mut want = Array3::<u8>::zeros((shape[0], shape[1], shape[2]));
        for ((z, y, x), v) in want.indexed_iter_mut() {
            let i =
                src_g.world_to_index(dst_g.index_to_world([z as f64, y as f64, x as f64])).unwrap();
            if let (Some(a), Some(b), Some(c)) =
                (nearest_index(i[0], 9), nearest_index(i[1], 20), nearest_index(i[2], 17))
            {
                *v = src[[a, b, c]];
            }
        }
        assert_eq!(got, want);
        assert!(got.iter().filter(|v| **v != 0).count() >= 3);
    }

    #[test]
    fn halves_round_up_and_the_far_half_is_outside() {
        assert_eq!(nearest_index(-0.5, 3), Some(0));
        assert_eq!(nearest_index(-0.5000001, 3), None);
        assert_eq!(nearest_index(0.5, 3), Some(1));
        assert_eq!(nearest_index(1.4999, 3), Some(1));
        assert_eq!(nearest_index(2.4999, 3), Some(2));
        assert_eq!(nearest_index(2.5, 3), None);
    }
}
