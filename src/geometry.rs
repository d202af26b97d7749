//! Where a volume sits in the patient: origin, spacing and direction, and the
//! transforms between world millimetres and voxel indices.
//!
//! This is the only module that converts between the two axis orders ctstream uses:
//!
//! - **physical vectors** (origin, spacing, world points) are `(x, y, z)` in mm, in the
//!   patient coordinate system of DICOM/ITK (LPS);
//! - **array shapes and voxel indices** are `(z, y, x)`, the order of
//!   [`ndarray::Array3`] and of SimpleITK's `GetArrayFromImage`.
//!
//! The transforms are ITK's: `world = origin + D · diag(spacing) · index_xyz`, where `D` is
//! the direction matrix whose *columns* are the directions of the x, y and z array axes.

use serde::{Deserialize, Serialize};

/// Origin, spacing and direction of a 3D image grid.
///
/// `direction` is row-major, exactly as SimpleITK's `Image.GetDirection()`: column `j`
/// (elements `j`, `3 + j`, `6 + j`) is the unit vector of array axis `j` (x, y, z) in
/// world coordinates. Note that a MetaImage `TransformMatrix` lists the same matrix
/// *transposed* (the axis vectors one after another); the MetaImage reader and writer
/// convert, so this field always means what SimpleITK means.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// World position (x, y, z) in mm of the centre of voxel (0, 0, 0).
    pub origin_xyz: [f64; 3],
    /// Distance in mm between voxel centres along the x, y and z array axes.
    pub spacing_xyz: [f64; 3],
    /// Direction cosines, row-major, as SimpleITK `GetDirection()`.
    pub direction: [f64; 9],
}

/// The identity direction matrix (axis-aligned, LPS).
pub const IDENTITY: [f64; 9] = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];

impl Geometry {
    /// An axis-aligned geometry with the given origin and spacing, both (x, y, z) mm.
    pub fn axis_aligned(origin_xyz: [f64; 3], spacing_xyz: [f64; 3]) -> Self {
        Geometry { origin_xyz, spacing_xyz, direction: IDENTITY }
    }

    /// Whether the direction matrix is the identity (within `1e-9`).
    pub fn is_identity_direction(&self) -> bool {
        self.direction.iter().zip(IDENTITY.iter()).all(|(a, b)| (a - b).abs() < 1e-9)
    }

    /// The 3x3 matrix `D · diag(spacing)`, row-major: maps an (x, y, z) index step to mm.
    fn index_to_world_matrix(&self) -> [f64; 9] {
        let d = &self.direction;
        let s = &self.spacing_xyz;
        let mut m = [0.0; 9];
        for r in 0..3 {
            for c in 0..3 {
                m[3 * r + c] = d[3 * r + c] * s[c];
            }
        }
        m
    }

    /// World point (x, y, z) mm of a continuous voxel index given as **(z, y, x)**.
    ///
    /// Agrees with SimpleITK's `TransformContinuousIndexToPhysicalPoint` (which takes the
    /// index as (x, y, z)).
    ///
    /// ```
    /// use ctstream::geometry::Geometry;
    /// let g = Geometry::axis_aligned([-100.0, -50.0, -300.0], [0.7, 0.7, 2.5]);
    /// // voxel z=2, y=10, x=4
    /// assert_eq!(g.index_to_world([2.0, 10.0, 4.0]), [-100.0 + 4.0 * 0.7, -50.0 + 10.0 * 0.7, -295.0]);
    /// ```
    pub fn index_to_world(&self, index_zyx: [f64; 3]) -> [f64; 3] {
        let m = self.index_to_world_matrix();
        let i = [index_zyx[2], index_zyx[1], index_zyx[0]];
        let mut p = self.origin_xyz;
        for (r, pr) in p.iter_mut().enumerate() {
            *pr += m[3 * r] * i[0] + m[3 * r + 1] * i[1] + m[3 * r + 2] * i[2];
        }
        p
    }

    /// Continuous voxel index, returned as **(z, y, x)**, of a world point given as
    /// **(x, y, z)** mm.
    ///
    /// Agrees with SimpleITK's `TransformPhysicalPointToContinuousIndex` (which returns the
    /// index as (x, y, z)). Returns `None` when the grid is degenerate (a zero spacing or a
    /// singular direction matrix).
    ///
    /// ```
    /// use ctstream::geometry::Geometry;
    /// let g = Geometry::axis_aligned([-100.0, -50.0, -300.0], [0.5, 0.5, 2.0]);
    /// let zyx = g.world_to_index([-99.0, -45.0, -290.0]).unwrap();
    /// assert_eq!(zyx, [5.0, 10.0, 2.0]);
    /// ```
    pub fn world_to_index(&self, world_xyz: [f64; 3]) -> Option<[f64; 3]> {
        let inv = invert3(&self.index_to_world_matrix())?;
        let d = [
            world_xyz[0] - self.origin_xyz[0],
            world_xyz[1] - self.origin_xyz[1],
            world_xyz[2] - self.origin_xyz[2],
        ];
        let mut ixyz = [0.0; 3];
        for (r, v) in ixyz.iter_mut().enumerate() {
            *v = inv[3 * r] * d[0] + inv[3 * r + 1] * d[1] + inv[3 * r + 2] * d[2];
        }
        Some([ixyz[2], ixyz[1], ixyz[0]])
    }

    /// Whether a continuous index (z, y, x) lies within a grid of `shape_zyx` voxels,
    /// counting each voxel as the box of half a voxel around its centre.
    pub fn contains_index(shape_zyx: [usize; 3], index_zyx: [f64; 3]) -> bool {
        (0..3).all(|a| index_zyx[a] >= -0.5 && index_zyx[a] <= shape_zyx[a] as f64 - 0.5)
    }
}

/// The smallest spacing ctstream accepts, in mm (0.1 µm: finer than any CT, micro-CT included).
pub const MIN_SPACING_MM: f64 = 1e-4;
/// The largest spacing ctstream accepts, in mm (10 m).
pub const MAX_SPACING_MM: f64 = 1e4;
/// The largest origin coordinate ctstream accepts, in mm (1 km from the scanner's origin).
pub const MAX_ABS_ORIGIN_MM: f64 = 1e6;

/// A geometry value no scan can have: which of origin, spacing or direction, and why.
/// Readers turn it into their own error, naming the file and the field it came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field} {message}")]
pub struct GeometryError {
    /// `"origin"`, `"spacing"` or `"direction"`.
    pub field: &'static str,
    /// What is wrong, with the values.
    pub message: String,
}

impl Geometry {
    /// Checks that every value is one a scan can have: spacings finite and within
    /// [[`MIN_SPACING_MM`], [`MAX_SPACING_MM`]], origin finite and within
    /// [`MAX_ABS_ORIGIN_MM`], direction finite with unit columns (within 1e-3) and not
    /// singular. Every reader calls this before it returns a volume, and the store
    /// refuses to write or read a geometry that fails it, so nothing downstream sees a
    /// NaN, a zero or a negative spacing.
    ///
    /// ```
    /// use ctstream::geometry::Geometry;
    /// assert!(Geometry::axis_aligned([0.0; 3], [0.7, 0.7, 2.5]).check().is_ok());
    /// let e = Geometry::axis_aligned([f64::NAN, 0.0, 0.0], [1.0; 3]).check().unwrap_err();
    /// assert_eq!(e.field, "origin");
    /// assert!(Geometry::axis_aligned([0.0; 3], [1.0, 0.0, 1.0]).check().is_err());
    /// ```
    ///
    /// # Errors
    /// [`GeometryError`] naming the first field at fault.
    pub fn check(&self) -> Result<(), GeometryError> {
        let err = |field, message: String| Err(GeometryError { field, message });
        let s = self.spacing_xyz;
        if s.iter().any(|v| !(v.is_finite() && (MIN_SPACING_MM..=MAX_SPACING_MM).contains(v))) {
            return err(
                "spacing",
                format!("{s:?} mm is not finite and within {MIN_SPACING_MM}..{MAX_SPACING_MM} mm"),
            );
        }
        let o = self.origin_xyz;
        if o.iter().any(|v| !(v.is_finite() && v.abs() <= MAX_ABS_ORIGIN_MM)) {
            return err(
                "origin",
                format!("{o:?} mm is not finite and within {MAX_ABS_ORIGIN_MM} mm of 0"),
            );
        }
        let d = &self.direction;
        if d.iter().any(|v| !v.is_finite()) {
            return err("direction", format!("{d:?} is not finite"));
        }
        for c in 0..3 {
            let norm = (d[c] * d[c] + d[3 + c] * d[3 + c] + d[6 + c] * d[6 + c]).sqrt();
            if (norm - 1.0).abs() > 1e-3 {
                return err(
                    "direction",
                    format!("{d:?} (row-major): column {c} has length {norm}, not 1"),
                );
            }
        }
        if invert3(d).is_none_or(|_| det3(d).abs() < 1e-3) {
            return err(
                "direction",
                format!("{d:?} (row-major) is singular: its axes are not independent"),
            );
        }
        Ok(())
    }
}

/// Determinant of a row-major 3x3 matrix.
fn det3(m: &[f64; 9]) -> f64 {
    m[0] * (m[4] * m[8] - m[5] * m[7]) - m[1] * (m[3] * m[8] - m[5] * m[6])
        + m[2] * (m[3] * m[7] - m[4] * m[6])
}

/// Inverse of a row-major 3x3 matrix, `None` when it is (nearly) singular.
pub(crate) fn invert3(m: &[f64; 9]) -> Option<[f64; 9]> {
    let det = det3(m);
    let scale = m.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    if !det.is_finite() || det.abs() <= 1e-12 * scale.powi(3) {
        return None;
    }
    let inv_det = 1.0 / det;
    Some([
        (m[4] * m[8] - m[5] * m[7]) * inv_det,
        (m[2] * m[7] - m[1] * m[8]) * inv_det,
        (m[1] * m[5] - m[2] * m[4]) * inv_det,
        (m[5] * m[6] - m[3] * m[8]) * inv_det,
        (m[0] * m[8] - m[2] * m[6]) * inv_det,
        (m[2] * m[3] - m[0] * m[5]) * inv_det,
        (m[3] * m[7] - m[4] * m[6]) * inv_det,
        (m[1] * m[6] - m[0] * m[7]) * inv_det,
        (m[0] * m[4] - m[1] * m[3]) * inv_det,
    ])
}

/// Cross product of two (x, y, z) vectors.
pub(crate) fn cross(a: [f64; 3], b: [f64; 3]) -> [f64; 3] {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

/// Dot product of two (x, y, z) vectors.
pub(crate) fn dot(a: [f64; 3], b: [f64; 3]) -> f64 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_oblique() {
        // A rotation about z by 30 degrees, anisotropic spacing.
        let (s, c) = (30f64.to_radians().sin(), 30f64.to_radians().cos());
        let g = Geometry {
            origin_xyz: [10.0, -20.0, 300.0],
            spacing_xyz: [0.7, 0.8, 2.5],
            direction: [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0],
        };
        let idx = [3.25, 7.5, 11.0];
        let w = g.index_to_world(idx);
        // Hand computation: x axis step is (c, s, 0) * 0.7, y step (-s, c, 0) * 0.8.
        let expect = [
            10.0 + 11.0 * 0.7 * c - 7.5 * 0.8 * s,
            -20.0 + 11.0 * 0.7 * s + 7.5 * 0.8 * c,
            300.0 + 3.25 * 2.5,
        ];
        for a in 0..3 {
            assert!((w[a] - expect[a]).abs() < 1e-12);
        }
        let back = g.world_to_index(w).unwrap();
        for a in 0..3 {
            assert!((back[a] - idx[a]).abs() < 1e-12);
        }
    }

    #[test]
    fn singular_grid_has_no_inverse() {
        let g = Geometry::axis_aligned([0.0; 3], [1.0, 0.0, 1.0]);
        assert!(g.world_to_index([1.0, 1.0, 1.0]).is_none());
    }
}
