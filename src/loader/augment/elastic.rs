//! The elastic displacement field of a patch: for each axis, white Gaussian noise smoothed
//! by a Gaussian of sigma `scale x patch edge` voxels (isotropic, as nnU-Net smooths each
//! component), scaled so that its largest displacement is the drawn magnitude (voxels),
//! then shifted to mean 0 so the patch centre stays put (nnU-Net's `center_deformation`).
//!
//! nnU-Net smooths full-resolution noise by FFT; a field this smooth is the same whether
//! it is smoothed at full resolution or on a grid `floor(sigma / 2)` times coarser and
//! interpolated linearly, which costs a small fraction: that is what is done here.

use rand_distr::{Distribution, StandardNormal};

/// One patch's drawn elastic field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ElasticParams {
    /// Largest displacement along z, y, x (voxels).
    pub magnitude_zyx: [f32; 3],
    /// Smoothness per component: sigma as a fraction of the patch edge along that axis.
    pub scale_zyx: [f32; 3],
    /// Seed of the noise.
    pub seed: u64,
}

/// The displacement (z, y, x components, voxels) of every voxel of a patch of `shape`, in
/// C order.
///
/// ```
/// use ctstream::loader::augment::elastic::{ElasticParams, field};
/// let p = ElasticParams { magnitude_zyx: [2.0, 3.0, 4.0], scale_zyx: [0.1; 3], seed: 7 };
/// let d = field(&p, [16, 32, 32]);
/// assert_eq!(d.len(), 16 * 32 * 32);
/// for a in 0..3 {
///     let mean = d.iter().map(|v| v[a] as f64).sum::<f64>() / d.len() as f64;
///     let max = d.iter().map(|v| v[a].abs()).fold(0.0f32, f32::max);
///     assert!(mean.abs() < 1e-4 && max <= 2.0 * p.magnitude_zyx[a] && max > 0.5 * p.magnitude_zyx[a]);
/// }
/// ```
pub fn field(p: &ElasticParams, shape: [usize; 3]) -> Vec<[f32; 3]> {
    let n: usize = shape.iter().product();
    let mut out = vec![[0f32; 3]; n];
    for a in 0..3 {
        let sigma = (p.scale_zyx[a] * shape[a] as f32).max(1e-3);
        let comp = smooth_noise(crate::seed::derive(&[p.seed, a as u64]), sigma, shape);
        let max = comp.iter().fold(0f32, |m, v| m.max(v.abs()));
        let k = if max > 0.0 { p.magnitude_zyx[a] / max } else { 0.0 };
        let mean = comp.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        for (o, v) in out.iter_mut().zip(&comp) {
            o[a] = (v - mean as f32) * k;
        }
    }
    out
}

/// Noise smoothed by a Gaussian of `sigma` voxels on a grid of `shape`, computed on a grid
/// `step = max(1, floor(sigma / 2))` times coarser and interpolated linearly.
fn smooth_noise(seed: u64, sigma: f32, shape: [usize; 3]) -> Vec<f32> {
    let step = ((sigma / 2.0).floor() as usize).max(1);
    let coarse: [usize; 3] = std::array::from_fn(|a| (shape[a] - 1) / step + 2);
    let mut rng = crate::seed::rng(&[seed]);
    let mut g: Vec<f32> =
        (0..coarse.iter().product()).map(|_| StandardNormal.sample(&mut rng)).collect();
    let s = sigma / step as f32;
    let radius = (3.0 * s).ceil() as isize;
    let kernel: Vec<f32> =
        (-radius..=radius).map(|i| (-0.5 * (i as f32 / s).powi(2)).exp()).collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    for axis in 0..3 {
        g = convolve_axis(&g, coarse, axis, &kernel);
    }
    // Linear interpolation to every voxel.
    let at = |z: usize, y: usize, x: usize| g[(z * coarse[1] + y) * coarse[2] + x];
    let lerp_index = |i: usize| -> (usize, f32) { (i / step, (i % step) as f32 / step as f32) };
    let mut out = Vec::with_capacity(shape.iter().product());
    for z in 0..shape[0] {
        let (z0, fz) = lerp_index(z);
        for y in 0..shape[1] {
            let (y0, fy) = lerp_index(y);
            for x in 0..shape[2] {
                let (x0, fx) = lerp_index(x);
                let c = |dz: usize, dy: usize, dx: usize| at(z0 + dz, y0 + dy, x0 + dx);
                let l = |a: f32, b: f32, f: f32| a + (b - a) * f;
                let v = l(
                    l(l(c(0, 0, 0), c(0, 0, 1), fx), l(c(0, 1, 0), c(0, 1, 1), fx), fy),
                    l(l(c(1, 0, 0), c(1, 0, 1), fx), l(c(1, 1, 0), c(1, 1, 1), fx), fy),
                    fz,
                );
                out.push(v);
            }
        }
    }
    out
}

/// `g` (C order, `shape`) convolved along `axis` with an odd, centred `kernel`, the edge
/// value repeated beyond the ends.
pub(crate) fn convolve_axis(g: &[f32], shape: [usize; 3], axis: usize, kernel: &[f32]) -> Vec<f32> {
    let stride = [shape[1] * shape[2], shape[2], 1][axis];
    let len = shape[axis] as isize;
    let r = (kernel.len() / 2) as isize;
    let mut out = vec![0f32; g.len()];
    for (i, o) in out.iter_mut().enumerate() {
        let pos = ((i / stride) % shape[axis]) as isize;
        let base = i as isize - pos * stride as isize;
        *o = kernel
            .iter()
            .enumerate()
            .map(|(k, w)| {
                let j = (pos + k as isize - r).clamp(0, len - 1);
                w * g[(base + j * stride as isize) as usize]
            })
            .sum();
    }
    out
}
