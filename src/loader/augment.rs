//! Augmentations, each optional and seeded, applied to image and mask together: flips per
//! axis, 90-degree in-plane rotations, HU shift and scale, Gaussian noise.

use rand::Rng;
use rand_distr::{Distribution, Normal};

/// Which augmentations to apply, and how strongly.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Augment {
    /// Flip each axis (z, y, x) with probability 1/2.
    pub flip_zyx: [bool; 3],
    /// Rotate in-plane by 0, 90, 180 or 270 degrees, uniformly (needs H == W).
    pub rot90: bool,
    /// Add a uniform HU shift in [-s, s] (before the window).
    pub hu_shift: f32,
    /// Multiply HU by a uniform factor in [1 - s, 1 + s] (before the window).
    pub hu_scale: f32,
    /// Standard deviation of Gaussian noise added after the window (0..1 units).
    pub noise_sigma: f32,
}

/// The drawn parameters of one patch's augmentation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AugmentParams {
    /// Flip z, y, x.
    pub flip_zyx: [bool; 3],
    /// Quarter turns in-plane (y towards x).
    pub quarter_turns: u8,
    /// HU shift.
    pub hu_shift: f32,
    /// HU factor.
    pub hu_scale: f32,
    /// Noise standard deviation.
    pub noise_sigma: f32,
    /// Seed of the noise.
    pub noise_seed: u64,
}

impl Augment {
    /// Draws one patch's parameters (always the same number of draws, so the other
    /// choices of a patch do not depend on which augmentations are on).
    pub fn draw(&self, rng: &mut impl Rng) -> AugmentParams {
        let flips: [bool; 3] = std::array::from_fn(|_| rng.random_bool(0.5));
        let turns = rng.random_range(0..4u8);
        let (u1, u2): (f32, f32) = (rng.random_range(-1.0..=1.0), rng.random_range(-1.0..=1.0));
        let noise_seed = rng.random::<u64>();
        AugmentParams {
            flip_zyx: std::array::from_fn(|a| self.flip_zyx[a] && flips[a]),
            quarter_turns: if self.rot90 { turns } else { 0 },
            hu_shift: self.hu_shift * u1,
            hu_scale: 1.0 + self.hu_scale * u2,
            noise_sigma: self.noise_sigma,
            noise_seed,
        }
    }
}

impl AugmentParams {
    /// Whether the voxels move (flip or rotation).
    pub fn moves(&self) -> bool {
        self.flip_zyx.iter().any(|&f| f) || self.quarter_turns % 4 != 0
    }

    /// The source index (z, y, x) of output voxel (z, y, x) in a patch of `shape`.
    /// Output = rotate(flip(source)): flips are applied first, then quarter turns.
    #[inline]
    pub fn source_of(&self, zyx: [usize; 3], shape: [usize; 3]) -> [usize; 3] {
        let [mut z, mut y, mut x] = zyx;
        // Each quarter turn takes output (y, x) from (n - 1 - x, y) of the square plane
        // before it: a rotation, so a bijection of the plane.
        for _ in 0..self.quarter_turns % 4 {
            let (sy, sx) = (shape[2] - 1 - x, y);
            y = sy;
            x = sx;
        }
        if self.flip_zyx[0] {
            z = shape[0] - 1 - z;
        }
        if self.flip_zyx[1] {
            y = shape[1] - 1 - y;
        }
        if self.flip_zyx[2] {
            x = shape[2] - 1 - x;
        }
        [z, y, x]
    }

    /// Noise for a patch of `n` voxels (empty when sigma is 0).
    pub fn noise(&self, n: usize) -> Vec<f32> {
        if self.noise_sigma <= 0.0 {
            return Vec::new();
        }
        let mut rng = crate::seed::rng(&[self.noise_seed]);
        let normal = Normal::new(0.0f32, self.noise_sigma).unwrap_or_else(|_| Normal::new(0.0, 0.0).expect("zero sigma is valid"));
        (0..n).map(|_| normal.sample(&mut rng)).collect()
    }
}
