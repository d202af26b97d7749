//! Intensity transforms, on a patch's windowed values (0..1, after the HU window), as
//! nnU-Net's (batchgeneratorsv2) act on its normalised values; each stage applies with
//! its probability, its strength drawn from its range:
//!
//! - `GaussianNoise`: `x + N(0, sigma^2)`;
//! - `Blur`: a Gaussian of its own sigma per axis, separable, kernel of
//!   `round_to_odd(6 sigma + 0.5)` taps, edges mirrored (`reflect`, as torch pads);
//! - `Brightness`: `x * f`;
//! - `Contrast`: `(x - mean) * f + mean`, clipped to the patch's former min and max when
//!   the range is preserved;
//! - `LowResolution`: down to `round(n * s)` voxels per axis by nearest (torch's
//!   `nearest-exact`), back up linearly (`trilinear`, `align_corners=False`) or by cubic
//!   convolution (Keys, a = -0.75, as torch's `bicubic`, per axis);
//! - `Gamma`: `((x - min) / range)^g * range + min` (on `-x` when inverted, then negated
//!   back), and with `retain_stats` shifted and scaled back to the former mean and
//!   standard deviation (unbiased, as torch's `std`).

use rand::Rng;

use super::normal::{exponent_mantissa, horner};
use super::{Range, check_probability, scratch};

/// Most intensity stages a loader takes.
pub const MAX_STAGES: usize = 32;

/// One intensity transform with the probability it applies to a patch.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Stage {
    /// Probability that it applies to a patch.
    pub p: f32,
    /// The transform and its ranges.
    pub op: Intensity,
}

/// How a simulated low resolution is brought back to the patch's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Upsample {
    /// Linear per axis (torch's `trilinear`, `align_corners=False`): nnU-Net's.
    Linear,
    /// Cubic convolution per axis (Keys, a = -0.75, torch's `bicubic` convention).
    Cubic,
}

/// An intensity transform and the ranges its strengths are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Intensity {
    /// Additive Gaussian noise of standard deviation drawn from `sigma`.
    GaussianNoise {
        /// Standard deviation (at least 0).
        sigma: Range,
    },
    /// Gaussian blur, a sigma (voxels) drawn per axis.
    Blur {
        /// Sigma in voxels (above 0, at most 8).
        sigma: Range,
    },
    /// Multiplication by a factor.
    Brightness {
        /// Factor (at least 0).
        factor: Range,
    },
    /// Contrast about the patch's mean.
    Contrast {
        /// Factor (at least 0).
        factor: Range,
        /// Clip to the patch's former min and max.
        preserve_range: bool,
    },
    /// Down and up again.
    LowResolution {
        /// Fraction of the voxels kept per axis (above 0, at most 1).
        scale: Range,
        /// How it is brought back up.
        upsample: Upsample,
    },
    /// Gamma on the values scaled to 0..1 by the patch's min and max.
    Gamma {
        /// Exponent (above 0).
        gamma: Range,
        /// On the negated image (so dark and bright swap roles).
        invert: bool,
        /// Shift and scale back to the former mean and standard deviation.
        retain_stats: bool,
    },
}

/// An intensity transform as drawn for one patch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Applied {
    /// Noise of this standard deviation, from this seed.
    GaussianNoise {
        /// Standard deviation.
        sigma: f32,
        /// Seed of the noise.
        seed: u64,
    },
    /// Blur with these sigmas (z, y, x; voxels).
    Blur {
        /// Sigma per axis.
        sigma_zyx: [f32; 3],
    },
    /// Multiplied by this factor.
    Brightness {
        /// Factor.
        factor: f32,
    },
    /// Contrast by this factor.
    Contrast {
        /// Factor.
        factor: f32,
        /// Clipped to the former range.
        preserve_range: bool,
    },
    /// Down to this fraction and back up.
    LowResolution {
        /// Fraction per axis.
        scale: f32,
        /// How it is brought back up.
        upsample: Upsample,
    },
    /// Gamma with this exponent.
    Gamma {
        /// Exponent.
        gamma: f32,
        /// On the negated image.
        invert: bool,
        /// Mean and standard deviation restored.
        retain_stats: bool,
    },
}

impl Stage {
    /// The stage's name, as `--augment` spells it.
    pub fn name(&self) -> &'static str {
        match self.op {
            Intensity::GaussianNoise { .. } => "gaussian_noise",
            Intensity::Blur { .. } => "blur",
            Intensity::Brightness { .. } => "brightness",
            Intensity::Contrast { .. } => "contrast",
            Intensity::LowResolution { .. } => "low_resolution",
            Intensity::Gamma { invert: true, .. } => "inverted_gamma",
            Intensity::Gamma { .. } => "gamma",
        }
    }

    /// Checks the probability and the range of the stage's strength.
    ///
    /// ```
    /// use ctstream::loader::augment::{Intensity, Range, Stage};
    /// let r = |lo, hi| Range { lo, hi, around_one: false };
    /// let ok = Stage { p: 0.3, op: Intensity::Gamma { gamma: r(0.7, 1.5), invert: false, retain_stats: true } };
    /// assert!(ok.validate([32, 64, 64]).is_ok());
    /// assert!(Stage { p: -0.1, ..ok }.validate([32, 64, 64]).unwrap_err().contains("gamma probability"));
    /// let nan = Stage { p: 0.1, op: Intensity::Blur { sigma: r(f32::NAN, 1.0) } };
    /// assert!(nan.validate([32, 64, 64]).unwrap_err().contains("blur sigma"));
    /// ```
    ///
    /// # Errors
    /// The stage, its setting and the value.
    pub fn validate(&self, patch_zyx: [usize; 3]) -> Result<(), String> {
        let name = self.name();
        check_probability(name, self.p)?;
        let big = 1e6;
        match self.op {
            Intensity::GaussianNoise { sigma } => sigma.check(&format!("{name} sigma"), 0.0, big),
            Intensity::Blur { sigma } => {
                sigma.check(&format!("{name} sigma (voxels)"), 0.0, MAX_BLUR_SIGMA)?;
                if sigma.lo <= 0.0 {
                    return Err(format!("augment {name} sigma {}..: must be above 0", sigma.lo));
                }
                Ok(())
            }
            Intensity::Brightness { factor } | Intensity::Contrast { factor, .. } => {
                factor.check(&format!("{name} factor"), 0.0, big)
            }
            Intensity::LowResolution { scale, .. } => {
                scale.check(&format!("{name} scale"), 0.0, 1.0)?;
                // The smallest scale must keep a voxel on the shortest axis.
                let short = *patch_zyx.iter().min().unwrap_or(&1) as f32;
                if scale.lo <= 0.0 || (scale.lo * short).round() < 1.0 {
                    return Err(format!(
                        "augment {name} scale {}..{}: must keep at least one voxel of the patch's shortest edge ({short})",
                        scale.lo, scale.hi
                    ));
                }
                Ok(())
            }
            Intensity::Gamma { gamma, .. } => {
                gamma.check(&format!("{name} range (the exponent)"), 0.0, 100.0)?;
                if gamma.lo <= 0.0 {
                    return Err(format!(
                        "augment {name} range (the exponent) {}..: must be above 0",
                        gamma.lo
                    ));
                }
                Ok(())
            }
        }
    }

    /// Draws whether the stage applies to a patch and its strength (from a stream of its
    /// own; the same number of draws either way).
    pub fn draw(&self, rng: &mut impl Rng) -> Option<Applied> {
        let apply = rng.random::<f32>() < self.p;
        let a = match self.op {
            Intensity::GaussianNoise { sigma } => {
                Applied::GaussianNoise { sigma: sigma.draw(rng), seed: rng.random() }
            }
            Intensity::Blur { sigma } => {
                Applied::Blur { sigma_zyx: std::array::from_fn(|_| sigma.draw(rng)) }
            }
            Intensity::Brightness { factor } => Applied::Brightness { factor: factor.draw(rng) },
            Intensity::Contrast { factor, preserve_range } => {
                Applied::Contrast { factor: factor.draw(rng), preserve_range }
            }
            Intensity::LowResolution { scale, upsample } => {
                Applied::LowResolution { scale: scale.draw(rng), upsample }
            }
            Intensity::Gamma { gamma, invert, retain_stats } => {
                Applied::Gamma { gamma: gamma.draw(rng), invert, retain_stats }
            }
        };
        apply.then_some(a)
    }
}

/// Largest blur sigma (voxels).
pub const MAX_BLUR_SIGMA: f32 = 8.0;

impl Applied {
    /// Applies the transform to `x`, a patch of `shape` in C order.
    pub fn apply(&self, x: &mut [f32], shape: [usize; 3]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("fma") {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512F (and so AVX2) and FMA.
                return unsafe { self.apply_avx512(x, shape) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 and FMA.
                return unsafe { self.apply_avx2(x, shape) };
            }
        }
        self.apply_here(x, shape)
    }

    /// [`Applied::apply`] compiled for AVX-512: sixteen voxels at a time and twice the
    /// registers (the polynomials of gamma's power keep their constants in them). The same
    /// IEEE operations in the same order as the plain build, so the same values bit for
    /// bit (a unit test compares them on whichever path the CPU takes).
    ///
    /// # Safety
    /// The CPU has AVX-512F and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn apply_avx512(&self, x: &mut [f32], shape: [usize; 3]) {
        self.apply_here(x, shape)
    }

    /// [`Applied::apply`] compiled for AVX2: its loops run eight voxels at a time. The
    /// arithmetic is the same IEEE operations in the same order (Rust never fuses a
    /// multiply and an add unless told to, nor reorders a float sum), so the values are
    /// those of the plain build bit for bit. The polynomials' fused multiply-adds
    /// (`mul_add`) are one instruction here; the plain build calls libm's `fmaf`, which
    /// rounds once too, so the same bits.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn apply_avx2(&self, x: &mut [f32], shape: [usize; 3]) {
        self.apply_here(x, shape)
    }

    #[inline(always)]
    fn apply_here(&self, x: &mut [f32], shape: [usize; 3]) {
        match *self {
            Applied::GaussianNoise { sigma, seed } => {
                if sigma > 0.0 {
                    super::normal::add(x, sigma, seed);
                }
            }
            Applied::Blur { sigma_zyx } => {
                // z: x -> buf, y: buf -> x, x: in place, a row at a time.
                let mut buf = scratch::take_dirty(x.len());
                let k = sigma_zyx.map(gaussian_kernel);
                blur_axis(x, &mut buf, shape, 0, &k[0]);
                blur_axis(&buf, x, shape, 1, &k[1]);
                blur_rows(x, shape[2], &k[2]);
                scratch::give(buf);
            }
            // Plain `for` loops throughout: an `iter_mut().for_each` was left out of line
            // once, and so compiled for the baseline CPU rather than for this function's
            // AVX2 or AVX-512.
            Applied::Brightness { factor } => {
                for v in x.iter_mut() {
                    *v *= factor;
                }
            }
            Applied::Contrast { factor, preserve_range } => {
                let (mean, _, lo, hi) = stats(x, false);
                let mean = mean as f32;
                for v in x.iter_mut() {
                    let c = (*v - mean) * factor + mean;
                    // Compare-and-select rather than f32::clamp (which checks its bounds
                    // and orders NaN), so the loop vectorises; the values are finite.
                    let c = if preserve_range && c < lo { lo } else { c };
                    *v = if preserve_range && c > hi { hi } else { c };
                }
            }
            Applied::LowResolution { scale, upsample } => low_resolution(x, shape, scale, upsample),
            Applied::Gamma { gamma, invert, retain_stats } => {
                // On the negated image where inverted: its statistics are the image's
                // negated (min and max swapped), exactly, so it is never written out; the
                // negation is folded into the passes that read and write each voxel, each
                // pass written once per sign so that no voxel is multiplied by 1.
                let (mean, std, lo, hi) = stats(x, retain_stats);
                let (mean, lo, hi) = if invert { (-mean, -hi, -lo) } else { (mean, lo, hi) };
                let range = hi - lo;
                let inv = 1.0 / range.max(1e-7);
                // The statistics of the powered values are gathered block by block as
                // each is written, while it is in the cache (the blocks of `stats`).
                let mut after: Option<Running> = None;
                for block in x.chunks_mut(STATS_BLOCK) {
                    match (invert, retain_stats) {
                        (false, _) => {
                            for v in block.iter_mut() {
                                *v = pow01((*v - lo) * inv, gamma).mul_add(range, lo);
                            }
                        }
                        (true, true) => {
                            for v in block.iter_mut() {
                                *v = pow01((-*v - lo) * inv, gamma).mul_add(range, lo);
                            }
                        }
                        (true, false) => {
                            for v in block.iter_mut() {
                                *v = -pow01((-*v - lo) * inv, gamma).mul_add(range, lo);
                            }
                        }
                    }
                    if retain_stats {
                        let first = block.first().copied().unwrap_or(0.0);
                        after.get_or_insert_with(|| Running::new(first)).add(block);
                    }
                }
                if let Some(after) = after {
                    let (m2, s2, _, _) = after.finish(true);
                    let k = (std / s2.max(1e-7)) as f32;
                    let (m2, mean) = (m2 as f32, mean as f32);
                    if invert {
                        for v in x.iter_mut() {
                            *v = -((*v - m2) * k + mean);
                        }
                    } else {
                        for v in x.iter_mut() {
                            *v = (*v - m2) * k + mean;
                        }
                    }
                }
            }
        }
    }
}

/// `x^g` for `x` in [0, 1] and `g` > 0, as `2^(g log2 x)` with polynomials (relative
/// error below 1e-5 for `g` up to 3, most of it the rounding of `g log2 x` in f32; checked
/// against `powf` in the tests): a libm `powf` per voxel would cost more than the rest of
/// the augmentation of a patch.
#[inline(always)]
pub fn pow01(x: f32, g: f32) -> f32 {
    // Branch-free (a select at the end), so a loop over voxels vectorises.
    let positive = x > 0.0;
    let y = (g * log2(x.max(f32::MIN_POSITIVE))).max(-126.0);
    // 2^y = 2^n 2^f, n = round(y), f in [-0.5, 0.5]: Taylor of e^(f ln 2) to degree 6,
    // its coefficients ln(2)^k / k! (|f ln 2| <= 0.347: the remainder is below 1.2e-7).
    // n by the 1.5 * 2^23 trick (y + M rounds y to an integer held in M's low bits), not
    // `as i32`: Rust's saturating float-to-integer cast is done one lane at a time and was
    // most of the loop's cost. y is in [-126, 1] here (or NaN, which comes out as garbage,
    // never undefined behaviour).
    const ROUND: f32 = 12_582_912.0;
    const C: [f32; 7] = [
        1.0,
        std::f32::consts::LN_2,
        0.240_226_5,
        0.055_504_11,
        0.009_618_129,
        0.001_333_355_8,
        0.000_154_035_3,
    ];
    let t = y + ROUND;
    let n = (t.to_bits() as i32).wrapping_sub(ROUND.to_bits() as i32);
    let f = y - (t - ROUND);
    let r = horner(f, &C) * f32::from_bits((n.wrapping_add(127) as u32) << 23);
    if positive { r } else { 0.0 }
}

/// `log2 x` for a positive, normal `x`: `x = 2^e m` with `m` in [sqrt(1/2), sqrt(2)), and
/// `log2 m = u P(u)`, `u = m - 1`, P of degree 7 fitted (least squares at Chebyshev
/// nodes) to `log2(1 + u) / u` there: within 1.5e-7 of `log2 m`, and no division (one
/// per sixteen voxels was a good part of gamma's loop). Selects, not branches.
#[inline(always)]
fn log2(x: f32) -> f32 {
    let (e, m) = exponent_mantissa(x);
    let u = m - 1.0;
    const P: [f32; 8] = [
        1.442_694_9,
        -0.721_352_76,
        0.480_924_04,
        -0.360_241_98,
        0.287_075_6,
        -0.248_821_81,
        0.234_209_85,
        -0.146_203_53,
    ];
    u.mul_add(horner(u, &P), e as f32)
}

/// Mean, standard deviation (unbiased, when `std` is asked for; else 0), min and max, in
/// one pass: sums of `v - pivot` and of its square in [`LANES`] f32 lanes over blocks of
/// [`STATS_BLOCK`] voxels, each block's lanes added in f64 (the rounding stays that of
/// sums of 32 values; the pivot, the first value, keeps the squares from cancelling). With
/// AVX2 the lanes are four registers each, written out (four, so that each add waits on
/// the one four steps back rather than the one before: the sums were bound by the adds'
/// latency); LLVM's vectoriser left the plain loop scalar. Both paths do the same IEEE
/// operations in the same order, so they agree bit for bit.
#[inline(always)]
fn stats(x: &[f32], std: bool) -> (f64, f64, f32, f32) {
    let mut r = Running::new(x.first().copied().unwrap_or(0.0));
    for block in x.chunks(STATS_BLOCK) {
        r.add(block);
    }
    r.finish(std)
}

/// Voxels per block of [`stats`].
const STATS_BLOCK: usize = 1024;

/// [`stats`] under way: the blocks added so far.
struct Running {
    lanes: Lanes,
    pivot: f32,
    d: f64,
    d2: f64,
    n: usize,
}

impl Running {
    /// Nothing added yet; `pivot` is the first value there will be.
    fn new(pivot: f32) -> Running {
        let lanes = Lanes {
            lo: [f32::INFINITY; LANES],
            hi: [f32::NEG_INFINITY; LANES],
            d: [0.0; LANES],
            d2: [0.0; LANES],
        };
        Running { lanes, pivot, d: 0.0, d2: 0.0, n: 0 }
    }

    /// Adds one block (at most [`STATS_BLOCK`] values).
    #[inline(always)]
    fn add(&mut self, block: &[f32]) {
        self.lanes.d = [0.0; LANES];
        self.lanes.d2 = [0.0; LANES];
        self.lanes.add_block(block, self.pivot);
        self.d += self.lanes.d.iter().map(|&v| v as f64).sum::<f64>();
        self.d2 += self.lanes.d2.iter().map(|&v| v as f64).sum::<f64>();
        self.n += block.len();
    }

    /// Mean, standard deviation (when `std`), min and max of the values added.
    fn finish(self, std: bool) -> (f64, f64, f32, f32) {
        let (d, d2) = (self.d, self.d2);
        let n = self.n.max(1) as f64;
        let mean = d / n;
        let sd =
            if std && self.n > 1 { ((d2 - d * mean) / (n - 1.0)).max(0.0).sqrt() } else { 0.0 };
        let fold = |a: [f32; LANES], f: fn(f32, f32) -> f32| a.into_iter().reduce(f).unwrap_or(0.0);
        (self.pivot as f64 + mean, sd, fold(self.lanes.lo, f32::min), fold(self.lanes.hi, f32::max))
    }
}

/// Lanes of [`stats`]'s running sums.
const LANES: usize = 32;

/// [`LANES`] lanes of running minima, maxima, and sums of `v - pivot` and its square.
struct Lanes {
    lo: [f32; LANES],
    hi: [f32; LANES],
    d: [f32; LANES],
    d2: [f32; LANES],
}

impl Lanes {
    /// Adds `block`: value `i` to lane `i % LANES`, the values past the last whole
    /// [`LANES`] to lane 0.
    #[inline(always)]
    fn add_block(&mut self, block: &[f32], pivot: f32) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            unsafe { self.add_block_avx2(block, pivot) };
            return;
        }
        let mut it = block.chunks_exact(LANES);
        for c in &mut it {
            for (k, &v) in c.iter().enumerate() {
                self.add(k, v, pivot);
            }
        }
        for &v in it.remainder() {
            self.add(0, v, pivot);
        }
    }

    /// One value into lane `k`. Compare-and-select for the extremes, as `minps` and
    /// `maxps` do (the values here are finite).
    #[inline(always)]
    fn add(&mut self, k: usize, v: f32, pivot: f32) {
        self.lo[k] = if v < self.lo[k] { v } else { self.lo[k] };
        self.hi[k] = if v > self.hi[k] { v } else { self.hi[k] };
        let d = v - pivot;
        self.d[k] += d;
        self.d2[k] += d * d;
    }

    /// [`Lanes::add_block`] with the lanes in AVX2 registers, four of each.
    ///
    /// # Safety
    /// The CPU has AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn add_block_avx2(&mut self, block: &[f32], pivot: f32) {
        use std::arch::x86_64::*;
        // SAFETY (all loads and stores): each array holds LANES f32, so 4 registers of 8
        // at offsets 0, 8, 16, 24; each chunk holds LANES f32 too.
        unsafe {
            let p = _mm256_set1_ps(pivot);
            let load = |a: &[f32; LANES]| -> [__m256; 4] {
                std::array::from_fn(|r| _mm256_loadu_ps(a.as_ptr().add(8 * r)))
            };
            let (mut lo, mut hi) = (load(&self.lo), load(&self.hi));
            let (mut d, mut d2) = (load(&self.d), load(&self.d2));
            let mut it = block.chunks_exact(LANES);
            for c in &mut it {
                for r in 0..4 {
                    let v = _mm256_loadu_ps(c.as_ptr().add(8 * r));
                    // minps(v, lo) is `v < lo ? v : lo`; maxps likewise.
                    lo[r] = _mm256_min_ps(v, lo[r]);
                    hi[r] = _mm256_max_ps(v, hi[r]);
                    let e = _mm256_sub_ps(v, p);
                    d[r] = _mm256_add_ps(d[r], e);
                    d2[r] = _mm256_add_ps(d2[r], _mm256_mul_ps(e, e));
                }
            }
            let store = |a: &mut [f32; LANES], v: [__m256; 4]| {
                for (r, x) in v.into_iter().enumerate() {
                    _mm256_storeu_ps(a.as_mut_ptr().add(8 * r), x);
                }
            };
            store(&mut self.lo, lo);
            store(&mut self.hi, hi);
            store(&mut self.d, d);
            store(&mut self.d2, d2);
            for &v in it.remainder() {
                self.add(0, v, pivot);
            }
        }
    }
}

/// Python's `round` (half to even), as nnU-Net sizes kernels and low-resolution grids.
fn round_half_even(v: f32) -> i64 {
    let r = v.round();
    if (v - v.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - v.signum()) as i64
    } else {
        r as i64
    }
}

/// nnU-Net's Gaussian kernel for `sigma`: `round_to_nearest_odd(6 sigma + 0.5)` taps at
/// integer offsets, normalised to sum 1 (batchgeneratorsv2 `_build_kernel`, truncate 6).
pub fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let n = sigma * 6.0 + 0.5;
    let r = round_half_even(n);
    let size = if r % 2 == 1 {
        r
    } else if n - r as f32 >= 0.0 {
        r + 1
    } else {
        r - 1
    }
    .max(1) as usize;
    let half = (size as f32 - 1.0) / 2.0;
    let k: Vec<f32> =
        (0..size).map(|i| (-0.5 * ((i as f32 - half) / sigma).powi(2)).exp()).collect();
    let total: f32 = k.iter().sum();
    k.iter().map(|v| v / total).collect()
}

/// Mirrors an index into `0..n` without repeating the edge (torch's `reflect` padding).
fn reflect(i: isize, n: isize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n - 1);
    let m = i.rem_euclid(period);
    (if m < n { m } else { period - m }) as usize
}

/// Each row of `x` (rows of `nx` voxels, C order) convolved with the odd, centred
/// `kernel` in place, edges mirrored: each row is copied once into a padded buffer, then
/// weighted and summed tap by tap into the row.
#[inline(always)] // into `apply_avx2`, so its loops are compiled for AVX2 there
fn blur_rows(x: &mut [f32], nx: usize, kernel: &[f32]) {
    let r = kernel.len() / 2;
    let mut padded = vec![0f32; nx + 2 * r];
    // Where each padding voxel comes from (the middle is the row itself).
    let edges: Vec<(usize, usize)> = (0..r)
        .chain(nx + r..nx + 2 * r)
        .map(|j| (j, reflect(j as isize - r as isize, nx as isize)))
        .collect();
    for row in x.chunks_exact_mut(nx) {
        padded[r..r + nx].copy_from_slice(row);
        for &(j, from) in &edges {
            padded[j] = row[from];
        }
        // Tap by tap over the whole row (a contiguous multiply-add that vectorises),
        // rather than voxel by voxel over the taps; the same sums in the same order (the
        // first tap's product is its multiply-add onto 0).
        weighted_sum(row, kernel, |t| &padded[t..t + nx]);
    }
}

/// `out` = `x` convolved along `axis` (0: z, 1: y) with the odd, centred `kernel`, edges
/// mirrored: whole rows (contiguous x) are weighted and summed, so the inner loop is a
/// contiguous multiply-add the compiler vectorises.
#[inline(always)] // into `apply_avx2`, so its loops are compiled for AVX2 there
fn blur_axis(x: &[f32], out: &mut [f32], shape: [usize; 3], axis: usize, kernel: &[f32]) {
    let [nz, ny, nx] = shape;
    let r = (kernel.len() / 2) as isize;
    let (n, outer, stride) = if axis == 0 { (nz, 1, ny * nx) } else { (ny, nz, nx) };
    // The source row of each (position, tap), mirrored at the edges, worked out once per
    // call rather than per row and tap (an integer division each).
    let taps = kernel.len();
    let from: Vec<usize> = (0..n * taps)
        .map(|i| reflect((i / taps) as isize + (i % taps) as isize - r, n as isize))
        .collect();
    for o_idx in 0..outer {
        // For axis 1 (y) the planes are independent: plane `o_idx`, rows along y.
        let plane = o_idx * ny * nx;
        for pos in 0..n {
            let dst = plane + pos * stride;
            let from = &from[pos * taps..(pos + 1) * taps];
            weighted_sum(&mut out[dst..dst + stride], kernel, |t| {
                &x[plane + from[t] * stride..][..stride]
            });
        }
    }
}

/// Down to `round(n * scale)` voxels per axis by nearest (`nearest-exact`), then back up.
#[inline(always)] // into `apply_avx2`, so its loops are compiled for AVX2 there
fn low_resolution(x: &mut [f32], shape: [usize; 3], scale: f32, up: Upsample) {
    let small: [usize; 3] =
        shape.map(|n| (round_half_even(n as f32 * scale).max(1) as usize).min(n));
    // Down: output voxel j reads floor((j + 0.5) * n / m), per axis (as i32, below
    // 2^31: a patch is far smaller, so the loop over x compiles to gathers).
    let pick = |m: usize, n: usize| -> Vec<i32> {
        (0..m)
            .map(|j| (((j as f64 + 0.5) * n as f64 / m as f64).floor() as usize).min(n - 1) as i32)
            .collect()
    };
    let (pz, py, px) =
        (pick(small[0], shape[0]), pick(small[1], shape[1]), pick(small[2], shape[2]));
    let mut down = scratch::take_dirty(small.iter().product());
    let mut rows = down.chunks_exact_mut(small[2].max(1));
    for &z in &pz {
        for &y in &py {
            let row = &x[(z as usize * shape[1] + y as usize) * shape[2]..][..shape[2]];
            let Some(out) = rows.next() else { break };
            for (o, &i) in out.iter_mut().zip(&px) {
                // SAFETY: every pick is in 0..shape[2] (clamped to n - 1), `row`'s
                // length. Unchecked, so the loop compiles to gathers.
                *o = unsafe { *row.get_unchecked(i as usize) };
            }
        }
    }
    // Up, one axis at a time (linear and cubic interpolation are both separable): x
    // first, while the array is smallest, since x is the one axis whose taps are not
    // whole contiguous rows; the last (z) straight into `x`.
    let mid = [small[0], small[1], shape[2]];
    let mut along_x = scratch::take_dirty(mid.iter().product());
    resize_axis(&down, small, mid, 2, up, &mut along_x);
    scratch::give(down);
    let mid2 = [small[0], shape[1], shape[2]];
    let mut along_y = scratch::take_dirty(mid2.iter().product());
    resize_axis(&along_x, mid, mid2, 1, up, &mut along_y);
    scratch::give(along_x);
    resize_axis(&along_y, mid2, shape, 0, up, x);
    scratch::give(along_y);
}

/// `out` = `x` (C order, `from`) resized along `axis` to `to[axis]` voxels,
/// `align_corners=False`; `out` holds `to`'s voxels (what it held is overwritten).
#[inline(always)] // into `apply_avx2`, so its loops are compiled for AVX2 there
fn resize_axis(
    x: &[f32],
    from: [usize; 3],
    to: [usize; 3],
    axis: usize,
    up: Upsample,
    out: &mut [f32],
) {
    let (n, m) = (from[axis], to[axis]);
    let ratio = n as f64 / m as f64;
    // Per output position: its taps' source indices and weights (2 linear, 4 cubic).
    let k = match up {
        Upsample::Linear => 2,
        Upsample::Cubic => 4,
    };
    let mut idx = vec![0usize; m * k];
    let mut wt = vec![0f32; m * k];
    for j in 0..m {
        let s = (j as f64 + 0.5) * ratio - 0.5;
        let (i, w) = (&mut idx[j * k..(j + 1) * k], &mut wt[j * k..(j + 1) * k]);
        match up {
            Upsample::Linear => {
                let s = s.max(0.0);
                let i0 = (s.floor() as usize).min(n - 1);
                let l = (s - i0 as f64) as f32;
                i.copy_from_slice(&[i0, (i0 + 1).min(n - 1)]);
                w.copy_from_slice(&[1.0 - l, l]);
            }
            Upsample::Cubic => {
                let f = s.floor();
                w.copy_from_slice(&cubic_weights((s - f) as f32));
                for (t, it) in i.iter_mut().enumerate() {
                    *it = (f as isize - 1 + t as isize).clamp(0, n as isize - 1) as usize;
                }
            }
        }
    }
    let [_, ny, nx] = to;
    // out = w_0 src_0 + w_1 src_1 + ..., row by row: contiguous runs the compiler
    // vectorises. Taps are added in order (the first's product is its multiply-add onto
    // 0), so each value is the same sum as tap by tap.
    match axis {
        0 => {
            let plane = ny * nx;
            for j in 0..m {
                let (i, w) = (&idx[j * k..(j + 1) * k], &wt[j * k..(j + 1) * k]);
                weighted_sum(&mut out[j * plane..(j + 1) * plane], w, |t| {
                    &x[i[t] * plane..(i[t] + 1) * plane]
                });
            }
        }
        1 => {
            for z in 0..to[0] {
                for j in 0..m {
                    let d = (z * ny + j) * nx;
                    let (i, w) = (&idx[j * k..(j + 1) * k], &wt[j * k..(j + 1) * k]);
                    weighted_sum(&mut out[d..d + nx], w, |t| &x[(z * from[1] + i[t]) * nx..][..nx]);
                }
            }
        }
        _ => {
            // Tap by tap over whole rows: out[j] = w_0[j] row[i_0[j]], then + w_t[j]
            // row[i_t[j]] for each further tap (the same sum in the same order as tap by
            // tap per voxel), each a loop over j that compiles to gathers with AVX2 or
            // AVX-512 (i32 indices; a loop over a voxel's taps inside one over j stayed
            // scalar and was a third of the stage).
            let per_tap: Vec<(Vec<i32>, Vec<f32>)> = (0..k)
                .map(|t| (0..m).map(|j| (idx[j * k + t] as i32, wt[j * k + t])).unzip())
                .collect();
            // SAFETY (the reads): every tap's index is in 0..n (clamped where the taps are
            // made), and `row` holds n values.
            for (row, dst) in x.chunks_exact(n).zip(out.chunks_exact_mut(m)) {
                for (t, (idx, wt)) in per_tap.iter().enumerate() {
                    if t == 0 {
                        for ((o, &i), &w) in dst.iter_mut().zip(idx).zip(wt) {
                            *o = w * unsafe { *row.get_unchecked(i as usize) };
                        }
                    } else {
                        for ((o, &i), &w) in dst.iter_mut().zip(idx).zip(wt) {
                            *o = w.mul_add(unsafe { *row.get_unchecked(i as usize) }, *o);
                        }
                    }
                }
            }
        }
    }
}

/// `dst[i] = w_0 src(0)[i] + w_1 src(1)[i] + ...` over the taps `w` in order (the first
/// a product, the rest fused multiply-adds: the sum tap by tap, the same bits), in blocks
/// of 64 values kept in registers across the taps, so each value is stored once rather
/// than once per tap.
#[inline(always)]
fn weighted_sum<'a>(dst: &mut [f32], w: &[f32], src: impl Fn(usize) -> &'a [f32]) {
    const B: usize = 64;
    let n = dst.len();
    let whole = n / B * B;
    for (b, out) in dst[..whole].chunks_exact_mut(B).enumerate() {
        let mut acc = [0f32; B];
        for (t, &wt) in w.iter().enumerate() {
            let s = &src(t)[b * B..(b + 1) * B];
            if t == 0 {
                for (a, &v) in acc.iter_mut().zip(s) {
                    *a = wt * v;
                }
            } else {
                for (a, &v) in acc.iter_mut().zip(s) {
                    *a = wt.mul_add(v, *a);
                }
            }
        }
        out.copy_from_slice(&acc);
    }
    if whole < n {
        let out = &mut dst[whole..];
        for (t, &wt) in w.iter().enumerate() {
            let s = &src(t)[whole..n];
            if t == 0 { mul_into(out, s, wt) } else { add_scaled(out, s, wt) }
        }
    }
}

/// `dst = w src`, value by value: the first tap of a sum, the multiply-add onto 0 that
/// it replaces (the same rounding, one pass fewer than zeroing first).
#[inline(always)]
fn mul_into(dst: &mut [f32], src: &[f32], w: f32) {
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = w * v;
    }
}

/// `dst += w src`, value by value, in fused multiply-adds. A function inlined always, not
/// a closure: what is not inlined is compiled for the baseline CPU, where `mul_add` is a
/// call into libm per value.
#[inline(always)]
fn add_scaled(dst: &mut [f32], src: &[f32], w: f32) {
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = w.mul_add(v, *o);
    }
}

/// Keys' cubic convolution weights (a = -0.75, torch's) of the four voxels around a point
/// `t` (0..1) past the second.
fn cubic_weights(t: f32) -> [f32; 4] {
    let a = -0.75f32;
    let near = |x: f32| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    let far = |x: f32| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stage gives the plain build's values bit for bit on the path this CPU takes
    /// (AVX-512, AVX2 or plain), gamma on random values included.
    #[test]
    fn the_vectorised_paths_equal_the_plain_build_bit_for_bit() {
        let shape = [8usize, 16, 24];
        let n: usize = shape.iter().product();
        let base: Vec<f32> =
            (0..n).map(|i| ((i as u64 * 2_654_435_761) % 10_007) as f32 / 10_007.0).collect();
        for a in [
            Applied::GaussianNoise { sigma: 0.05, seed: 3 },
            Applied::Blur { sigma_zyx: [0.5, 1.0, 0.75] },
            Applied::Brightness { factor: 1.1 },
            Applied::Contrast { factor: 1.2, preserve_range: true },
            Applied::LowResolution { scale: 0.6, upsample: Upsample::Linear },
            Applied::LowResolution { scale: 0.55, upsample: Upsample::Cubic },
            Applied::Gamma { gamma: 1.4, invert: true, retain_stats: true },
            Applied::Gamma { gamma: 0.7, invert: false, retain_stats: false },
            Applied::Gamma { gamma: 1.2, invert: true, retain_stats: false },
        ] {
            let (mut fast, mut plain) = (base.clone(), base.clone());
            a.apply(&mut fast, shape);
            a.apply_here(&mut plain, shape);
            assert_ne!(plain, base, "{a:?} changes the patch");
            let same = fast.iter().zip(&plain).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "{a:?}: the vectorised path differs from the plain build");
        }
    }

    #[test]
    fn pow01_is_powf_to_1e5() {
        let mut worst = 0f64;
        for g in [0.7f32, 0.8, 1.0, 1.25, 1.5, 3.0] {
            for i in 0..=100_000 {
                let x = i as f32 / 100_000.0;
                let (a, b) = (pow01(x, g) as f64, (x as f64).powf(g as f64));
                if b > 1e-30 {
                    worst = worst.max((a - b).abs() / b);
                }
            }
        }
        eprintln!("pow01: relative error at most {worst:e}");
        assert!(worst < 1e-5, "relative error {worst}");
        assert_eq!(pow01(0.0, 0.7), 0.0);
    }

    #[test]
    fn kernel_sizes_are_nnunets() {
        // round_to_nearest_odd(6 sigma + 0.5) with Python's round, by hand: sigma 0.5:
        // 3.5 rounds (half to even) to 4, even, and 3.5 - 4 < 0, so 3.
        // sigma 1: 6.5 -> 6, even, 6.5 - 6 >= 0 -> 7. sigma 0.75: 5.0 -> 5.
        assert_eq!(gaussian_kernel(0.5).len(), 3);
        assert_eq!(gaussian_kernel(1.0).len(), 7);
        assert_eq!(gaussian_kernel(0.75).len(), 5);
        assert!((gaussian_kernel(1.0).iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }

    #[test]
    fn reflect_mirrors_without_the_edge() {
        // torch reflect of [0 1 2 3] padded by 2: [2 1 | 0 1 2 3 | 2 1].
        let got: Vec<usize> = (-2..6).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, [2, 1, 0, 1, 2, 3, 2, 1]);
    }

    #[test]
    fn cubic_weights_sum_to_one_and_interpolate_at_nodes() {
        for t in [0.0, 0.25, 0.5, 0.9] {
            assert!((cubic_weights(t).iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        assert_eq!(cubic_weights(0.0), [0.0, 1.0, 0.0, 0.0]);
    }
}
