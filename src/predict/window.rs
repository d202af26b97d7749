//! Sliding-window geometry: where the tiles go and how much each voxel of a tile counts.

/// Starts of the tiles along one axis of length `n` for tiles of length `p` overlapping by
/// `overlap` (0 <= overlap < 1): evenly spaced from 0 to `n - p`, no further apart than
/// `p * (1 - overlap)` (rounded, at least 1), as nnU-Net places them
/// (`compute_steps_for_sliding_window`: starts rounded by `np.round`, ties to even). A side
/// shorter than the tile gets one tile at 0 (the part past the end reads the fill value).
///
/// ```
/// use ctstream::predict::window::tile_starts;
/// assert_eq!(tile_starts(100, 32, 0.5), [0, 14, 27, 41, 54, 68]); // 6 tiles, step 13.6
/// assert_eq!(tile_starts(64, 32, 0.5), [0, 16, 32]);
/// assert_eq!(tile_starts(20, 32, 0.5), [0]);
/// // 121 - 32 = 89 in 6 steps of 14.83: 44.5 rounds to 44, as numpy rounds it.
/// assert_eq!(tile_starts(121, 32, 0.5), [0, 15, 30, 44, 59, 74, 89]);
/// ```
pub fn tile_starts(n: usize, p: usize, overlap: f64) -> Vec<usize> {
    if n <= p {
        return vec![0];
    }
    let stride = ((p as f64 * (1.0 - overlap)).round() as usize).max(1);
    let steps = (n - p).div_ceil(stride) + 1;
    let actual = (n - p) as f64 / (steps - 1) as f64;
    (0..steps).map(|i| (i as f64 * actual).round_ties_even() as usize).collect()
}

/// The voxels along one axis of length `n` whose nearest tile is each of the tiles at
/// `starts` (of length `p`): the voxel whose centre `v + 0.5` is closest to the tile's
/// centre `start + p / 2`, the earlier tile on a tie. The cells are consecutive, cover
/// `0..n` and each holds its tile's centre (a side shorter than the tile: one cell).
///
/// ```
/// use ctstream::predict::window::{nearest_cells, tile_starts};
/// // Tiles of 32 at 0, 16, 32 (centres 16, 32, 48): voxel 23 (centre 23.5) is nearer
/// // 16, voxel 24 (24.5) nearer 32; voxel 39 (39.5) nearer 32, voxel 40 (40.5) nearer 48.
/// assert_eq!(nearest_cells(&tile_starts(64, 32, 0.5), 32, 64), [0..24, 24..40, 40..64]);
/// // Tiles of 3 at 0 and 2 (centres 1.5, 3.5): voxel 2 (2.5) is a tie, to the earlier.
/// assert_eq!(nearest_cells(&[0, 2], 3, 5), [0..3, 3..5]);
/// assert_eq!(nearest_cells(&[0], 32, 20), [0..20]);
/// ```
pub fn nearest_cells(starts: &[usize], p: usize, n: usize) -> Vec<std::ops::Range<usize>> {
    // In units of half a voxel: a tile's centre is 2 start + p, a voxel's 2 v + 1. Voxel v
    // goes to the next tile when 2 v + 1 - c0 > c1 - (2 v + 1), i.e. 4 v + 2 > c0 + c1.
    let mut bounds = vec![0];
    for w in starts.windows(2) {
        let sum = (2 * w[0] + p) + (2 * w[1] + p);
        bounds.push(((sum.saturating_sub(2)) / 4 + 1).min(n));
    }
    bounds.push(n);
    bounds.windows(2).map(|b| b[0]..b[1].max(b[0])).collect()
}

/// Gaussian importance of each voxel of a tile of shape `p` (C order): `exp(-sum((i -
/// c)^2 / (2 sigma^2)))` with `c = (p - 1) / 2` and `sigma = p / 8` per axis, as nnU-Net
/// blends tiles, so voxels near a tile's edge, where the network sees little context,
/// count least. 1 at the centre of an odd-sided tile.
pub fn gaussian(p: [usize; 3]) -> Vec<f32> {
    let axis = |n: usize| -> Vec<f64> {
        let (c, s) = ((n as f64 - 1.0) / 2.0, n as f64 / 8.0);
        (0..n).map(|i| (-(i as f64 - c).powi(2) / (2.0 * s * s)).exp()).collect()
    };
    let (gz, gy, gx) = (axis(p[0]), axis(p[1]), axis(p[2]));
    let mut w = Vec::with_capacity(p.iter().product());
    for z in &gz {
        for y in &gy {
            for x in &gx {
                w.push((z * y * x) as f32);
            }
        }
    }
    w
}

/// The mirrorings of test-time augmentation along the chosen axes (z, y, x): every
/// non-empty combination of them, in nnU-Net's order (single axes first, then pairs,
/// then all three).
///
/// ```
/// use ctstream::predict::window::mirrorings;
/// assert!(mirrorings([false; 3]).is_empty());
/// assert_eq!(mirrorings([true, false, true]), [[true, false, false], [false, false, true], [true, false, true]]);
/// assert_eq!(mirrorings([true; 3]).len(), 7);
/// ```
pub fn mirrorings(axes: [bool; 3]) -> Vec<[bool; 3]> {
    // Every non-empty subset of the chosen axes, ordered by size, then as
    // itertools.combinations orders them (z before y before x).
    let mut out: Vec<[bool; 3]> = (1u8..8)
        .map(|bits| std::array::from_fn(|a| bits & (4 >> a) != 0))
        .filter(|f: &[bool; 3]| (0..3).all(|a| axes[a] || !f[a]))
        .collect();
    out.sort_by_key(|f| (f.iter().filter(|&&b| b).count(), f.map(|b| !b)));
    out
}

/// The axes of test-time mirroring from their letters: `zyx` (nnU-Net's default for 3D),
/// any of `z`, `y`, `x` (e.g. `yx`: in-plane only), or `none`.
///
/// ```
/// use ctstream::predict::window::parse_mirror;
/// assert_eq!(parse_mirror("zyx"), Ok([true; 3]));
/// assert_eq!(parse_mirror("x"), Ok([false, false, true]));
/// assert_eq!(parse_mirror("none"), Ok([false; 3]));
/// assert!(parse_mirror("xx").is_err() && parse_mirror("w").is_err() && parse_mirror("").is_err());
/// ```
///
/// # Errors
/// A letter other than z, y, x, a letter twice, or nothing.
pub fn parse_mirror(s: &str) -> Result<[bool; 3], String> {
    let bad =
        || format!("mirror `{s}`: give some of the axes z, y, x once each (zyx, yx, ...) or none");
    if s == "none" {
        return Ok([false; 3]);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let mut out = [false; 3];
    for c in s.chars() {
        let a = match c {
            'z' => 0,
            'y' => 1,
            'x' => 2,
            _ => return Err(bad()),
        };
        if out[a] {
            return Err(bad());
        }
        out[a] = true;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (100 - 32) / 16 = 4.25 -> 5 steps of the stride 16 -> 6 tiles, spaced 68 / 5 = 13.6:
    /// 0, 13.6, 27.2, 40.8, 54.4, 68 -> 0, 14, 27, 41, 54, 68.
    #[test]
    fn tiles_cover_the_axis_evenly() {
        for (n, p, o) in [
            (100, 32, 0.5),
            (64, 32, 0.5),
            (65, 32, 0.5),
            (33, 32, 0.0),
            (300, 64, 0.25),
            (7, 4, 0.9),
        ] {
            let s = tile_starts(n, p, o);
            assert_eq!(s[0], 0);
            assert_eq!(*s.last().unwrap(), n - p);
            let max_gap = ((p as f64 * (1.0 - o)).round() as usize).max(1);
            assert!(
                s.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] <= max_gap),
                "{n} {p} {o}: {s:?}"
            );
        }
    }

    /// At the centre of a 3-voxel axis the weight is 1; one voxel off it, with
    /// sigma = 3/8, exp(-1 / (2 * 0.140625)) = exp(-3.5556) = 0.028566.
    #[test]
    fn gaussian_matches_hand_values() {
        let w = gaussian([3, 3, 3]);
        assert_eq!(w[13], 1.0);
        assert!((w[14] - 0.028_566).abs() < 1e-6, "{}", w[14]);
        // A corner is off-centre on all three axes: 0.0285655^3 = 2.3309e-5.
        assert!((w[0] / 2.3309e-5 - 1.0).abs() < 1e-4, "{}", w[0]);
    }
}
