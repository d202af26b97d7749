//! Cubic B-spline interpolation of a region, the image of a spatially transformed patch
//! where [`super::spatial::Interpolation::BSpline3`] is chosen, as scipy's
//! `ndimage.map_coordinates(order=3, mode="mirror")` computes it: the region's HU become
//! spline coefficients by the exact recursive prefilter (Unser, "Splines: a perfect fit
//! for signal and image processing", 1999: gain 6, one pole `sqrt(3) - 2`, a causal then
//! an anti-causal pass along each axis, mirror-symmetric ends, as scipy's `ni_splines.c`),
//! then a point's value is the sum of the 4 x 4 x 4 coefficients around it, each weighted
//! by the cubic B-spline of its distance.
//!
//! The prefilter reaches along the whole line, its influence falling by `|pole|` (0.268)
//! per voxel, so a region read for B-spline carries [`MARGIN`] voxels more on each side
//! than its points touch: a coefficient then differs from the whole scan's by at most
//! about `5 * 0.268^(MARGIN + 1)` of the value range (3e-5), far below the 1e-3 the
//! tests allow.

/// Voxels read beyond those a point's 4 x 4 x 4 neighbourhood touches, on each side.
pub const MARGIN: usize = 8;

/// The pole of the cubic B-spline prefilter, `sqrt(3) - 2`.
const POLE: f64 = -0.267_949_192_431_122_7;

/// The spline coefficients of a region of HU (C order, shape `r`), f32 in C order (in a
/// buffer of this thread's reused ones: hand it back with [`release`]).
pub fn coefficients(hu: &[i16], r: [usize; 3]) -> Vec<f32> {
    // The gain (1 - z)(1 - 1/z) = 6 of each axis, applied once for all three.
    let mut c = super::scratch::take(0);
    c.extend(hu.iter().map(|&v| v as f32 * 216.0));
    for axis in 0..3 {
        let inner: usize = r[axis + 1..].iter().product();
        filter_axis(&mut c, r[axis], inner);
    }
    c
}

/// Hands the buffer of [`coefficients`] back for the next patch on this thread.
pub fn release(c: Vec<f32>) {
    super::scratch::give(c);
}

/// The weights of the mirror-symmetric causal start of a line of `n`:
/// `c_0 = (s_0 + z^(n-1) s_(n-1) + sum_(k=1)^(n-2) (z^k + z^(2n-2-k)) s_k) / (1 - z^(2n-2))`,
/// as (k, weight) with the terms below 1e-10 left out (past about 18 voxels).
fn causal_start(n: usize) -> Vec<(usize, f32)> {
    let norm = 1.0 / (1.0 - POLE.powi(2 * n as i32 - 2));
    (0..n)
        .filter_map(|k| {
            let w = match k {
                0 => 1.0,
                k if k == n - 1 => POLE.powi(k as i32),
                k => POLE.powi(k as i32) + POLE.powi((2 * n - 2 - k) as i32),
            } * norm;
            (w.abs() >= 1e-10).then_some((k, w as f32))
        })
        .collect()
}

/// The causal and anti-causal passes along the middle axis of `c` seen as
/// `[len / (n inner)][n][inner]`: each step of the recursion moves a whole `inner` row at
/// a time (for z and y, a plane or a row of voxels, which the compiler vectorises); along x
/// ([`filter_lines`]) eight lines advance together.
fn filter_axis(c: &mut [f32], n: usize, inner: usize) {
    if n < 2 || inner == 0 {
        return;
    }
    let start = causal_start(n);
    if inner == 1 {
        for lines in c.chunks_mut(8 * n) {
            filter_lines(lines, n, &start);
        }
        return;
    }
    let z = POLE as f32;
    let mut acc = vec![0f32; inner];
    for block in c.chunks_exact_mut(n * inner) {
        acc.fill(0.0);
        for &(k, w) in &start {
            for (a, &s) in acc.iter_mut().zip(&block[k * inner..(k + 1) * inner]) {
                *a += w * s;
            }
        }
        block[..inner].copy_from_slice(&acc);
        for k in 1..n {
            let (done, rest) = block.split_at_mut(k * inner);
            let prev = &done[(k - 1) * inner..];
            for (v, &p) in rest[..inner].iter_mut().zip(prev) {
                *v += z * p;
            }
        }
        // Anti-causal start z / (z^2 - 1) (c_(n-1) + z c_(n-2)), then back along the line.
        let g = z / (z * z - 1.0);
        let (head, last) = block.split_at_mut((n - 1) * inner);
        for (v, &p) in last.iter_mut().zip(&head[(n - 2) * inner..]) {
            *v = g * (*v + z * p);
        }
        for k in (0..n - 1).rev() {
            let (head, tail) = block.split_at_mut((k + 1) * inner);
            for (v, &next) in head[k * inner..].iter_mut().zip(&tail[..inner]) {
                *v = z * (next - *v);
            }
        }
    }
}

/// [`filter_axis`] along contiguous lines of `n` (up to eight of them in `lines`), the
/// lines advancing together so their recursions overlap in the CPU instead of each
/// waiting on its previous voxel.
fn filter_lines(lines: &mut [f32], n: usize, start: &[(usize, f32)]) {
    let z = POLE as f32;
    let g = z / (z * z - 1.0);
    let m = lines.len() / n;
    let mut prev = [0f32; 8];
    for (j, p) in prev.iter_mut().enumerate().take(m) {
        let line = &lines[j * n..(j + 1) * n];
        *p = start.iter().map(|&(k, w)| w * line[k]).sum();
    }
    for (j, &p) in prev.iter().enumerate().take(m) {
        lines[j * n] = p;
    }
    for k in 1..n {
        for (j, p) in prev.iter_mut().enumerate().take(m) {
            let v = &mut lines[j * n + k];
            *v += z * *p;
            *p = *v;
        }
    }
    for (j, p) in prev.iter_mut().enumerate().take(m) {
        let line = &mut lines[j * n..(j + 1) * n];
        line[n - 1] = g * (line[n - 1] + z * line[n - 2]);
        *p = line[n - 1];
    }
    for k in (0..n - 1).rev() {
        for (j, p) in prev.iter_mut().enumerate().take(m) {
            let v = &mut lines[j * n + k];
            *v = z * (*p - *v);
            *p = *v;
        }
    }
}

/// The cubic B-spline weights of the four knots around a point at fraction `t` (0..1)
/// past the voxel below it: knots at -1, 0, 1, 2 from that voxel.
#[inline(always)]
pub fn weights(t: f32) -> [f32; 4] {
    let (t2, t3) = (t * t, t * t * t);
    let u = 1.0 - t;
    let sixth = 1.0 / 6.0;
    [
        u * u * u * sixth,
        (4.0 - 6.0 * t2 + 3.0 * t3) * sixth,
        (1.0 + 3.0 * t + 3.0 * t2 - 3.0 * t3) * sixth,
        t3 * sixth,
    ]
}

/// A region's spline coefficients with its shape.
pub struct Spline<'a> {
    c: &'a [f32],
    r: [usize; 3],
}

impl<'a> Spline<'a> {
    /// The spline of coefficients `c` ([`coefficients`]) over a region of shape `r`.
    ///
    /// # Panics
    /// Where `c` does not hold exactly the region's voxels.
    pub fn new(c: &'a [f32], r: [usize; 3]) -> Spline<'a> {
        assert_eq!(c.len(), r.iter().product::<usize>(), "spline: coefficients of {r:?}");
        Spline { c, r }
    }

    /// The value at point `p` (index space of the region, each coordinate within
    /// `0..=len - 1`); knots past an end are mirrored into the region as scipy's
    /// `mode="mirror"` does.
    pub fn at(&self, p: [f32; 3]) -> f32 {
        let r = self.r;
        let lower: [usize; 3] = std::array::from_fn(|k| (p[k] as usize).min(r[k] - 1));
        let w: [[f32; 4]; 3] = std::array::from_fn(|k| weights(p[k] - lower[k] as f32));
        let (sy, sz) = (r[2], r[1] * r[2]);
        if (0..3).all(|k| lower[k] >= 1 && lower[k] + 2 < r[k]) {
            let base = (lower[0] - 1) * sz + (lower[1] - 1) * sy + lower[2] - 1;
            // Four accumulators, one per knot along x (the compiler keeps them in one
            // vector register): each row of four coefficients times the x weights scaled
            // by the row's z and y weights.
            let mut acc = [0f32; 4];
            for (a, wz) in w[0].iter().enumerate() {
                for (b, wy) in w[1].iter().enumerate() {
                    let o = base + a * sz + b * sy;
                    let row: &[f32; 4] = self.c[o..o + 4].try_into().expect("four knots");
                    let t = wz * wy;
                    for c in 0..4 {
                        acc[c] += row[c] * (w[2][c] * t);
                    }
                }
            }
            return (acc[0] + acc[2]) + (acc[1] + acc[3]);
        }
        let knot = |k: usize, i: usize| mirror(lower[k] as i64 - 1 + i as i64, r[k]);
        let mut sum = 0f32;
        for (a, wz) in w[0].iter().enumerate() {
            for (b, wy) in w[1].iter().enumerate() {
                let o = knot(0, a) * sz + knot(1, b) * sy;
                let x: f32 = (0..4).map(|c| self.c[o + knot(2, c)] * w[2][c]).sum();
                sum += wz * wy * x;
            }
        }
        sum
    }
}

/// Index `i` mirrored into `0..n` about the first and last voxel (scipy's "mirror").
fn mirror(i: i64, n: usize) -> usize {
    let n = n as i64;
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(r: [usize; 3]) -> Vec<i16> {
        let mut s = 7u64;
        (0..r.iter().product::<usize>())
            .map(|i| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((s >> 40) % 2001) as i16 - 1000 + (i % 7) as i16
            })
            .collect()
    }

    /// At a voxel the spline gives the voxel's value back (the prefilter inverts the
    /// B-spline's sampling, 1/6 4/6 1/6), inside and at the ends.
    #[test]
    fn the_spline_interpolates_the_voxels() {
        let r = [7usize, 9, 11];
        let hu = region(r);
        let c = coefficients(&hu, r);
        let s = Spline::new(&c, r);
        let mut worst = 0f32;
        for z in 0..r[0] {
            for y in 0..r[1] {
                for x in 0..r[2] {
                    let v = hu[(z * r[1] + y) * r[2] + x] as f32;
                    worst = worst.max((s.at([z as f32, y as f32, x as f32]) - v).abs());
                }
            }
        }
        assert!(worst < 2e-3, "{worst} HU");
    }

    /// A linear ramp is reproduced between voxels too (cubic B-splines hold polynomials
    /// up to degree 3 away from the ends), at a point halfway along every axis.
    #[test]
    fn a_ramp_is_reproduced_between_voxels() {
        let r = [30usize, 30, 30];
        let hu: Vec<i16> = (0..27_000)
            .map(|i| {
                let (z, y, x) = (i / 900, (i / 30) % 30, i % 30);
                (3 * z + 2 * y - x) as i16
            })
            .collect();
        let c = coefficients(&hu, r);
        let v = Spline::new(&c, r).at([14.5, 15.25, 13.75]);
        assert!((v - (3.0 * 14.5 + 2.0 * 15.25 - 13.75)).abs() < 1e-3, "{v}");
    }

    /// A region read as the sampler reads it (MARGIN voxels beyond the knots its points
    /// use) gives the values the larger grid around it gives at the same points, to
    /// within 1e-5 of the value range (2000 HU).
    #[test]
    fn the_margin_makes_the_region_stand_for_the_scan() {
        let big = [48usize, 50, 52];
        let hu = region(big);
        let c = coefficients(&hu, big);
        let whole = Spline::new(&c, big);
        let (o, r) = ([5usize, 6, 7], [36usize, 38, 40]);
        let sub: Vec<i16> = (0..r[0] * r[1])
            .flat_map(|zy| {
                let start = ((o[0] + zy / r[1]) * big[1] + o[1] + zy % r[1]) * big[2] + o[2];
                hu[start..start + r[2]].to_vec()
            })
            .collect();
        let cs = coefficients(&sub, r);
        let part = Spline::new(&cs, r);
        // Points whose knots (lower voxel - 1 ..= lower voxel + 2) keep MARGIN voxels
        // from each end of the region.
        let (lo, hi) = ((MARGIN + 1) as f32, r.map(|n| (n - MARGIN - 3) as f32));
        let mut worst = 0f32;
        for k in 0..500 {
            let p: [f32; 3] = std::array::from_fn(|a| {
                lo + ((k as f32 * (0.618_034 + 0.1 * a as f32)).fract()) * (hi[a] - 1.0 - lo)
            });
            let q: [f32; 3] = std::array::from_fn(|a| p[a] + o[a] as f32);
            worst = worst.max((whole.at(q) - part.at(p)).abs());
        }
        assert!(worst < 1e-5 * 2000.0, "{worst} HU");
    }

    #[test]
    fn mirror_reflects_about_the_end_voxels() {
        let got: Vec<usize> = (-3..8).map(|i| mirror(i, 4)).collect();
        assert_eq!(got, [3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1]);
    }
}
