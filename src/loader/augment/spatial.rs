//! The spatial transform of a patch: rotation about each axis, scaling, elastic
//! deformation, all about the patch centre, as nnU-Net's `SpatialTransform`
//! (batchgeneratorsv2) composes them. Output voxel `o` (index space, z, y, x) of a patch
//! whose centre is `c = (shape - 1) / 2` takes its value from the stored grid at
//!
//! `start + c + A (o - c + d(o))`,
//!
//! where `A = Rz Ry Rx S` (`create_affine_matrix_3d`: `Rx` turns the (y, x) plane by the
//! angle about z, `Ry` the (z, x) plane, `Rz` the (z, y) plane; `S` the scale factors, a
//! factor above 1 takes a larger region, so objects look smaller) and `d` is the elastic
//! displacement ([`super::elastic`], deformed first, then rotated, as nnU-Net does). The
//! patch centre therefore stays where the sampler put it: on its nodule for a positive.

use rand::Rng;

use super::{Range, check_probability};

/// Largest scale factor: the region a patch reads grows with its cube.
pub const MAX_SCALE: f32 = 4.0;

/// How the image of a spatially transformed patch is interpolated (the mask and label
/// volumes always by nearest neighbour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// Trilinear: the eight voxels around the point (SimpleITK's `sitkLinear`, scipy's
    /// `order=1`).
    #[default]
    Linear,
    /// Cubic B-spline with its exact prefilter (scipy's `map_coordinates(order=3)`,
    /// [`super::bspline`]): smoother, about fifteen times the cost of trilinear.
    BSpline3,
}

/// Which spatial transforms to draw, with which probability and range.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Spatial {
    /// Probability of a rotation (one draw; then an angle for every axis).
    pub p_rotation: f32,
    /// Angle about each axis (z, y, x), radians, within +-pi.
    pub rotation_rad_zyx: [Range; 3],
    /// Probability of scaling.
    pub p_scaling: f32,
    /// Scale factor (above 0, at most [`MAX_SCALE`]); above 1 zooms out.
    pub scaling: Range,
    /// A factor per axis instead of one for all.
    pub scaling_per_axis: bool,
    /// Probability of an elastic deformation.
    pub p_elastic: f32,
    /// Largest displacement of the elastic field, voxels, per axis.
    pub elastic_magnitude: Range,
    /// Smoothness of the elastic field: the Gaussian's sigma as a fraction of the patch
    /// edge (above 0, at most 1).
    pub elastic_scale: Range,
    /// How the moved patch's image is interpolated.
    #[serde(default)]
    pub interpolation: Interpolation,
}

/// One patch's drawn spatial transform.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpatialParams {
    /// Angles about z, y, x (radians; 0 where no rotation was drawn).
    pub angles_zyx: [f32; 3],
    /// Scale factors (z, y, x; 1 where no scaling was drawn).
    pub scales_zyx: [f32; 3],
    /// `A` of the module's formula (row-major, index space z, y, x).
    pub matrix: [[f32; 3]; 3],
    /// The elastic field's parameters, where one was drawn.
    pub elastic: Option<super::elastic::ElasticParams>,
    /// How the image is interpolated ([`Spatial::interpolation`]).
    pub interpolation: Interpolation,
}

impl Spatial {
    /// Whether no spatial transform can be drawn.
    pub fn is_off(&self) -> bool {
        self.p_rotation == 0.0 && self.p_scaling == 0.0 && self.p_elastic == 0.0
    }

    /// Checks probabilities, angles (within +-pi), scale factors (above 0, at most
    /// [`MAX_SCALE`]) and the elastic field's magnitude (at least 0, at most the patch's
    /// largest edge) and scale (above 0, at most 1).
    ///
    /// ```
    /// use ctstream::loader::augment::{Range, Spatial};
    /// let r = |lo, hi| Range { lo, hi, around_one: false };
    /// let ok = Spatial { p_scaling: 0.2, scaling: r(0.7, 1.4), ..Default::default() };
    /// assert!(ok.validate([32, 64, 64]).is_ok());
    /// let zero = Spatial { scaling: r(0.0, 1.4), ..ok };
    /// assert!(zero.validate([32, 64, 64]).unwrap_err().contains("scaling"));
    /// let wide = Spatial { p_rotation: 0.2, rotation_rad_zyx: [r(-4.0, 4.0); 3], ..ok };
    /// assert!(wide.validate([32, 64, 64]).unwrap_err().contains("rotation about z"));
    /// let flat = Spatial { p_elastic: 0.2, elastic_magnitude: r(1.0, 2.0), elastic_scale: r(0.0, 0.1), ..ok };
    /// assert!(flat.validate([32, 64, 64]).unwrap_err().contains("elastic scale"));
    /// ```
    ///
    /// # Errors
    /// The setting and its value.
    pub fn validate(&self, patch_zyx: [usize; 3]) -> Result<(), String> {
        check_probability("rotation", self.p_rotation)?;
        check_probability("scaling", self.p_scaling)?;
        check_probability("elastic", self.p_elastic)?;
        let pi = std::f32::consts::PI;
        for (a, r) in ["z", "y", "x"].iter().zip(&self.rotation_rad_zyx) {
            r.check(&format!("rotation about {a} (radians)"), -pi, pi)?;
        }
        if self.p_scaling > 0.0 || self.scaling != Range::default() {
            self.scaling.check("scaling", 0.0, MAX_SCALE)?;
            if self.scaling.lo <= 0.0 {
                return Err(format!("augment scaling {}..: must be above 0", self.scaling.lo));
            }
        }
        if self.p_elastic > 0.0 {
            let edge = *patch_zyx.iter().max().unwrap_or(&1) as f32;
            self.elastic_magnitude.check("elastic magnitude (voxels)", 0.0, edge)?;
            self.elastic_scale.check("elastic scale", 0.0, 1.0)?;
            if self.elastic_scale.lo <= 0.0 {
                return Err(format!(
                    "augment elastic scale {}..{}: must be above 0 (a fraction of the patch edge)",
                    self.elastic_scale.lo, self.elastic_scale.hi
                ));
            }
        }
        Ok(())
    }

    /// Draws one patch's transform from `rng` (a stream of its own; always the same
    /// number of draws); None when nothing was drawn. `seed` seeds the elastic field.
    pub fn draw(&self, rng: &mut impl Rng, seed: u64) -> Option<SpatialParams> {
        let u: [f32; 3] = std::array::from_fn(|_| rng.random());
        let (rotate, scale, deform) =
            (u[0] < self.p_rotation, u[1] < self.p_scaling, u[2] < self.p_elastic);
        let angles: [f32; 3] = std::array::from_fn(|a| self.rotation_rad_zyx[a].draw(rng));
        let one = self.scaling.draw(rng);
        let each: [f32; 3] = std::array::from_fn(|_| self.scaling.draw(rng));
        let magnitude: [f32; 3] = std::array::from_fn(|_| self.elastic_magnitude.draw(rng));
        let smooth: [f32; 3] = std::array::from_fn(|_| self.elastic_scale.draw(rng));
        if !(rotate || scale || deform) {
            return None;
        }
        let angles_zyx = if rotate { angles } else { [0.0; 3] };
        let scales_zyx = match (scale, self.scaling_per_axis) {
            (false, _) => [1.0; 3],
            (true, false) => [one; 3],
            (true, true) => each,
        };
        let elastic = deform.then_some(super::elastic::ElasticParams {
            magnitude_zyx: magnitude,
            scale_zyx: smooth,
            seed: crate::seed::derive(&[seed, 2]),
        });
        Some(SpatialParams {
            angles_zyx,
            scales_zyx,
            matrix: matrix(angles_zyx, scales_zyx),
            elastic,
            interpolation: self.interpolation,
        })
    }
}

/// nnU-Net's `create_affine_matrix_3d(angles, scales)`: `Rz Ry Rx S`, in index space
/// (z, y, x).
///
/// ```
/// use ctstream::loader::augment::spatial::matrix;
/// // A quarter turn about z: the output's offset +1 along x reads the source at -1 along y.
/// let m = matrix([std::f32::consts::FRAC_PI_2, 0.0, 0.0], [1.0; 3]);
/// let v = [0.0, 0.0, 1.0];
/// let r: Vec<f32> = (0..3).map(|i| (0..3).map(|j| m[i][j] * v[j]).sum::<f32>()).collect();
/// assert!(r[0].abs() < 1e-6 && (r[1] + 1.0).abs() < 1e-6 && r[2].abs() < 1e-6);
/// // Scaling by 2 reads twice as far from the centre.
/// assert_eq!(matrix([0.0; 3], [2.0; 3])[1], [0.0, 2.0, 0.0]);
/// ```
pub fn matrix(angles: [f32; 3], scales: [f32; 3]) -> [[f32; 3]; 3] {
    let (a, b, c) = (angles[0] as f64, angles[1] as f64, angles[2] as f64);
    let rx = [[1.0, 0.0, 0.0], [0.0, a.cos(), -a.sin()], [0.0, a.sin(), a.cos()]];
    let ry = [[b.cos(), 0.0, b.sin()], [0.0, 1.0, 0.0], [-b.sin(), 0.0, b.cos()]];
    let rz = [[c.cos(), -c.sin(), 0.0], [c.sin(), c.cos(), 0.0], [0.0, 0.0, 1.0]];
    let mul = |p: [[f64; 3]; 3], q: [[f64; 3]; 3]| -> [[f64; 3]; 3] {
        std::array::from_fn(|i| std::array::from_fn(|j| (0..3).map(|k| p[i][k] * q[k][j]).sum()))
    };
    let s: [[f64; 3]; 3] = std::array::from_fn(|i| {
        std::array::from_fn(|j| if i == j { scales[i] as f64 } else { 0.0 })
    });
    let m = mul(mul(mul(rz, ry), rx), s);
    m.map(|row| row.map(|v| v as f32))
}
