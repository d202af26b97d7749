//! Lung masks from HU alone (no network weights), computed at ingest on the stored grid
//! and stored as the label volume `lungs` (0 outside, 1 right lung, 2 left lung); the lung
//! region (the lungs dilated by a margin) is derived from it where it is read.
//!
//! The method, after RadIO's `segment` and the Data Science Bowl 2017 winner's
//! preprocessing (lfz/DSB2017 `preprocessing/step1.py`), with their parameters where
//! they carry over:
//!
//! 1. **Air**: voxels below -400 HU ([`LungParams::air_below_hu`]), in 6-connected 3D
//!    components (as `scipy.ndimage.label` makes them).
//! 2. **Lung components** are those of at least 5 ml whose interior voxels (all six
//!    neighbours air) are mostly lung parenchyma, not gas: at least 60 % above -950 HU.
//!    Lung tissue is -950..-500 HU even in emphysema-free inspiration scans; the air
//!    outside the body, the gas in the bowel and the lumen of the airways are about
//!    -1000 HU. This is what keeps the bowel gas next to the lung bases out. Interior
//!    voxels, because a gas pocket's one-voxel shell is partial volume that counts as
//!    parenchyma, the more so once interpolated onto a finer grid: TotalSegmentator's
//!    example at the ingest default of 1 mm has lungs at 100 % and its largest bowel gas
//!    at 49 % (58 % of all its voxels); elastix's lung is at 66 % on its own 2 mm grid
//!    and 75 % at 1 mm. A component that touches the in-plane border of
//!    the scan and holds more than 20 % voxels at or below -1000 HU is outside air even
//!    when partial volume makes it look like tissue (corners beside the table). A lung
//!    cut by the field of view (a crop) touches the border too, but with parenchyma:
//!    it is kept.
//! 3. **Right and left**: the body's midline is the mean x of the voxels at or above the
//!    air threshold (body and table, which is symmetric), or the scanner's x = 0 when the
//!    field of view cuts the body at its left or right edge. A component lies on the side
//!    of its centroid (patient's right is -x in LPS, value 1); one with more than a fifth
//!    of its voxels on each side but under 5 % within 10 mm of the midline (lungs joined at
//!    a thin anterior junction) is cut at the midline.
//! 4. **Airway**: the trachea and main bronchi, where they join a lung's component, are
//!    followed slice by slice from the top of the mask as small islands of gas and cut
//!    out ([`super::airway`]).
//! 5. **Holes** of each lung are filled slice by slice (2D, 4-connected background from
//!    the slice's border), so vessels and nodules inside the lung belong to it; nothing
//!    is eroded, so nodules at the pleura are not cut away from the lung region.
//! 6. **Region** ([`region`], not stored): `lungs > 0` dilated by a box of
//!    [`super::LUNG_REGION_MARGIN_MM`] per axis (at least one voxel): it holds nodules
//!    attached to the pleura, and is where prediction looks.
//!
//! Written here rather than taken from `ndarray-ndimage`: the labelling
//! ([`super::runs`] says why), hole filling (the crate has none) and the box dilation
//! ([`dilate_box`] says why).

use ndarray::Array3;

use crate::geometry::Geometry;
use rayon::prelude::*;
use serde::Serialize;

pub use super::lung_params::LungParams;

/// The value of the right lung in `lungs`.
pub const RIGHT: u8 = 1;
/// The value of the left lung in `lungs`.
pub const LEFT: u8 = 2;

/// One 3D air component the method looked at (those of at least 1 ml), and whether it
/// was taken as lung.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AirComponent {
    /// Volume, ml.
    pub ml: f64,
    /// Share of interior voxels (all six neighbours air) above
    /// [`LungParams::parenchyma_above_hu`]; of all voxels when none is interior, or when
    /// the component was ruled out before its interior was counted (too small, outside
    /// air, or under the least share over all its voxels).
    pub parenchyma_share: f64,
    /// Share of voxels at or below [`LungParams::gas_at_most_hu`].
    pub gas_share: f64,
    /// Whether it touches the in-plane border of the scan.
    pub touches_border: bool,
    /// Taken as lung.
    pub lung: bool,
}

/// A computed lung mask.
#[derive(Debug, Clone)]
pub struct LungMask {
    /// 0 outside, [`RIGHT`], [`LEFT`].
    pub lungs: Array3<u8>,
    /// Right lung, ml.
    pub right_ml: f64,
    /// Left lung, ml.
    pub left_ml: f64,
    /// The air components of at least 1 ml, largest first.
    pub air_components: Vec<AirComponent>,
    /// The trachea and main bronchi cut out ([`super::airway`]).
    pub airway: super::airway::Airway,
}

impl LungMask {
    /// Whether any lung was found.
    pub fn found(&self) -> bool {
        self.right_ml + self.left_ml > 0.0
    }
}

#[derive(Clone, Default)]
struct Stat {
    voxels: u64,
    parenchyma: u64,
    gas: u64,
    /// Interior voxels (all six neighbours air) and those of them that are parenchyma.
    core: u64,
    core_parenchyma: u64,
    border: bool,
    sum_x: f64,
    right_of_mid: u64,
    near_mid: u64,
}

/// Voxels of `[x0, x1)` within `[lo, hi]` (real bounds).
fn overlap(x0: u32, x1: u32, lo: f64, hi: f64) -> u64 {
    let a = (x0 as f64).max(lo.ceil());
    let b = ((x1 - 1) as f64).min(hi.floor());
    if b >= a { (b - a) as u64 + 1 } else { 0 }
}

/// Computes the lung mask of `hu` (a stored volume, (z, y, x), on the axis-aligned grid
/// `g`) (module doc).
///
/// Air components come from [`super::runs::label`].
pub fn segment(hu: &Array3<i16>, g: &Geometry, p: &LungParams) -> LungMask {
    let (nz, ny, nx) = hu.dim();
    let spacing_xyz = g.spacing_xyz;
    let voxel_ml = spacing_xyz.iter().product::<f64>() / 1000.0;
    let empty = || LungMask {
        lungs: Array3::zeros((nz, ny, nx)),
        right_ml: 0.0,
        left_ml: 0.0,
        air_components: Vec::new(),
        airway: Default::default(),
    };
    let hu_owned;
    let hu_c: &[i16] = match hu.as_slice() {
        Some(s) => s,
        None => {
            hu_owned = hu.as_standard_layout().into_owned();
            match hu_owned.as_slice() {
                Some(s) => s,
                None => return empty(),
            }
        }
    };
    if hu_c.is_empty() {
        return empty();
    }
    // runs::label refuses shapes whose rows or runs a u32 cannot count.
    let Some(lab) = super::runs::label(hu_c, [nz, ny, nx], |&v| (v < p.air_below_hu) as u8) else {
        return empty();
    };
    // The body (not air): its voxels, x sum and voxels on the x border, from the runs.
    let (mut air_n, mut air_x, mut air_edge) = (0u64, 0f64, 0u64);
    for r in &lab.runs {
        air_n += r.len();
        air_x += (r.x0 as f64 + r.x1 as f64 - 1.0) * r.len() as f64 / 2.0;
        // A row one voxel wide has one edge voxel, not two.
        air_edge += (r.x0 == 0) as u64 + (r.x1 as usize == nx && nx > 1) as u64;
    }
    let rows = (nz * ny) as u64;
    let body_n = rows * nx as u64 - air_n;
    let body_x = rows as f64 * (nx as f64 * (nx as f64 - 1.0) / 2.0) - air_x;
    let body_edge = rows * if nx > 1 { 2 } else { 1 } - air_edge;

    // The body's midline: the mean x of the voxels that are not air, unless the field of
    // view cuts the body at its left or right edge (more than 5 % of the edge is body: a
    // crop), where the scanner's x = 0 is the better guess.
    let cropped = body_edge as f64 > 0.05 * (2 * nz * ny) as f64;
    let midline = if cropped || body_n == 0 {
        (0.0 - g.origin_xyz[0]) / spacing_xyz[0]
    } else {
        body_x / body_n as f64
    };
    // Voxels within 10 mm of the midline: a component with few of them is two lungs
    // joined at a thin junction; one with many is a lung across the midline.
    let junction = 10.0 / spacing_xyz[0];

    // Each component's counts, from its runs.
    let mut stats = vec![Stat::default(); lab.count];
    for (r, &c) in lab.runs.iter().zip(&lab.component) {
        let y = r.row as usize % ny;
        let len = r.len();
        let voxels =
            &hu_c[r.row as usize * nx + r.x0 as usize..r.row as usize * nx + r.x1 as usize];
        let s = &mut stats[c as usize];
        s.voxels += len;
        let (mut par, mut gas) = (0u64, 0u64);
        for &v in voxels {
            par += (v > p.parenchyma_above_hu) as u64;
            gas += (v <= p.gas_at_most_hu) as u64;
        }
        s.parenchyma += par;
        s.gas += gas;
        s.border |= y == 0 || y + 1 == ny || r.x0 == 0 || r.x1 as usize == nx;
        s.sum_x += (r.x0 as f64 + r.x1 as f64 - 1.0) * len as f64 / 2.0;
        s.right_of_mid += overlap(r.x0, r.x1, f64::NEG_INFINITY, midline.ceil() - 1.0);
        s.near_mid += overlap(r.x0, r.x1, midline - junction, midline + junction);
    }

    // Interior voxels (all six neighbours air), only of the components that can still be
    // lungs: at least the least volume, not outside air at the border, and a share of
    // parenchyma over all voxels that reaches the least share (a gas pocket's shell only
    // adds parenchyma, so its interior share is lower still). This spares the outside
    // air, most of the air voxels of a scan.
    let candidate: Vec<bool> = stats
        .iter()
        .map(|s| {
            s.voxels as f64 * voxel_ml >= p.min_component_ml
                && !(s.border && s.gas as f64 > p.max_border_gas_share * s.voxels as f64)
                && s.parenchyma as f64 >= p.min_parenchyma_share * s.voxels as f64
        })
        .collect();
    let plane = ny * nx;
    let air = |i: usize| hu_c[i] < p.air_below_hu;
    for (r, &c) in lab.runs.iter().zip(&lab.component) {
        if !candidate[c as usize] {
            continue;
        }
        let (z, y) = (r.row as usize / ny, r.row as usize % ny);
        // Rows on the border of the slice or the volume have no interior voxels; the run
        // holds the x neighbours, so its ends are not interior either.
        if y == 0 || y + 1 == ny || z == 0 || z + 1 == nz || r.x1 - r.x0 < 3 {
            continue;
        }
        let base = r.row as usize * nx;
        let (mut core, mut core_par) = (0u64, 0u64);
        for x in r.x0 as usize + 1..r.x1 as usize - 1 {
            let i = base + x;
            if air(i - nx) && air(i + nx) && air(i - plane) && air(i + plane) {
                core += 1;
                core_par += (hu_c[i] > p.parenchyma_above_hu) as u64;
            }
        }
        let s = &mut stats[c as usize];
        s.core += core;
        s.core_parenchyma += core_par;
    }

    let mut air_components = Vec::new();
    // 0: not lung; RIGHT / LEFT: the whole component; CUT: cut at the midline.
    const CUT: u8 = 3;
    let mut side = vec![0u8; stats.len()];
    for (l, s) in stats.iter().enumerate() {
        let ml = s.voxels as f64 * voxel_ml;
        // The share among interior voxels: the shell of a gas pocket, a voxel thick, is
        // partial volume between gas and tissue, and after interpolation onto a finer
        // grid it counts as parenchyma (TotalSegmentator's bowel gas at 1 mm: 58 % of all
        // its voxels, under half of its interior ones).
        let parenchyma_share = if s.core > 0 {
            s.core_parenchyma as f64 / s.core as f64
        } else {
            s.parenchyma as f64 / s.voxels as f64
        };
        let gas_share = s.gas as f64 / s.voxels as f64;
        let lung = ml >= p.min_component_ml
            && parenchyma_share >= p.min_parenchyma_share
            && !(s.border && gas_share > p.max_border_gas_share);
        if lung {
            let right_share = s.right_of_mid as f64 / s.voxels as f64;
            let near_share = s.near_mid as f64 / s.voxels as f64;
            side[l] = if right_share > 0.2 && right_share < 0.8 && near_share < 0.05 {
                CUT
            } else if (s.sum_x / s.voxels as f64) < midline {
                RIGHT
            } else {
                LEFT
            };
        }
        if ml >= 1.0 {
            air_components.push(AirComponent {
                ml,
                parenchyma_share,
                gas_share,
                touches_border: s.border,
                lung,
            });
        }
    }
    air_components.sort_by(|a, b| b.ml.total_cmp(&a.ml));

    let mut out = vec![0u8; hu_c.len()];
    for (r, &c) in lab.runs.iter().zip(&lab.component) {
        let sd = side[c as usize];
        if sd == 0 {
            continue;
        }
        let base = r.row as usize * nx;
        let (x0, x1) = (r.x0 as usize, r.x1 as usize);
        if sd == CUT {
            let cut = (midline.ceil().max(0.0) as usize).clamp(x0, x1);
            out[base + x0..base + cut].fill(RIGHT);
            out[base + cut..base + x1].fill(LEFT);
        } else {
            out[base + x0..base + x1].fill(sd);
        }
    }
    drop(lab);

    // The trachea and main bronchi out, before the holes are filled (which gives back
    // what of them lies inside a lung's cross-section).
    let airway = super::airway::remove(
        &mut out,
        hu_c,
        [nz, ny, nx],
        spacing_xyz,
        g.direction[8] >= 0.0,
        midline,
        p,
    );

    out.par_chunks_mut(ny * nx).for_each(|plane| {
        if let Ok(mut p) = ndarray::ArrayViewMut2::from_shape((ny, nx), plane) {
            for value in [RIGHT, LEFT] {
                fill_holes_2d(&mut p, value);
            }
        }
    });

    let (mut right, mut left) = (0u64, 0u64);
    for &v in &out {
        right += (v == RIGHT) as u64;
        left += (v == LEFT) as u64;
    }
    let lungs =
        Array3::from_shape_vec((nz, ny, nx), out).unwrap_or_else(|_| Array3::zeros((nz, ny, nx)));
    LungMask {
        lungs,
        right_ml: right as f64 * voxel_ml,
        left_ml: left as f64 * voxel_ml,
        air_components,
        airway,
    }
}

/// Sets to `value` the pixels of a slice that are 0 and not reachable from the slice's
/// border through pixels other than `value` (4-connected): the holes of that lung.
fn fill_holes_2d(plane: &mut ndarray::ArrayViewMut2<u8>, value: u8) {
    let (ny, nx) = plane.dim();
    // Only the box around the lung (one pixel wider) can hold its holes.
    let (mut y0, mut y1, mut x0, mut x1) = (usize::MAX, 0, usize::MAX, 0);
    for ((y, x), &v) in plane.indexed_iter() {
        if v == value {
            (y0, y1, x0, x1) = (y0.min(y), y1.max(y + 1), x0.min(x), x1.max(x + 1));
        }
    }
    if y0 == usize::MAX {
        return;
    }
    let (y0, x0, y1, x1) =
        (y0.saturating_sub(1), x0.saturating_sub(1), (y1 + 1).min(ny), (x1 + 1).min(nx));
    let (h, w) = (y1 - y0, x1 - x0);
    let mut win = plane.slice_mut(ndarray::s![y0..y1, x0..x1]);
    let mut outside = vec![false; h * w];
    let mut stack: Vec<(usize, usize)> = Vec::new();
    let push = |y: usize, x: usize, outside: &mut Vec<bool>, stack: &mut Vec<(usize, usize)>| {
        if !outside[y * w + x] && win[[y, x]] != value {
            outside[y * w + x] = true;
            stack.push((y, x));
        }
    };
    for x in 0..w {
        push(0, x, &mut outside, &mut stack);
        push(h - 1, x, &mut outside, &mut stack);
    }
    for y in 0..h {
        push(y, 0, &mut outside, &mut stack);
        push(y, w - 1, &mut outside, &mut stack);
    }
    while let Some((y, x)) = stack.pop() {
        if y > 0 {
            push(y - 1, x, &mut outside, &mut stack);
        }
        if y + 1 < h {
            push(y + 1, x, &mut outside, &mut stack);
        }
        if x > 0 {
            push(y, x - 1, &mut outside, &mut stack);
        }
        if x + 1 < w {
            push(y, x + 1, &mut outside, &mut stack);
        }
    }
    for (o, v) in outside.iter().zip(win.iter_mut()) {
        if !*o && *v == 0 {
            *v = value;
        }
    }
}

/// The lung region of a box of a scan (format/FORMAT.md, "Label volumes"): `lungs`, read
/// over the box widened by the margin on every side (`lungs_wide`, voxels outside the scan
/// 0), dilated, and cut back to the box. `margin_zyx` is the margin in voxels per axis
/// ([`margin_voxels`]).
pub fn region(lungs_wide: &Array3<u8>, margin_zyx: [usize; 3]) -> Array3<u8> {
    let (wz, wy, wx) = lungs_wide.dim();
    let [mz, my, mx] = margin_zyx;
    if wz < 2 * mz || wy < 2 * my || wx < 2 * mx {
        return Array3::zeros((
            wz.saturating_sub(2 * mz),
            wy.saturating_sub(2 * my),
            wx.saturating_sub(2 * mx),
        ));
    }
    let d = dilate_box_voxels(lungs_wide, margin_zyx);
    d.slice(ndarray::s![mz..wz - mz, my..wy - my, mx..wx - mx]).to_owned()
}

/// The lung region's margin in voxels per axis (z, y, x) on a grid of `spacing_xyz`:
/// [`super::LUNG_REGION_MARGIN_MM`] over the spacing, rounded, at least 1.
pub fn margin_voxels(spacing_xyz: [f64; 3]) -> [usize; 3] {
    let r = |s: f64| ((super::LUNG_REGION_MARGIN_MM / s).round() as usize).max(1);
    [r(spacing_xyz[2]), r(spacing_xyz[1]), r(spacing_xyz[0])]
}

/// `m > 0` dilated by a box of `margin_mm` (at least one voxel) along each axis: 0/1.
/// Separable, within the box around the set voxels: one pass forwards and one backwards
/// per axis, each counting the voxels since the last one set; the passes along z and y
/// run over whole rows in memory order. Written here rather than with `ndarray-ndimage`'s
/// `maximum_filter1d`, which copies and pads each lane: on a 226x512x512 scan that took
/// 1.7-2.3 s, this takes under a tenth of it.
pub fn dilate_box(m: &Array3<u8>, spacing_xyz: [f64; 3], margin_mm: f64) -> Array3<u8> {
    let r = |s: f64| ((margin_mm / s).round() as usize).max(1);
    dilate_box_voxels(m, [r(spacing_xyz[2]), r(spacing_xyz[1]), r(spacing_xyz[0])])
}

/// `m > 0` dilated by a box of `rad` voxels (z, y, x) on each side: 0/1.
pub fn dilate_box_voxels(m: &Array3<u8>, rad: [usize; 3]) -> Array3<u8> {
    let (nz, ny, nx) = m.dim();
    // Only the box around the set voxels, widened by the margin, can change.
    let Some([lo, hi]) = super::summary(m).bbox_zyx else { return Array3::zeros((nz, ny, nx)) };
    let lo: [usize; 3] = std::array::from_fn(|a| lo[a].saturating_sub(rad[a]));
    let hi: [usize; 3] = std::array::from_fn(|a| (hi[a] + rad[a]).min(m.shape()[a]));
    let (bz, by, bx) = (hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]);
    let mut v: Vec<u8> = m
        .slice(ndarray::s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]])
        .iter()
        .map(|&x| (x > 0) as u8)
        .collect();
    // Along x: within each row.
    v.par_chunks_mut(bx).for_each_init(Vec::new, |hit, row| dilate_line(row, rad[2], hit));
    // Along y and z: rows of a plane (y) or planes of the volume (z) are the "voxels" of
    // the line, and a running count per column replaces the one counter of a line.
    v.par_chunks_mut(by * bx).for_each(|plane| dilate_lines_of_rows(plane, bx, rad[1]));
    dilate_lines_of_rows(&mut v, by * bx, rad[0]);
    let mut out = Array3::<u8>::zeros((nz, ny, nx));
    if let Ok(b) = ndarray::ArrayView3::from_shape((bz, by, bx), &v) {
        out.slice_mut(ndarray::s![lo[0]..hi[0], lo[1]..hi[1], lo[2]..hi[2]]).assign(&b);
    }
    out
}

/// Sets every element within `r` of a set element of `line` (0/1).
fn dilate_line(line: &mut [u8], r: usize, hit: &mut Vec<u8>) {
    let mut since = usize::MAX / 2;
    hit.clear();
    hit.resize(line.len(), 0);
    for (i, &v) in line.iter().enumerate() {
        since = if v != 0 { 0 } else { since + 1 };
        hit[i] = (since <= r) as u8;
    }
    since = usize::MAX / 2;
    for i in (0..line.len()).rev() {
        since = if line[i] != 0 { 0 } else { since + 1 };
        line[i] = hit[i] | (since <= r) as u8;
    }
}

/// [`dilate_line`] along the rows of `data` (rows of `width` elements): element `x` of
/// row `k` is set when element `x` of a row within `r` of `k` is set.
fn dilate_lines_of_rows(data: &mut [u8], width: usize, r: usize) {
    if width == 0 || data.len() < width {
        return;
    }
    let rows = data.len() / width;
    let far = u32::MAX / 2;
    let r = r.min(far as usize - 1) as u32;
    let mut since = vec![far; width];
    let mut hit = vec![0u8; data.len()];
    for k in 0..rows {
        let row = &data[k * width..(k + 1) * width];
        let h = &mut hit[k * width..(k + 1) * width];
        for x in 0..width {
            since[x] = if row[x] != 0 { 0 } else { since[x].saturating_add(1) };
            h[x] = (since[x] <= r) as u8;
        }
    }
    since.iter_mut().for_each(|s| *s = far);
    for k in (0..rows).rev() {
        let row = &mut data[k * width..(k + 1) * width];
        let h = &hit[k * width..(k + 1) * width];
        for x in 0..width {
            since[x] = if row[x] != 0 { 0 } else { since[x].saturating_add(1) };
            row[x] = h[x] | (since[x] <= r) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use ndarray::Array2;

    #[test]
    fn holes_inside_a_lung_are_filled_and_the_outside_is_not() {
        // A ring of value 1 around a 0 centre, beside a 0 notch open to the border.
        let mut p = Array2::<u8>::zeros((5, 7));
        for (y, x) in [(1, 1), (1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2), (3, 3)] {
            p[[y, x]] = 1;
        }
        p[[2, 5]] = 2;
        fill_holes_2d(&mut p.view_mut(), 1);
        assert_eq!(p[[2, 2]], 1);
        assert_eq!(p[[2, 4]], 0);
        assert_eq!(p[[0, 0]], 0);
        assert_eq!(p[[2, 5]], 2);
    }

    #[test]
    fn the_region_of_a_box_is_the_whole_dilation_cut_to_the_box() {
        let mut m = Array3::<u8>::zeros((12, 12, 12));
        m[[5, 5, 5]] = 1;
        m[[9, 2, 7]] = 2;
        let whole = dilate_box_voxels(&m, [2, 1, 3]);
        // The box [3, 9) x [1, 7) x [4, 12), read with the margin around it.
        let mut wide = Array3::<u8>::zeros((6 + 4, 6 + 2, 8 + 6));
        for ((z, y, x), v) in wide.indexed_iter_mut() {
            let (gz, gy, gx) = (z as i64 + 3 - 2, y as i64 + 1 - 1, x as i64 + 4 - 3);
            if (0..12).contains(&gz) && (0..12).contains(&gy) && (0..12).contains(&gx) {
                *v = m[[gz as usize, gy as usize, gx as usize]];
            }
        }
        let r = region(&wide, [2, 1, 3]);
        assert_eq!(r, whole.slice(ndarray::s![3..9, 1..7, 4..12]).to_owned());
    }

    #[test]
    fn a_volume_one_voxel_wide_is_no_crop_and_no_overflow() {
        // Air rows of one voxel: each is one edge voxel of its row, not two.
        let hu = Array3::<i16>::from_elem((4, 6, 1), -1000);
        let m = segment(&hu, &Geometry::axis_aligned([0.0; 3], [1.0; 3]), &LungParams::default());
        assert!(!m.found());
        assert_eq!(m.lungs.dim(), (4, 6, 1));
    }

    #[test]
    fn box_dilation_reaches_margin_over_spacing_voxels_per_axis() {
        let mut m = Array3::<u8>::zeros((9, 9, 9));
        m[[4, 4, 4]] = 2;
        // 2 mm margin: 1 voxel along z (2 mm), 2 along y and x (1 mm).
        let d = dilate_box(&m, [1.0, 1.0, 2.0], 2.0);
        assert_eq!(d.iter().map(|&v| v as usize).sum::<usize>(), 3 * 5 * 5);
        assert_eq!(d[[3, 2, 6]], 1);
        assert_eq!(d[[2, 4, 4]], 0);
        assert_eq!(d[[4, 4, 7]], 0);
    }
}
