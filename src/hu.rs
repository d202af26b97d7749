//! Hounsfield units as ctstream stores them: `i16`, with one documented rule for every
//! value that does not fit.
//!
//! **The rule.** A value `v` from a scan (after DICOM rescale slope/intercept, or a float
//! MetaImage voxel) becomes `clamp(round_half_away_from_zero(v), -32768, 32767)`. Every
//! voxel whose rounded value lay outside the `i16` range is counted as *clamped*; readers
//! report the count. NaN and infinities have no HU (they are not measurements, and an
//! infinity clamped to 32767 would pass for bone): an error, reported by the reader with
//! the file.
//!
//! The goldens under `tests/goldens/` apply the same rule to pydicom's and SimpleITK's
//! values (`tools/goldens/make_goldens.py`, `to_i16`).

use ndarray::Array3;
use serde::{Deserialize, Serialize};

/// Converts one value to HU by the rule above: `(value, clamped)`, or `None` for NaN and
/// infinities.
///
/// ```
/// use ctstream::hu::to_i16;
/// assert_eq!(to_i16(-0.5), Some((-1, false)));   // half away from zero
/// assert_eq!(to_i16(2.5), Some((3, false)));
/// assert_eq!(to_i16(40000.0), Some((32767, true)));
/// assert_eq!(to_i16(-40000.0), Some((-32768, true)));
/// assert_eq!(to_i16(f64::NEG_INFINITY), None);
/// assert_eq!(to_i16(f64::NAN), None);
/// ```
#[inline]
pub fn to_i16(value: f64) -> Option<(i16, bool)> {
    if !value.is_finite() {
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

/// Scalar types voxel data comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    /// u8.
    U8,
    /// i8.
    I8,
    /// u16.
    U16,
    /// i16.
    I16,
    /// u32.
    U32,
    /// i32.
    I32,
    /// u64.
    U64,
    /// i64.
    I64,
    /// f32.
    F32,
    /// f64.
    F64,
}

impl Scalar {
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            Scalar::U8 | Scalar::I8 => 1,
            Scalar::U16 | Scalar::I16 => 2,
            Scalar::U32 | Scalar::I32 | Scalar::F32 => 4,
            Scalar::U64 | Scalar::I64 | Scalar::F64 => 8,
        }
    }
}

/// Voxels converted to HU by the rule, with what the rule had to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Converted {
    /// The values, in the order of the bytes.
    pub values: Vec<i16>,
    /// How many were clamped.
    pub clamped: u64,
    /// How many were NaN or infinite (and became 0; readers turn any into an error).
    pub nan: u64,
}

/// Applies the rule to one value, counting clamped and NaN values.
#[inline]
fn rule(x: f64, clamped: &mut u64, nan: &mut u64) -> i16 {
    match to_i16(x) {
        Some((v, c)) => {
            *clamped += c as u64;
            v
        }
        None => {
            *nan += 1;
            0
        }
    }
}

/// Integers convert exactly (no detour through f64 for 64-bit values).
#[inline]
fn clamp_int(x: i128, clamped: &mut u64) -> i16 {
    if x < i16::MIN as i128 {
        *clamped += 1;
        i16::MIN
    } else if x > i16::MAX as i128 {
        *clamped += 1;
        i16::MAX
    } else {
        x as i16
    }
}

/// Converts packed values of type `t` (big-endian when `big_endian`) to HU by the rule,
/// after `value * slope + intercept` when `scale` is `Some((slope, intercept))`.
/// Trailing bytes that do not make a whole value are ignored.
///
/// ```
/// use ctstream::hu::{convert, Scalar};
/// let bytes: Vec<u8> = [1.5f32, 40000.0].iter().flat_map(|v| v.to_le_bytes()).collect();
/// let c = convert(&bytes, Scalar::F32, false, None);
/// assert_eq!((c.values, c.clamped), (vec![2, 32767], 1));
/// ```
pub fn convert(bytes: &[u8], t: Scalar, big_endian: bool, scale: Option<(f64, f64)>) -> Converted {
    let (mut clamped, mut nan) = (0u64, 0u64);
    macro_rules! each {
        ($t:ty, $n:expr, $is_int:expr) => {{
            bytes
                .chunks_exact($n)
                .map(|c| {
                    let a: [u8; $n] = c.try_into().expect("chunks_exact yields whole values");
                    let x =
                        if big_endian { <$t>::from_be_bytes(a) } else { <$t>::from_le_bytes(a) };
                    match scale {
                        Some((s, i)) => rule(x as f64 * s + i, &mut clamped, &mut nan),
                        None if $is_int => clamp_int(x as i128, &mut clamped),
                        None => rule(x as f64, &mut clamped, &mut nan),
                    }
                })
                .collect()
        }};
    }
    let values: Vec<i16> = match t {
        Scalar::I16 if scale.is_none() => bytes
            .chunks_exact(2)
            .map(|c| {
                if big_endian {
                    i16::from_be_bytes([c[0], c[1]])
                } else {
                    i16::from_le_bytes([c[0], c[1]])
                }
            })
            .collect(),
        Scalar::U8 => each!(u8, 1, true),
        Scalar::I8 => each!(i8, 1, true),
        Scalar::U16 => each!(u16, 2, true),
        Scalar::I16 => each!(i16, 2, true),
        Scalar::U32 => each!(u32, 4, true),
        Scalar::I32 => each!(i32, 4, true),
        Scalar::U64 => each!(u64, 8, true),
        Scalar::I64 => each!(i64, 8, true),
        Scalar::F32 => each!(f32, 4, false),
        Scalar::F64 => each!(f64, 8, false),
    };
    Converted { values, clamped, nan }
}
