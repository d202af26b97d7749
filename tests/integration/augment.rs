//! The loader's augmentation transforms one at a time, each against an independent
//! implementation on the same input: the affine (rotation and scaling about the patch
//! centre) against SimpleITK's `Resample`, the elastic deformation against scipy's
//! `map_coordinates`, the intensity transforms against batchgeneratorsv2's formulas in
//! PyTorch (tools/goldens/augment_check.py); the nnU-Net preset against a table taken
//! from nnU-Net's source.

use std::path::Path;

use crate::common::*;
use ctstream::loader::Augment;
use ctstream::loader::augment::elastic::ElasticParams;
use ctstream::loader::augment::intensity::{Applied, Intensity, Upsample};
use ctstream::loader::augment::sample::SourceMap;
use ctstream::loader::augment::spatial::{Interpolation, SpatialParams, matrix};
use ctstream::store::Region;

/// A region of HU with structure at every scale: a ball, a slab, a gradient and noise.
fn region(shape: [usize; 3], seed: u64) -> Vec<i16> {
    let mut s = seed;
    let mut out = Vec::with_capacity(shape.iter().product());
    for z in 0..shape[0] {
        for y in 0..shape[1] {
            for x in 0..shape[2] {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let noise = ((s >> 33) % 61) as i32 - 30;
                let c: [f64; 3] = shape.map(|n| n as f64 / 2.0);
                let r2 = (z as f64 - c[0]).powi(2)
                    + (y as f64 - c[1]).powi(2)
                    + (x as f64 - c[2]).powi(2);
                let ball = if r2 < 100.0 { 900 } else { 0 };
                let slab = if (y as i32 - x as i32).abs() < 3 { -400 } else { 0 };
                out.push((-700 + 4 * z as i32 + ball + slab + noise) as i16);
            }
        }
    }
    out
}

/// The mask of the ball (and of a second, off-centre one).
fn mask_of(shape: [usize; 3]) -> Vec<u8> {
    let mut out = Vec::with_capacity(shape.iter().product());
    let c: [f64; 3] = shape.map(|n| n as f64 / 2.0);
    for z in 0..shape[0] {
        for y in 0..shape[1] {
            for x in 0..shape[2] {
                let r2 = (z as f64 - c[0]).powi(2)
                    + (y as f64 - c[1]).powi(2)
                    + (x as f64 - c[2]).powi(2);
                let r3 = (z as f64 - c[0] - 5.0).powi(2)
                    + (y as f64 - 8.0).powi(2)
                    + (x as f64 - 9.0).powi(2);
                out.push(u8::from(r2 < 100.0) + 2 * u8::from(r3 < 16.0));
            }
        }
    }
    out
}

const PATCH: [usize; 3] = [16, 24, 20];
const START: [i64; 3] = [100, -3, 40];

/// The patch `p` transforms read from the region it covers, with the region.
fn sample(p: &SpatialParams) -> (SourceMap, Region, Vec<i16>, Vec<u8>, Vec<f32>, Vec<u8>) {
    let map = SourceMap::new(p, PATCH);
    let r = map.region(START);
    let hu = region(r.shape_zyx, 3);
    let m = mask_of(r.shape_zyx);
    let (img, msk) = map.sample(START, r, &hu, &m);
    (map, r, hu, m, img, msk)
}

fn spec_json(dir: &Path, p: &SpatialParams, r: Region) {
    let spec = serde_json::json!({
        "region_zyx": r.shape_zyx,
        "patch_zyx": PATCH,
        "matrix": p.matrix,
        "centre_zyx": PATCH.map(|n| (n as f64 - 1.0) / 2.0),
        "offset_zyx": std::array::from_fn::<i64, 3, _>(|a| START[a] - r.start_zyx[a]),
    });
    std::fs::write(dir.join("spec.json"), spec.to_string()).unwrap();
}

fn raw_i16(v: &[i16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn raw_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
fn read_f32(p: &Path) -> Vec<f32> {
    std::fs::read(p)
        .unwrap()
        .chunks(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// With no rotation, scaling or deformation the sampled patch is the stored one, voxel for
/// voxel (every point lands on a voxel centre: weights 0 and 1).
#[test]
fn the_identity_samples_the_stored_patch() {
    let p = SpatialParams {
        angles_zyx: [0.0; 3],
        scales_zyx: [1.0; 3],
        matrix: matrix([0.0; 3], [1.0; 3]),
        elastic: None,
        interpolation: Interpolation::Linear,
    };
    let (_, r, hu, m, img, msk) = sample(&p);
    let mut k = 0;
    for z in 0..PATCH[0] {
        for y in 0..PATCH[1] {
            for x in 0..PATCH[2] {
                let s = [z as i64 + START[0], y as i64 + START[1], x as i64 + START[2]];
                let i = (((s[0] - r.start_zyx[0]) as usize * r.shape_zyx[1])
                    + (s[1] - r.start_zyx[1]) as usize)
                    * r.shape_zyx[2]
                    + (s[2] - r.start_zyx[2]) as usize;
                assert_eq!(img[k], hu[i] as f32);
                assert_eq!(msk[k], m[i]);
                k += 1;
            }
        }
    }
}

/// The preset is nnU-Net v2's, value for value: nnunetv2 2.8.1,
/// `nnUNetTrainer.get_training_transforms` (lines 759-836) with
/// `configure_rotation_dummyDA_mirroring_and_inital_patch_size` (3D, not anisotropic:
/// rotation +-30 degrees, mirror axes (0, 1, 2)), and batchgeneratorsv2 0.3.6's
/// `RandomTransform(apply_probability)` times each transform's `p_per_channel` (one
/// channel) as the probability.
#[test]
fn the_nnunet_preset_is_nnunets_table() {
    let a = Augment::nnunet();
    // SpatialTransform(p_rotation=0.2, rotation=rotation_for_DA, p_scaling=0.2,
    // scaling=(0.7, 1.4), p_synchronize_scaling_across_axes=1, p_elastic_deform=0)
    let deg = std::f32::consts::PI / 180.0;
    assert_eq!(a.spatial.p_rotation, 0.2);
    for r in a.spatial.rotation_rad_zyx {
        assert!((r.lo + 30.0 * deg).abs() < 1e-6 && (r.hi - 30.0 * deg).abs() < 1e-6);
    }
    assert_eq!((a.spatial.p_scaling, a.spatial.scaling.lo, a.spatial.scaling.hi), (0.2, 0.7, 1.4));
    assert!(!a.spatial.scaling_per_axis && a.spatial.p_elastic == 0.0);
    // MirrorTransform(allowed_axes=(0, 1, 2)): each axis with probability 0.5.
    assert_eq!(a.flip_zyx, [true; 3]);
    let table: [(&str, f32, f32, f32, bool); 7] = [
        // (transform, apply_probability x p_per_channel, range, BGContrast)
        ("gaussian_noise", 0.1, 0.0, 0.1, false), // noise_variance=(0, 0.1), p 0.1 x 1
        ("blur", 0.2 * 0.5, 0.5, 1.0, false),     // blur_sigma=(0.5, 1.), p 0.2 x 0.5
        ("brightness", 0.15, 0.75, 1.25, true),   // BGContrast((0.75, 1.25)), p 0.15 x 1
        ("contrast", 0.15, 0.75, 1.25, true),     // BGContrast((0.75, 1.25)), preserve_range
        ("low_resolution", 0.25 * 0.5, 0.5, 1.0, false), // scale=(0.5, 1), p 0.25 x 0.5
        ("inverted_gamma", 0.1, 0.7, 1.5, true),  // BGContrast((0.7, 1.5)), p_invert_image=1
        ("gamma", 0.3, 0.7, 1.5, true),           // BGContrast((0.7, 1.5)), p_invert_image=0
    ];
    assert_eq!(a.intensity.len(), table.len());
    for (s, (name, p, lo, hi, around)) in a.intensity.iter().zip(table) {
        let r = match s.op {
            Intensity::GaussianNoise { sigma } => sigma,
            Intensity::Blur { sigma } => sigma,
            Intensity::Brightness { factor } => factor,
            Intensity::Contrast { factor, preserve_range } => {
                assert!(preserve_range);
                factor
            }
            Intensity::LowResolution { scale, upsample } => {
                assert_eq!(upsample, Upsample::Linear, "trilinear, as upmodes[3]");
                scale
            }
            Intensity::Gamma { gamma, retain_stats, .. } => {
                assert!(retain_stats, "p_retain_stats=1");
                gamma
            }
        };
        assert_eq!((s.name(), s.p, r.lo, r.hi, r.around_one), (name, p, lo, hi, around));
    }
}

/// Bad settings are refused with the setting named (the CLI's and Python's words go
/// through the same parser).
#[test]
fn bad_settings_are_refused_by_name() {
    let p = [32, 64, 64];
    for (spec, says) in [
        ("rotation:p=-0.1", "rotation probability"),
        ("scaling:range=0..1.4", "scaling"),
        ("scaling:range=nan", "scaling"),
        ("rotation:deg=200", "rotation about z"),
        ("rotation:x=-10..190", "rotation about x"),
        ("elastic:scale=0", "elastic scale"),
        ("elastic:magnitude=-1..2", "elastic magnitude"),
        ("gamma:range=0..1", "gamma range (the exponent)"),
        ("blur:sigma=0..1", "blur sigma"),
        ("blur:p=1.5", "blur probability"),
        ("low_resolution:scale=0.01", "low_resolution scale"),
        ("low_resolution:upsample=spline", "upsample"),
        ("contrast:preserve_range=maybe", "preserve_range"),
        ("brightness:range=1..0.5", "brightness factor"),
        ("gamma:gama=1", "no setting `gama`"),
        ("rotate", "not one of"),
    ] {
        let e = Augment::parse(spec, p).expect_err(spec);
        assert!(e.contains(says), "{spec}: {e}");
    }
    Augment::parse("nnunet,elastic,rotation:p=1:z=-180..180", p).unwrap();
}

/// Gaussian noise has the drawn standard deviation, mean 0 and a normal distribution:
/// over 128k voxels the sample's mean and standard deviation within 2 % of sigma; the
/// share of values below k sigma, k = -3..3, equals the normal table (Abramowitz and
/// Stegun 26.1: 0.00135, 0.02275, 0.15866, 0.5, ...) within 5 binomial standard errors;
/// neighbours (lag 1) and the two halves of a block (a Box-Muller pair's cosine and sine)
/// uncorrelated within 5 / sqrt(n). The same seed gives the same noise, another seed
/// other noise; an odd count noises its last voxel too.
#[test]
fn gaussian_noise_has_its_sigma_and_is_normal() {
    let shape = [32, 64, 64];
    let sigma = 0.05f64;
    let mut x = vec![0.5f32; 32 * 64 * 64];
    let a = Applied::GaussianNoise { sigma: sigma as f32, seed: 11 };
    a.apply(&mut x, shape);
    let z: Vec<f64> = x.iter().map(|&v| (v as f64 - 0.5) / sigma).collect();
    let n = z.len() as f64;
    let mean = z.iter().sum::<f64>() / n;
    let sd = (z.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(mean.abs() < 0.02 && (sd - 1.0).abs() < 0.02, "mean {mean} sigma, sd {sd} sigma");
    let table = [0.001_35, 0.022_75, 0.158_66, 0.5, 0.841_34, 0.977_25, 0.998_65];
    for (k, want) in (-3..=3).zip(table) {
        let got = z.iter().filter(|&&v| v < k as f64).count() as f64 / n;
        let se = (want * (1.0 - want) / n).sqrt();
        assert!((got - want).abs() < 5.0 * se, "share below {k} sigma: {got}, table {want}");
    }
    let corr = |a: &[f64], b: &[f64]| {
        let m = a.len() as f64;
        let (ma, mb) = (a.iter().sum::<f64>() / m, b.iter().sum::<f64>() / m);
        let cov = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum::<f64>();
        let va = a.iter().map(|x| (x - ma).powi(2)).sum::<f64>();
        let vb = b.iter().map(|y| (y - mb).powi(2)).sum::<f64>();
        (cov / (va * vb).sqrt(), 5.0 / m.sqrt())
    };
    let (r, bound) = corr(&z[..z.len() - 1], &z[1..]);
    assert!(r.abs() < bound, "lag-1 correlation {r}");
    let (firsts, seconds): (Vec<f64>, Vec<f64>) = z
        .chunks_exact(1024)
        .flat_map(|b| b[..512].iter().copied().zip(b[512..].iter().copied()))
        .unzip();
    let (r, bound) = corr(&firsts, &seconds);
    assert!(r.abs() < bound, "correlation of a block's halves {r}");
    let mut y = vec![0.5f32; x.len()];
    a.apply(&mut y, shape);
    assert_eq!(x, y, "same seed, same noise");
    let mut other = vec![0.5f32; x.len()];
    Applied::GaussianNoise { sigma: sigma as f32, seed: 12 }.apply(&mut other, shape);
    let same = x.iter().zip(&other).filter(|(p, q)| p == q).count();
    assert!(same < x.len() / 100, "seeds 11 and 12 agree on {same} voxels");
    let mut odd = vec![0.5f32; 3 * 5 * 7];
    a.apply(&mut odd, [3, 5, 7]);
    assert!(odd.iter().all(|&v| v != 0.5), "a voxel of an odd count was left without noise");
}

/// Tests that need Python with the pinned packages (SimpleITK, scipy; PyTorch for the
/// intensity transforms).
mod with_python {
    use super::*;

    /// Rotation and scaling about the patch centre equal SimpleITK's `Resample` with the
    /// same affine: linear to within 1e-3 of the value range, nearest equal except where a
    /// point lies within 1e-3 voxel of a half (ITK and ctstream both round half up there,
    /// but float rounding of the two computations may differ).
    #[test]
    #[ignore = "needs Python with the pinned packages (tools/goldens and tools/python requirements): tools/test.sh runs it where they are installed"]
    fn rotation_and_scaling_equal_simpleitk() {
        let cases = [
            ([0.4f32, -0.3, 0.5], [1.0f32; 3]),
            ([0.0, 0.0, 0.0], [1.3, 1.3, 1.3]),
            ([-0.5, 0.2, 0.1], [0.75, 1.2, 1.4]),
            ([std::f32::consts::FRAC_PI_2, 0.0, 0.0], [1.0; 3]),
        ];
        for (k, (angles, scales)) in cases.into_iter().enumerate() {
            let dir = tempdir();
            let p = SpatialParams {
                angles_zyx: angles,
                scales_zyx: scales,
                matrix: matrix(angles, scales),
                elastic: None,
                interpolation: Interpolation::Linear,
            };
            let (map, r, hu, m, img, msk) = sample(&p);
            std::fs::write(dir.path().join("region.raw"), raw_i16(&hu)).unwrap();
            std::fs::write(dir.path().join("mask_region.raw"), &m).unwrap();
            spec_json(dir.path(), &p, r);
            python_json("tools/goldens/augment_check.py", &["affine".into(), dir.path().into()]);
            let theirs = read_f32(&dir.path().join("image.raw"));
            let their_mask = std::fs::read(dir.path().join("mask.raw")).unwrap();
            let (lo, hi) = hu.iter().fold((i16::MAX, i16::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let range = (hi - lo) as f32;
            let worst = img.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let off: [f32; 3] = std::array::from_fn(|a| (START[a] - r.start_zyx[a]) as f32);
            let (mut differ, mut ties, mut i) = (0, 0, 0);
            for z in 0..PATCH[0] {
                for y in 0..PATCH[1] {
                    for x in 0..PATCH[2] {
                        if msk[i] != their_mask[i] {
                            differ += 1;
                            let q = map.at([z, y, x], [0.0; 3]);
                            if (0..3).any(|a| ((q[a] + off[a]).fract().abs() - 0.5).abs() < 1e-3) {
                                ties += 1;
                            }
                        }
                        i += 1;
                    }
                }
            }
            println!(
                "case {k}: linear differs by at most {worst} HU (range {range}); {differ} mask voxels differ, {ties} at ties"
            );
            assert!(worst <= 1e-3 * range, "case {k}: {worst} HU");
            assert_eq!(differ, ties, "case {k}: mask voxels differ away from ties");
            assert!(
                msk.iter().filter(|&&v| v == 1).count() > 100,
                "case {k}: the ball is in the patch"
            );
        }
    }

    /// The elastic deformation (with a rotation and a scaling on top) equals scipy's
    /// `map_coordinates(order=1)` at the same points, computed in float64 from the same
    /// displacement field: within 1e-3 of the value range.
    #[test]
    #[ignore = "needs Python with the pinned packages (tools/goldens and tools/python requirements): tools/test.sh runs it where they are installed"]
    fn elastic_deformation_equals_scipy_map_coordinates() {
        for (k, (angles, scales)) in
            [([0.0f32; 3], [1.0f32; 3]), ([0.3, -0.2, 0.1], [1.1, 0.9, 1.0])]
                .into_iter()
                .enumerate()
        {
            let dir = tempdir();
            let elastic = Some(ElasticParams {
                magnitude_zyx: [2.0, 3.0, 2.5],
                scale_zyx: [0.15, 0.1, 0.2],
                seed: 5 + k as u64,
            });
            let p = SpatialParams {
                angles_zyx: angles,
                scales_zyx: scales,
                matrix: matrix(angles, scales),
                elastic,
                interpolation: Interpolation::Linear,
            };
            let (map, r, hu, _, img, _) = sample(&p);
            let field: Vec<f32> = map.field().unwrap().iter().flatten().copied().collect();
            let moved = map
                .field()
                .unwrap()
                .iter()
                .map(|d| d.iter().map(|v| v.abs()).fold(0f32, f32::max))
                .fold(0f32, f32::max);
            assert!(moved > 1.0, "the field moves voxels ({moved})");
            std::fs::write(dir.path().join("region.raw"), raw_i16(&hu)).unwrap();
            std::fs::write(dir.path().join("field.raw"), raw_f32(&field)).unwrap();
            spec_json(dir.path(), &p, r);
            python_json("tools/goldens/augment_check.py", &["elastic".into(), dir.path().into()]);
            let theirs = read_f32(&dir.path().join("image.raw"));
            let (lo, hi) = hu.iter().fold((i16::MAX, i16::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let worst = img.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            println!(
                "elastic case {k}: largest displacement {moved} voxels; differs from scipy by at most {worst} HU (range {})",
                hi - lo
            );
            assert!(worst <= 1e-3 * (hi - lo) as f32, "case {k}: {worst}");
        }
    }

    /// The cubic B-spline image (rotation, scaling, and an elastic field on top) equals
    /// scipy's `map_coordinates(order=3, mode="mirror")` of the same region at the same
    /// points, in float64: within 1e-4 of the value range (ctstream's prefilter and sums
    /// run in float32). The mask is the linear path's, voxel for voxel.
    #[test]
    #[ignore = "needs Python with the pinned packages (tools/goldens and tools/python requirements): tools/test.sh runs it where they are installed"]
    fn bspline_equals_scipy_map_coordinates_order_3() {
        let elastic =
            ElasticParams { magnitude_zyx: [2.0, 3.0, 2.5], scale_zyx: [0.15; 3], seed: 9 };
        let cases = [
            ([0.4f32, -0.3, 0.5], [1.0f32; 3], None),
            ([0.0, 0.0, 0.0], [0.8, 1.3, 1.1], None),
            ([0.3, -0.2, 0.1], [1.1, 0.9, 1.0], Some(elastic)),
        ];
        for (k, (angles, scales, elastic)) in cases.into_iter().enumerate() {
            let dir = tempdir();
            let linear = SpatialParams {
                angles_zyx: angles,
                scales_zyx: scales,
                matrix: matrix(angles, scales),
                elastic,
                interpolation: Interpolation::Linear,
            };
            let p = SpatialParams { interpolation: Interpolation::BSpline3, ..linear };
            let (map, r, hu, m, img, msk) = sample(&p);
            if let Some(f) = map.field() {
                let field: Vec<f32> = f.iter().flatten().copied().collect();
                std::fs::write(dir.path().join("field.raw"), raw_f32(&field)).unwrap();
            }
            std::fs::write(dir.path().join("region.raw"), raw_i16(&hu)).unwrap();
            spec_json(dir.path(), &p, r);
            python_json("tools/goldens/augment_check.py", &["bspline".into(), dir.path().into()]);
            let theirs = read_f32(&dir.path().join("image.raw"));
            let (lo, hi) = hu.iter().fold((i16::MAX, i16::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            let worst = img.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            // How far the cubic image is from the linear one: the test would notice a
            // B-spline path that fell back to trilinear.
            // (The linear path sampling the same region: a region larger than it needs
            // changes nothing there.)
            let lin_same = SourceMap::new(&linear, PATCH).sample(START, r, &hu, &m).0;
            let apart = img.iter().zip(&lin_same).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            println!(
                "B-spline case {k}: differs from scipy by at most {worst} HU (range {}); from trilinear by up to {apart}",
                hi - lo
            );
            assert!(worst <= 1e-4 * (hi - lo) as f32, "case {k}: {worst}");
            assert!(apart > 10.0, "case {k}: the cubic image is the linear one");
            // The mask by nearest neighbour: the region voxel each point rounds to (half
            // up), computed here in f64, equal except within 1e-3 voxel of a half.
            let off: [f64; 3] = std::array::from_fn(|a| (START[a] - r.start_zyx[a]) as f64);
            let (mut differ, mut ties, mut i) = (0, 0, 0);
            for z in 0..PATCH[0] {
                for y in 0..PATCH[1] {
                    for x in 0..PATCH[2] {
                        let d = map.field().map_or([0.0; 3], |f| f[i]);
                        let q = map.at([z, y, x], d);
                        let v: [f64; 3] = std::array::from_fn(|a| q[a] as f64 + off[a]);
                        let n: [usize; 3] = std::array::from_fn(|a| (v[a] + 0.5).floor() as usize);
                        let want = m[(n[0] * r.shape_zyx[1] + n[1]) * r.shape_zyx[2] + n[2]];
                        if msk[i] != want {
                            differ += 1;
                            ties += usize::from(v.iter().any(|c| (c.fract() - 0.5).abs() < 1e-3));
                        }
                        i += 1;
                    }
                }
            }
            assert_eq!(differ, ties, "case {k}: mask voxels differ away from ties");
            assert!(msk.iter().filter(|&&v| v == 1).count() > 100, "case {k}: the ball");
        }
    }
}

/// Tests that need the pinned PyTorch.
mod with_pytorch {
    use super::*;

    /// Each intensity transform with fixed parameters equals batchgeneratorsv2's formula
    /// computed with PyTorch on the same patch (blur, brightness, contrast with and without
    /// the range kept, low resolution up linearly and cubically, gamma plain and inverted
    /// with statistics retained), to within 1e-5 (float32 sums in another order).
    #[test]
    #[ignore = "needs the pinned PyTorch (tools/bench/requirements.txt): tools/test.sh runs it where it is installed"]
    fn intensity_transforms_equal_batchgenerators_formulas() {
        let shape = [12, 20, 18];
        let base: Vec<f32> = region(shape, 9)
            .iter()
            .map(|&v| ((v as f32 + 1000.0) / 1400.0).clamp(0.0, 1.0))
            .collect();
        let cases: Vec<(Applied, serde_json::Value)> = vec![
            (
                Applied::Blur { sigma_zyx: [0.5, 1.0, 0.75] },
                serde_json::json!({"kind": "blur", "sigma_zyx": [0.5, 1.0, 0.75]}),
            ),
            (
                Applied::Brightness { factor: 1.2 },
                serde_json::json!({"kind": "brightness", "factor": 1.2}),
            ),
            (
                Applied::Contrast { factor: 1.25, preserve_range: true },
                serde_json::json!({"kind": "contrast", "factor": 1.25, "preserve_range": true}),
            ),
            (
                Applied::Contrast { factor: 0.8, preserve_range: false },
                serde_json::json!({"kind": "contrast", "factor": 0.8, "preserve_range": false}),
            ),
            (
                Applied::LowResolution { scale: 0.6, upsample: Upsample::Linear },
                serde_json::json!({"kind": "low_resolution", "scale": 0.6, "upsample": "linear"}),
            ),
            (
                Applied::LowResolution { scale: 0.55, upsample: Upsample::Cubic },
                serde_json::json!({"kind": "low_resolution", "scale": 0.55, "upsample": "cubic"}),
            ),
            (
                Applied::Gamma { gamma: 0.8, invert: false, retain_stats: true },
                serde_json::json!({"kind": "gamma", "gamma": 0.8, "invert": false, "retain_stats": true}),
            ),
            (
                Applied::Gamma { gamma: 1.4, invert: true, retain_stats: true },
                serde_json::json!({"kind": "gamma", "gamma": 1.4, "invert": true, "retain_stats": true}),
            ),
            (
                Applied::Gamma { gamma: 1.3, invert: false, retain_stats: false },
                serde_json::json!({"kind": "gamma", "gamma": 1.3, "invert": false, "retain_stats": false}),
            ),
            (
                Applied::Gamma { gamma: 0.75, invert: true, retain_stats: false },
                serde_json::json!({"kind": "gamma", "gamma": 0.75, "invert": true, "retain_stats": false}),
            ),
        ];
        for (a, spec) in cases {
            let dir = tempdir();
            let mut ours = base.clone();
            a.apply(&mut ours, shape);
            assert_ne!(ours, base, "{spec}: the transform changes the patch");
            std::fs::write(dir.path().join("x.raw"), raw_f32(&base)).unwrap();
            let s = serde_json::json!({"shape_zyx": shape, "stages": [spec.clone()]});
            std::fs::write(dir.path().join("spec.json"), s.to_string()).unwrap();
            python_json("tools/goldens/augment_check.py", &["intensity".into(), dir.path().into()]);
            let theirs = read_f32(&dir.path().join("out.raw"));
            let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            println!("{spec}: differs from PyTorch by at most {worst}");
            assert!(worst <= 1e-5, "{spec}: {worst}");
        }
    }
}
