//! Sampling a spatially transformed patch ([`super::spatial`]) from the region of the
//! stored grid it covers: the image trilinearly (the HU of the eight voxels around the
//! point, weighted by distance, as SimpleITK's linear interpolator and scipy's
//! `map_coordinates(order=1)`), the mask by nearest neighbour (a point exactly halfway
//! between two voxels takes the higher index, as ITK rounds half up). The region is read
//! through the loader's cache like any patch, so outside the scan the image is the
//! store's fill value (air) and the mask 0, as at the edge of an unaugmented patch.

use super::elastic;
use super::spatial::SpatialParams;
use crate::store::Region;

/// Where each voxel of a transformed patch reads from.
#[derive(Debug, Clone)]
pub struct SourceMap {
    /// The drawn transform (`A` of [`super::spatial`] is its matrix).
    params: SpatialParams,
    /// The patch centre `(shape - 1) / 2`.
    c: [f32; 3],
    /// The elastic displacement of each voxel (C order), where one was drawn.
    field: Option<Vec<[f32; 3]>>,
    /// The patch's shape.
    shape: [usize; 3],
}

impl SourceMap {
    /// The map of `p` for a patch of `shape`.
    pub fn new(p: &SpatialParams, shape: [usize; 3]) -> SourceMap {
        SourceMap {
            params: *p,
            c: shape.map(|n| (n as f32 - 1.0) / 2.0),
            field: p.elastic.as_ref().map(|e| elastic::field(e, shape)),
            shape,
        }
    }

    /// The elastic displacements, where drawn (C order, z, y, x components, voxels).
    pub fn field(&self) -> Option<&[[f32; 3]]> {
        self.field.as_deref()
    }

    /// Where output voxel `o` reads, relative to the patch's first voxel (index space).
    #[inline]
    pub fn at(&self, o: [usize; 3], d: [f32; 3]) -> [f32; 3] {
        let v: [f32; 3] = std::array::from_fn(|k| o[k] as f32 - self.c[k] + d[k]);
        std::array::from_fn(|i| {
            let a = &self.params.matrix;
            self.c[i] + a[i][0] * v[0] + a[i][1] * v[1] + a[i][2] * v[2]
        })
    }

    /// The region of the stored grid that a patch starting at `start_zyx` reads
    /// ([`region`] of its parameters).
    pub fn region(&self, start_zyx: [i64; 3]) -> Region {
        region(&self.params, self.shape, start_zyx)
    }

    /// Samples the patch starting at `start_zyx` from `region` ([`SourceMap::region`]):
    /// `hu` and `mask` are the region's voxels (C order). Returns the image (HU, f32) and
    /// the mask, in the patch's C order.
    ///
    /// # Panics
    /// Where `hu` or `mask` does not hold exactly the region's voxels.
    pub fn sample(
        &self,
        start_zyx: [i64; 3],
        region: Region,
        hu: &[i16],
        mask: &[u8],
    ) -> (Vec<f32>, Vec<u8>) {
        let r = region.shape_zyx;
        let off: [f32; 3] = std::array::from_fn(|a| (start_zyx[a] - region.start_zyx[a]) as f32);
        let n: usize = self.shape.iter().product();
        let (mut img, mut m) = (vec![0f32; n], vec![0u8; n]);
        // The box of the region's mask voxels that are on: a row of points that stays
        // off it (most rows: a nodule is small; a negative has none) samples no mask.
        let on = on_box(mask, r);
        let any_mask = on.is_some();
        // The AVX2 rows rely on it (their gathers are unchecked).
        let voxels: usize = r.iter().product();
        assert!(
            hu.len() == voxels && mask.len() == voxels,
            "sample: the region {r:?} has {voxels} voxels; hu has {}, mask {}",
            hu.len(),
            mask.len()
        );
        let grid = Grid { hu, mask, sy: r[2], sz: r[1] * r[2] };
        // Points in fixed point (32 fractional bits): a row's first point in floating
        // point, then `step` per x added exactly, so the inner loop has no float-to-integer
        // conversion; the error is below 2^-25 voxel over a row.
        let a = self.params.matrix;
        let step = [a[0][2], a[1][2], a[2][2]].map(|v| (v as f64 * ONE).round() as i64);
        // A point is inside when its lower voxel is at most len - 2 on every axis, so all
        // eight voxels of its cube are in the region with no clamping.
        let inside = r.map(|v| (v as i64 - 1) << 32);
        let nx = self.shape[2];
        let mut i = 0;
        for z in 0..self.shape[0] {
            for y in 0..self.shape[1] {
                let v = [z as f32 - self.c[0], y as f32 - self.c[1], -self.c[2]];
                let q: [i64; 3] = std::array::from_fn(|k| {
                    fixed(self.c[k] + off[k] + a[k][0] * v[0] + a[k][1] * v[1] + a[k][2] * v[2])
                });
                let (out, out_m) = (&mut img[i..i + nx], &mut m[i..i + nx]);
                // The row is a segment, so it lies inside when both its ends do.
                let last: [i64; 3] = std::array::from_fn(|k| q[k] + step[k] * (nx as i64 - 1));
                let ends_inside =
                    (0..3).all(|k| q[k].min(last[k]) >= 0 && q[k].max(last[k]) < inside[k]);
                // Nearest neighbours of the segment's points lie within a voxel of its box.
                let meets = |(lo, hi): ([usize; 3], [usize; 3])| {
                    (0..3).all(|k| {
                        let (a, b) = (q[k].min(last[k]) >> 32, (q[k].max(last[k]) >> 32) + 1);
                        a <= hi[k] as i64 && b >= lo[k] as i64
                    })
                };
                match (&self.field, ends_inside, on.is_some_and(meets)) {
                    (None, true, true) => grid.row_inside::<true>(q, step, out, out_m),
                    (None, true, false) => grid.row_inside::<false>(q, step, out, out_m),
                    _ => {
                        let field = self.field.as_deref().map(|f| &f[i..i + nx]);
                        grid.row_clamped(q, step, &a, field, r, any_mask, out, out_m);
                    }
                }
                i += nx;
            }
        }
        (img, m)
    }
}

/// 1 in 32.32 fixed point.
const ONE: f64 = (1u64 << 32) as f64;

/// `v` in 32.32 fixed point.
#[inline]
fn fixed(v: f32) -> i64 {
    (v as f64 * ONE) as i64
}

/// The fraction of a 32.32 fixed-point value, as f32.
#[inline]
fn frac(v: i64) -> f32 {
    (v & 0xffff_ffff) as f32 * (1.0 / ONE as f32)
}

/// Linear interpolation from `p` to `q` by `t`.
#[inline]
fn lerp(p: f32, q: f32, t: f32) -> f32 {
    p + (q - p) * t
}

/// The smallest box (first and last voxel, z, y, x) holding every voxel of `mask` (C order,
/// shape `r`) that is not 0; None when all are 0.
fn on_box(mask: &[u8], r: [usize; 3]) -> Option<([usize; 3], [usize; 3])> {
    let mut b: Option<([usize; 3], [usize; 3])> = None;
    for (row_index, row) in mask.chunks_exact(r[2].max(1)).enumerate() {
        let Some(first) = row.iter().position(|&v| v != 0) else { continue };
        let last = row.iter().rposition(|&v| v != 0).unwrap_or(first);
        let (z, y) = (row_index / r[1].max(1), row_index % r[1].max(1));
        let (lo, hi) = b.get_or_insert(([z, y, first], [z, y, last]));
        *lo = [lo[0].min(z), lo[1].min(y), lo[2].min(first)];
        *hi = [hi[0].max(z), hi[1].max(y), hi[2].max(last)];
    }
    b
}

/// A region's voxels (C order) with its strides.
struct Grid<'a> {
    hu: &'a [i16],
    mask: &'a [u8],
    /// Stride of y.
    sy: usize,
    /// Stride of z.
    sz: usize,
}

impl Grid<'_> {
    /// The trilinear value at a point whose lower voxel starts at `b` with weights `w`.
    #[inline]
    fn trilinear(&self, b: usize, w: [f32; 3]) -> f32 {
        let (sy, sz) = (self.sy, self.sz);
        let pair = |o: usize| {
            let c = &self.hu[b + o..b + o + 2];
            lerp(c[0] as f32, c[1] as f32, w[2])
        };
        let (x00, x01, x10, x11) = (pair(0), pair(sy), pair(sz), pair(sz + sy));
        lerp(lerp(x00, x01, w[1]), lerp(x10, x11, w[1]), w[0])
    }

    /// One output row whose points all lie inside (no clamping needed): the first point
    /// `q`, then `step` per voxel. With `MASK`, the mask by nearest neighbour (round half
    /// up) too; without, the mask row stays 0.
    fn row_inside<const MASK: bool>(
        &self,
        q: [i64; 3],
        step: [i64; 3],
        out: &mut [f32],
        out_m: &mut [u8],
    ) {
        let (sy, sz) = (self.sy, self.sz);
        #[cfg(target_arch = "x86_64")]
        let simd = std::arch::is_x86_feature_detected!("avx2") && self.hu.len() < 1 << 30;
        #[cfg(not(target_arch = "x86_64"))]
        let simd = false;
        if simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the CPU has AVX2 (checked above); every point of the row lies inside
            // (the caller checked both ends of the segment), so each point's lower voxel
            // `b` has `b + sz + sy + 1 < hu.len()`; `hu.len() < 2^30` keeps the byte offsets
            // of the gathers within i32.
            unsafe {
                avx2::trilinear_row(self.hu, sy, sz, q, step, out)
            };
        } else {
            let mut p = q;
            for o in out.iter_mut() {
                let i0 = p.map(|v| (v >> 32) as usize);
                *o = self.trilinear(i0[0] * sz + i0[1] * sy + i0[2], p.map(frac));
                for (pk, sk) in p.iter_mut().zip(step) {
                    *pk += sk;
                }
            }
        }
        if MASK {
            let mut p = q;
            for om in out_m.iter_mut() {
                let k = p.map(|v| ((v + (1 << 31)) >> 32) as usize);
                *om = self.mask[k[0] * sz + k[1] * sy + k[2]];
                for (pk, sk) in p.iter_mut().zip(step) {
                    *pk += sk;
                }
            }
        }
    }

    /// One output row in general: points displaced by the elastic `field` (the row's part)
    /// where there is one, and clamped to the region `r` (the region covers every point:
    /// the clamp only absorbs rounding), the lower voxel of the linear weights to len - 2.
    #[allow(clippy::too_many_arguments)]
    fn row_clamped(
        &self,
        mut q: [i64; 3],
        step: [i64; 3],
        a: &[[f32; 3]; 3],
        field: Option<&[[f32; 3]]>,
        r: [usize; 3],
        mask: bool,
        out: &mut [f32],
        out_m: &mut [u8],
    ) {
        let (sy, sz) = (self.sy, self.sz);
        let top: [i64; 3] = r.map(|v| (v.saturating_sub(1) as i64) << 32);
        let low_max: [usize; 3] = r.map(|v| v.saturating_sub(2));
        for (x, (o, om)) in out.iter_mut().zip(out_m.iter_mut()).enumerate() {
            let mut p = q;
            if let Some(f) = field {
                let d = f[x];
                for (k, pk) in p.iter_mut().enumerate() {
                    *pk += fixed(a[k][0] * d[0] + a[k][1] * d[1] + a[k][2] * d[2]);
                }
            }
            let p: [i64; 3] = std::array::from_fn(|k| p[k].clamp(0, top[k]));
            let i0: [usize; 3] = std::array::from_fn(|k| ((p[k] >> 32) as usize).min(low_max[k]));
            // The weight past the lower voxel: 1 where the point sits on the last.
            let w: [f32; 3] =
                std::array::from_fn(
                    |k| {
                        if (p[k] >> 32) as usize > i0[k] { 1.0 } else { frac(p[k]) }
                    },
                );
            *o = self.trilinear(i0[0] * sz + i0[1] * sy + i0[2], w);
            if mask {
                // Nearest: round half up.
                let k: [usize; 3] = std::array::from_fn(|k| ((p[k] + (1 << 31)) >> 32) as usize);
                *om = self.mask[k[0] * sz + k[1] * sy + k[2]];
            }
            for (qk, sk) in q.iter_mut().zip(step) {
                *qk += sk;
            }
        }
    }
}

/// [`Grid::row_inside`]'s image with AVX2: four points at a time, each corner pair (a voxel
/// and the next along x) fetched by one 32-bit gather, with the scalar path's arithmetic
/// in the same order (no fused multiply-add), so the values are the same bit for bit.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Four positions of one axis, 32.32 fixed point, as f64 voxels (exact: they are
    /// non-negative and below 2^52).
    #[target_feature(enable = "avx2")]
    fn voxels(p: __m256i) -> __m256d {
        let magic = _mm256_set1_epi64x(0x4330_0000_0000_0000);
        let two52 = _mm256_set1_pd(4_503_599_627_370_496.0);
        let f = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(p, magic)), two52);
        _mm256_mul_pd(f, _mm256_set1_pd(1.0 / 4_294_967_296.0))
    }

    #[target_feature(enable = "avx2")]
    fn lerp(p: __m128, q: __m128, t: __m128) -> __m128 {
        _mm_add_ps(p, _mm_mul_ps(_mm_sub_ps(q, p), t))
    }

    /// The voxel at each lane's offset and the next one, as f32.
    ///
    /// # Safety
    /// Each `hu[o]` and `hu[o + 1]` exists.
    #[target_feature(enable = "avx2")]
    unsafe fn pair(hu: &[i16], o: __m128i) -> (__m128, __m128) {
        // SAFETY: the caller's; the gather reads the 4 bytes of hu[o], hu[o + 1].
        let g = unsafe { _mm_i32gather_epi32::<2>(hu.as_ptr() as *const i32, o) };
        let low = _mm_srai_epi32::<16>(_mm_slli_epi32::<16>(g));
        (_mm_cvtepi32_ps(low), _mm_cvtepi32_ps(_mm_srai_epi32::<16>(g)))
    }

    /// Trilinear values of the points `q + j step`, j = 0..out.len(), into `out`.
    ///
    /// # Safety
    /// The CPU has AVX2; every point's lower voxel `b` (z, y, x) has
    /// `b + sz + sy + 1 < hu.len()`, and `hu.len() < 2^30`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn trilinear_row(
        hu: &[i16],
        sy: usize,
        sz: usize,
        q: [i64; 3],
        step: [i64; 3],
        out: &mut [f32],
    ) {
        let lanes = |k: usize| {
            _mm256_set_epi64x(q[k] + 3 * step[k], q[k] + 2 * step[k], q[k] + step[k], q[k])
        };
        let mut p = [lanes(0), lanes(1), lanes(2)];
        let inc = step.map(|s| _mm256_set1_epi64x(4 * s));
        let (vy, vz) = (_mm_set1_epi32(sy as i32), _mm_set1_epi32(sz as i32));
        let done = out.len() / 4 * 4;
        let mut chunks = out.chunks_exact_mut(4);
        for o in &mut chunks {
            let f = [voxels(p[0]), voxels(p[1]), voxels(p[2])];
            let fl = [_mm256_floor_pd(f[0]), _mm256_floor_pd(f[1]), _mm256_floor_pd(f[2])];
            let w = [
                _mm256_cvtpd_ps(_mm256_sub_pd(f[0], fl[0])),
                _mm256_cvtpd_ps(_mm256_sub_pd(f[1], fl[1])),
                _mm256_cvtpd_ps(_mm256_sub_pd(f[2], fl[2])),
            ];
            let i = [
                _mm256_cvttpd_epi32(fl[0]),
                _mm256_cvttpd_epi32(fl[1]),
                _mm256_cvttpd_epi32(fl[2]),
            ];
            let b = _mm_add_epi32(
                _mm_add_epi32(_mm_mullo_epi32(i[0], vz), _mm_mullo_epi32(i[1], vy)),
                i[2],
            );
            // SAFETY: the caller's: b, b + sy, b + sz and b + sz + sy each have the next
            // voxel in `hu`.
            let (c00, c01, c10, c11) = unsafe {
                (
                    pair(hu, b),
                    pair(hu, _mm_add_epi32(b, vy)),
                    pair(hu, _mm_add_epi32(b, vz)),
                    pair(hu, _mm_add_epi32(b, _mm_add_epi32(vz, vy))),
                )
            };
            let x00 = lerp(c00.0, c00.1, w[2]);
            let x01 = lerp(c01.0, c01.1, w[2]);
            let x10 = lerp(c10.0, c10.1, w[2]);
            let x11 = lerp(c11.0, c11.1, w[2]);
            let v = lerp(lerp(x00, x01, w[1]), lerp(x10, x11, w[1]), w[0]);
            // SAFETY: `o` holds 4 f32.
            unsafe { _mm_storeu_ps(o.as_mut_ptr(), v) };
            for k in 0..3 {
                p[k] = _mm256_add_epi64(p[k], inc[k]);
            }
        }
        // The last points, one at a time, as the scalar path computes them.
        let grid = super::Grid { hu, mask: &[], sy, sz };
        for (j, o) in chunks.into_remainder().iter_mut().enumerate() {
            let p: [i64; 3] = std::array::from_fn(|k| q[k] + (done + j) as i64 * step[k]);
            let i0 = p.map(|v| (v >> 32) as usize);
            *o = grid.trilinear(i0[0] * sz + i0[1] * sy + i0[2], p.map(super::frac));
        }
    }
}

/// The region of the stored grid that a patch of `shape` starting at `start_zyx` reads under
/// the transform `p`: every point of [`SourceMap::at`] with the voxel after it (for the
/// linear weights). It follows from the parameters alone, so warming a patch's chunks ahead
/// of its worker does not build its elastic field: a displacement is at most twice the
/// drawn magnitude ([`elastic::field`] scales the largest to the magnitude, then subtracts
/// the mean, which is no larger), and moves a point by at most `sum_j |A_ij| 2 m_j`.
pub fn region(p: &SpatialParams, shape: [usize; 3], start_zyx: [i64; 3]) -> Region {
    let a = &p.matrix;
    let c = shape.map(|n| (n as f32 - 1.0) / 2.0);
    let last = shape.map(|n| n.saturating_sub(1) as f32);
    let (mut lo, mut hi) = ([f32::INFINITY; 3], [f32::NEG_INFINITY; 3]);
    for k in 0..8 {
        let v: [f32; 3] =
            std::array::from_fn(|ax| if k & (4 >> ax) != 0 { last[ax] } else { 0.0 } - c[ax]);
        for i in 0..3 {
            let q = c[i] + a[i][0] * v[0] + a[i][1] * v[1] + a[i][2] * v[2];
            lo[i] = lo[i].min(q);
            hi[i] = hi[i].max(q);
        }
    }
    if let Some(e) = &p.elastic {
        for i in 0..3 {
            let extra: f32 = (0..3).map(|j| a[i][j].abs() * 2.0 * e.magnitude_zyx[j]).sum();
            lo[i] -= extra;
            hi[i] += extra;
        }
    }
    let first: [i64; 3] = std::array::from_fn(|ax| start_zyx[ax] + lo[ax].floor() as i64);
    let end: [i64; 3] = std::array::from_fn(|ax| start_zyx[ax] + hi[ax].floor() as i64 + 2);
    Region { start_zyx: first, shape_zyx: std::array::from_fn(|ax| (end[ax] - first[ax]) as usize) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row of points that lie inside gives what the general row gives (the clamp and
    /// the edge weight do nothing there), voxel for voxel, image and mask.
    #[test]
    fn rows_inside_equal_general_rows() {
        let r = [9usize, 11, 13];
        let n: usize = r.iter().product();
        let hu: Vec<i16> = (0..n).map(|i| ((i * 7919) % 1400) as i16 - 1000).collect();
        let mask: Vec<u8> = (0..n).map(|i| u8::from(i % 7 == 0)).collect();
        let grid = Grid { hu: &hu, mask: &mask, sy: r[2], sz: r[1] * r[2] };
        let a = [[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        for (q, step) in [
            ([1.25, 2.5, 0.0], [0.1, 0.2, 0.9]),
            ([6.9, 0.0, 11.0], [0.05, 0.7, -0.8]),
            ([0.0, 9.49, 3.3], [0.0, 0.0, 0.6]),
        ] {
            let q: [i64; 3] = q.map(|v: f64| (v * ONE) as i64);
            let step: [i64; 3] = step.map(|v: f64| (v * ONE) as i64);
            let (mut a_img, mut a_m) = (vec![0f32; 11], vec![0u8; 11]);
            let (mut b_img, mut b_m) = (vec![0f32; 11], vec![0u8; 11]);
            grid.row_inside::<true>(q, step, &mut a_img, &mut a_m);
            grid.row_clamped(q, step, &a, None, r, true, &mut b_img, &mut b_m);
            assert_eq!((a_img, a_m), (b_img, b_m));
        }
    }

    #[test]
    fn the_on_box_holds_every_voxel_on() {
        let r = [3usize, 4, 5];
        let mut m = vec![0u8; 60];
        assert_eq!(on_box(&m, r), None);
        m[(4) + 5 + 20] = 1; // (1, 1, 4)
        m[(2 * 4 + 3) * 5 + 1] = 2; // (2, 3, 1)
        assert_eq!(on_box(&m, r), Some(([1, 1, 1], [2, 3, 4])));
    }
}
