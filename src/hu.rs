//! Hounsfield units as ctstream stores them: `i16`, with one documented rule for every
//! value that does not fit.
//!
//! **The rule.** A value `v` from a scan (after DICOM rescale slope/intercept, or a float
//! MetaImage voxel) becomes `clamp(round_half_away_from_zero(v), -32768, 32767)`. Every
//! voxel whose rounded value lay outside the `i16` range is counted as *clamped*; readers
//! report the count. NaN has no HU and is an error, reported by the reader with the file.
//!
//! The goldens under `tests/goldens/` apply the same rule to pydicom's and SimpleITK's
//! values (`tools/goldens/make_goldens.py`, `to_i16`).

use ndarray::Array3;
use serde::{Deserialize, Serialize};

/// Converts one value to HU by the rule above: `(value, clamped)`, or `None` for NaN.
///
/// ```
/// use ctstream::hu::to_i16;
/// assert_eq!(to_i16(-0.5), Some((-1, false)));   // half away from zero
/// assert_eq!(to_i16(2.5), Some((3, false)));
/// assert_eq!(to_i16(40000.0), Some((32767, true)));
/// assert_eq!(to_i16(f64::NEG_INFINITY), Some((-32768, true)));
/// assert_eq!(to_i16(f64::NAN), None);
/// ```
#[inline]
pub fn to_i16(value: f64) -> Option<(i16, bool)> {
    if value.is_nan() {
        return None;
    }
    let r = value.round();
    if r < i16::MIN as f64 {
        Some((i16::MIN, true))
    } else if r > i16::MAX as f64 {
        Some((i16::MAX, true))
    } else {
        Some((r as i16, false))
    }
}

/// Minimum, maximum and mean HU of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HuStats {
    /// Smallest voxel value.
    pub min: i16,
    /// Largest voxel value.
    pub max: i16,
    /// Mean voxel value.
    pub mean: f64,
}

impl HuStats {
    /// Statistics of `hu`; `None` for an empty array.
    pub fn of(hu: &Array3<i16>) -> Option<HuStats> {
        if hu.is_empty() {
            return None;
        }
        let (mut min, mut max, mut sum) = (i16::MAX, i16::MIN, 0i64);
        for &v in hu.iter() {
            min = min.min(v);
            max = max.max(v);
            sum += v as i64;
        }
        Some(HuStats { min, max, mean: sum as f64 / hu.len() as f64 })
    }
}
