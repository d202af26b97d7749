//! Sampling a spatially transformed patch ([`super::spatial`]) from the region of the
//! stored grid it covers: the image trilinearly (the HU of the eight voxels around the
//! point, weighted by distance, as SimpleITK's linear interpolator and scipy's
//! `map_coordinates(order=1)`) or, where chosen, by cubic B-spline ([`super::bspline`],
//! scipy's `order=3`), the mask by nearest neighbour (a point exactly halfway
//! between two voxels takes the higher index, as ITK rounds half up). The region is read
//! through the loader's cache like any patch, so outside the scan the image is the
//! store's fill value (air) and the mask 0, as at the edge of an unaugmented patch.

use super::spatial::{Interpolation, SpatialParams};
use super::window::Window;
use super::{bspline, elastic};
use crate::store::Region;
use std::ops::Range;

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

    /// The map of this transform followed by mirroring the patch along the axes of
    /// `flip`: output voxel `o` reads where voxel `flip(o)` of this map reads, which is
    /// this map with the matrix's columns of the flipped axes negated (the patch centre is
    /// the mirror's centre: `flip(o) - c = -(o - c)` on a flipped axis). So a moved patch
    /// is sampled mirrored instead of sampled, then mirrored. The same points, rounded
    /// alike up to the order of a row's points. None where an elastic field was drawn (its
    /// displacements belong to voxels, not to the matrix).
    pub fn mirrored(&self, flip: [bool; 3]) -> Option<SourceMap> {
        if self.field.is_some() {
            return None;
        }
        let mut params = self.params;
        for row in &mut params.matrix {
            for (j, v) in row.iter_mut().enumerate() {
                if flip[j] {
                    *v = -*v;
                }
            }
        }
        Some(SourceMap { params, ..self.clone() })
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
        let n: usize = self.shape.iter().product();
        let (mut img, mut m) = (vec![0f32; n], vec![0u8; n]);
        self.sample_into(start_zyx, region, hu, mask, None, &mut img, &mut m);
        (img, m)
    }

    /// [`SourceMap::sample`] into `img` and `m` (the patch's voxels, C order), each
    /// image value through `window` where one is given (the loader writes a patch straight
    /// into its batch so), the mask as `M`. Rows of the mask that meet no voxel of the
    /// region's mask that is on are not written: pass `m` zeroed.
    ///
    /// # Panics
    /// Where `hu` or `mask` does not hold exactly the region's voxels, or `img` or `m` not
    /// exactly the patch's.
    #[allow(clippy::too_many_arguments)]
    pub fn sample_into<M: Copy + From<u8>>(
        &self,
        start_zyx: [i64; 3],
        region: Region,
        hu: &[i16],
        mask: &[u8],
        window: Option<Window>,
        img: &mut [f32],
        m: &mut [M],
    ) {
        let on = on_box(mask, region.shape_zyx);
        self.sample_into_within(start_zyx, region, hu, mask, on, window, img, m);
    }

    /// [`SourceMap::sample_into`] given `on`, the box of the region's mask voxels that
    /// are on ([`on_box`] of `mask`, or None where none is), which the caller knows
    /// without searching the region: the loader's rasterised spheres say where they are,
    /// and a search of a moved patch's region (several times the patch) cost as much as
    /// sampling it. Mask voxels on outside `on` may be missed.
    ///
    /// # Panics
    /// As [`SourceMap::sample_into`].
    #[allow(clippy::too_many_arguments)]
    pub fn sample_into_within<M: Copy + From<u8>>(
        &self,
        start_zyx: [i64; 3],
        region: Region,
        hu: &[i16],
        mask: &[u8],
        on: Option<OnBox>,
        window: Option<Window>,
        img: &mut [f32],
        m: &mut [M],
    ) {
        let r = region.shape_zyx;
        let off: [f32; 3] = std::array::from_fn(|a| (start_zyx[a] - region.start_zyx[a]) as f32);
        let n: usize = self.shape.iter().product();
        assert!(
            img.len() == n && m.len() == n,
            "sample: the patch {:?} has {n} voxels; the image has {}, the mask {}",
            self.shape,
            img.len(),
            m.len()
        );
        // A row of points that stays off the box of the mask voxels that are on (most
        // rows: a nodule is small; a negative has none) samples no mask.
        let any_mask = on.is_some();
        // The SIMD rows rely on it (their gathers are unchecked).
        let voxels: usize = r.iter().product();
        assert!(
            hu.len() == voxels && mask.len() == voxels,
            "sample: the region {r:?} has {voxels} voxels; hu has {}, mask {}",
            hu.len(),
            mask.len()
        );
        let grid = Grid { hu, mask, sy: r[2], sz: r[1] * r[2] };
        if self.params.interpolation == Interpolation::BSpline3 {
            self.sample_bspline(&grid, off, r, any_mask, window, img, m);
            return;
        }
        if let Some(axes) = self.separable(off, r) {
            separable::sample(&grid, &axes, self.shape, on, window, img, m);
            return;
        }
        self.sample_rows(&grid, off, r, on, window, img, m);
    }

    /// [`SourceMap::sample_into`]'s trilinear image, row by row (any linear map), from
    /// the region of shape `r` whose mask is on within `on`.
    #[allow(clippy::too_many_arguments)]
    fn sample_rows<M: Copy + From<u8>>(
        &self,
        grid: &Grid,
        off: [f32; 3],
        r: [usize; 3],
        on: Option<OnBox>,
        window: Option<Window>,
        img: &mut [f32],
        m: &mut [M],
    ) {
        let any_mask = on.is_some();
        // Point j of a row is `q + j step` in f32 (each computed afresh, no running sum,
        // so no error builds up along a row: below 2e-5 voxel in a region of a few hundred
        // voxels, far inside the 1e-3 of the value range the tests allow).
        let a = self.params.matrix;
        let step = [a[0][2], a[1][2], a[2][2]];
        // A point is inside when its lower voxel is at most len - 2 on every axis, so all
        // eight voxels of its cube are in the region with no clamping.
        let inside = r.map(|v| v as f32 - 1.0);
        let inv = step.map(|s| if s == 0.0 { 0.0 } else { 1.0 / s });
        let nx = self.shape[2];
        let mut i = 0;
        for z in 0..self.shape[0] {
            for y in 0..self.shape[1] {
                let v = [z as f32 - self.c[0], y as f32 - self.c[1], -self.c[2]];
                let q: [f32; 3] = std::array::from_fn(|k| {
                    self.c[k] + off[k] + a[k][0] * v[0] + a[k][1] * v[1] + a[k][2] * v[2]
                });
                let (out, out_m) = (&mut img[i..i + nx], &mut m[i..i + nx]);
                // The row is a segment whose points are monotonic in j (so are rounded
                // products and sums), so it lies inside when both its ends do.
                let last: [f32; 3] = std::array::from_fn(|k| point(q[k], step[k], nx - 1));
                let ends_inside =
                    (0..3).all(|k| q[k].min(last[k]) >= 0.0 && q[k].max(last[k]) < inside[k]);
                match (&self.field, ends_inside) {
                    (None, true) => {
                        let span = on.and_then(|b| near_box(q, inv, nx, b));
                        grid.row_inside(q, step, window, out, span.map(|s| (out_m, s)))
                    }
                    _ => {
                        let field = self.field.as_deref().map(|f| &f[i..i + nx]);
                        let row = Row { q, step, a: &a, field, r, mask: any_mask, window };
                        grid.row_clamped(&row, out, out_m);
                    }
                }
                i += nx;
            }
        }
    }

    /// Where the map moves each axis on its own (scaling and mirroring, no rotation, no
    /// elastic field) and every point lies inside the region: each axis's points, as the
    /// rows below compute them (the same sums in the same order; the matrix's zeros add
    /// only zeros), for [`separable::sample`]. None otherwise.
    fn separable(&self, off: [f32; 3], r: [usize; 3]) -> Option<[separable::Axis; 3]> {
        let a = self.params.matrix;
        let diagonal = (0..3).all(|i| (0..3).all(|j| i == j || a[i][j] == 0.0));
        if self.field.is_some() || !diagonal {
            return None;
        }
        let step = [a[0][2], a[1][2], a[2][2]];
        let row_start = |z: usize, y: usize, k: usize| {
            let v = [z as f32 - self.c[0], y as f32 - self.c[1], -self.c[2]];
            self.c[k] + off[k] + a[k][0] * v[0] + a[k][1] * v[1] + a[k][2] * v[2]
        };
        let z: Vec<f32> =
            (0..self.shape[0]).map(|z| point(row_start(z, 0, 0), step[0], 0)).collect();
        let y: Vec<f32> =
            (0..self.shape[1]).map(|y| point(row_start(0, y, 1), step[1], 0)).collect();
        let q = row_start(0, 0, 2);
        let x: Vec<f32> = (0..self.shape[2]).map(|j| point(q, step[2], j)).collect();
        let axes = [z, y, x];
        // Inside as for a row: the lower voxel at most len - 2 on every axis.
        let inside = (0..3).all(|k| axes[k].iter().all(|&p| p >= 0.0 && p < r[k] as f32 - 1.0));
        inside.then(|| axes.map(|p| separable::Axis::new(&p)))
    }

    /// [`SourceMap::sample`]'s rows with the image by cubic B-spline ([`bspline`]): every
    /// point through the general arithmetic (the elastic field, a clamp to the region that
    /// only absorbs rounding), the mask by nearest neighbour as in the linear rows.
    #[allow(clippy::too_many_arguments)]
    fn sample_bspline<M: Copy + From<u8>>(
        &self,
        grid: &Grid,
        off: [f32; 3],
        r: [usize; 3],
        any_mask: bool,
        window: Option<Window>,
        img: &mut [f32],
        m: &mut [M],
    ) {
        let coef = bspline::coefficients(grid.hu, r);
        let spline = bspline::Spline::new(&coef, r);
        let top: [f32; 3] = r.map(|v| v.saturating_sub(1) as f32);
        let mut i = 0;
        for z in 0..self.shape[0] {
            for y in 0..self.shape[1] {
                for x in 0..self.shape[2] {
                    let d = self.field.as_ref().map_or([0.0; 3], |f| f[i]);
                    let q = self.at([z, y, x], d);
                    let p: [f32; 3] = std::array::from_fn(|k| clamp_to(q[k] + off[k], top[k]));
                    img[i] = windowed(spline.at(p), window);
                    if any_mask {
                        m[i] = M::from(grid.mask[grid.nearest(p)]);
                    }
                    i += 1;
                }
            }
        }
        bspline::release(coef);
    }
}

/// `floor(v)` of a non-negative `v` (a point inside or clamped to the region): truncation,
/// which the plain x86-64 build does in one instruction where `f32::floor` calls libm.
#[inline(always)]
fn floor(v: f32) -> usize {
    v as usize
}

/// `v` clamped to `0..=top` by compare-and-select, not `f32::clamp` (which checks its
/// bounds and orders NaN): a NaN, which a validated transform cannot produce, lands on 0
/// rather than indexing out of the region.
#[inline(always)]
fn clamp_to(v: f32, top: f32) -> f32 {
    let v = if v > 0.0 { v } else { 0.0 };
    if v < top { v } else { top }
}

/// The points `j` of a row (`q + j step`, j < `n`; `inv` is `1 / step`, 0 where the step
/// is) whose nearest voxel may lie in box `b`, as a span that holds them all (it may hold
/// more): a point's nearest voxel is within half a voxel of it, so the span is where the
/// row runs within one voxel of the box on every axis, widened by a point at each end
/// for rounding. None where the row never comes that near. Casts, not `floor` (a libm
/// call in the plain build, twice per axis of every row).
#[inline(always)]
fn near_box(q: [f32; 3], inv: [f32; 3], n: usize, (lo, hi): OnBox) -> Option<Range<usize>> {
    let (mut first, mut end) = (0f32, n as f32);
    for k in 0..3 {
        let (a, b) = (lo[k] as f32 - 1.0 - q[k], hi[k] as f32 + 1.0 - q[k]);
        if inv[k] == 0.0 {
            if a > 0.0 || b < 0.0 {
                return None;
            }
            continue;
        }
        let (t0, t1) = (a * inv[k], b * inv[k]);
        first = first.max(t0.min(t1) - 1.0);
        end = end.min(t0.max(t1) + 2.0);
    }
    // first >= 0, and the cast truncates toward zero: a floor; end's truncation stays
    // above the last point within reach (the + 2).
    (first < end).then_some(first as usize..end as usize)
}

/// Point `j` of a row that starts at `q` and moves `step` per voxel (one axis).
#[inline(always)]
fn point(q: f32, step: f32, j: usize) -> f32 {
    q + j as f32 * step
}

/// `v` through `window`, where there is one.
#[inline(always)]
fn windowed(v: f32, window: Option<Window>) -> f32 {
    window.map_or(v, |w| w.apply(v))
}

/// Linear interpolation from `p` to `q` by `t`.
#[inline]
fn lerp(p: f32, q: f32, t: f32) -> f32 {
    p + (q - p) * t
}

/// A box of voxels: the first and the last (inclusive), z, y, x.
pub type OnBox = ([usize; 3], [usize; 3]);

/// Grows `b` (None: empty) to hold the box from `lo` to `hi`.
#[inline]
pub fn grow(b: &mut Option<OnBox>, lo: [usize; 3], hi: [usize; 3]) {
    let (l, h) = b.get_or_insert((lo, hi));
    *l = std::array::from_fn(|k| l[k].min(lo[k]));
    *h = std::array::from_fn(|k| h[k].max(hi[k]));
}

/// The smallest box holding every voxel of `mask` (C order, shape `r`) that is not 0;
/// None when all are 0.
pub fn on_box(mask: &[u8], r: [usize; 3]) -> Option<OnBox> {
    let mut b: Option<OnBox> = None;
    for (row_index, row) in mask.chunks_exact(r[2].max(1)).enumerate() {
        // Most rows are all 0: an OR over the row (vectorised, no early exit) says so far
        // faster than a search for the first voxel on, which goes byte by byte.
        if row.iter().fold(0u8, |a, &v| a | v) == 0 {
            continue;
        }
        let Some(first) = row.iter().position(|&v| v != 0) else { continue };
        let last = row.iter().rposition(|&v| v != 0).unwrap_or(first);
        let (z, y) = (row_index / r[1].max(1), row_index % r[1].max(1));
        grow(&mut b, [z, y, first], [z, y, last]);
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

    /// One output row whose points all lie inside (no clamping needed): point j is
    /// `q + j step`, its value through `window` where given. Where `mask` is given (the
    /// row's mask and a span of its points), the mask by nearest neighbour (round half
    /// up) at the points of the span at least (SIMD writes whole lanes around it); the
    /// rest of the mask row is not written.
    fn row_inside<M: Copy + From<u8>>(
        &self,
        q: [f32; 3],
        step: [f32; 3],
        window: Option<Window>,
        out: &mut [f32],
        mut mask: Option<(&mut [M], Range<usize>)>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if self.hu.len() < 1 << 30 {
            // SAFETY (both): the CPU has the features named; every point of the row lies
            // inside (the caller checked both ends of the segment), so each point's lower
            // voxel `b` has `b + sz + sy + 1 < hu.len()`; `hu.len() < 2^30` keeps the byte
            // offsets of the gathers within i32.
            if std::arch::is_x86_feature_detected!("avx512f") {
                unsafe { simd::trilinear_row_avx512(self, q, step, window, out, mask) };
                return;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                unsafe { simd::trilinear_row(self, q, step, window, out, mask) };
                return;
            }
        }
        for (j, o) in out.iter_mut().enumerate() {
            let p = std::array::from_fn(|k| point(q[k], step[k], j));
            *o = windowed(self.trilinear_at(p), window);
            if let Some((m, span)) = mask.as_mut()
                && span.contains(&j)
            {
                m[j] = M::from(self.mask[self.nearest(p)]);
            }
        }
    }

    /// The voxel nearest a point that lies inside: the lower voxel, one further on each
    /// axis whose fraction is at least 1/2 (round half up, as ITK rounds; the fraction
    /// `p - floor(p)` is exact in f32).
    #[inline(always)]
    fn nearest(&self, p: [f32; 3]) -> usize {
        let k: [usize; 3] = std::array::from_fn(|k| {
            let f = floor(p[k]);
            f + usize::from(p[k] - f as f32 >= 0.5)
        });
        k[0] * self.sz + k[1] * self.sy + k[2]
    }

    /// The trilinear value at a point that lies inside.
    #[inline(always)]
    fn trilinear_at(&self, p: [f32; 3]) -> f32 {
        let i0 = p.map(floor);
        let f = i0.map(|v| v as f32);
        self.trilinear(
            i0[0] * self.sz + i0[1] * self.sy + i0[2],
            std::array::from_fn(|k| p[k] - f[k]),
        )
    }

    /// One output row in general ([`Row`]): points displaced by the elastic field where
    /// there is one, and clamped to the region (the region covers every point: the clamp
    /// only absorbs rounding), the lower voxel of the linear weights to len - 2.
    fn row_clamped<M: Copy + From<u8>>(&self, row: &Row, out: &mut [f32], out_m: &mut [M]) {
        let (sy, sz, a) = (self.sy, self.sz, row.a);
        let top: [f32; 3] = row.r.map(|v| v.saturating_sub(1) as f32);
        let low_max: [usize; 3] = row.r.map(|v| v.saturating_sub(2));
        for (x, (o, om)) in out.iter_mut().zip(out_m.iter_mut()).enumerate() {
            let mut p: [f32; 3] = std::array::from_fn(|k| point(row.q[k], row.step[k], x));
            if let Some(f) = row.field {
                let d = f[x];
                for (k, pk) in p.iter_mut().enumerate() {
                    *pk += a[k][0] * d[0] + a[k][1] * d[1] + a[k][2] * d[2];
                }
            }
            let p: [f32; 3] = std::array::from_fn(|k| clamp_to(p[k], top[k]));
            let f = p.map(floor);
            let i0: [usize; 3] = std::array::from_fn(|k| f[k].min(low_max[k]));
            // The weight past the lower voxel: 1 where the point sits on the last.
            let w: [f32; 3] =
                std::array::from_fn(|k| if f[k] > i0[k] { 1.0 } else { p[k] - f[k] as f32 });
            *o = windowed(self.trilinear(i0[0] * sz + i0[1] * sy + i0[2], w), row.window);
            if row.mask {
                *om = M::from(self.mask[self.nearest(p)]);
            }
        }
    }
}

/// One output row of [`Grid::row_clamped`]: point j is `q + j step`, displaced by
/// `a` times `field[j]` where there is a field; `r` is the region's shape; the mask is
/// sampled where `mask`; values go through `window` where given.
struct Row<'a> {
    q: [f32; 3],
    step: [f32; 3],
    a: &'a [[f32; 3]; 3],
    field: Option<&'a [[f32; 3]]>,
    r: [usize; 3],
    mask: bool,
    window: Option<Window>,
}

/// [`Grid::row_inside`] in SIMD: eight (AVX2) or sixteen (AVX-512) points at a time, each
/// corner pair (a voxel and the next along x) fetched by one 32-bit gather, the mask's
/// nearest voxel from the same lanes, with the scalar path's arithmetic in the same order
/// (no fused multiply-add; the window's clamp as max then min), so the values are the
/// same bit for bit.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::Window;
    use std::arch::x86_64::*;
    use std::ops::Range;

    #[target_feature(enable = "avx2")]
    pub(super) fn lerp(p: __m256, q: __m256, t: __m256) -> __m256 {
        _mm256_add_ps(p, _mm256_mul_ps(_mm256_sub_ps(q, p), t))
    }

    /// The voxel at each lane's offset and the next one, as f32.
    ///
    /// # Safety
    /// Each `hu[o]` and `hu[o + 1]` exists.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pair(hu: &[i16], o: __m256i) -> (__m256, __m256) {
        // SAFETY: the caller's; the gather reads the 4 bytes of hu[o], hu[o + 1].
        let g = unsafe { _mm256_i32gather_epi32::<2>(hu.as_ptr() as *const i32, o) };
        let low = _mm256_srai_epi32::<16>(_mm256_slli_epi32::<16>(g));
        (_mm256_cvtepi32_ps(low), _mm256_cvtepi32_ps(_mm256_srai_epi32::<16>(g)))
    }

    /// The window's map of eight values ([`Window::apply`]'s operations in its order).
    #[target_feature(enable = "avx2")]
    fn window8(v: __m256, w: &Window) -> __m256 {
        let x = _mm256_add_ps(_mm256_mul_ps(v, _mm256_set1_ps(w.scale)), _mm256_set1_ps(w.shift));
        let x = _mm256_mul_ps(_mm256_sub_ps(x, _mm256_set1_ps(w.lo)), _mm256_set1_ps(w.inv));
        _mm256_min_ps(_mm256_max_ps(x, _mm256_setzero_ps()), _mm256_set1_ps(1.0))
    }

    /// Trilinear values of the points `q + j step`, j = 0..out.len(), into `out` (through
    /// `window` where given), and where `nearest` is given (the row's mask and a span of
    /// its points), the mask's value at each point's nearest voxel into it, for the lanes
    /// that meet the span.
    ///
    /// # Safety
    /// The CPU has AVX2; every point's lower voxel `b` (z, y, x) has
    /// `b + sz + sy + 1 < hu.len()`, and `hu.len() < 2^30`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn trilinear_row<M: Copy + From<u8>>(
        g: &super::Grid,
        q: [f32; 3],
        step: [f32; 3],
        window: Option<Window>,
        out: &mut [f32],
        mut nearest: Option<(&mut [M], Range<usize>)>,
    ) {
        let (hu, sy, sz) = (g.hu, g.sy, g.sz);
        let lane = _mm256_setr_ps(0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0);
        let (vq, vs) = (q.map(|v| _mm256_set1_ps(v)), step.map(|v| _mm256_set1_ps(v)));
        let (vy, vz) = (_mm256_set1_epi32(sy as i32), _mm256_set1_epi32(sz as i32));
        let done = out.len() / 8 * 8;
        let mut chunks = out.chunks_exact_mut(8);
        for (c, o) in (&mut chunks).enumerate() {
            // j as f32 is exact (a row is far shorter than 2^24).
            let j = _mm256_add_ps(_mm256_set1_ps((c * 8) as f32), lane);
            let p: [__m256; 3] =
                std::array::from_fn(|k| _mm256_add_ps(vq[k], _mm256_mul_ps(j, vs[k])));
            let fl = p.map(|v| _mm256_floor_ps(v));
            let w: [__m256; 3] = std::array::from_fn(|k| _mm256_sub_ps(p[k], fl[k]));
            let i = fl.map(|v| _mm256_cvttps_epi32(v));
            let b = _mm256_add_epi32(
                _mm256_add_epi32(_mm256_mullo_epi32(i[0], vz), _mm256_mullo_epi32(i[1], vy)),
                i[2],
            );
            // SAFETY: the caller's: b, b + sy, b + sz and b + sz + sy each have the next
            // voxel in `hu`.
            let (c00, c01, c10, c11) = unsafe {
                (
                    pair(hu, b),
                    pair(hu, _mm256_add_epi32(b, vy)),
                    pair(hu, _mm256_add_epi32(b, vz)),
                    pair(hu, _mm256_add_epi32(b, _mm256_add_epi32(vz, vy))),
                )
            };
            let x00 = lerp(c00.0, c00.1, w[2]);
            let x01 = lerp(c01.0, c01.1, w[2]);
            let x10 = lerp(c10.0, c10.1, w[2]);
            let x11 = lerp(c11.0, c11.1, w[2]);
            let v = lerp(lerp(x00, x01, w[1]), lerp(x10, x11, w[1]), w[0]);
            let v = match &window {
                Some(win) => window8(v, win),
                None => v,
            };
            // SAFETY: `o` holds 8 f32.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), v) };
            if let Some((m, span)) = nearest.as_mut()
                && c * 8 < span.end
                && c * 8 + 8 > span.start
            {
                // The lower voxel, one further on each axis whose weight is at least 1/2.
                let half = _mm256_set1_ps(0.5);
                let up = w.map(|v| _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GE_OQ>(v, half)));
                // A true comparison is all ones: and-ed with a stride, it is the stride.
                let n = _mm256_add_epi32(
                    _mm256_add_epi32(b, _mm256_and_si256(up[0], vz)),
                    _mm256_add_epi32(
                        _mm256_and_si256(up[1], vy),
                        _mm256_and_si256(up[2], _mm256_set1_epi32(1)),
                    ),
                );
                let mut idx = [0i32; 8];
                // SAFETY: `idx` holds 8 i32.
                unsafe { _mm256_storeu_si256(idx.as_mut_ptr() as *mut __m256i, n) };
                for (t, &i) in idx.iter().enumerate() {
                    m[c * 8 + t] = M::from(g.mask[i as usize]);
                }
            }
        }
        rest(g, q, step, window, done, chunks.into_remainder(), nearest);
    }

    /// The points from `done` on, one at a time, as the scalar path computes them.
    #[inline(always)]
    fn rest<M: Copy + From<u8>>(
        g: &super::Grid,
        q: [f32; 3],
        step: [f32; 3],
        window: Option<Window>,
        done: usize,
        out: &mut [f32],
        mut nearest: Option<(&mut [M], Range<usize>)>,
    ) {
        for (j, o) in out.iter_mut().enumerate() {
            let p = std::array::from_fn(|k| super::point(q[k], step[k], done + j));
            *o = super::windowed(g.trilinear_at(p), window);
            if let Some((m, span)) = nearest.as_mut()
                && span.contains(&(done + j))
            {
                m[done + j] = M::from(g.mask[g.nearest(p)]);
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn lerp16(p: __m512, q: __m512, t: __m512) -> __m512 {
        _mm512_add_ps(p, _mm512_mul_ps(_mm512_sub_ps(q, p), t))
    }

    /// [`pair`] for sixteen lanes.
    ///
    /// # Safety
    /// Each `hu[o]` and `hu[o + 1]` exists.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pair16(hu: &[i16], o: __m512i) -> (__m512, __m512) {
        // SAFETY: the caller's; the gather reads the 4 bytes of hu[o], hu[o + 1].
        let g = unsafe { _mm512_i32gather_epi32::<2>(o, hu.as_ptr() as *const i32) };
        let low = _mm512_srai_epi32::<16>(_mm512_slli_epi32::<16>(g));
        (_mm512_cvtepi32_ps(low), _mm512_cvtepi32_ps(_mm512_srai_epi32::<16>(g)))
    }

    /// [`window8`] for sixteen lanes.
    #[target_feature(enable = "avx512f")]
    fn window16(v: __m512, w: &Window) -> __m512 {
        let x = _mm512_add_ps(_mm512_mul_ps(v, _mm512_set1_ps(w.scale)), _mm512_set1_ps(w.shift));
        let x = _mm512_mul_ps(_mm512_sub_ps(x, _mm512_set1_ps(w.lo)), _mm512_set1_ps(w.inv));
        _mm512_min_ps(_mm512_max_ps(x, _mm512_setzero_ps()), _mm512_set1_ps(1.0))
    }

    /// [`trilinear_row`] sixteen points at a time.
    ///
    /// # Safety
    /// As [`trilinear_row`], with AVX-512F for AVX2.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn trilinear_row_avx512<M: Copy + From<u8>>(
        g: &super::Grid,
        q: [f32; 3],
        step: [f32; 3],
        window: Option<Window>,
        out: &mut [f32],
        mut nearest: Option<(&mut [M], Range<usize>)>,
    ) {
        const L: usize = 16;
        let (hu, sy, sz) = (g.hu, g.sy, g.sz);
        let lanes: [f32; L] = std::array::from_fn(|k| k as f32);
        // SAFETY: `lanes` holds 16 f32.
        let lane = unsafe { _mm512_loadu_ps(lanes.as_ptr()) };
        let (vq, vs) = (q.map(|v| _mm512_set1_ps(v)), step.map(|v| _mm512_set1_ps(v)));
        let (vy, vz) = (_mm512_set1_epi32(sy as i32), _mm512_set1_epi32(sz as i32));
        let done = out.len() / L * L;
        let mut chunks = out.chunks_exact_mut(L);
        for (c, o) in (&mut chunks).enumerate() {
            // j as f32 is exact (a row is far shorter than 2^24).
            let j = _mm512_add_ps(_mm512_set1_ps((c * L) as f32), lane);
            let p: [__m512; 3] =
                std::array::from_fn(|k| _mm512_add_ps(vq[k], _mm512_mul_ps(j, vs[k])));
            // Round toward minus infinity, exceptions suppressed: `floor`.
            let fl = p.map(|v| _mm512_roundscale_ps::<0x09>(v));
            let w: [__m512; 3] = std::array::from_fn(|k| _mm512_sub_ps(p[k], fl[k]));
            let i = fl.map(|v| _mm512_cvttps_epi32(v));
            let b = _mm512_add_epi32(
                _mm512_add_epi32(_mm512_mullo_epi32(i[0], vz), _mm512_mullo_epi32(i[1], vy)),
                i[2],
            );
            // SAFETY: the caller's: b, b + sy, b + sz and b + sz + sy each have the next
            // voxel in `hu`.
            let (c00, c01, c10, c11) = unsafe {
                (
                    pair16(hu, b),
                    pair16(hu, _mm512_add_epi32(b, vy)),
                    pair16(hu, _mm512_add_epi32(b, vz)),
                    pair16(hu, _mm512_add_epi32(b, _mm512_add_epi32(vz, vy))),
                )
            };
            let x00 = lerp16(c00.0, c00.1, w[2]);
            let x01 = lerp16(c01.0, c01.1, w[2]);
            let x10 = lerp16(c10.0, c10.1, w[2]);
            let x11 = lerp16(c11.0, c11.1, w[2]);
            let v = lerp16(lerp16(x00, x01, w[1]), lerp16(x10, x11, w[1]), w[0]);
            let v = match &window {
                Some(win) => window16(v, win),
                None => v,
            };
            // SAFETY: `o` holds 16 f32.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), v) };
            if let Some((m, span)) = nearest.as_mut()
                && c * L < span.end
                && c * L + L > span.start
            {
                // The lower voxel, one further on each axis whose weight is at least 1/2.
                let half = _mm512_set1_ps(0.5);
                let up = w.map(|v| _mm512_cmp_ps_mask::<_CMP_GE_OQ>(v, half));
                let n = _mm512_add_epi32(
                    _mm512_add_epi32(b, _mm512_maskz_mov_epi32(up[0], vz)),
                    _mm512_add_epi32(
                        _mm512_maskz_mov_epi32(up[1], vy),
                        _mm512_maskz_mov_epi32(up[2], _mm512_set1_epi32(1)),
                    ),
                );
                let mut idx = [0i32; L];
                // SAFETY: `idx` holds 16 i32.
                unsafe { _mm512_storeu_si512(idx.as_mut_ptr() as *mut __m512i, n) };
                for (t, &i) in idx.iter().enumerate() {
                    m[c * L + t] = M::from(g.mask[i as usize]);
                }
            }
        }
        rest(g, q, step, window, done, chunks.into_remainder(), nearest);
    }
}

/// Trilinear sampling where each axis moves on its own (a patch scaled, mirrored or not,
/// and not rotated), one axis at a time: the pairs along x of every source row the
/// points need, interpolated once per row (one gather per point of the row rather than
/// four), then along y, then along z. These are the general rows' interpolations in their order (x within each
/// of the four corner pairs, then y, then z; no fused multiply-add), so the values are
/// the same bit for bit; a scaled patch costs about two thirds of what it did (the
/// augment bench: 0.39 -> 0.26 ms).
mod separable {
    use super::super::scratch;
    use super::{Grid, OnBox, Window, lerp};

    /// One axis's points: the lower voxel, the weight past it, the nearest voxel.
    #[derive(Debug)]
    pub struct Axis {
        lo: Vec<usize>,
        w: Vec<f32>,
        near: Vec<usize>,
    }

    impl Axis {
        /// The axis of `points` (each non-negative and inside the region).
        pub fn new(points: &[f32]) -> Axis {
            let lo: Vec<usize> = points.iter().map(|&p| super::floor(p)).collect();
            let w: Vec<f32> = points.iter().zip(&lo).map(|(&p, &l)| p - l as f32).collect();
            let near = lo.iter().zip(&w).map(|(&l, &w)| l + usize::from(w >= 0.5)).collect();
            Axis { lo, w, near }
        }

        /// The source positions the points read (each lower voxel and the one after),
        /// ascending, and for each point the index of its lower voxel among them.
        fn rows(&self) -> (Vec<usize>, Vec<usize>) {
            let mut used: Vec<usize> = self.lo.iter().flat_map(|&l| [l, l + 1]).collect();
            used.sort_unstable();
            used.dedup();
            // `used` holds each l and l + 1, so l + 1's index is l's plus one.
            let at = self.lo.iter().map(|l| used.partition_point(|u| u < l)).collect();
            (used, at)
        }
    }

    /// Samples the patch of `shape` (image through `window` where given; the mask by
    /// nearest neighbour on the rows that meet `on`, the box of the region's mask voxels
    /// that are on) into `img` and `m` (`m` zeroed by the caller).
    pub fn sample<M: Copy + From<u8>>(
        g: &Grid,
        axes: &[Axis; 3],
        shape: [usize; 3],
        on: Option<OnBox>,
        window: Option<Window>,
        img: &mut [f32],
        m: &mut [M],
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") && g.hu.len() < 1 << 30 {
            // SAFETY: the CPU has AVX-512F; `hu.len() < 2^30` keeps the gathers' byte
            // offsets within i32.
            return unsafe { sample_avx512(g, axes, shape, on, window, img, m) };
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { sample_avx2(g, axes, shape, on, window, img, m) };
        }
        sample_plain(g, axes, shape, on, window, img, m)
    }

    /// [`sample`] without SIMD intrinsics.
    pub fn sample_plain<M: Copy + From<u8>>(
        g: &Grid,
        axes: &[Axis; 3],
        shape: [usize; 3],
        on: Option<OnBox>,
        window: Option<Window>,
        img: &mut [f32],
        m: &mut [M],
    ) {
        sample_here(g, axes, shape, on, window, img, m, pairs)
    }

    /// `out[j]` = `row[lo[j]]` to `row[lo[j] + 1]` by `w[j]`, one point at a time.
    #[inline(always)]
    fn pairs(row: &[i16], lo: &[i32], w: &[f32], out: &mut [f32]) {
        for ((o, &l), &w) in out.iter_mut().zip(lo).zip(w) {
            *o = lerp(row[l as usize] as f32, row[l as usize + 1] as f32, w);
        }
    }

    /// [`sample`] compiled for AVX-512: sixteen pairs along x by one gather each.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `g.hu.len() < 2^30`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2")]
    unsafe fn sample_avx512<M: Copy + From<u8>>(
        g: &Grid,
        axes: &[Axis; 3],
        shape: [usize; 3],
        on: Option<OnBox>,
        window: Option<Window>,
        img: &mut [f32],
        m: &mut [M],
    ) {
        use super::simd::{lerp16, pair16};
        use std::arch::x86_64::*;
        sample_here(g, axes, shape, on, window, img, m, |row, lo, w, out| {
            let whole = out.len() / 16 * 16;
            for k in (0..whole).step_by(16) {
                // SAFETY: `lo` and `w` hold `out.len()` values; every `lo + 1` is inside
                // `row` (the points lie inside the region), as `pair16` needs.
                unsafe {
                    let (a, b) = pair16(row, _mm512_loadu_si512(lo.as_ptr().add(k).cast()));
                    let v = lerp16(a, b, _mm512_loadu_ps(w.as_ptr().add(k)));
                    _mm512_storeu_ps(out.as_mut_ptr().add(k), v);
                }
            }
            pairs(row, &lo[whole..], &w[whole..], &mut out[whole..]);
        })
    }

    /// [`sample`] compiled for AVX2: eight pairs along x by one gather each.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub unsafe fn sample_avx2<M: Copy + From<u8>>(
        g: &Grid,
        axes: &[Axis; 3],
        shape: [usize; 3],
        on: Option<OnBox>,
        window: Option<Window>,
        img: &mut [f32],
        m: &mut [M],
    ) {
        use super::simd::{lerp, pair};
        use std::arch::x86_64::*;
        sample_here(g, axes, shape, on, window, img, m, |row, lo, w, out| {
            let whole = out.len() / 8 * 8;
            for k in (0..whole).step_by(8) {
                // SAFETY: as in `sample_avx512`, eight lanes.
                unsafe {
                    let (a, b) = pair(row, _mm256_loadu_si256(lo.as_ptr().add(k).cast()));
                    let v = lerp(a, b, _mm256_loadu_ps(w.as_ptr().add(k)));
                    _mm256_storeu_ps(out.as_mut_ptr().add(k), v);
                }
            }
            pairs(row, &lo[whole..], &w[whole..], &mut out[whole..]);
        })
    }

    /// The three passes; `along_x(row, lo, w, out)` interpolates one source row's pairs
    /// (`lo` as i32, each with its `lo + 1` inside `row`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    fn sample_here<M: Copy + From<u8>>(
        g: &Grid,
        axes: &[Axis; 3],
        shape: [usize; 3],
        on: Option<OnBox>,
        window: Option<Window>,
        img: &mut [f32],
        m: &mut [M],
        along_x: impl Fn(&[i16], &[i32], &[f32], &mut [f32]),
    ) {
        let [nz, ny, nx] = shape;
        let [az, ay, ax] = axes;
        let (zs, z_at) = az.rows();
        let (ys, y_at) = ay.rows();
        let lo_x: Vec<i32> = ax.lo.iter().map(|&l| l as i32).collect();
        // Along x: every source row (z, y) the points need.
        let mut xs = scratch::take_dirty(zs.len() * ys.len() * nx);
        for (i, &z) in zs.iter().enumerate() {
            for (j, &y) in ys.iter().enumerate() {
                let row = &g.hu[z * g.sz + y * g.sy..][..g.sy];
                let out = &mut xs[(i * ys.len() + j) * nx..][..nx];
                along_x(row, &lo_x, &ax.w, out);
            }
        }
        // Along y: each source plane's rows at the points' y.
        let mut yz = scratch::take_dirty(zs.len() * ny * nx);
        for i in 0..zs.len() {
            for y in 0..ny {
                let a = &xs[(i * ys.len() + y_at[y]) * nx..][..2 * nx];
                let (p, q) = a.split_at(nx);
                let out = &mut yz[(i * ny + y) * nx..][..nx];
                let t = ay.w[y];
                for ((o, &p), &q) in out.iter_mut().zip(p).zip(q) {
                    *o = lerp(p, q, t);
                }
            }
        }
        scratch::give(xs);
        // Along z, through the window.
        let plane = ny * nx;
        for z in 0..nz {
            let a = &yz[z_at[z] * plane..][..2 * plane];
            let (p, q) = a.split_at(plane);
            let t = az.w[z];
            let out = &mut img[z * plane..][..plane];
            match window {
                Some(win) => {
                    for ((o, &p), &q) in out.iter_mut().zip(p).zip(q) {
                        *o = win.apply(lerp(p, q, t));
                    }
                }
                None => {
                    for ((o, &p), &q) in out.iter_mut().zip(p).zip(q) {
                        *o = lerp(p, q, t);
                    }
                }
            }
        }
        scratch::give(yz);
        // The mask, on the rows whose nearest voxels can be on.
        let Some((lo, hi)) = on else { return };
        for z in 0..nz {
            let sz = az.near[z];
            if sz < lo[0] || sz > hi[0] {
                continue;
            }
            for y in 0..ny {
                let sy = ay.near[y];
                if sy < lo[1] || sy > hi[1] {
                    continue;
                }
                let row = &g.mask[sz * g.sz + sy * g.sy..][..g.sy];
                let out = &mut m[(z * ny + y) * nx..][..nx];
                for (o, &x) in out.iter_mut().zip(&ax.near) {
                    *o = M::from(row[x]);
                }
            }
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
    // Linear reads the voxel below each point and the one after; B-spline one more before,
    // two after, and its prefilter's margin beyond ([`bspline::MARGIN`]).
    let (before, after) = match p.interpolation {
        Interpolation::Linear => (0, 2),
        Interpolation::BSpline3 => (1 + bspline::MARGIN as i64, 3 + bspline::MARGIN as i64),
    };
    let first: [i64; 3] = std::array::from_fn(|ax| start_zyx[ax] + lo[ax].floor() as i64 - before);
    let end: [i64; 3] = std::array::from_fn(|ax| start_zyx[ax] + hi[ax].floor() as i64 + after);
    Region { start_zyx: first, shape_zyx: std::array::from_fn(|ax| (end[ax] - first[ax]) as usize) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::augment::spatial;

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
            let (mut a_img, mut a_m) = (vec![0f32; 11], vec![0u8; 11]);
            let (mut b_img, mut b_m) = (vec![0f32; 11], vec![0u8; 11]);
            grid.row_inside(q, step, None, &mut a_img, Some((&mut a_m, 0..11)));
            let row = Row { q, step, a: &a, field: None, r, mask: true, window: None };
            grid.row_clamped(&row, &mut b_img, &mut b_m);
            assert_eq!((&a_img, &a_m), (&b_img, &b_m));
            // Through a window (the loader's path): each value is the window of the HU.
            let w = Window::new([-600.0, 200.0], 1.05, -12.0);
            let (mut c_img, mut c_m) = (vec![0f32; 11], vec![0f32; 11]);
            grid.row_inside(q, step, Some(w), &mut c_img, Some((&mut c_m, 0..11)));
            let want: Vec<f32> = a_img.iter().map(|&v| w.apply(v)).collect();
            assert_eq!(c_img, want);
            assert_eq!(c_m, a_m.iter().map(|&v| f32::from(v)).collect::<Vec<_>>());
            assert!(c_img.iter().any(|&v| v > 0.0 && v < 1.0), "the window clamps everything");
        }
    }

    /// A map mirrored ([`SourceMap::mirrored`]) samples what the map samples, mirrored:
    /// checked against [`crate::loader::patch::mirror_in_place`] of the unmirrored sample,
    /// for every combination of axes, to 0.01 HU (the points are rounded alike up to the
    /// order of a row's points), and the masks equal away from ties.
    #[test]
    fn a_mirrored_map_samples_the_mirrored_patch() {
        use super::super::spatial::matrix;
        let shape = [6usize, 8, 10];
        let angles = [0.3f32, -0.2, 0.25];
        let scales = [1.1f32, 0.9, 1.2];
        let p = SpatialParams {
            angles_zyx: angles,
            scales_zyx: scales,
            matrix: matrix(angles, scales),
            elastic: None,
            interpolation: Interpolation::Linear,
        };
        let map = SourceMap::new(&p, shape);
        let start = [20i64, 30, 40];
        let r = map.region(start);
        let n: usize = r.shape_zyx.iter().product();
        // A smooth image, 2 z^2 + 3 y - 2 x + x y: a rounding of the points (1e-5 voxel)
        // moves a value by its slope (at most ~150 HU per voxel here) times that.
        let [_, ry, rx] = r.shape_zyx;
        let hu: Vec<i16> = (0..n)
            .map(|i| {
                let (z, y, x) = ((i / (ry * rx)) as i16, ((i / rx) % ry) as i16, (i % rx) as i16);
                2 * z * z + 3 * y - 2 * x + x * y
            })
            .collect();
        let mask: Vec<u8> = (0..n).map(|i| u8::from(i % 5 == 0)).collect();
        let (img, m) = map.sample(start, r, &hu, &mask);
        for bits in 1..8 {
            let flip = [bits & 4 != 0, bits & 2 != 0, bits & 1 != 0];
            let (mut want, mut want_m) = (img.clone(), m.clone());
            crate::loader::patch::mirror_in_place(&mut want, shape, flip);
            crate::loader::patch::mirror_in_place(&mut want_m, shape, flip);
            let mirrored = map.mirrored(flip).expect("no field");
            let (got, got_m) = mirrored.sample(start, r, &hu, &mask);
            let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(worst < 1e-2, "{flip:?}: {worst} HU");
            let differ = got_m.iter().zip(&want_m).filter(|(a, b)| a != b).count();
            assert!(differ <= 2, "{flip:?}: {differ} mask voxels differ");
        }
    }

    /// A scaled or mirrored patch sampled one axis at a time gives what the rows give,
    /// bit for bit: image (with and without the window) and mask, at nnU-Net's smallest and
    /// largest scales, mirrored, and with each axis scaled differently.
    #[test]
    fn separable_sampling_equals_the_rows() {
        use super::super::spatial::matrix;
        let shape = [7usize, 9, 37];
        for (scales, flip) in [
            ([0.7f32; 3], [false; 3]),
            ([1.4; 3], [false; 3]),
            ([1.0; 3], [true, false, true]),
            ([0.83, 1.21, 1.07], [false, true, true]),
        ] {
            let p = SpatialParams {
                angles_zyx: [0.0; 3],
                scales_zyx: scales,
                matrix: matrix([0.0; 3], scales),
                elastic: None,
                interpolation: Interpolation::Linear,
            };
            let map = SourceMap::new(&p, shape).mirrored(flip).expect("no field");
            let start = [20i64, 30, 40];
            let r = map.region(start);
            let n: usize = r.shape_zyx.iter().product();
            let hu: Vec<i16> = (0..n).map(|i| ((i * 7919) % 1400) as i16 - 1000).collect();
            let mut mask = vec![0u8; n];
            mask[n / 2..n / 2 + 40].fill(1);
            let off: [f32; 3] = std::array::from_fn(|a| (start[a] - r.start_zyx[a]) as f32);
            let rs = r.shape_zyx;
            let grid = Grid { hu: &hu, mask: &mask, sy: rs[2], sz: rs[1] * rs[2] };
            let on = on_box(&mask, rs);
            let axes = map.separable(off, rs).expect("a diagonal map inside its region");
            let w = Window::new([-1000.0, 400.0], 1.02, 5.0);
            for window in [None, Some(w)] {
                let v = shape.iter().product();
                let (mut a_img, mut a_m) = (vec![0f32; v], vec![0f32; v]);
                let (mut b_img, mut b_m) = (vec![0f32; v], vec![0f32; v]);
                map.sample_rows(&grid, off, rs, on, window, &mut b_img, &mut b_m);
                assert!(b_m.contains(&1.0), "no mask sampled");
                // The path this CPU takes, the plain one, and AVX2's where the CPU has it.
                let mut paths: Vec<(&str, Box<dyn Fn(&mut [f32], &mut [f32])>)> = vec![
                    (
                        "dispatched",
                        Box::new(|i, m| separable::sample(&grid, &axes, shape, on, window, i, m)),
                    ),
                    (
                        "plain",
                        Box::new(|i, m| {
                            separable::sample_plain(&grid, &axes, shape, on, window, i, m)
                        }),
                    ),
                ];
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2.
                    paths.push((
                        "avx2",
                        Box::new(|i, m| unsafe {
                            separable::sample_avx2(&grid, &axes, shape, on, window, i, m)
                        }),
                    ));
                }
                for (name, f) in &paths {
                    a_img.fill(0.0);
                    a_m.fill(0.0);
                    f(&mut a_img, &mut a_m);
                    assert!(a_img == b_img, "{name} {scales:?} {flip:?}: the images differ");
                    assert!(a_m == b_m, "{name} {scales:?} {flip:?}: the masks differ");
                }
            }
        }
    }

    /// The mask of a rotated (and scaled) patch sampled with the box of the voxels on
    /// (each row's mask only near the box) is, voxel for voxel, the region's mask at each
    /// output voxel's nearest source voxel, found here one voxel at a time from
    /// [`SourceMap::at`] (rounding half up; points within 1e-3 of a tie are left out, as
    /// the rows' and `at`'s arithmetic may round them apart). A span cut too short loses
    /// voxels of the ball and fails.
    #[test]
    fn masks_sampled_near_their_box_are_every_nearest_voxel() {
        let shape = [12usize, 20, 24];
        let start = [30i64, 40, 50];
        let mut checked_on = 0;
        for (angles, scale) in [
            ([0.45f32, -0.3, 0.2], 1.0f32),
            ([0.0, 0.0, 0.52], 1.25),
            ([-0.5, 0.1, -0.35], 0.8),
            ([0.2, 0.4, 0.0], 1.0),
        ] {
            let p = SpatialParams {
                angles_zyx: angles,
                scales_zyx: [scale; 3],
                matrix: spatial::matrix(angles, [scale; 3]),
                elastic: None,
                interpolation: Interpolation::Linear,
            };
            let map = SourceMap::new(&p, shape);
            let r = map.region(start);
            let rs = r.shape_zyx;
            let n: usize = rs.iter().product();
            let hu: Vec<i16> = (0..n).map(|i| ((i * 7919) % 1400) as i16 - 1000).collect();
            // A ball of radius 3.5 voxels at the patch's centre, in region coordinates.
            let c: [f32; 3] = std::array::from_fn(|k| {
                (start[k] - r.start_zyx[k]) as f32 + (shape[k] as f32 - 1.0) / 2.0
            });
            let mut mask = vec![0u8; n];
            for (i, v) in mask.iter_mut().enumerate() {
                let x = [i / (rs[1] * rs[2]), (i / rs[2]) % rs[1], i % rs[2]];
                let d2: f32 = (0..3).map(|k| (x[k] as f32 - c[k]).powi(2)).sum();
                *v = u8::from(d2 <= 12.25);
            }
            let on = on_box(&mask, rs);
            assert!(on.is_some());
            let v: usize = shape.iter().product();
            let (mut img, mut m) = (vec![0f32; v], vec![0u8; v]);
            map.sample_into_within(start, r, &hu, &mask, on, None, &mut img, &mut m);
            let off: [f32; 3] = std::array::from_fn(|k| (start[k] - r.start_zyx[k]) as f32);
            for (i, &got) in m.iter().enumerate() {
                let o = [i / (shape[1] * shape[2]), (i / shape[2]) % shape[1], i % shape[2]];
                let q = map.at(o, [0.0; 3]);
                let pt: [f32; 3] = std::array::from_fn(|k| q[k] + off[k]);
                if pt.iter().any(|&x| (x - x.floor() - 0.5).abs() < 1e-3) {
                    continue;
                }
                let k: [usize; 3] = std::array::from_fn(|k| (pt[k] + 0.5).floor() as usize);
                let want = mask[(k[0] * rs[1] + k[1]) * rs[2] + k[2]];
                assert_eq!(got, want, "{angles:?} x{scale}: output voxel {o:?} (source {pt:?})");
                checked_on += usize::from(want == 1);
            }
        }
        assert!(checked_on > 500, "the ball was sampled at only {checked_on} voxels");
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
