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
    /// The augmentations named in `spec`, comma-separated (the CLI's `--augment`): `flip`
    /// (every axis), `rot90`, `hu` (HU shift 25, scale 5 %), `noise` (sigma 0.01), `none`,
    /// or `all` (rot90 only where the patch is square in-plane).
    ///
    /// ```
    /// use ctstream::loader::Augment;
    /// let a = Augment::parse("flip,hu", [32, 64, 64]).unwrap();
    /// assert_eq!((a.flip_zyx, a.rot90, a.hu_shift, a.noise_sigma), ([true; 3], false, 25.0, 0.0));
    /// assert!(!Augment::parse("all", [32, 64, 32]).unwrap().rot90);
    /// assert!(Augment::parse("flips", [32, 64, 64]).is_err());
    /// ```
    ///
    /// # Errors
    /// A word that is none of these, named.
    pub fn parse(spec: &str, patch_zyx: [usize; 3]) -> Result<Augment, String> {
        let mut a = Augment::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "none" => {}
                "flip" => a.flip_zyx = [true; 3],
                "rot90" => a.rot90 = true,
                "hu" => (a.hu_shift, a.hu_scale) = (25.0, 0.05),
                "noise" => a.noise_sigma = 0.01,
                "all" => {
                    a = Augment {
                        flip_zyx: [true; 3],
                        rot90: patch_zyx[1] == patch_zyx[2],
                        hu_shift: 25.0,
                        hu_scale: 0.05,
                        noise_sigma: 0.01,
                    }
                }
                other => {
                    return Err(format!(
                        "`{other}` is not one of flip, rot90, hu, noise, none, all"
                    ));
                }
            }
        }
        Ok(a)
    }

    /// Checks the strengths: `hu_shift` and `noise_sigma` finite and at least 0,
    /// `hu_scale` in [0, 1) (the factor stays positive), and rot90 only on patches square
    /// in-plane.
    ///
    /// ```
    /// use ctstream::loader::Augment;
    /// assert!(Augment { hu_scale: 0.05, ..Default::default() }.validate([32, 64, 64]).is_ok());
    /// assert!(Augment { hu_scale: 1.0, ..Default::default() }.validate([32, 64, 64]).is_err());
    /// assert!(Augment { noise_sigma: f32::NAN, ..Default::default() }.validate([32, 64, 64]).is_err());
    /// ```
    ///
    /// # Errors
    /// The field and its value.
    pub fn validate(&self, patch_zyx: [usize; 3]) -> Result<(), String> {
        for (name, v) in [("hu_shift", self.hu_shift), ("noise_sigma", self.noise_sigma)] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!("augment {name} {v}: must be a finite number at least 0"));
            }
        }
        if !(0.0..1.0).contains(&self.hu_scale) {
            return Err(format!(
                "augment hu_scale {}: must lie in [0, 1) (HU are multiplied by 1 +- it)",
                self.hu_scale
            ));
        }
        if self.rot90 && patch_zyx[1] != patch_zyx[2] {
            return Err("90-degree rotations need square patches in-plane (H == W)".to_string());
        }
        Ok(())
    }

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
        self.flip_zyx.iter().any(|&f| f) || !self.quarter_turns.is_multiple_of(4)
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
        let normal = Normal::new(0.0f32, self.noise_sigma)
            .unwrap_or_else(|_| Normal::new(0.0, 0.0).expect("zero sigma is valid"));
        (0..n).map(|_| normal.sample(&mut rng)).collect()
    }
}
