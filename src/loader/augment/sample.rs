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
        let (sy, sz) = (r[2], r[1] * r[2]);
        // Points in fixed point (32 fractional bits): a row's first point in floating
        // point, then `step` per x added exactly, so the inner loop has no float-to-integer
        // conversion; the error is below 2^-25 voxel over a row. Points are clamped to
        // [0, len - 1] (the region covers every point: this only absorbs rounding), the
        // lower voxel of the linear weights to len - 2.
        const ONE: f64 = (1u64 << 32) as f64;
        let fixed = |v: f32| (v as f64 * ONE) as i64;
        let top: [i64; 3] = r.map(|v| (v.saturating_sub(1) as i64) << 32);
        let low_max: [usize; 3] = r.map(|v| v.saturating_sub(2));
        let a = self.params.matrix;
        let step = [a[0][2], a[1][2], a[2][2]].map(|v| (v as f64 * ONE).round() as i64);
        let frac = |v: i64| (v & 0xffff_ffff) as f32 * (1.0 / ONE as f32);
        let mut i = 0;
        for z in 0..self.shape[0] {
            for y in 0..self.shape[1] {
                let v = [z as f32 - self.c[0], y as f32 - self.c[1], -self.c[2]];
                let mut q: [i64; 3] = std::array::from_fn(|k| {
                    fixed(self.c[k] + off[k] + a[k][0] * v[0] + a[k][1] * v[1] + a[k][2] * v[2])
                });
                for _ in 0..self.shape[2] {
                    let mut p = q;
                    if let Some(f) = &self.field {
                        let d = f[i];
                        for (k, pk) in p.iter_mut().enumerate() {
                            *pk += fixed(a[k][0] * d[0] + a[k][1] * d[1] + a[k][2] * d[2]);
                        }
                    }
                    let p: [i64; 3] = std::array::from_fn(|k| p[k].clamp(0, top[k]));
                    let i0: [usize; 3] =
                        std::array::from_fn(|k| ((p[k] >> 32) as usize).min(low_max[k]));
                    // The weight past the lower voxel: 1 where the point sits on the last.
                    let w: [f32; 3] = std::array::from_fn(|k| {
                        if (p[k] >> 32) as usize > i0[k] { 1.0 } else { frac(p[k]) }
                    });
                    let b = i0[0] * sz + i0[1] * sy + i0[2];
                    let cube = &hu[b..b + sz + sy + 2];
                    let at = |k: usize| cube[k] as f32;
                    let l = |p: f32, q: f32, t: f32| p + (q - p) * t;
                    let x00 = l(at(0), at(1), w[2]);
                    let x01 = l(at(sy), at(sy + 1), w[2]);
                    let x10 = l(at(sz), at(sz + 1), w[2]);
                    let x11 = l(at(sz + sy), at(sz + sy + 1), w[2]);
                    img[i] = l(l(x00, x01, w[1]), l(x10, x11, w[1]), w[0]);
                    // Nearest: round half up.
                    let k: [usize; 3] =
                        std::array::from_fn(|k| ((p[k] + (1 << 31)) >> 32) as usize);
                    m[i] = mask[k[0] * sz + k[1] * sy + k[2]];
                    for (qk, sk) in q.iter_mut().zip(step) {
                        *qk += sk;
                    }
                    i += 1;
                }
            }
        }
        (img, m)
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
