//! Building a batch: for each patch, read its region through the chunk cache (the larger
//! region a spatial transform covers, only the chunks its footprint meets, then sampled
//! straight into the batch through the window), rasterise the nodule spheres into the
//! mask, augment, write normalised f32 into the batch, then run the user's own transforms.
//! A compact batch's patches are read (HU and mask) straight into their parts of the
//! batch, with no buffer between, then mirrored or turned there.

use rand::Rng;

use super::augment::AugmentParams;
use super::augment::footprint::Footprint;
use super::augment::sample::{OnBox, SourceMap, grow, on_box};
use super::augment::scratch;
use super::augment::window::Window;
use super::batch::{Batch, Compact, PatchMeta};
use super::negatives::{BODY_MIN_HU, BODY_TRIES, DENSE_REACH_MM, DENSE_TRIES};
use super::sampler::{PURPOSE_TRANSFORM, PatchSpec, sample};
use super::{LoaderError, NegativeSource, PatchMut, Shared, Sphere};
use crate::store::{Region, VolumeFile};

/// Rasterises `spheres` into a patch starting at `start_zyx` of `shape` voxels: 1 where
/// `sum(((p - c) / r)^2) <= 1` for some sphere, voxel centres at integer indices.
pub fn rasterize(spheres: &[Sphere], start_zyx: [i64; 3], shape: [usize; 3]) -> Vec<u8> {
    let mut m = Vec::new();
    rasterize_into(spheres, start_zyx, shape, &mut m);
    m
}

/// [`rasterize`] into `m` (resized to the patch; what it held before is overwritten).
/// Returns the box of the voxels set ([`OnBox`]), so that a sampler need not search the
/// patch for them (a search of a moved patch's region cost as much as sampling it).
pub fn rasterize_into(
    spheres: &[Sphere],
    start_zyx: [i64; 3],
    shape: [usize; 3],
    m: &mut Vec<u8>,
) -> Option<OnBox> {
    m.clear();
    m.resize(shape.iter().product(), 0);
    rasterize_onto(spheres, start_zyx, shape, m)
}

/// Sets to 1 the voxels of `m` (a patch of `shape` at `start_zyx`, zeroed by the caller)
/// that [`rasterize`] sets; returns their box.
///
/// # Panics
/// Where `m` holds fewer than the patch's voxels.
pub fn rasterize_onto(
    spheres: &[Sphere],
    start_zyx: [i64; 3],
    shape: [usize; 3],
    m: &mut [u8],
) -> Option<OnBox> {
    let mut on: Option<OnBox> = None;
    for s in spheres {
        let lo: [usize; 3] = std::array::from_fn(|a| {
            (s.centre_zyx[a] - s.radius_zyx[a] - start_zyx[a] as f64).ceil().max(0.0) as usize
        });
        let hi: [i64; 3] = std::array::from_fn(|a| {
            ((s.centre_zyx[a] + s.radius_zyx[a] - start_zyx[a] as f64).floor() as i64)
                .min(shape[a] as i64 - 1)
        });
        if (0..3).any(|a| hi[a] < lo[a] as i64) {
            continue;
        }
        for z in lo[0]..=hi[0] as usize {
            let dz = ((start_zyx[0] + z as i64) as f64 - s.centre_zyx[0]) / s.radius_zyx[0];
            for y in lo[1]..=hi[1] as usize {
                let dy = ((start_zyx[1] + y as i64) as f64 - s.centre_zyx[1]) / s.radius_zyx[1];
                let row = (z * shape[1] + y) * shape[2];
                let mut set: Option<(usize, usize)> = None;
                for x in lo[2]..=hi[2] as usize {
                    let dx = ((start_zyx[2] + x as i64) as f64 - s.centre_zyx[2]) / s.radius_zyx[2];
                    if dz * dz + dy * dy + dx * dx <= 1.0 {
                        m[row + x] = 1;
                        set = Some((set.map_or(x, |s| s.0), x));
                    }
                }
                if let Some((first, last)) = set {
                    grow(&mut on, [z, y, first], [z, y, last]);
                }
            }
        }
    }
    on
}

/// The mask of region `r` of a patch's scan: the mask label's foreground where the loader
/// has one ([`super::LoaderConfig::mask_label`], read through the shared cache: the
/// chunks footprint `fp` meets, where there is one), else the nodule spheres near it.
///
/// # Errors
/// [`LoaderError::Store`] for a corrupt label chunk.
pub fn region_mask(
    shared: &Shared,
    spec: &PatchSpec,
    r: Region,
    fp: Option<&Footprint>,
) -> Result<Vec<u8>, LoaderError> {
    let mut m = Vec::new();
    region_mask_into(shared, spec, r, fp, &mut m)?;
    Ok(m)
}

/// [`region_mask`] into `m` (resized to the region; what it held before is overwritten).
/// Returns the box of its voxels that are on ([`OnBox`]).
///
/// # Errors
/// As [`region_mask`].
pub fn region_mask_into(
    shared: &Shared,
    spec: &PatchSpec,
    r: Region,
    fp: Option<&Footprint>,
    m: &mut Vec<u8>,
) -> Result<Option<OnBox>, LoaderError> {
    m.resize(r.shape_zyx.iter().product(), 0);
    region_mask_onto(shared, spec, r, fp, m)
}

/// [`region_mask`] into `m`, which holds exactly the region's voxels (what it held is
/// overwritten: a patch's part of a compact batch, or a reused buffer). Returns the box
/// of its voxels that are on ([`OnBox`]).
///
/// # Errors
/// As [`region_mask`].
pub fn region_mask_onto(
    shared: &Shared,
    spec: &PatchSpec,
    r: Region,
    fp: Option<&Footprint>,
    m: &mut [u8],
) -> Result<Option<OnBox>, LoaderError> {
    let scan = &shared.scans[spec.scan];
    match (&scan.mask_label, &shared.cfg.mask_label) {
        (Some(v), Some(ml)) => {
            let key = super::cache::mask_key(spec.scan as u32);
            let mut held = scratch::take_dirty::<i16>(m.len());
            let read =
                shared.cache.read_region_into::<u8>(key, v, r, reads_chunk(fp, v), &mut held);
            // Values were u8 when they went in.
            for (o, &x) in m.iter_mut().zip(held.iter()) {
                *o = u8::from(ml.is_foreground(x as u8));
            }
            scratch::give(held);
            read?;
            Ok(on_box(m, r.shape_zyx))
        }
        _ => Ok(scan.mask_onto(r.start_zyx, r.shape_zyx, m)),
    }
}

/// The mask of a patch (its region as drawn, before any spatial transform).
///
/// # Errors
/// As [`region_mask`].
pub fn patch_mask(shared: &Shared, spec: &PatchSpec) -> Result<Vec<u8>, LoaderError> {
    region_mask(
        shared,
        spec,
        Region { start_zyx: spec.start_zyx, shape_zyx: shared.cfg.patch_zyx },
        None,
    )
}

/// The footprint of a moved patch ([`Footprint`]): which chunks of its region it reads.
/// None where it reads them all (no spatial transform, an elastic field, a B-spline).
fn footprint(shared: &Shared, spec: &PatchSpec) -> Option<Footprint> {
    let sp = spec.augment.spatial.as_ref()?;
    Footprint::new(sp, shared.cfg.patch_zyx, spec.start_zyx)
}

/// Whether a patch with footprint `fp` reads chunk `c` (z, y, x) of `volume`.
fn reads_chunk(fp: Option<&Footprint>, volume: &VolumeFile) -> impl Fn([usize; 3]) -> bool {
    let s = volume.header().chunk_shape_zyx.map(|v| v as i64);
    move |c: [usize; 3]| {
        fp.is_none_or(|f| {
            f.reads(
                std::array::from_fn(|k| c[k] as i64 * s[k]),
                std::array::from_fn(|k| (c[k] as i64 + 1) * s[k]),
            )
        })
    }
}

/// Appends one patch (HU, mask, both in the patch's C order) to `images` and `masks`
/// (f32, C order): HU scaled and shifted, windowed to 0..1 ([`Window`]) and mirrored as
/// they are written, the intensity stages applied, then quarter turns, noise added
/// ([`super::augment`] gives the order). `hu` is the stored `i16`, or `f32` where a
/// spatial transform interpolated it. Appending rather than writing into a zeroed batch
/// spares a pass over the batch, and mirroring as the values are written spares another.
pub fn write_patch<T: Copy + Into<f32>>(
    hu: &[T],
    m: &[u8],
    aug: &AugmentParams,
    shape: [usize; 3],
    window: [f32; 2],
    images: &mut Vec<f32>,
    masks: &mut Vec<f32>,
) {
    let win = Window::new(window, aug.hu_scale, aug.hu_shift);
    let start = images.len();
    // Mirroring alone (no quarter turn) is a reordering of whole rows, done as the values
    // are written.
    let mirror_only = aug.quarter_turns.is_multiple_of(4);
    let flip = if mirror_only { aug.flip_zyx } else { [false; 3] };
    extend_mirrored(images, hu, shape, flip, |v| win.apply(v.into()));
    extend_mirrored(masks, m, shape, flip, |v| v as f32);
    finish_patch(&mut images[start..], &mut masks[start..], aug, shape, mirror_only);
}

/// What follows the window for a patch in the batch: the intensity stages, the mirroring
/// (unless `mirrored`: the patch was written mirrored) and quarter turns, and the noise of
/// a fixed sigma.
fn finish_patch(
    image: &mut [f32],
    mask: &mut [f32],
    aug: &AugmentParams,
    shape: [usize; 3],
    mirrored: bool,
) {
    for (_, stage) in &aug.intensity {
        stage.apply(image, shape);
    }
    if !(mirrored && aug.quarter_turns.is_multiple_of(4)) {
        move_in_place(image, mask, aug, shape);
    }
    // Noise of a fixed sigma, after everything else (as before the stages existed).
    let noise = aug.noise(image.len());
    for (o, n) in image.iter_mut().zip(noise) {
        *o += n;
    }
}

/// Mirrors and turns a patch's `image` and `mask` (each of `shape`, C order) in place as
/// `aug` says: mirroring alone as a swap of whole rows ([`mirror_in_place`]), quarter
/// turns voxel by voxel from a copy ([`for_each_moved`]).
fn move_in_place<A: Copy, B: Copy>(
    image: &mut [A],
    mask: &mut [B],
    aug: &AugmentParams,
    shape: [usize; 3],
) {
    if aug.quarter_turns.is_multiple_of(4) {
        mirror_in_place(image, shape, aug.flip_zyx);
        mirror_in_place(mask, shape, aug.flip_zyx);
    } else {
        let (img, msk) = (image.to_vec(), mask.to_vec());
        for_each_moved(aug, shape, |i, s| {
            image[i] = img[s];
            mask[i] = msk[s];
        });
    }
}

/// Appends `src`, a patch of `shape` (C order), to `dst` through `f`, mirrored along the
/// axes of `flip` (as [`mirror_in_place`] would leave it).
fn extend_mirrored<T: Copy, U>(
    dst: &mut Vec<U>,
    src: &[T],
    shape: [usize; 3],
    flip: [bool; 3],
    f: impl Fn(T) -> U,
) {
    let [nz, ny, nx] = shape;
    dst.reserve(src.len());
    if flip == [false; 3] {
        dst.extend(src.iter().map(|&v| f(v)));
        return;
    }
    for z in 0..nz {
        let sz = if flip[0] { nz - 1 - z } else { z };
        for y in 0..ny {
            let sy = if flip[1] { ny - 1 - y } else { y };
            let row = &src[(sz * ny + sy) * nx..(sz * ny + sy + 1) * nx];
            if flip[2] {
                dst.extend(row.iter().rev().map(|&v| f(v)));
            } else {
                dst.extend(row.iter().map(|&v| f(v)));
            }
        }
    }
}

/// Mirrors `x`, a patch of `shape` (C order), along the axes of `flip`, in place: what
/// [`for_each_moved`] does with no quarter turn, a swap or reversal of whole rows.
pub fn mirror_in_place<T>(x: &mut [T], shape: [usize; 3], flip: [bool; 3]) {
    let [nz, ny, nx] = shape;
    let plane = ny * nx;
    if flip[0] {
        for z in 0..nz / 2 {
            let (a, b) = x.split_at_mut((nz - 1 - z) * plane);
            a[z * plane..(z + 1) * plane].swap_with_slice(&mut b[..plane]);
        }
    }
    if flip[1] {
        for p in x.chunks_exact_mut(plane.max(1)) {
            for y in 0..ny / 2 {
                let (a, b) = p.split_at_mut((ny - 1 - y) * nx);
                a[y * nx..(y + 1) * nx].swap_with_slice(&mut b[..nx]);
            }
        }
    }
    if flip[2] {
        x.chunks_exact_mut(nx.max(1)).for_each(|row| row.reverse());
    }
}

/// Calls `f(output, source)` for every voxel of a patch of `shape` (C order indices):
/// where the mirroring and quarter turns of `aug` take each output voxel from.
fn for_each_moved(aug: &AugmentParams, shape: [usize; 3], mut f: impl FnMut(usize, usize)) {
    let mut i = 0;
    for z in 0..shape[0] {
        for y in 0..shape[1] {
            for x in 0..shape[2] {
                let [sz, sy, sx] = aug.source_of([z, y, x], shape);
                f(i, (sz * shape[1] + sy) * shape[2] + sx);
                i += 1;
            }
        }
    }
}

/// Reads the HU of a patch through the shared cache.
///
/// # Errors
/// [`LoaderError::Store`] for a corrupt chunk.
pub fn read_patch(shared: &Shared, spec: &PatchSpec) -> Result<ndarray::Array3<i16>, LoaderError> {
    let r = Region { start_zyx: spec.start_zyx, shape_zyx: shared.cfg.patch_zyx };
    Ok(shared.cache.read_region(spec.scan as u32, &shared.scans[spec.scan].volume, r)?)
}

/// Calls `f` with the HU and mask (C order) of region `r` of a patch's scan (the chunks
/// footprint `fp` meets, where there is one), read into buffers this worker reuses from
/// patch to patch (a fresh one is faulted in and filled every time), and the box of the
/// mask's voxels that are on.
///
/// # Errors
/// [`LoaderError::Store`] for a corrupt chunk; whatever `f` returns.
fn with_region<R>(
    shared: &Shared,
    spec: &PatchSpec,
    r: Region,
    fp: Option<&Footprint>,
    f: impl FnOnce(&[i16], &[u8], Option<OnBox>) -> R,
) -> Result<R, LoaderError> {
    let volume = &shared.scans[spec.scan].volume;
    let mut hu = scratch::take_dirty::<i16>(r.shape_zyx.iter().product());
    let mut m = scratch::take_dirty::<u8>(0);
    let read = shared
        .cache
        .read_region_into::<i16>(spec.scan as u32, volume, r, reads_chunk(fp, volume), &mut hu)
        .map_err(LoaderError::from)
        .and_then(|()| region_mask_into(shared, spec, r, fp, &mut m))
        .map(|on| f(&hu, &m, on));
    scratch::give(hu);
    scratch::give(m);
    read
}

/// [`with_region`] of the patch as stored (its own region, every chunk).
fn with_patch<R>(
    shared: &Shared,
    spec: &PatchSpec,
    f: impl FnOnce(&[i16], &[u8], Option<OnBox>) -> R,
) -> Result<R, LoaderError> {
    let r = Region { start_zyx: spec.start_zyx, shape_zyx: shared.cfg.patch_zyx };
    with_region(shared, spec, r, None, f)
}

/// The region of the stored grid a patch reads: its own, or the larger one its spatial
/// transform covers.
pub fn source_region(shared: &Shared, spec: &PatchSpec) -> Region {
    let p = shared.cfg.patch_zyx;
    match &spec.augment.spatial {
        None => Region { start_zyx: spec.start_zyx, shape_zyx: p },
        Some(sp) => super::augment::sample::region(sp, p, spec.start_zyx),
    }
}

/// Appends one patch to `images` and `masks` (f32, C order): read as stored, or sampled
/// through its spatial transform from the region it covers; then [`write_patch`].
///
/// # Errors
/// [`LoaderError::Store`] for a corrupt chunk.
pub fn build_patch(
    shared: &Shared,
    spec: &PatchSpec,
    images: &mut Vec<f32>,
    masks: &mut Vec<f32>,
) -> Result<(), LoaderError> {
    let cfg = &shared.cfg;
    let p = cfg.patch_zyx;
    match &spec.augment.spatial {
        None => with_patch(shared, spec, |hu, m, _| {
            write_patch(hu, m, &spec.augment, p, cfg.hu_window, images, masks)
        })?,
        Some(sp) => {
            let map = SourceMap::new(sp, p);
            let r = map.region(spec.start_zyx);
            let fp = footprint(shared, spec);
            with_region(shared, spec, r, fp.as_ref(), |hu, m, on| {
                let aug = &spec.augment;
                let win = Window::new(cfg.hu_window, aug.hu_scale, aug.hu_shift);
                // Sampled straight into the batch, through the window; mirrored as it is
                // sampled (the mirror folded into the map) where mirroring is all that
                // moves the voxels and no elastic field was drawn.
                let fold = aug.quarter_turns.is_multiple_of(4);
                let folded = if fold { map.mirrored(aug.flip_zyx) } else { None };
                let n: usize = p.iter().product();
                let start = images.len();
                images.resize(start + n, 0.0);
                masks.resize(start + n, 0.0);
                let (image, mask) = (&mut images[start..], &mut masks[start..]);
                let at = folded.as_ref().unwrap_or(&map);
                at.sample_into_within(spec.start_zyx, r, hu, m, on, Some(win), image, mask);
                finish_patch(image, mask, aug, p, folded.is_some());
            })?;
        }
    }
    Ok(())
}

/// Brings the chunks patch (epoch, batch, item) reads into the cache: its lung negative's
/// label chunk, its scan chunks and its mask label's chunks (a fetcher's work, ahead of
/// the worker that builds the batch).
///
/// # Errors
/// As [`build_batch`]; the worker meets the same error and reports it.
pub fn warm(shared: &Shared, epoch: u64, batch: usize, item: usize) -> Result<(), LoaderError> {
    let spec = resolve(shared, epoch, batch, item)?;
    let scan = &shared.scans[spec.scan];
    let r = source_region(shared, &spec);
    let fp = footprint(shared, &spec);
    let volume = &scan.volume;
    shared.cache.warm_region::<i16>(
        spec.scan as u32,
        volume,
        r,
        reads_chunk(fp.as_ref(), volume),
    )?;
    if let (Some(v), Some(_)) = (&scan.mask_label, &shared.cfg.mask_label) {
        let key = super::cache::mask_key(spec.scan as u32);
        shared.cache.warm_region::<u8>(key, v, r, reads_chunk(fp.as_ref(), v))?;
    }
    Ok(())
}

/// The patch for (seed, epoch, batch, item) with its position settled: a lung negative's
/// centre is the lung voxel its pick names, found in the decoded label chunk (through the
/// shared cache); a body negative's is the first of [`BODY_TRIES`] uniform positions
/// drawn from its seed whose voxel is tissue (at least [`BODY_MIN_HU`]), or the last
/// tried. Everything else is [`sample`]'s.
///
/// # Errors
/// [`LoaderError::Store`] for a corrupt chunk.
pub fn resolve(
    shared: &Shared,
    epoch: u64,
    batch: usize,
    item: usize,
) -> Result<PatchSpec, LoaderError> {
    let mut spec = sample(shared, epoch, batch, item);
    let p = shared.cfg.patch_zyx;
    let centred = |c: [i64; 3]| -> [i64; 3] { std::array::from_fn(|a| c[a] - (p[a] / 2) as i64) };
    if let (Some((k, rank)), Some(ix)) = (spec.lung_pick, shared.scans[spec.scan].lungs.as_ref()) {
        spec.start_zyx = centred(lung_voxel(shared, spec.scan, ix, k, rank)?);
    }
    if let Some(seed) = spec.body_pick {
        let centre = match (spec.source, shared.scans[spec.scan].lungs.as_ref()) {
            (Some(NegativeSource::Dense), Some(ix)) => dense_voxel(shared, spec.scan, ix, seed)?,
            _ => body_voxel(shared, spec.scan, seed)?,
        };
        spec.start_zyx = centred(centre);
    }
    Ok(spec)
}

/// The lung voxel (z, y, x) of rank `rank` (C order) in chunk `ix.chunks[k]` of scan
/// `scan`'s lung mask, found in the decoded label chunk (through the shared cache).
fn lung_voxel(
    shared: &Shared,
    scan: usize,
    ix: &super::LungIndex,
    k: usize,
    rank: u64,
) -> Result<[i64; 3], LoaderError> {
    let h = ix.label.header();
    let (grid, c) = (h.grid(), h.chunk_shape_zyx);
    let n = ix.chunks[k] as usize;
    let chunk = [n / (grid[1] * grid[2]), (n / grid[2]) % grid[1], n % grid[2]];
    let data =
        shared.cache.get_or_decode((super::cache::label_key(scan as u32), n as u32), || {
            ix.label.decode_chunk_as::<u8>(chunk).map(|v| v.into_iter().map(i16::from).collect())
        })?;
    let local =
        data.iter().enumerate().filter(|(_, v)| **v != 0).nth(rank as usize).map(|(i, _)| i);
    let Some(i) = local else {
        return Err(LoaderError::Config(format!(
            "{}: chunk {chunk:?} holds fewer lung voxels than counted when the loader was built",
            ix.label.path().display()
        )));
    };
    Ok([
        (chunk[0] * c[0] + i / (c[1] * c[2])) as i64,
        (chunk[1] * c[1] + (i / c[2]) % c[1]) as i64,
        (chunk[2] * c[2] + i % c[2]) as i64,
    ])
}

/// Whether voxel `at` of scan `scan` lies inside it and is at least [`BODY_MIN_HU`],
/// read through the shared cache.
fn is_tissue(shared: &Shared, scan: usize, at: [i64; 3]) -> Result<bool, LoaderError> {
    let volume = &shared.scans[scan].volume;
    let shape = volume.shape_zyx();
    if (0..3).any(|a| at[a] < 0 || at[a] >= shape[a] as i64) {
        return Ok(false);
    }
    let r = Region { start_zyx: at, shape_zyx: [1, 1, 1] };
    let hu = shared.cache.read_region(scan as u32, volume, r)?;
    Ok(hu.iter().next().is_some_and(|&v| v >= BODY_MIN_HU))
}

/// The first of [`BODY_TRIES`] uniform voxels of scan `scan` (drawn from `seed`) whose HU
/// is at least [`BODY_MIN_HU`], read through the shared cache; the last one tried when
/// none is.
fn body_voxel(shared: &Shared, scan: usize, seed: u64) -> Result<[i64; 3], LoaderError> {
    let shape = shared.scans[scan].volume.shape_zyx();
    let mut rng = crate::seed::rng(&[seed]);
    let mut at = [0i64; 3];
    for _ in 0..BODY_TRIES {
        at = super::sampler::uniform_voxel(&mut rng, shape);
        if is_tissue(shared, scan, at)? {
            break;
        }
    }
    Ok(at)
}

/// The first of [`DENSE_TRIES`] positions of scan `scan` (drawn from `seed`) whose HU is
/// at least [`BODY_MIN_HU`]: each a lung voxel drawn uniformly from `ix` and moved by a
/// uniform integer offset of up to [`DENSE_REACH_MM`] along each axis (over the stored
/// spacing, at least one voxel); the last one tried, moved back inside the scan, when none
/// is.
fn dense_voxel(
    shared: &Shared,
    scan: usize,
    ix: &super::LungIndex,
    seed: u64,
) -> Result<[i64; 3], LoaderError> {
    let volume = &shared.scans[scan].volume;
    let shape = volume.shape_zyx();
    let spacing = volume.header().spacing_xyz;
    let reach: [i64; 3] =
        std::array::from_fn(|a| ((DENSE_REACH_MM / spacing[2 - a]).round() as i64).max(1));
    let mut rng = crate::seed::rng(&[seed]);
    let mut at = [0i64; 3];
    for _ in 0..DENSE_TRIES {
        let (k, rank) = ix.draw(&mut rng);
        let lung = lung_voxel(shared, scan, ix, k, rank)?;
        at = std::array::from_fn(|a| lung[a] + rng.random_range(-reach[a]..=reach[a]));
        if is_tissue(shared, scan, at)? {
            return Ok(at);
        }
    }
    Ok(std::array::from_fn(|a| at[a].clamp(0, shape[a] as i64 - 1)))
}

/// Builds batch `index` of epoch `epoch`.
///
/// # Errors
/// [`LoaderError::Store`] for a corrupt chunk (naming file and chunk).
pub fn build_batch(shared: &Shared, epoch: u64, index: usize) -> Result<Batch, LoaderError> {
    if shared.cfg.compact {
        return build_compact_batch(shared, epoch, index);
    }
    let cfg = &shared.cfg;
    let p = cfg.patch_zyx;
    let n: usize = p.iter().product();
    let b = cfg.batch_size;
    // Buffers a consumer handed back where there are some (no page faults to fill them).
    let mut images = shared.spare.f32s(b * n);
    let mut masks = shared.spare.f32s(b * n);
    let mut patches = Vec::with_capacity(b);
    for item in 0..b {
        let spec = resolve(shared, epoch, index, item)?;
        let scan = &shared.scans[spec.scan];
        build_patch(shared, &spec, &mut images, &mut masks)?;
        if images.len() != (item + 1) * n || masks.len() != images.len() {
            return Err(LoaderError::Config("a patch did not fill its part of the batch".into()));
        }
        let (image, mask) = (&mut images[item * n..], &mut masks[item * n..]);
        for (k, t) in shared.transforms.iter().enumerate() {
            let view = |v| ndarray::ArrayViewMut3::from_shape(p, v);
            let (Ok(image), Ok(mask)) = (view(&mut *image), view(&mut *mask)) else {
                return Err(LoaderError::Config("patch shape does not match its buffer".into()));
            };
            let patch = PatchMut {
                image,
                mask,
                series_id: &scan.id,
                start_zyx: spec.start_zyx,
                positive: spec.positive,
            };
            let parts = [cfg.seed, epoch, index as u64, item as u64, PURPOSE_TRANSFORM, k as u64];
            t.apply(patch, &mut crate::seed::rng(&parts)).map_err(|source| {
                LoaderError::Transform { name: t.name().to_string(), batch: index, item, source }
            })?;
        }
        patches.push(meta(shared, spec));
    }
    let shape = [b, 1, p[0], p[1], p[2]];
    Ok(Batch { epoch, index, shape, images, masks, compact: None, patches })
}

/// Where a patch came from, for its batch.
fn meta(shared: &Shared, spec: PatchSpec) -> PatchMeta {
    let scan = &shared.scans[spec.scan];
    PatchMeta {
        series_id: scan.id.clone(),
        start_zyx: spec.start_zyx,
        positive: spec.positive,
        nodule_id: spec.nodule.map(|k| scan.nodule_ids[k]),
        negative_source: spec.source,
        augment: spec.augment,
    }
}

/// Builds batch `index` of epoch `epoch` as a compact batch ([`Compact`]): each patch's
/// stored HU and mask copied as they are read, mirrored and turned as drawn; its HU factor
/// and shift recorded for the consumer's normalisation. The configuration allows no
/// augmentation that needs f32 ([`LoaderConfig::compact`](super::LoaderConfig::compact)).
///
/// # Errors
/// As [`build_batch`].
fn build_compact_batch(shared: &Shared, epoch: u64, index: usize) -> Result<Batch, LoaderError> {
    let cfg = &shared.cfg;
    let p = cfg.patch_zyx;
    let n: usize = p.iter().product();
    let b = cfg.batch_size;
    // Each patch is read straight into its part of the batch (every value written), so
    // the buffers are taken whole: a kept one is neither cleared nor zeroed.
    let mut c = Compact {
        images: shared.spare.i16s_whole(b * n),
        masks: shared.spare.u8s_whole(b * n),
        window: cfg.hu_window,
        hu_scale: Vec::with_capacity(b),
        hu_shift: Vec::with_capacity(b),
    };
    let mut patches = Vec::with_capacity(b);
    for item in 0..b {
        let spec = resolve(shared, epoch, index, item)?;
        let (image, mask) = (&mut c.images[item * n..][..n], &mut c.masks[item * n..][..n]);
        read_patch_into(shared, &spec, image, mask)?;
        move_in_place(image, mask, &spec.augment, p);
        c.hu_scale.push(spec.augment.hu_scale);
        c.hu_shift.push(spec.augment.hu_shift);
        patches.push(meta(shared, spec));
    }
    let shape = [b, 1, p[0], p[1], p[2]];
    Ok(Batch {
        epoch,
        index,
        shape,
        images: Vec::new(),
        masks: Vec::new(),
        compact: Some(c),
        patches,
    })
}

/// A patch as stored (its own region, every chunk) read straight into `image` and `mask`
/// (each exactly the patch's voxels: its part of a compact batch), with no buffer between.
///
/// # Errors
/// [`LoaderError::Store`] for a corrupt chunk.
fn read_patch_into(
    shared: &Shared,
    spec: &PatchSpec,
    image: &mut [i16],
    mask: &mut [u8],
) -> Result<(), LoaderError> {
    let r = Region { start_zyx: spec.start_zyx, shape_zyx: shared.cfg.patch_zyx };
    let scan = &shared.scans[spec.scan];
    let key = spec.scan as u32;
    shared.cache.read_region_into_slice::<i16>(key, &scan.volume, r, |_| true, image)?;
    region_mask_onto(shared, spec, r, None, mask)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The box rasterising returns is the box a search of the mask finds ([`on_box`]):
    /// spheres inside, across the edges, outside, two at once, and none.
    #[test]
    fn rasterising_returns_the_box_of_the_voxels_set() {
        let s = |c: [f64; 3], r: [f64; 3]| Sphere { centre_zyx: c, radius_zyx: r };
        let shape = [9usize, 14, 11];
        let start = [100i64, 200, 300];
        let cases: Vec<Vec<Sphere>> = vec![
            vec![],
            vec![s([104.0, 206.5, 305.2], [2.0, 3.1, 2.5])],
            vec![s([99.0, 201.0, 310.6], [3.0, 2.0, 4.0])],
            vec![s([90.0, 190.0, 290.0], [2.0; 3])],
            vec![s([101.5, 203.0, 302.0], [1.0; 3]), s([107.0, 212.0, 309.0], [1.5, 1.0, 2.0])],
            vec![s([104.0, 207.0, 305.0], [0.4; 3])],
        ];
        let mut m = vec![7u8; 3];
        for spheres in &cases {
            let on = rasterize_into(spheres, start, shape, &mut m);
            assert_eq!(on, on_box(&m, shape), "{spheres:?}");
        }
        assert!(rasterize_into(&cases[4], start, shape, &mut m).is_some());
        assert!(rasterize_into(&cases[3], start, shape, &mut m).is_none());
    }

    /// Appending mirrored equals appending, then mirroring in place.
    #[test]
    fn extending_mirrored_equals_mirroring_in_place() {
        for shape in [[3usize, 4, 5], [2, 3, 4], [1, 1, 1]] {
            let n: usize = shape.iter().product();
            let x: Vec<u16> = (0..n as u16).collect();
            for bits in 0..8 {
                let flip = [bits & 4 != 0, bits & 2 != 0, bits & 1 != 0];
                let mut want: Vec<f32> = x.iter().map(|&v| f32::from(v)).collect();
                mirror_in_place(&mut want, shape, flip);
                let mut got = vec![-1.0];
                extend_mirrored(&mut got, &x, shape, flip, f32::from);
                assert_eq!(got[1..], want[..], "{shape:?} {flip:?}");
            }
        }
    }

    /// In-place mirroring equals reading each voxel from the index
    /// [`AugmentParams::source_of`] gives, for every combination of axes, odd and even sides.
    #[test]
    fn mirroring_in_place_equals_the_source_map() {
        for shape in [[3usize, 4, 5], [2, 3, 4], [1, 1, 1]] {
            let n: usize = shape.iter().product();
            let x: Vec<u32> = (0..n as u32).collect();
            for bits in 0..8 {
                let flip = [bits & 4 != 0, bits & 2 != 0, bits & 1 != 0];
                let aug = AugmentParams { flip_zyx: flip, ..AugmentParams::default() };
                let mut expected = vec![0u32; n];
                for_each_moved(&aug, shape, |i, s| expected[i] = x[s]);
                let mut got = x.clone();
                mirror_in_place(&mut got, shape, flip);
                assert_eq!(got, expected, "{shape:?} {flip:?}");
            }
        }
    }
}
