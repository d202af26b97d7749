//! Augmentations, a loader stage, each optional and seeded, applied to image and mask
//! together, in this order:
//!
//! 1. **spatial** ([`spatial`]): rotation about each axis, scaling, elastic deformation,
//!    all about the patch centre; the loader reads the region the moved patch covers and
//!    interpolates the image trilinearly (or by cubic B-spline, [`bspline`]), the mask by
//!    nearest neighbour ([`sample`]; a patch only scaled, mirrored or not, one axis at a time);
//! 2. HU shift and scale, then the window to 0..1 ([`window`]), with **mirroring** per
//!    axis as the values are written (a moved patch is sampled mirrored: the mirror folded
//!    into its map, [`sample::SourceMap::mirrored`]);
//! 3. **intensity** stages in the order given ([`intensity`]): Gaussian noise, blur,
//!    brightness, contrast, simulated low resolution, gamma (on the windowed values, as
//!    nnU-Net's act on its normalised ones);
//! 4. 90-degree in-plane turns (and, with them, the mirroring, after the stages);
//! 5. Gaussian noise of a fixed sigma (`noise_sigma`);
//! 6. the user's own transforms ([`custom`]), in the order registered on the builder.
//!
//! nnU-Net mirrors last; mirroring first gives the same distribution of patches, because
//! every intensity stage commutes with a mirror: brightness, contrast and gamma act on
//! each voxel with statistics of the whole patch, blur's kernels are symmetric with
//! mirrored edges, noise is drawn independently per voxel, and the low-resolution grid
//! is placed alike at both ends up to half a voxel. Done first, it costs no pass of its
//! own (the pass was 3 % of the loader's time with the nnU-Net preset).
//!
//! [`Augment::nnunet`] is nnU-Net v2's 3D default. [`Augment::parse`] reads the CLI's
//! `--augment` words (the Python package's too).

pub mod bspline;
pub mod custom;
pub mod elastic;
pub mod footprint;
pub mod intensity;
mod normal;
pub mod parse;
pub mod sample;
pub(crate) mod scratch;
pub mod spatial;
pub mod window;

use rand::Rng;
use rand_distr::{Distribution, Normal};

pub use intensity::{Applied, Intensity, Stage};
pub use spatial::{Spatial, SpatialParams};

/// Which augmentations to apply, and how strongly.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
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
    /// Rotation, scaling and elastic deformation about the patch centre.
    #[serde(default)]
    pub spatial: Spatial,
    /// Intensity transforms on the windowed values, applied in this order.
    #[serde(default)]
    pub intensity: Vec<Stage>,
}

/// The drawn parameters of one patch's augmentation (readable back from each patch's
/// [`crate::loader::batch::PatchMeta`]).
#[derive(Debug, Clone, PartialEq, Default)]
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
    /// The spatial transform, where one was drawn (None: the patch is copied as stored).
    pub spatial: Option<SpatialParams>,
    /// The intensity stages drawn for this patch, in order, with their stage's position in
    /// [`Augment::intensity`].
    pub intensity: Vec<(usize, Applied)>,
}

impl Augment {
    /// The augmentations named in `spec` (the CLI's `--augment`, the Python package's
    /// `augment=` words), comma-separated, each a name with optional `:key=value` settings:
    /// `nnunet` (nnU-Net v2's 3D default, [`Augment::nnunet`]), `flip` or `mirror`, `rot90`,
    /// `hu`, `noise`, `rotation`, `scaling`, `elastic`, `bspline`, `gaussian_noise`, `blur`,
    /// `brightness`, `contrast`, `low_resolution`, `gamma`, `inverted_gamma`, `none`, `all`
    /// ([`parse`] lists every key and its default).
    ///
    /// ```
    /// use ctstream::loader::Augment;
    /// let a = Augment::parse("flip,hu", [32, 64, 64]).unwrap();
    /// assert_eq!((a.flip_zyx, a.rot90, a.hu_shift, a.noise_sigma), ([true; 3], false, 25.0, 0.0));
    /// assert!(!Augment::parse("all", [32, 64, 32]).unwrap().rot90);
    /// assert!(Augment::parse("flips", [32, 64, 64]).is_err());
    /// let r = Augment::parse("rotation:p=0.5:deg=15,gamma:range=0.7..1.5", [32, 64, 64]).unwrap();
    /// assert_eq!(r.spatial.p_rotation, 0.5);
    /// assert_eq!(r.intensity.len(), 1);
    /// assert_eq!(Augment::parse("nnunet", [32, 64, 64]).unwrap(), Augment::nnunet());
    /// use ctstream::loader::augment::spatial::Interpolation;
    /// let cubic = Augment::parse("nnunet,bspline", [32, 64, 64]).unwrap();
    /// assert_eq!(cubic.spatial.interpolation, Interpolation::BSpline3);
    /// ```
    ///
    /// # Errors
    /// A word, key or value that is not one of these, named; values out of their range
    /// ([`Augment::validate`]).
    pub fn parse(spec: &str, patch_zyx: [usize; 3]) -> Result<Augment, String> {
        parse::parse(spec, patch_zyx)
    }

    /// nnU-Net v2's 3D default (`nnUNetTrainer.get_training_transforms`, nnunetv2 2.8.1
    /// with batchgeneratorsv2 0.3.6, for a patch that is not anisotropic): rotation
    /// p 0.2 (one draw for all three axes, each angle uniform in +-30 degrees), scaling
    /// p 0.2 in 0.7..1.4 (one factor for all axes), no elastic deformation; Gaussian noise
    /// p 0.1 (sigma 0..0.1: nnU-Net's `noise_variance` is used as the standard
    /// deviation), blur p 0.1 (0.2 times nnU-Net's `p_per_channel` 0.5; sigma 0.5..1 per
    /// axis), brightness p 0.15 (0.75..1.25), contrast p 0.15 (0.75..1.25, range
    /// preserved), low resolution p 0.125 (0.25 times 0.5; 0.5..1, down by nearest, up
    /// linearly), gamma on the inverted image p 0.1 and on the image p 0.3 (0.7..1.5,
    /// statistics retained); mirroring on every axis. Factors of brightness, contrast and
    /// gamma are drawn as nnU-Net's `BGContrast` draws them ([`Range::around_one`]).
    pub fn nnunet() -> Augment {
        use intensity::{Intensity as I, Upsample};
        let r = |lo: f32, hi: f32| Range { lo, hi, around_one: false };
        let one = |lo: f32, hi: f32| Range { lo, hi, around_one: true };
        let deg30 = 30f32.to_radians();
        Augment {
            flip_zyx: [true; 3],
            spatial: Spatial {
                p_rotation: 0.2,
                rotation_rad_zyx: [r(-deg30, deg30); 3],
                p_scaling: 0.2,
                scaling: r(0.7, 1.4),
                scaling_per_axis: false,
                ..Spatial::default()
            },
            intensity: vec![
                Stage { p: 0.1, op: I::GaussianNoise { sigma: r(0.0, 0.1) } },
                Stage { p: 0.1, op: I::Blur { sigma: r(0.5, 1.0) } },
                Stage { p: 0.15, op: I::Brightness { factor: one(0.75, 1.25) } },
                Stage {
                    p: 0.15,
                    op: I::Contrast { factor: one(0.75, 1.25), preserve_range: true },
                },
                Stage {
                    p: 0.125,
                    op: I::LowResolution { scale: r(0.5, 1.0), upsample: Upsample::Linear },
                },
                Stage {
                    p: 0.1,
                    op: I::Gamma { gamma: one(0.7, 1.5), invert: true, retain_stats: true },
                },
                Stage {
                    p: 0.3,
                    op: I::Gamma { gamma: one(0.7, 1.5), invert: false, retain_stats: true },
                },
            ],
            ..Augment::default()
        }
    }

    /// Checks every strength and probability, naming the one that is out of range:
    /// `hu_shift` and `noise_sigma` finite and at least 0, `hu_scale` in [0, 1) (the
    /// factor stays positive), rot90 only on patches square in-plane, and each spatial and
    /// intensity setting as [`Spatial::validate`] and [`Stage::validate`] say.
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
        self.spatial.validate(patch_zyx)?;
        if self.intensity.len() > intensity::MAX_STAGES {
            return Err(format!(
                "augment: {} intensity stages, more than the {} allowed",
                self.intensity.len(),
                intensity::MAX_STAGES
            ));
        }
        for s in &self.intensity {
            s.validate(patch_zyx)?;
        }
        Ok(())
    }

    /// The first augmentation that makes values a compact batch cannot hold (interpolated
    /// or changed after the window), as `--augment` names it: `rotation`, `scaling`,
    /// `elastic`, an intensity stage, `noise`; None where every augmentation moves whole voxels or changes HU by a
    /// factor and a shift ([`crate::loader::LoaderConfig::compact`]).
    pub fn needs_float(&self) -> Option<&'static str> {
        let sp = &self.spatial;
        let stage = self.intensity.first().map(intensity::Stage::name);
        [
            (sp.p_rotation > 0.0).then_some("rotation"),
            (sp.p_scaling > 0.0).then_some("scaling"),
            (sp.p_elastic > 0.0).then_some("elastic"),
            stage,
            (self.noise_sigma > 0.0).then_some("noise"),
        ]
        .into_iter()
        .flatten()
        .next()
    }

    /// Draws one patch's parameters. The flips, turns and HU draws come first, always the
    /// same number of them (as before the spatial and intensity transforms existed, so a
    /// seed draws the same patches as then); the spatial transform and each intensity
    /// stage then draw from streams of their own, so turning one on or off does not change
    /// what the others draw.
    pub fn draw(&self, rng: &mut impl Rng) -> AugmentParams {
        let flips: [bool; 3] = std::array::from_fn(|_| rng.random_bool(0.5));
        let turns = rng.random_range(0..4u8);
        let (u1, u2): (f32, f32) = (rng.random_range(-1.0..=1.0), rng.random_range(-1.0..=1.0));
        let noise_seed = rng.random::<u64>();
        let (spatial, intensity) = if self.spatial.is_off() && self.intensity.is_empty() {
            (None, Vec::new())
        } else {
            let stream = rng.random::<u64>();
            let spatial = self.spatial.draw(&mut crate::seed::rng(&[stream, 0]), stream);
            let intensity = self
                .intensity
                .iter()
                .enumerate()
                .filter_map(|(k, s)| {
                    s.draw(&mut crate::seed::rng(&[stream, 1 + k as u64])).map(|a| (k, a))
                })
                .collect();
            (spatial, intensity)
        };
        AugmentParams {
            flip_zyx: std::array::from_fn(|a| self.flip_zyx[a] && flips[a]),
            quarter_turns: if self.rot90 { turns } else { 0 },
            hu_shift: self.hu_shift * u1,
            hu_scale: 1.0 + self.hu_scale * u2,
            noise_sigma: self.noise_sigma,
            noise_seed,
            spatial,
            intensity,
        }
    }
}

/// A range a strength is drawn from: uniformly in [`lo`, `hi`], or, with `around_one`,
/// as nnU-Net's `BGContrast` draws a factor: half the time uniformly in [`lo`, 1) (when
/// `lo` < 1), else uniformly in [max(`lo`, 1), `hi`], so that shrinking and growing are
/// equally likely however lopsided the range.
///
/// [`lo`]: Range::lo
/// [`hi`]: Range::hi
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Range {
    /// Lower end.
    pub lo: f32,
    /// Upper end.
    pub hi: f32,
    /// Draw below and above 1 equally often (nnU-Net's `BGContrast`).
    #[serde(default)]
    pub around_one: bool,
}

impl Range {
    /// One value drawn from the range (two uniform draws always, so the count of draws
    /// does not depend on the range).
    pub fn draw(&self, rng: &mut impl Rng) -> f32 {
        let (a, b): (f32, f32) = (rng.random(), rng.random());
        let (lo, hi) = if self.around_one && a < 0.5 && self.lo < 1.0 {
            (self.lo, 1.0f32.min(self.hi))
        } else if self.around_one {
            (self.lo.max(1.0), self.hi)
        } else {
            (self.lo, self.hi)
        };
        lo + (hi - lo) * b
    }

    /// Checks that both ends are finite, `lo` <= `hi`, and both lie in [`min`, `max`]
    /// (`what` names the setting in the error).
    ///
    /// # Errors
    /// The setting, its range and the bounds.
    pub fn check(&self, what: &str, min: f32, max: f32) -> Result<(), String> {
        if !(self.lo.is_finite() && self.hi.is_finite()) || self.lo > self.hi {
            return Err(format!(
                "augment {what} {}..{}: must be two finite numbers, the first not above the second",
                self.lo, self.hi
            ));
        }
        if self.lo < min || self.hi > max {
            return Err(format!(
                "augment {what} {}..{}: must lie within {min}..{max}",
                self.lo, self.hi
            ));
        }
        Ok(())
    }
}

/// Checks a probability: finite and in [0, 1].
///
/// # Errors
/// The setting and its value.
pub fn check_probability(what: &str, p: f32) -> Result<(), String> {
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("augment {what} probability {p}: must lie in [0, 1]"));
    }
    Ok(())
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
