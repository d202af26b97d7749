//! Label volumes: integer maps (uint8) on a scan's stored grid, such as the lung mask
//! ingest computes ([`lungs`]) or a label map read from a file ([`nearest`]), stored
//! beside the scan (format/FORMAT.md, "Label volumes") and summarised in the index
//! ([`summary`], [`components`]).
//!
//! ```
//! use ndarray::Array3;
//! use ctstream::labels::summary;
//! let mut m = Array3::<u8>::zeros((4, 5, 6));
//! m[[1, 2, 3]] = 1;
//! m[[2, 2, 4]] = 2;
//! let s = summary(&m);
//! assert_eq!(s.counts, vec![[1, 1], [2, 1]]);
//! assert_eq!(s.bbox_zyx, Some([[1, 2, 3], [3, 3, 5]]));
//! ```

pub mod airway;
pub mod components;
pub mod error;
pub mod files;
pub mod lung_params;
pub mod lungs;
pub mod nearest;
pub mod nnunet;
pub mod runs;
pub mod seg;

use ndarray::Array3;

/// The name ingest gives its lung mask (0 outside, 1 right lung, 2 left lung).
pub const LUNGS: &str = "lungs";
/// The margin (mm, per axis) of the lung region: `lungs > 0` dilated by a box of this
/// half-width (at least one voxel), where prediction looks. Not stored: derived from
/// `lungs` where it is read ([`lungs::dilate_box`]; format/FORMAT.md).
pub const LUNG_REGION_MARGIN_MM: f64 = 10.0;

/// Relative spacing difference tolerated between a label map and its scan.
pub const SPACING_TOLERANCE: f64 = 1e-4;
/// Origin difference tolerated per axis, as a fraction of the voxel's spacing.
pub const ORIGIN_TOLERANCE_VOXELS: f64 = 0.01;
/// Difference tolerated per direction cosine.
pub const DIRECTION_TOLERANCE: f64 = 1e-4;

/// What the record and the index say of a label volume: the voxels of each value and
/// the box around them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `[value, voxels]` of every value other than 0 present, ascending by value.
    pub counts: Vec<[u64; 2]>,
    /// First voxel and one past the last (z, y, x) of the values other than 0.
    pub bbox_zyx: Option<[[usize; 3]; 2]>,
}

impl Summary {
    /// The counts and the box of a label volume from its components (every voxel other
    /// than 0 lies in exactly one).
    pub fn of_components(c: &[crate::store::LabelComponent]) -> Summary {
        let mut counts: Vec<[u64; 2]> = Vec::new();
        let mut bbox: Option<[[usize; 3]; 2]> = None;
        for k in c {
            match counts.last_mut() {
                Some(last) if last[0] == k.value as u64 => last[1] += k.voxels,
                _ => counts.push([k.value as u64, k.voxels]),
            }
            bbox = Some(match bbox {
                None => k.bbox_zyx,
                Some([lo, hi]) => [
                    std::array::from_fn(|a| lo[a].min(k.bbox_zyx[0][a])),
                    std::array::from_fn(|a| hi[a].max(k.bbox_zyx[1][a])),
                ],
            });
        }
        counts.sort();
        Summary { counts, bbox_zyx: bbox }
    }
}

/// Counts the voxels of each value and the box around the values other than 0.
pub fn summary(m: &Array3<u8>) -> Summary {
    let (nz, ny, nx) = m.dim();
    let mut counts = [0u64; 256];
    let mut lo = [usize::MAX; 3];
    let mut hi = [0usize; 3];
    let mut visit = |z: usize, y: usize, row: &mut dyn Iterator<Item = u8>| {
        let (mut x0, mut x1) = (usize::MAX, 0);
        for (x, v) in row.enumerate() {
            counts[v as usize] += 1;
            if v != 0 {
                x0 = x0.min(x);
                x1 = x + 1;
            }
        }
        if x1 > 0 {
            (lo[0], hi[0]) = (lo[0].min(z), hi[0].max(z + 1));
            (lo[1], hi[1]) = (lo[1].min(y), hi[1].max(y + 1));
            (lo[2], hi[2]) = (lo[2].min(x0), hi[2].max(x1));
        }
    };
    match m.as_slice() {
        Some(s) if nx > 0 => {
            for (r, row) in s.chunks_exact(nx).enumerate() {
                visit(r / ny, r % ny, &mut row.iter().copied());
            }
        }
        _ => {
            for z in 0..nz {
                for y in 0..ny {
                    visit(z, y, &mut m.slice(ndarray::s![z, y, ..]).iter().copied());
                }
            }
        }
    }
    let list: Vec<[u64; 2]> =
        (1..256).filter(|&v| counts[v] > 0).map(|v| [v as u64, counts[v]]).collect();
    let bbox_zyx = (!list.is_empty()).then_some([lo, hi]);
    Summary { counts: list, bbox_zyx }
}

/// Dice overlap `2 |A ∩ B| / (|A| + |B|)` of the voxels where `a` and `b` are not 0
/// (1 when both are empty). The arrays must have one shape.
///
/// ```
/// use ndarray::Array3;
/// let mut a = Array3::<u8>::zeros((1, 2, 2));
/// let mut b = a.clone();
/// a[[0, 0, 0]] = 1; a[[0, 0, 1]] = 1;
/// b[[0, 0, 1]] = 2; b[[0, 1, 1]] = 1;
/// assert_eq!(ctstream::labels::dice(&a, &b), 0.5);
/// ```
pub fn dice(a: &Array3<u8>, b: &Array3<u8>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "dice of arrays of different shapes");
    let (mut both, mut na, mut nb) = (0u64, 0u64, 0u64);
    for (&x, &y) in a.iter().zip(b.iter()) {
        let (x, y) = (x != 0, y != 0);
        both += (x && y) as u64;
        na += x as u64;
        nb += y as u64;
    }
    if na + nb == 0 { 1.0 } else { 2.0 * both as f64 / (na + nb) as f64 }
}
