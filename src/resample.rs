//! Resampling a volume onto the store's axis-aligned grid.
//!
//! Two steps, as `format/FORMAT.md` ("What the stored grid is") specifies:
//!
//! 1. [`to_axis_aligned`]: a direction that is a signed permutation of the axes is made
//!    the identity *exactly*, by permuting and flipping the array and moving the origin to
//!    the flipped end. Oblique directions are refused.
//! 2. [`resample_linear`]: trilinear interpolation (separable: x and y per slice, then z)
//!    onto the target spacing. The output grid starts at the input's first voxel centre
//!    and has `floor((n - 1) * s_in / s_out) + 1` voxels per axis, so every output voxel
//!    centre lies inside the input's voxel-centre box and nothing is extrapolated. The
//!    result is rounded by the rule of [`crate::hu`] and clamped to the given HU range.

use ndarray::{Array2, Array3, Axis};
use rayon::prelude::*;

use crate::geometry::{Geometry, IDENTITY};

/// Errors from resampling.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ResampleError {
    /// The direction is not a signed permutation of the axes.
    #[error(
        "oblique direction {direction:?} (row-major): the store holds axis-aligned grids; oblique scans are not supported yet"
    )]
    Oblique {
        /// The direction matrix.
        direction: [f64; 9],
    },
    /// The resampled grid, or the intermediate planes resampling needs, would hold more
    /// than [`crate::volume::MAX_VOXELS`]: refused before anything is allocated.
    #[error(
        "resampling {shape_zyx:?} voxels (z, y, x) at {from_xyz:?} mm to {to_xyz:?} mm (x, y, z) needs {voxels} voxels ({what}), more than the limit of {limit}"
    )]
    TooLarge {
        /// The source shape.
        shape_zyx: [usize; 3],
        /// The source spacing.
        from_xyz: [f64; 3],
        /// The target spacing.
        to_xyz: [f64; 3],
        /// What was counted: the output grid or the in-plane intermediate.
        what: &'static str,
        /// The count (saturated at `u64::MAX`).
        voxels: u64,
        /// The limit.
        limit: u64,
    },
    /// The source has no voxels.
    #[error("the source shape {shape_zyx:?} (z, y, x) has no voxels")]
    Empty {
        /// The shape.
        shape_zyx: [usize; 3],
    },
    /// A spacing is not positive and finite.
    #[error("spacing {spacing_xyz:?} mm is not positive and finite")]
    BadSpacing {
        /// The spacing (x, y, z).
        spacing_xyz: [f64; 3],
    },
}

/// Permutes and flips `hu` (z, y, x) so that its direction becomes the identity,
/// exactly (no interpolation). Returns the new array and geometry; an axis-aligned
/// volume is returned as it is, without a copy.
///
/// # Errors
/// [`ResampleError::Oblique`] when the direction is not a signed axis permutation
/// (within 1e-6).
pub fn to_axis_aligned(
    hu: Array3<i16>,
    g: &Geometry,
) -> Result<(Array3<i16>, Geometry), ResampleError> {
    if g.is_identity_direction() {
        return Ok((hu, Geometry { direction: IDENTITY, ..*g }));
    }
    let d = &g.direction;
    // For each index axis j (x=0, y=1, z=2): the world axis it runs along, and the sign.
    let mut world_of = [0usize; 3];
    let mut sign = [1.0f64; 3];
    let mut used = [false; 3];
    for j in 0..3 {
        let col = [d[j], d[3 + j], d[6 + j]];
        let Some(w) = (0..3).find(|&w| (col[w].abs() - 1.0).abs() < 1e-6) else {
            return Err(ResampleError::Oblique { direction: *d });
        };
        if used[w] || (0..3).any(|o| o != w && col[o].abs() > 1e-6) {
            return Err(ResampleError::Oblique { direction: *d });
        }
        used[w] = true;
        world_of[j] = w;
        sign[j] = col[w].signum();
    }
    let shape = hu.shape();
    let n_xyz = [shape[2], shape[1], shape[0]];
    // New origin: the world position of the source voxel that becomes (0, 0, 0).
    let start_zyx: [f64; 3] = std::array::from_fn(|a| {
        let j = 2 - a; // array axis a is index axis j
        if sign[j] < 0.0 { (n_xyz[j] - 1) as f64 } else { 0.0 }
    });
    let origin_xyz = g.index_to_world(start_zyx);
    // Array axis of the output for world axis w is 2 - w; it comes from source array axis 2 - j.
    let mut view = hu.view();
    for (j, sg) in sign.iter().enumerate() {
        if *sg < 0.0 {
            view.invert_axis(Axis(2 - j));
        }
    }
    let mut perm = [0usize; 3];
    let mut spacing_xyz = [0.0; 3];
    for j in 0..3 {
        perm[2 - world_of[j]] = 2 - j;
        spacing_xyz[world_of[j]] = g.spacing_xyz[j];
    }
    let out = view.permuted_axes(perm).as_standard_layout().into_owned();
    Ok((out, Geometry { origin_xyz, spacing_xyz, direction: IDENTITY }))
}

/// Voxels per axis, (z, y, x), of `shape_zyx` at `from_xyz` mm resampled to `to_xyz` mm
/// by [`resample_linear`]: `floor((n - 1) * s_in / s_out) + 1` per axis. Computed in
/// floating point and bounded before any allocation: the grid, and the in-plane planes
/// of every source slice that resampling holds, must each stay within
/// [`crate::volume::MAX_VOXELS`].
///
/// ```
/// use ctstream::resample::resampled_shape;
/// assert_eq!(resampled_shape([9, 20, 20], [0.7, 0.8, 2.5], [1.0; 3]).unwrap(), [21, 16, 14]);
/// // 25 mm voxels at 1 mm: 25^3 times the voxels, refused before allocating.
/// assert!(resampled_shape([100, 512, 512], [25.0; 3], [1.0; 3]).is_err());
/// ```
///
/// # Errors
/// [`ResampleError::BadSpacing`], [`ResampleError::TooLarge`].
pub fn resampled_shape(
    shape_zyx: [usize; 3],
    from_xyz: [f64; 3],
    to_xyz: [f64; 3],
) -> Result<[usize; 3], ResampleError> {
    for s in [from_xyz, to_xyz] {
        if s.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(ResampleError::BadSpacing { spacing_xyz: s });
        }
    }
    let limit = crate::volume::MAX_VOXELS;
    let n_out = |a: usize| -> f64 {
        let (n, s_in, s_out) = (shape_zyx[a], from_xyz[2 - a], to_xyz[2 - a]);
        if n == 0 { 0.0 } else { ((n - 1) as f64 * s_in / s_out + 1e-9).floor() + 1.0 }
    };
    let out = [n_out(0), n_out(1), n_out(2)];
    let too_large = |what, v: f64| ResampleError::TooLarge {
        shape_zyx,
        from_xyz,
        to_xyz,
        what,
        voxels: if v >= u64::MAX as f64 { u64::MAX } else { v as u64 },
        limit,
    };
    let grid = out[0] * out[1] * out[2];
    if grid.is_nan() || grid > limit as f64 {
        return Err(too_large("the resampled grid", grid));
    }
    let planes = shape_zyx[0] as f64 * out[1] * out[2];
    if planes.is_nan() || planes > limit as f64 {
        return Err(too_large("in-plane intermediates", planes));
    }
    Ok(out.map(|v| v as usize))
}

/// Linear interpolation table for one axis: for each output index, (i0, i1, weight of i1).
fn axis_table(n_in: usize, s_in: f64, s_out: f64) -> Vec<(usize, usize, f32)> {
    let n_out = ((n_in - 1) as f64 * s_in / s_out + 1e-9).floor() as usize + 1;
    (0..n_out)
        .map(|k| {
            let p = k as f64 * s_out / s_in;
            let i0 = (p.floor() as usize).min(n_in - 1);
            let i1 = (i0 + 1).min(n_in - 1);
            (i0, i1, (p - i0 as f64) as f32)
        })
        .collect()
}

/// Resamples an axis-aligned volume (z, y, x) to `spacing_xyz` by trilinear
/// interpolation, rounding by the HU rule and clamping to `clip` (lo, hi).
///
/// # Errors
/// [`ResampleError::Oblique`] if `g` is not axis-aligned; [`ResampleError::BadSpacing`];
/// [`ResampleError::TooLarge`] (see [`resampled_shape`]), before allocating.
pub fn resample_linear(
    hu: &Array3<i16>,
    g: &Geometry,
    spacing_xyz: [f64; 3],
    clip: [i16; 2],
) -> Result<(Array3<i16>, Geometry), ResampleError> {
    if !g.is_identity_direction() {
        return Err(ResampleError::Oblique { direction: g.direction });
    }
    let (nz, ny, nx) = hu.dim();
    // Bounded before anything is allocated (the tables below have one entry per voxel
    // along an axis).
    let expect = resampled_shape([nz, ny, nx], g.spacing_xyz, spacing_xyz)?;
    if expect.contains(&0) {
        return Err(ResampleError::Empty { shape_zyx: [nz, ny, nx] });
    }
    let tx = axis_table(nx, g.spacing_xyz[0], spacing_xyz[0]);
    let ty = axis_table(ny, g.spacing_xyz[1], spacing_xyz[1]);
    let tz = axis_table(nz, g.spacing_xyz[2], spacing_xyz[2]);
    let (ox, oy, oz) = (tx.len(), ty.len(), tz.len());
    debug_assert_eq!([oz, oy, ox], expect);
    // In-plane: each input slice to an (oy, ox) f32 plane.
    let planes: Vec<Array2<f32>> = (0..nz)
        .into_par_iter()
        .map(|z| {
            let src = hu.index_axis(Axis(0), z);
            let mut rows = Array2::<f32>::zeros((ny, ox));
            for y in 0..ny {
                for (k, &(i0, i1, w)) in tx.iter().enumerate() {
                    let (a, b) = (src[[y, i0]] as f32, src[[y, i1]] as f32);
                    rows[[y, k]] = a + (b - a) * w;
                }
            }
            let mut plane = Array2::<f32>::zeros((oy, ox));
            for (k, &(i0, i1, w)) in ty.iter().enumerate() {
                for x in 0..ox {
                    let (a, b) = (rows[[i0, x]], rows[[i1, x]]);
                    plane[[k, x]] = a + (b - a) * w;
                }
            }
            plane
        })
        .collect();
    // Along z, with the HU rule and the clip.
    let mut out = Array3::<i16>::zeros((oz, oy, ox));
    let (lo, hi) = (clip[0] as f32, clip[1] as f32);
    out.as_slice_mut()
        .expect("a new array is contiguous")
        .par_chunks_mut(oy * ox)
        .zip(tz.par_iter())
        .for_each(|(dst, &(i0, i1, w))| {
            let (a, b) = (
                planes[i0].as_slice().expect("contiguous"),
                planes[i1].as_slice().expect("contiguous"),
            );
            for ((d, &va), &vb) in dst.iter_mut().zip(a).zip(b) {
                let v = va + (vb - va) * w;
                *d = v.round().clamp(lo, hi) as i16;
            }
        });
    Ok((out, Geometry::axis_aligned(g.origin_xyz, spacing_xyz)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flipped x axis and swapped y/z: hand-worked voxel and origin positions.
    #[test]
    fn signed_permutation_is_exact() {
        // 2 x 3 x 4 (z, y, x) with values encoding their index.
        let hu = Array3::from_shape_fn((2, 3, 4), |(z, y, x)| (100 * z + 10 * y + x) as i16);
        // Index x runs along -x; index y runs along +z; index z runs along +y.
        let g = Geometry {
            origin_xyz: [10.0, 20.0, 30.0],
            spacing_xyz: [0.5, 2.0, 3.0],
            direction: [-1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0],
        };
        let (out, ng) = to_axis_aligned(hu.clone(), &g).unwrap();
        assert_eq!(ng.direction, IDENTITY);
        // World x extent: 4 voxels of 0.5 along -x from 10 -> new origin x = 10 - 1.5 = 8.5.
        assert_eq!(ng.origin_xyz, [8.5, 20.0, 30.0]);
        assert_eq!(ng.spacing_xyz, [0.5, 3.0, 2.0]);
        // New shape (z', y', x') = (source y: 3, source z: 2, source x: 4).
        assert_eq!(out.dim(), (3, 2, 4));
        // Every new voxel holds the source voxel at the same world position.
        for ((z2, y2, x2), &v) in out.indexed_iter() {
            let w = ng.index_to_world([z2 as f64, y2 as f64, x2 as f64]);
            let src = g.world_to_index(w).unwrap();
            let (z, y, x) =
                (src[0].round() as usize, src[1].round() as usize, src[2].round() as usize);
            assert_eq!(v, hu[[z, y, x]], "at new ({z2}, {y2}, {x2})");
        }
    }

    #[test]
    fn oblique_is_refused() {
        let (s, c) = (0.3f64.sin(), 0.3f64.cos());
        let g = Geometry {
            origin_xyz: [0.0; 3],
            spacing_xyz: [1.0; 3],
            direction: [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0],
        };
        assert!(matches!(
            to_axis_aligned(Array3::zeros((2, 2, 2)), &g),
            Err(ResampleError::Oblique { .. })
        ));
    }

    /// A linear ramp is reproduced exactly by linear interpolation: v = 3x + 5y - 2z (mm).
    #[test]
    fn linear_ramp_is_exact() {
        let g = Geometry::axis_aligned([0.0; 3], [0.7, 0.8, 2.5]);
        let hu = Array3::from_shape_fn((9, 20, 20), |(z, y, x)| {
            (3.0 * x as f64 * 0.7 + 5.0 * y as f64 * 0.8 - 2.0 * z as f64 * 2.5).round() as i16
        });
        let (out, ng) = resample_linear(&hu, &g, [1.0, 1.0, 1.0], [i16::MIN, i16::MAX]).unwrap();
        // floor(19 * 0.7) + 1 = 14, floor(19 * 0.8) + 1 = 16, floor(8 * 2.5) + 1 = 21.
        assert_eq!(out.dim(), (21, 16, 14));
        assert_eq!(ng.spacing_xyz, [1.0; 3]);
        for ((z, y, x), &v) in out.indexed_iter() {
            let want = 3.0 * x as f64 + 5.0 * y as f64 - 2.0 * z as f64;
            // Input rounding (at most 0.5) plus output rounding.
            assert!((v as f64 - want).abs() <= 1.0, "({z}, {y}, {x}): {v} vs {want}");
        }
    }
}
