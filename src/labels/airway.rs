//! The trachea and main bronchi, found in a lung mask and cut out of it.
//!
//! They are gas (about -1000 HU) joined to the lungs through the bronchi, so they lie in
//! the lungs' 3D air component; reference lung masks (elastix's, LOLA11's, those drawn
//! for LUNA16) leave them out. In an axial slice the trachea, and each main bronchus
//! until it enters its lung, is a small 2D island of the mask apart from the lungs'
//! cross-sections, so the method follows islands slice by slice (the idea of Hu, Hoffman
//! and Reinhardt 2001, "Automatic lung segmentation for accurate quantitation of
//! volumetric X-ray CT images", without its 3D region growing):
//!
//! 1. **Seed**: going down from the highest slice of the mask, at most
//!    [`LungParams::airway_seed_depth_mm`], the first slice with a 2D island
//!    (4-connected) of at most [`LungParams::airway_max_area_mm2`] that is mostly gas
//!    (at least [`LungParams::airway_min_gas_share`] of its interior pixels, those with
//!    all four neighbours in it, at or below [`LungParams::parenchyma_above_hu`]: the rim
//!    of a thin trachea is partial volume) and whose centroid lies within
//!    [`LungParams::airway_max_offset_mm`] of the body's midline: the trachea. A lung
//!    apex there is parenchyma (about -850 HU), not gas.
//! 2. **Follow**, from the seed slice up to the top and down: an island of the next
//!    slice that touches (within one pixel in-plane) the airway taken in the slice before
//!    is taken whole when it is at most the largest area. A larger one is the airway
//!    merged with a lung in that slice (a wall thinner than a voxel, or a bronchus
//!    entering its lung): of it, the gas voxels within one pixel of the airway before, and
//!    their rim of one pixel, are taken when they are at most the largest area and at most
//!    1.5 times the airway before that continues into the island (the lumen goes on; a
//!    leak into the lung's parenchyma would grow), and the branch ends otherwise. Below
//!    the carina (the first slice with two islands taken) the branches are followed
//!    [`LungParams::airway_below_carina_mm`] further, the length of the main bronchi, and
//!    no more.
//! 3. The islands taken are cleared from the mask. The lungs' hole filling that follows
//!    ([`super::lungs`], step 5) gives back any island that lies inside a lung's
//!    cross-section (a bronchus within the lung), so what stays out is the airway outside
//!    the lungs.
//!
//! Nothing is removed where no seed qualifies (a scan that starts below the carina, a
//! trachea not joined to the lungs, which is then its own air component and mostly gas,
//! so not lung).

use super::lung_params::LungParams;

/// Where the airway was found and how much of it was cut out of the mask.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct Airway {
    /// Voxels cleared from the mask (before hole filling gives back those inside a lung).
    pub voxels: u64,
    /// The seed slice (stored z index), if a trachea was found.
    pub seed_z: Option<usize>,
    /// The carina's slice (stored z index): the first, going down, with two islands taken.
    pub carina_z: Option<usize>,
}

/// Clears the trachea and main bronchi from `mask` (0 outside, lung values otherwise;
/// (z, y, x) of `dims`, C order) of the volume `hu` (module doc). `z_up`: whether a
/// higher z index is higher in the body (superior); `midline_x`: the body's midline as an
/// x index; `spacing_xyz` in mm.
pub(crate) fn remove(
    mask: &mut [u8],
    hu: &[i16],
    dims: [usize; 3],
    spacing_xyz: [f64; 3],
    z_up: bool,
    midline_x: f64,
    p: &LungParams,
) -> Airway {
    let [nz, ny, nx] = dims;
    let plane = ny * nx;
    if nz == 0 || plane == 0 || mask.len() != nz * plane || hu.len() != mask.len() {
        return Airway::default();
    }
    let pixel_mm2 = spacing_xyz[0] * spacing_xyz[1];
    let max_pixels = (p.airway_max_area_mm2 / pixel_mm2).floor() as usize;
    // Slice k of step i (0 = the highest slice).
    let slice_of = |i: usize| if z_up { nz - 1 - i } else { i };
    let Some(top) = (0..nz).find(|&i| mask[slice_of(i) * plane..][..plane].iter().any(|&v| v != 0))
    else {
        return Airway::default();
    };
    let steps = |mm: f64| (mm / spacing_xyz[2]).round().max(0.0) as usize;

    // 1. The seed: the best-qualifying island of the first slice that has one.
    let mut seed: Option<(usize, Vec<u32>)> = None;
    let mut visited = vec![false; plane];
    for i in top..(top + steps(p.airway_seed_depth_mm) + 1).min(nz) {
        let k = slice_of(i);
        let (m, h) = (&mask[k * plane..][..plane], &hu[k * plane..][..plane]);
        visited.fill(false);
        let mut best: Option<(f64, Vec<u32>)> = None;
        for start in 0..plane {
            if m[start] == 0 || visited[start] {
                continue;
            }
            let island = flood(m, nx, ny, start, &mut visited);
            if island.len() > max_pixels {
                continue;
            }
            // Gas among the island's interior pixels (all four neighbours in it), as the
            // lungs' parenchyma share is taken: the rim of a thin trachea is partial
            // volume. Of all its pixels when none is interior.
            let interior: Vec<u32> = island
                .iter()
                .copied()
                .filter(|&q| neighbours4(q as usize, nx, ny).filter(|&t| m[t] != 0).count() == 4)
                .collect();
            let counted = if interior.is_empty() { &island } else { &interior };
            let gas = counted.iter().filter(|&&q| h[q as usize] <= p.parenchyma_above_hu).count()
                as f64
                / counted.len() as f64;
            let cx =
                island.iter().map(|&q| (q as usize % nx) as f64).sum::<f64>() / island.len() as f64;
            let near = (cx - midline_x).abs() * spacing_xyz[0] <= p.airway_max_offset_mm;
            if gas >= p.airway_min_gas_share && near && best.as_ref().is_none_or(|(g, _)| gas > *g)
            {
                best = Some((gas, island));
            }
        }
        if let Some((_, island)) = best {
            seed = Some((i, island));
            break;
        }
    }
    let Some((seed_i, seed_island)) = seed else { return Airway::default() };

    // 2. Follow the islands up to the top, then down to the carina and the bronchi.
    let mut taken: Vec<(usize, Vec<u32>)> = vec![(seed_i, seed_island.clone())];
    let mut carina_z = None;
    for down in [false, true] {
        let mut prev = seed_island.clone();
        let mut i = seed_i;
        let mut left: Option<usize> = None;
        loop {
            let next = if down { i + 1 } else { i.wrapping_sub(1) };
            if next >= nz || left == Some(0) {
                break;
            }
            let k = slice_of(next);
            let (islands, pixels) = follow(
                &mask[k * plane..][..plane],
                &hu[k * plane..][..plane],
                nx,
                ny,
                &prev,
                max_pixels,
                p.parenchyma_above_hu,
            );
            if pixels.is_empty() {
                break;
            }
            if let Some(l) = left.as_mut() {
                *l -= 1;
            } else if down && islands >= 2 {
                carina_z = Some(k);
                left = Some(steps(p.airway_below_carina_mm));
            }
            taken.push((next, pixels.clone()));
            prev = pixels;
            i = next;
        }
    }

    // 3. Clear what was taken.
    let mut voxels = 0u64;
    for (i, pixels) in &taken {
        let base = slice_of(*i) * plane;
        for &q in pixels {
            mask[base + q as usize] = 0;
        }
        voxels += pixels.len() as u64;
    }
    Airway { voxels, seed_z: Some(slice_of(seed_i)), carina_z }
}

/// What of the slice `m` (its HU `h`) continues the airway pixels `prev` of the slice
/// before: how many islands it takes, and their pixels. An island that touches (within
/// one pixel) a pixel of `prev` is taken whole when it holds at most `max_pixels`; a larger
/// one (the airway merged with a lung in this slice) gives its gas pixels within one pixel
/// of `prev`, with their rim of one pixel in the island, when those hold at most
/// `max_pixels` and 1.5 times the pixels of `prev` within one pixel of the island (the
/// lumen goes on, a leak into the lung grows).
fn follow(
    m: &[u8],
    h: &[i16],
    nx: usize,
    ny: usize,
    prev: &[u32],
    max_pixels: usize,
    gas_at_most: i16,
) -> (usize, Vec<u32>) {
    let mut visited = vec![false; m.len()];
    let mut near = vec![false; m.len()];
    let mut touched = Vec::new();
    for &q in prev {
        for s in box3(q as usize, nx, ny) {
            if !near[s] {
                near[s] = true;
                touched.push(s);
            }
        }
    }
    let (mut islands, mut pixels) = (0usize, Vec::new());
    let mut in_take = vec![false; m.len()];
    let mut in_island = vec![false; m.len()];
    for s in touched {
        if m[s] == 0 || visited[s] {
            continue;
        }
        let island = flood(m, nx, ny, s, &mut visited);
        if island.len() <= max_pixels {
            islands += 1;
            pixels.extend(island);
            continue;
        }
        // Merged: the lumen (gas near the airway before) and its rim within the island.
        let core: Vec<u32> = island
            .iter()
            .copied()
            .filter(|&q| near[q as usize] && h[q as usize] <= gas_at_most)
            .collect();
        if core.is_empty() {
            continue;
        }
        let mut take = Vec::with_capacity(core.len() * 2);
        for &q in &core {
            in_take[q as usize] = true;
            take.push(q);
        }
        for &q in &core {
            for t in neighbours4(q as usize, nx, ny) {
                if m[t] != 0 && !in_take[t] {
                    in_take[t] = true;
                    take.push(t as u32);
                }
            }
        }
        // The airway before that continues into this island: the pixels of `prev` within
        // one pixel of it.
        for &q in &island {
            in_island[q as usize] = true;
        }
        let continuing =
            prev.iter().filter(|&&q| box3(q as usize, nx, ny).any(|t| in_island[t])).count();
        for &q in &island {
            in_island[q as usize] = false;
        }
        if take.len() * 2 <= continuing * 3 && take.len() <= max_pixels {
            islands += 1;
            pixels.extend(take);
        }
    }
    (islands, pixels)
}

/// The 4-connected island of pixels other than 0 of the slice `m` that holds `start`,
/// marking them in `visited`.
fn flood(m: &[u8], nx: usize, ny: usize, start: usize, visited: &mut [bool]) -> Vec<u32> {
    let mut island = Vec::new();
    let mut stack = vec![start];
    visited[start] = true;
    while let Some(q) = stack.pop() {
        island.push(q as u32);
        for s in neighbours4(q, nx, ny) {
            if m[s] != 0 && !visited[s] {
                visited[s] = true;
                stack.push(s);
            }
        }
    }
    island
}

/// The 4-neighbours of pixel `q` of an `ny` x `nx` slice that lie inside it.
fn neighbours4(q: usize, nx: usize, ny: usize) -> impl Iterator<Item = usize> {
    let (y, x) = (q / nx, q % nx);
    [
        (x > 0).then(|| q - 1),
        (x + 1 < nx).then(|| q + 1),
        (y > 0).then(|| q - nx),
        (y + 1 < ny).then(|| q + nx),
    ]
    .into_iter()
    .flatten()
}

/// Pixel `q` of an `ny` x `nx` slice and its 8-neighbours that lie inside it.
fn box3(q: usize, nx: usize, ny: usize) -> impl Iterator<Item = usize> {
    let (y, x) = (q / nx, q % nx);
    (y.saturating_sub(1)..(y + 2).min(ny))
        .flat_map(move |yy| (x.saturating_sub(1)..(x + 2).min(nx)).map(move |xx| yy * nx + xx))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-made mask, 1 mm voxels, z up: a trachea (3x3 pixels of gas) from the top
    /// down to slice 6, where it splits into two bronchi (2x2 each) that run down to
    /// slice 3 and there join two lungs (6x6 squares of parenchyma in slices 0..=3).
    fn scene() -> (Vec<u8>, Vec<i16>, [usize; 3]) {
        let (nz, ny, nx) = (10usize, 12usize, 20usize);
        let mut m = vec![0u8; nz * ny * nx];
        let mut h = vec![40i16; nz * ny * nx];
        let mut set = |z: usize, y: usize, x: usize, hu: i16| {
            m[(z * ny + y) * nx + x] = 1;
            h[(z * ny + y) * nx + x] = hu;
        };
        for z in 0..=3 {
            for y in 3..9 {
                for x in (1..7).chain(13..19) {
                    set(z, y, x, -850);
                }
            }
        }
        for z in 7..10 {
            for y in 5..8 {
                for x in 9..12 {
                    set(z, y, x, -1000);
                }
            }
        }
        // Bronchi: slices 3..=6, moving out from the midline towards the lungs.
        for (z, off) in [(6usize, 1usize), (5, 2), (4, 3), (3, 4)] {
            for y in 5..7 {
                for x in [9 - off, 10 + off] {
                    set(z, y, x, -1000);
                    set(z, y, x + 1, -1000);
                }
            }
        }
        (m, h, [nz, ny, nx])
    }

    fn params() -> LungParams {
        LungParams { airway_max_area_mm2: 20.0, ..LungParams::default() }
    }

    #[test]
    fn the_trachea_and_bronchi_are_cut_and_the_lungs_kept() {
        let (mut m, h, dims) = scene();
        let lungs_before = m.iter().zip(&h).filter(|(v, h)| **v != 0 && **h == -850).count();
        let a = remove(&mut m, &h, dims, [1.0; 3], true, 10.0, &params());
        // Trachea: 3 slices x 9 pixels; bronchi: 3 slices (6, 5, 4) x 2 x 4 pixels. In
        // slice 3 the bronchi lie in the lungs (one island of 36 pixels each, over 20):
        // their lumens (2x2 gas pixels next to the bronchi of slice 4) with their rims in
        // the lung would be 4 + 6 pixels in the left one (its x = 7 side is outside the
        // square) and 4 + 8 in the right one, over 1.5 x the 4 pixels of slice 4 that
        // continue into each: a leak, so the branches end there.
        assert_eq!(a.voxels, 27 + 24, "{a:?}");
        assert_eq!(a.seed_z, Some(9));
        assert_eq!(a.carina_z, Some(6));
        let lungs_after = m.iter().zip(&h).filter(|(v, h)| **v != 0 && **h == -850).count();
        assert_eq!(lungs_after, lungs_before);
        let plane = dims[1] * dims[2];
        let gas_left: Vec<usize> =
            (0..m.len()).filter(|&i| m[i] != 0 && h[i] == -1000).map(|i| i / plane).collect();
        assert_eq!(gas_left, vec![3; 8]);
    }

    #[test]
    fn no_seed_away_from_the_midline_or_in_parenchyma() {
        let (m0, h, dims) = scene();
        let mut m = m0.clone();
        // A midline at x = 30, with 4 mm allowed: every island is 14 mm or more from it.
        let far = LungParams { airway_max_offset_mm: 4.0, ..params() };
        assert_eq!(remove(&mut m, &h, dims, [1.0; 3], true, 30.0, &far), Airway::default());
        assert_eq!(m, m0);
        // The trachea's pixels as parenchyma: no gas, no seed.
        let h2: Vec<i16> = h.iter().map(|&v| if v == -1000 { -850 } else { v }).collect();
        assert_eq!(remove(&mut m, &h2, dims, [1.0; 3], true, 10.0, &params()), Airway::default());
        assert_eq!(m, m0);
    }

    #[test]
    fn z_down_grids_are_followed_from_the_other_end() {
        let (m0, h0, [nz, ny, nx]) = scene();
        // The same scene with the slices in reverse order and z_up false.
        let plane = ny * nx;
        let flip = |v: &[u8]| {
            (0..nz).rev().flat_map(|k| v[k * plane..][..plane].to_vec()).collect::<Vec<u8>>()
        };
        let mut m = flip(&m0);
        let h: Vec<i16> = (0..nz).rev().flat_map(|k| h0[k * plane..][..plane].to_vec()).collect();
        let a = remove(&mut m, &h, [nz, ny, nx], [1.0; 3], false, 10.0, &params());
        assert_eq!((a.voxels, a.seed_z, a.carina_z), (51, Some(0), Some(3)));
    }
}
