//! Gaussian noise for a whole patch at once, in loops the compiler vectorises: the
//! Box-Muller transform (`sqrt(-2 ln u1) (cos 2 pi u2, sin 2 pi u2)`, two independent
//! standard normals from two independent uniforms) on uniforms from a counter-based hash
//! (voxel pair `i` of a patch hashes `i` with the patch's key: two rounds of Wellons'
//! `lowbias32`), with polynomial `ln`, `cos` and `sin`. A stream generator (ChaCha with a
//! ziggurat) draws one voxel at a time and cannot be vectorised; it cost more than the
//! rest of the noise stage. The values are a function of the seed and the voxel alone.
//!
//! Within a block of `2 B` voxels, pair `i` gives voxel `i` its cosine and voxel `B + i`
//! its sine (two contiguous halves rather than interleaved voxels, so the stores
//! vectorise).

/// Pairs per block (a block covers `2 * BLOCK` voxels).
const BLOCK: usize = 512;

/// Adds `N(0, sigma^2)` noise to every value of `x`, drawn from `seed` (the same seed
/// gives the same noise).
#[inline(always)]
pub fn add(x: &mut [f32], sigma: f32, seed: u64) {
    let (k0, k1) = (seed as u32, (seed >> 32) as u32);
    for (b, block) in x.chunks_mut(2 * BLOCK).enumerate() {
        // Each block hashes the pair counters 0..BLOCK with a key of its own, so a
        // counter never needs more than 32 bits, however large the patch.
        let key = lowbias32(k1 ^ lowbias32(b as u32 ^ 0x9e37_79b9));
        let half = block.len().div_ceil(2);
        let (a, s) = block.split_at_mut(half);
        // `s` is `a`'s length or one shorter (an odd block: the last pair gives its
        // cosine only).
        let pairs = s.len();
        for (i, (va, vs)) in a[..pairs].iter_mut().zip(s.iter_mut()).enumerate() {
            let (c, sn) = pair(i as u32, k0, key);
            *va += sigma * c;
            *vs += sigma * sn;
        }
        if let Some(last) = a.get_mut(pairs) {
            *last += sigma * pair(pairs as u32, k0, key).0;
        }
    }
}

/// The two standard normals of pair `i` under keys `k0`, `k1`.
#[inline(always)]
fn pair(i: u32, k0: u32, k1: u32) -> (f32, f32) {
    let h1 = lowbias32(lowbias32(i.wrapping_mul(2) ^ k0) ^ k1);
    let h2 = lowbias32(lowbias32(i.wrapping_mul(2).wrapping_add(1) ^ k0) ^ k1);
    // u1 in (0, 1] (ln is finite), u2 in [0, 1): the top 24 bits, exact in f32.
    let u1 = ((h1 >> 8) + 1) as f32 * (1.0 / 16_777_216.0);
    let u2 = (h2 >> 8) as f32 * (1.0 / 16_777_216.0);
    let r = (-2.0 * ln(u1)).sqrt();
    let (c, s) = cos_sin_turns(u2);
    (r * c, r * s)
}

/// Chris Wellons' `lowbias32` integer hash (a bijection of u32 with low bias).
#[inline(always)]
fn lowbias32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// `ln x` for a positive, normal `x` (relative error below 2e-7, checked against libm in
/// the tests), from [`ln_parts`].
#[inline(always)]
fn ln(x: f32) -> f32 {
    let (e, ln_m) = ln_parts(x);
    e * std::f32::consts::LN_2 + ln_m
}

/// `x = 2^e m` for a positive, normal `x`, with `m` in [sqrt(1/2), sqrt(2)): returns `e`
/// and `ln m`, the latter as `2 atanh((m - 1) / (m + 1))` by its series (`|t| <= 0.172`,
/// so five terms leave 1e-9; no cancellation near `x = 1`, where `e` is 0). Selects, not
/// branches, so a loop over voxels vectorises.
#[inline(always)]
fn ln_parts(x: f32) -> (f32, f32) {
    let (e, m) = exponent_mantissa(x);
    let t = (m - 1.0) / (m + 1.0);
    let series = t * horner(t * t, &[1.0, 1.0 / 3.0, 1.0 / 5.0, 1.0 / 7.0, 1.0 / 9.0]);
    (e as f32, 2.0 * series)
}

/// `x = 2^e m` for a positive, normal `x`: `(e, m)` with `m` in [sqrt(1/2), sqrt(2)), so
/// that a logarithm's polynomial in `m - 1` stays near 0. Bit operations and a select,
/// so a loop over voxels vectorises.
#[inline(always)]
pub(super) fn exponent_mantissa(x: f32) -> (i32, f32) {
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000);
    if m > std::f32::consts::SQRT_2 { (e + 1, m * 0.5) } else { (e, m) }
}

/// `c[0] + c[1] x + ... + c[N-1] x^(N-1)` by Horner's rule in fused multiply-adds (one
/// rounding each; one instruction each where the caller is compiled with FMA, libm's
/// `fmaf`, rounded alike, in the plain build).
#[inline(always)]
pub(super) fn horner<const N: usize>(x: f32, c: &[f32; N]) -> f32 {
    c[..N - 1].iter().rev().fold(c[N - 1], |p, &k| p.mul_add(x, k))
}

/// `(cos 2 pi u, sin 2 pi u)` for `u` in [0, 1): the quarter turn `q = round(4 u)`
/// leaves an angle in [-pi/4, pi/4], where Taylor polynomials of degree 8 (cosine) and
/// 9 (sine) are within 3e-8; the quarter turn then swaps and negates them.
#[inline(always)]
fn cos_sin_turns(u: f32) -> (f32, f32) {
    // round(4u) by the 1.5 * 2^23 trick (a plain cast is done one lane at a time).
    const ROUND: f32 = 12_582_912.0;
    let t = 4.0 * u + ROUND;
    let q = t.to_bits().wrapping_sub(ROUND.to_bits()) & 3;
    let f = 4.0 * u - (t - ROUND);
    let a = f * std::f32::consts::FRAC_PI_2;
    let a2 = a * a;
    let c =
        1.0 + a2 * (-1.0 / 2.0 + a2 * (1.0 / 24.0 + a2 * (-1.0 / 720.0 + a2 * (1.0 / 40_320.0))));
    let s = a
        * (1.0
            + a2 * (-1.0 / 6.0
                + a2 * (1.0 / 120.0 + a2 * (-1.0 / 5_040.0 + a2 * (1.0 / 362_880.0)))));
    // Angle q pi/2 + a: (c, s), (-s, c), (-c, -s), (s, -c).
    let (c, s) = if q & 1 == 1 { (-s, c) } else { (c, s) };
    if q & 2 == 2 { (-c, -s) } else { (c, s) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_is_libms_to_2e7() {
        let mut worst = 0f64;
        for k in 1..=(1u32 << 24) {
            if k % 97 != 0 && k > 1000 {
                continue;
            }
            let x = k as f32 / 16_777_216.0;
            let (got, want) = (ln(x) as f64, (x as f64).ln());
            worst = worst.max((got - want).abs() / want.abs().max(1e-30));
        }
        assert!(worst < 2e-7, "relative error {worst}");
    }

    #[test]
    fn cos_sin_of_turns_are_libms_to_2e7() {
        for k in 0..100_000u32 {
            let u = k as f32 / 100_000.0;
            let (c, s) = cos_sin_turns(u);
            let a = std::f64::consts::TAU * u as f64;
            assert!((c as f64 - a.cos()).abs() < 2e-7, "cos at {u}: {c}");
            assert!((s as f64 - a.sin()).abs() < 2e-7, "sin at {u}: {s}");
        }
    }

    #[test]
    fn odd_lengths_noise_every_voxel() {
        for n in [1usize, 2, 3, 1023, 1024, 1025, 3001] {
            let mut x = vec![0f32; n];
            add(&mut x, 1.0, 7);
            assert!(x.iter().all(|&v| v != 0.0 && v.is_finite()), "n {n}");
        }
    }
}
