//! Synthetic LUNA-like CT datasets: the embedded default that demos and tests run on.
//!
//! [`generate`] writes, under an output folder:
//!
//! - `subset0/<seriesuid>.mhd` + `.raw`: int16 HU volumes with LUNA16-like geometry
//!   (in-plane spacing 0.55-0.85 mm, slice spacing 0.7-2.5 mm, 512 x 512 pixels,
//!   scanner-like origins; `small` makes 128 x 128 x 32-48 voxel scans for fast tests);
//! - `annotations.csv`: the nodules, world mm, diameter = equivalent-sphere diameter;
//! - `candidates.csv`: each nodule as class 1 (within 1 mm of its centre) plus random
//!   points inside the lungs as class 0;
//! - with `dicom`, `dicom/<seriesuid>/IM*.dcm`: the same volumes as DICOM CT series
//!   (explicit VR little endian, signed 16-bit, RescaleIntercept -1024). File names run
//!   from the top slice down, so name order is *not* position order.
//! - with `labels`, `labels/<seriesuid>.mha`: each scan's label map on its grid
//!   ([`SynthScan::label_map`]: 1 lung, 2 nodule), which `ingest --labels` pairs by id;
//! - with `nnunet`, `nnunet/Dataset001_SynthLung/`: the same scans as an nnU-Net raw
//!   dataset (`imagesTr/lung_NNN_0000.nii.gz`, `labelsTr/lung_NNN.nii.gz` holding the label
//!   maps, `dataset.json` naming background 0, lung 1, nodule 2), which `ingest --nnunet`
//!   reads as it is.
//!
//! The anatomy: air (-1000) outside an elliptical body with a fat layer (-100) and soft
//! tissue (40); two lungs (about -850) with vessel-like tubes (40) winding along z; the
//! trachea and two main bronchi (gas, -1000) from the top of the scan into the lungs; a
//! vertebral body (cortex 700, marrow 250) and ribs; 2-5 spherical or ellipsoidal
//! nodules of 3-30 mm (3-15 mm when `small`) with soft edges, inside the lungs;
//! in-plane-correlated noise. Every value is a pure function of (seed, scan index): the
//! same seed gives the same bytes.

pub mod check;

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use ndarray::{Array3, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use crate::annotations::{self, Annotation, Candidate};
use crate::fsutil::write_atomic;
use crate::geometry::Geometry;
use crate::io::metaimage::{self, WriteOptions};
use crate::progress::Progress;

/// Errors from writing a synthetic dataset; each names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// A file or folder could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Writing a MetaImage failed.
    #[error(transparent)]
    MetaImage(#[from] metaimage::MetaImageError),
    /// Writing a NIfTI file (the nnU-Net copy) failed.
    #[error(transparent)]
    Nifti(#[from] crate::io::nifti::NiftiError),
    /// Writing a CSV failed.
    #[error(transparent)]
    Annotations(#[from] annotations::AnnotationError),
    /// Writing a DICOM file failed.
    #[error("{path}: cannot write DICOM: {message}")]
    Dicom {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// A value of the configuration is out of range (the message names it).
    #[error("{0}")]
    Config(String),
}

/// The most scans one call generates (a full-size scan is about 120 MB of MetaImage).
pub const MAX_SCANS: usize = 10_000;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthConfig {
    /// Number of scans.
    pub scans: usize,
    /// Seed; the dataset is a pure function of it.
    pub seed: u64,
    /// Small scans (128 x 128 in-plane, 32-48 slices) for fast tests.
    pub small: bool,
    /// Also write each scan as a DICOM series.
    pub dicom: bool,
    /// Also write each scan's label map (`labels/<seriesuid>.mha`).
    pub labels: bool,
    /// Also write the dataset in nnU-Net's raw layout (`nnunet/Dataset001_SynthLung/`).
    pub nnunet: bool,
}

impl SynthConfig {
    /// `scans` scans from `seed`, full size, no DICOM, no label maps, no nnU-Net copy.
    pub fn new(scans: usize, seed: u64) -> Self {
        SynthConfig { scans, seed, small: false, dicom: false, labels: false, nnunet: false }
    }
}

/// One generated scan with its ground truth.
#[derive(Debug, Clone)]
pub struct SynthScan {
    /// LUNA-style series id (`1.3.6.1.4.1.14519.5.2.1.6279.6001.` + 24 digits).
    pub series_id: String,
    /// HU, (z, y, x).
    pub hu: Array3<i16>,
    /// Geometry (identity direction, like LUNA16).
    pub geometry: Geometry,
    /// The nodules (world mm, equivalent-sphere diameters).
    pub nodules: Vec<Annotation>,
    /// Class 1 (nodules) and class 0 (random lung points) candidates.
    pub candidates: Vec<Candidate>,
    /// The generator's own lungs on the scan's grid, (z, y, x): 1 right lung (the one at
    /// lower x), 2 left lung, 0 elsewhere; a voxel is lung where the lung's soft edge
    /// weight is at least one half (vessels and nodules inside included).
    pub lungs: Array3<u8>,
    /// The nodules' ellipsoids: centre (x, y, z) and radii (x, y, z), world mm.
    pub nodule_ellipsoids: Vec<([f64; 3], [f64; 3])>,
    /// The airway: the trachea from above the scan down to the carina, then the right and
    /// the left main bronchus into their lungs (gas, -1000 HU).
    pub airway: Vec<AirwaySegment>,
}

/// A straight piece of airway: the voxels within `radius` of the segment `from`-`to`
/// (world mm) are its lumen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AirwaySegment {
    /// One end, (x, y, z) mm.
    pub from: [f64; 3],
    /// The other end, (x, y, z) mm.
    pub to: [f64; 3],
    /// The lumen's radius, mm.
    pub radius: f64,
}

impl AirwaySegment {
    /// The distance in mm of `p` (x, y, z) from the segment's axis.
    pub fn distance(&self, p: [f64; 3]) -> f64 {
        let d: [f64; 3] = std::array::from_fn(|a| self.to[a] - self.from[a]);
        let w: [f64; 3] = std::array::from_fn(|a| p[a] - self.from[a]);
        let dd: f64 = d.iter().map(|v| v * v).sum();
        let t = if dd > 0.0 {
            (d.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>() / dd).clamp(0.0, 1.0)
        } else {
            0.0
        };
        (0..3).map(|a| (w[a] - t * d[a]).powi(2)).sum::<f64>().sqrt()
    }
}

impl SynthScan {
    /// The scan's label map on its grid: 1 lung ([`SynthScan::lungs`]), 2 nodule (voxel
    /// centres inside a nodule's ellipsoid, where its soft edge is at least one half), 0
    /// elsewhere.
    pub fn label_map(&self) -> Array3<u8> {
        let mut m = self.lungs.mapv(|v| (v != 0) as u8);
        let (nz, ny, nx) = m.dim();
        let (o, s) = (self.geometry.origin_xyz, self.geometry.spacing_xyz);
        for (c, r) in &self.nodule_ellipsoids {
            let range = |a: usize, n: usize| {
                let lo = ((c[a] - r[a] - o[a]) / s[a]).floor().max(0.0) as usize;
                let hi = (((c[a] + r[a] - o[a]) / s[a]).ceil().max(0.0) as usize + 1).min(n);
                lo..hi
            };
            for z in range(2, nz) {
                let dz = (o[2] + z as f64 * s[2] - c[2]) / r[2];
                for y in range(1, ny) {
                    let dy = (o[1] + y as f64 * s[1] - c[1]) / r[1];
                    for x in range(0, nx) {
                        let dx = (o[0] + x as f64 * s[0] - c[0]) / r[0];
                        if dx * dx + dy * dy + dz * dz <= 1.0 {
                            m[[z, y, x]] = 2;
                        }
                    }
                }
            }
        }
        m
    }

    /// The airway's lumen on the scan's grid, (z, y, x): 1 where a voxel centre lies
    /// within the radius of an [`AirwaySegment`], 0 elsewhere.
    pub fn airway_mask(&self) -> Array3<u8> {
        let (nz, ny, nx) = self.hu.dim();
        let mut m = Array3::<u8>::zeros((nz, ny, nx));
        let (o, s) = (self.geometry.origin_xyz, self.geometry.spacing_xyz);
        for seg in &self.airway {
            let range = |a: usize, n: usize| {
                let lo = ((seg.from[a].min(seg.to[a]) - seg.radius - o[a]) / s[a]).floor().max(0.0)
                    as usize;
                let hi = (((seg.from[a].max(seg.to[a]) + seg.radius - o[a]) / s[a]).ceil().max(0.0)
                    as usize
                    + 1)
                .min(n);
                lo..hi
            };
            for z in range(2, nz) {
                for y in range(1, ny) {
                    for x in range(0, nx) {
                        if seg.distance([
                            o[0] + x as f64 * s[0],
                            o[1] + y as f64 * s[1],
                            o[2] + z as f64 * s[2],
                        ]) <= seg.radius
                        {
                            m[[z, y, x]] = 1;
                        }
                    }
                }
            }
        }
        m
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct SynthSummary {
    /// The output folder.
    pub out: PathBuf,
    /// The `.mhd` files.
    pub scans: Vec<PathBuf>,
    /// DICOM series folders (empty without `dicom`).
    pub dicom_series: Vec<PathBuf>,
    /// `annotations.csv`.
    pub annotations: PathBuf,
    /// `candidates.csv`.
    pub candidates: PathBuf,
    /// Total nodules.
    pub nodules: usize,
}

/// A 64-bit seed for a (seed, scan, purpose) triple: SplitMix64 over the three.
fn sub_seed(seed: u64, scan: u64, purpose: u64) -> u64 {
    let mut z = seed
        ^ scan.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ purpose.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Rounds to `decimals` places, so values print as short decimals (DICOM DS holds 16 chars).
fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

struct Ellipse {
    cx: f64,
    cy: f64,
    rx: f64,
    ry: f64,
}

impl Ellipse {
    /// Approximate signed distance in mm (negative inside).
    fn sdist(&self, x: f64, y: f64) -> f64 {
        let (u, v) = ((x - self.cx) / self.rx, (y - self.cy) / self.ry);
        ((u * u + v * v).sqrt() - 1.0) * self.rx.min(self.ry)
    }
}

struct Nodule {
    centre: [f64; 3],
    radii: [f64; 3],
    hu: f64,
}

struct Tube {
    x0: f64,
    y0: f64,
    ax: f64,
    ay: f64,
    wavelength: f64,
    phase: f64,
    radius: f64,
}

/// Smooth step from 1 (inside, d <= -w) to 0 (outside, d >= w).
fn inside(d: f64, w: f64) -> f64 {
    (0.5 - 0.5 * (d / w).clamp(-1.0, 1.0)).clamp(0.0, 1.0)
}

/// Generates scan `index` of the dataset with `seed`.
pub fn synth_scan(seed: u64, index: usize, small: bool) -> SynthScan {
    let mut rng = ChaCha8Rng::seed_from_u64(sub_seed(seed, index as u64, 0));
    let mut digits = String::from("1.3.6.1.4.1.14519.5.2.1.6279.6001.");
    digits.push(char::from(b'1' + rng.random_range(0..9u8)));
    for _ in 0..23 {
        digits.push(char::from(b'0' + rng.random_range(0..10u8)));
    }
    let series_id = digits;

    // Geometry like LUNA16: spacings that print as short decimals.
    let (nxy, sxy, sz, nz) = if small {
        let sxy = round_to(rng.random_range(0.55..0.85) * 1.6, 6);
        let sz = round_to(rng.random_range(1.4..2.5), 4);
        (128usize, sxy, sz, rng.random_range(32..=48usize))
    } else {
        let sxy = round_to(rng.random_range(0.55..0.85), 6);
        let sz = round_to(rng.random_range(0.7..2.5), 4);
        let nz = ((rng.random_range(260.0..340.0) / sz) as usize).clamp(100, 480);
        (512usize, sxy, sz, nz)
    };
    let fov = nxy as f64 * sxy;
    let origin_xyz = [
        round_to(-fov / 2.0 + rng.random_range(-15.0..15.0), 3),
        round_to(-fov / 2.0 + rng.random_range(-25.0..10.0), 3),
        round_to(rng.random_range(-420.0..-80.0), 3),
    ];
    let geometry = Geometry::axis_aligned(origin_xyz, [sxy, sxy, sz]);
    let zext = (nz - 1) as f64 * sz;

    // Anatomy in world mm, scaled to the field of view.
    let cx = origin_xyz[0] + fov / 2.0 + rng.random_range(-0.03..0.03) * fov;
    let cy = origin_xyz[1] + fov / 2.0 + rng.random_range(-0.02..0.04) * fov;
    let body = Ellipse {
        cx,
        cy,
        rx: fov * rng.random_range(0.40..0.46),
        ry: fov * rng.random_range(0.29..0.34),
    };
    let fat = Ellipse { cx, cy, rx: body.rx - fov * 0.03, ry: body.ry - fov * 0.03 };
    let lung_rx = body.rx * rng.random_range(0.33..0.38);
    let lung_ry = body.ry * rng.random_range(0.62..0.70);
    let lungs = [
        Ellipse { cx: cx - body.rx * 0.47, cy: cy - body.ry * 0.08, rx: lung_rx, ry: lung_ry },
        Ellipse {
            cx: cx + body.rx * 0.47,
            cy: cy - body.ry * 0.08,
            rx: lung_rx * 0.95,
            ry: lung_ry,
        },
    ];
    let lung_hu = rng.random_range(-870.0..-830.0);
    let spine = Ellipse { cx, cy: cy + body.ry * 0.72, rx: body.rx * 0.12, ry: body.ry * 0.16 };
    let z0 = origin_xyz[2];
    // Lungs taper towards both ends of the scan.
    let lung_scale = move |z: f64| -> f64 {
        let t = ((z - z0) / zext).clamp(0.0, 1.0);
        (1.0 - (2.0 * t - 1.0).powi(4)).max(0.0).sqrt()
    };

    let mut tubes = Vec::new();
    for lung in &lungs {
        for _ in 0..(if small { 6 } else { 14 }) {
            let a = rng.random_range(0.0..2.0 * PI);
            let r = rng.random_range(0.1..0.75);
            tubes.push(Tube {
                x0: lung.cx + r * lung.rx * a.cos(),
                y0: lung.cy + r * lung.ry * a.sin(),
                ax: rng.random_range(2.0..0.25 * lung.rx),
                ay: rng.random_range(2.0..0.25 * lung.ry),
                wavelength: rng.random_range(40.0..160.0),
                phase: rng.random_range(0.0..2.0 * PI),
                radius: rng.random_range(0.8..if small { 2.5 } else { 3.5 }),
            });
        }
    }

    // Nodules: inside a lung, away from the scan's ends.
    let n_nodules = rng.random_range(2..=5usize);
    let max_d: f64 = if small { 15.0 } else { 30.0 };
    let mut nodules = Vec::new();
    let mut tries = 0;
    while nodules.len() < n_nodules && tries < 1000 {
        tries += 1;
        let d: f64 = (rng.random_range(3.0f64.ln()..max_d.ln())).exp();
        let r = d / 2.0;
        let radii = if rng.random_bool(0.5) {
            [r, r, r]
        } else {
            let (a, b) = (rng.random_range(0.8..1.25), rng.random_range(0.8..1.25));
            let c = 1.0 / (a * b); // keep the volume of the sphere of diameter d
            [r * a, r * b, r * c]
        };
        let rmax = radii.iter().cloned().fold(0.0, f64::max);
        let lung = &lungs[rng.random_range(0..2)];
        let z = z0 + rng.random_range(0.2..0.8) * zext;
        let s = lung_scale(z);
        let a = rng.random_range(0.0..2.0 * PI);
        let rr = rng.random_range(0.0..0.7f64).sqrt();
        let (x, y) = (lung.cx + rr * lung.rx * s * a.cos(), lung.cy + rr * lung.ry * s * a.sin());
        // Entirely inside the lung (in-plane) and inside the scan (along z).
        let inside_lung = lung.sdist(x, y) < -(rmax + 1.0)
            && ((x - lung.cx) / (lung.rx * s)).powi(2) + ((y - lung.cy) / (lung.ry * s)).powi(2)
                < 1.0;
        let inside_scan = z - rmax > z0 + sz && z + rmax < z0 + zext - sz;
        let apart = nodules.iter().all(|n: &Nodule| {
            let dd: f64 = (0..3).map(|i| (n.centre[i] - [x, y, z][i]).powi(2)).sum::<f64>().sqrt();
            dd > rmax + n.radii.iter().cloned().fold(0.0, f64::max) + 5.0
        });
        if inside_lung && inside_scan && apart && s > 0.5 {
            nodules.push(Nodule {
                centre: [round_to(x, 3), round_to(y, 3), round_to(z, 3)],
                radii,
                hu: rng.random_range(-20.0..80.0),
            });
        }
    }

    // Candidates: nodules (class 1, jittered < 1 mm) and random lung points (class 0).
    let mut candidates = Vec::new();
    for n in &nodules {
        let j: Vec<f64> = (0..3).map(|_| rng.random_range(-0.5..0.5)).collect();
        candidates.push(Candidate {
            series_id: series_id.clone(),
            world_xyz: [
                round_to(n.centre[0] + j[0], 3),
                round_to(n.centre[1] + j[1], 3),
                round_to(n.centre[2] + j[2], 3),
            ],
            class: 1,
        });
    }
    let n_neg = if small { 10 } else { 40 };
    while candidates.len() < nodules.len() + n_neg {
        let lung = &lungs[rng.random_range(0..2)];
        let z = z0 + rng.random_range(0.1..0.9) * zext;
        let s = lung_scale(z);
        let a = rng.random_range(0.0..2.0 * PI);
        let rr = rng.random_range(0.0..0.8f64).sqrt() * s;
        candidates.push(Candidate {
            series_id: series_id.clone(),
            world_xyz: [
                round_to(lung.cx + rr * lung.rx * a.cos(), 3),
                round_to(lung.cy + rr * lung.ry * a.sin(), 3),
                round_to(z, 3),
            ],
            class: 0,
        });
    }

    // The airway, from its own stream (the scan's other draws stay as they were): the
    // trachea down the midline, between the lungs, to the carina; the right main bronchus
    // steeper and shorter than the left, both ending inside their lungs.
    let mut arng = ChaCha8Rng::seed_from_u64(sub_seed(seed, index as u64, 2));
    let trachea_r = (body.rx * arng.random_range(0.05..0.065)).clamp(3.0, 10.0);
    let trachea_y = cy - body.ry * arng.random_range(0.03..0.08);
    let carina = [cx, trachea_y, z0 + zext * arng.random_range(0.55..0.65)];
    let airway = vec![
        AirwaySegment {
            from: carina,
            to: [cx, trachea_y, z0 + zext + 2.0 * trachea_r],
            radius: trachea_r,
        },
        AirwaySegment {
            from: carina,
            to: [
                lungs[0].cx + 0.5 * lungs[0].rx,
                lungs[0].cy,
                carina[2] - arng.random_range(25.0..35.0),
            ],
            radius: 0.7 * trachea_r,
        },
        AirwaySegment {
            from: carina,
            to: [
                lungs[1].cx - 0.5 * lungs[1].rx,
                lungs[1].cy,
                carina[2] - arng.random_range(15.0..25.0),
            ],
            radius: 0.65 * trachea_r,
        },
    ];

    // Voxels, one slice per task; each slice's noise has its own seed.
    let mut hu = Array3::<i16>::zeros((nz, nxy, nxy));
    let mut lung_truth = Array3::<u8>::zeros((nz, nxy, nxy));
    let noise_sigma = rng.random_range(18.0..30.0);
    let plane_len = nxy * nxy;
    let voxels = hu.as_slice_mut().expect("a new array is contiguous");
    let truth = lung_truth.as_slice_mut().expect("a new array is contiguous");
    voxels.par_chunks_mut(plane_len).zip(truth.par_chunks_mut(plane_len)).enumerate().for_each(
        |(k, (plane, truth_plane))| {
            let z = z0 + k as f64 * sz;
            let mut srng = ChaCha8Rng::seed_from_u64(sub_seed(seed, index as u64, 1000 + k as u64));
            let normal = Normal::new(0.0, 1.0).expect("unit normal is valid");
            let mut noise: Vec<f64> = (0..nxy * nxy).map(|_| normal.sample(&mut srng)).collect();
            // Correlate in-plane: two passes of a separable [1 2 1]/4 filter (sigma drops to ~0.5).
            for _ in 0..2 {
                let mut tmp = noise.clone();
                for y in 0..nxy {
                    for x in 1..nxy - 1 {
                        tmp[y * nxy + x] = 0.25 * noise[y * nxy + x - 1]
                            + 0.5 * noise[y * nxy + x]
                            + 0.25 * noise[y * nxy + x + 1];
                    }
                }
                for y in 1..nxy - 1 {
                    for x in 0..nxy {
                        noise[y * nxy + x] = 0.25 * tmp[(y - 1) * nxy + x]
                            + 0.5 * tmp[y * nxy + x]
                            + 0.25 * tmp[(y + 1) * nxy + x];
                    }
                }
            }
            let ls = lung_scale(z);
            let tube_pos: Vec<(f64, f64, f64)> = tubes
                .iter()
                .map(|t| {
                    let ph = 2.0 * PI * (z - z0) / t.wavelength + t.phase;
                    (t.x0 + t.ax * ph.sin(), t.y0 + t.ay * (0.7 * ph).cos(), t.radius)
                })
                .collect();
            let nods: Vec<&Nodule> =
                nodules.iter().filter(|n| (z - n.centre[2]).abs() < n.radii[2] + 2.0).collect();
            let w = sxy; // edge width, about one voxel
            // The airway pieces this slice cuts, with their in-plane boxes (x0, x1, y0, y1).
            let pieces: Vec<(&AirwaySegment, [f64; 4])> = airway
                .iter()
                .filter(|a| {
                    z >= a.from[2].min(a.to[2]) - a.radius - w
                        && z <= a.from[2].max(a.to[2]) + a.radius + w
                })
                .map(|a| {
                    let m = a.radius + w;
                    (
                        a,
                        [
                            a.from[0].min(a.to[0]) - m,
                            a.from[0].max(a.to[0]) + m,
                            a.from[1].min(a.to[1]) - m,
                            a.from[1].max(a.to[1]) + m,
                        ],
                    )
                })
                .collect();
            for yi in 0..nxy {
                let y = origin_xyz[1] + yi as f64 * sxy;
                for xi in 0..nxy {
                    let x = origin_xyz[0] + xi as f64 * sxy;
                    let in_body = inside(body.sdist(x, y), w);
                    let in_soft = inside(fat.sdist(x, y), w);
                    let mut v = -1000.0 * (1.0 - in_body)
                        + in_body * (-100.0 * (1.0 - in_soft) + 40.0 * in_soft);
                    // Lungs.
                    let mut in_lung = 0.0f64;
                    if ls > 0.05 {
                        for (side, l) in lungs.iter().enumerate() {
                            let e = Ellipse { cx: l.cx, cy: l.cy, rx: l.rx * ls, ry: l.ry * ls };
                            let a = inside(e.sdist(x, y), w);
                            if a >= 0.5 {
                                truth_plane[yi * nxy + xi] = side as u8 + 1;
                            }
                            in_lung = in_lung.max(a);
                        }
                    }
                    if in_lung > 0.0 {
                        let mut vessel = 0.0f64;
                        for &(tx, ty, r) in &tube_pos {
                            let d = ((x - tx).powi(2) + (y - ty).powi(2)).sqrt() - r;
                            if d < w {
                                vessel = vessel.max(inside(d, w * 0.7));
                            }
                        }
                        let lung_v = lung_hu * (1.0 - vessel) + 40.0 * vessel;
                        v = v * (1.0 - in_lung) + lung_v * in_lung;
                    }
                    // The airway's lumen, soft-edged.
                    for (a, b) in &pieces {
                        if x >= b[0] && x <= b[1] && y >= b[2] && y <= b[3] {
                            let g = inside(a.distance([x, y, z]) - a.radius, w);
                            v = v * (1.0 - g) - 1000.0 * g;
                        }
                    }
                    // Spine: cortex and marrow; ribs: blobs just inside the fat layer.
                    let ds = spine.sdist(x, y);
                    if ds < w {
                        let cortex = inside(ds, w);
                        let marrow = inside(ds + 3.0, w);
                        v = v * (1.0 - cortex)
                            + (700.0 * (cortex - marrow) + 250.0 * marrow)
                            + 0.0 * cortex;
                    }
                    let (u, vv) = ((x - body.cx) / fat.rx, (y - body.cy) / fat.ry);
                    let rho = (u * u + vv * vv).sqrt();
                    if rho > 0.85 && rho < 1.0 && vv < 0.5 {
                        let ang = vv.atan2(u);
                        let rib_phase = (ang * 9.0 + z * 0.12).sin();
                        if rib_phase > 0.93 && (rho - 0.92).abs() < 0.04 {
                            v = 450.0;
                        }
                    }
                    // Nodules, soft-edged.
                    for n in &nods {
                        let (dx, dy, dz) = (
                            (x - n.centre[0]) / n.radii[0],
                            (y - n.centre[1]) / n.radii[1],
                            (z - n.centre[2]) / n.radii[2],
                        );
                        let rn = (dx * dx + dy * dy + dz * dz).sqrt();
                        let d = (rn - 1.0) * n.radii.iter().cloned().fold(f64::MAX, f64::min);
                        if d < 1.5 * w {
                            let a = inside(d, 0.8 * w);
                            v = v * (1.0 - a) + n.hu * a;
                        }
                    }
                    v += noise_sigma * 2.0 * noise[yi * nxy + xi];
                    plane[yi * nxy + xi] = v.round().clamp(-1024.0, 3071.0) as i16;
                }
            }
        },
    );

    let nodules_truth: Vec<([f64; 3], [f64; 3])> =
        nodules.iter().map(|n| (n.centre, n.radii)).collect();
    let nodules = nodules
        .iter()
        .map(|n| Annotation {
            series_id: series_id.clone(),
            world_xyz: n.centre,
            diameter_mm: Some(round_to(2.0 * (n.radii[0] * n.radii[1] * n.radii[2]).cbrt(), 3)),
        })
        .collect();
    let nodule_ellipsoids = nodules_truth;
    SynthScan {
        series_id,
        hu,
        geometry,
        nodules,
        candidates,
        lungs: lung_truth,
        nodule_ellipsoids,
        airway,
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io { path: path.to_path_buf(), source }
}

fn ds(v: f64) -> String {
    // DICOM DS: at most 16 characters.
    let s = format!("{v}");
    if s.len() <= 16 { s } else { format!("{v:.6}") }
}

/// Writes one scan as a DICOM series under `dir` (one file per slice).
///
/// # Errors
/// [`SynthError`] naming the file that could not be written.
pub fn write_dicom_series(dir: &Path, scan: &SynthScan) -> Result<(), SynthError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let g = &scan.geometry;
    let (nz, ny, nx) = scan.hu.dim();
    let study = format!("{}.1", &scan.series_id[..scan.series_id.len().min(60)]);
    let frame = format!("{}.2", &scan.series_id[..scan.series_id.len().min(60)]);
    (0..nz).into_par_iter().try_for_each(|k| {
        let sop = format!("{}.{}", scan.series_id, k + 1);
        let zpos = round_to(g.origin_xyz[2] + k as f64 * g.spacing_xyz[2], 4);
        let mut obj = InMemDicomObject::new_empty();
        let mut put_str =
            |tag, vr, v: &str| obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
        put_str(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.2");
        put_str(tags::SOP_INSTANCE_UID, VR::UI, &sop);
        put_str(tags::STUDY_INSTANCE_UID, VR::UI, &study);
        put_str(tags::SERIES_INSTANCE_UID, VR::UI, &scan.series_id);
        put_str(tags::FRAME_OF_REFERENCE_UID, VR::UI, &frame);
        put_str(tags::MODALITY, VR::CS, "CT");
        put_str(tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\AXIAL");
        put_str(tags::PATIENT_ID, VR::LO, "SYNTH");
        put_str(tags::PATIENT_NAME, VR::PN, "Synthetic^Phantom");
        put_str(tags::SERIES_DESCRIPTION, VR::LO, "ctstream synthetic LUNA-like scan");
        put_str(tags::INSTANCE_NUMBER, VR::IS, &(k + 1).to_string());
        put_str(
            tags::IMAGE_POSITION_PATIENT,
            VR::DS,
            &format!("{}\\{}\\{}", ds(g.origin_xyz[0]), ds(g.origin_xyz[1]), ds(zpos)),
        );
        put_str(tags::IMAGE_ORIENTATION_PATIENT, VR::DS, "1\\0\\0\\0\\1\\0");
        put_str(
            tags::PIXEL_SPACING,
            VR::DS,
            &format!("{}\\{}", ds(g.spacing_xyz[1]), ds(g.spacing_xyz[0])),
        );
        put_str(tags::SLICE_THICKNESS, VR::DS, &ds(g.spacing_xyz[2]));
        put_str(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2");
        put_str(tags::RESCALE_INTERCEPT, VR::DS, "-1024");
        put_str(tags::RESCALE_SLOPE, VR::DS, "1");
        put_str(tags::RESCALE_TYPE, VR::LO, "HU");
        for (tag, v) in [
            (tags::ROWS, ny as u16),
            (tags::COLUMNS, nx as u16),
            (tags::SAMPLES_PER_PIXEL, 1),
            (tags::BITS_ALLOCATED, 16),
            (tags::BITS_STORED, 16),
            (tags::HIGH_BIT, 15),
            (tags::PIXEL_REPRESENTATION, 1),
        ] {
            obj.put(DataElement::new(tag, VR::US, PrimitiveValue::from(v)));
        }
        let stored: Vec<i16> =
            scan.hu.index_axis(Axis(0), k).iter().map(|&v| v.saturating_add(1024)).collect();
        obj.put(DataElement::new(tags::PIXEL_DATA, VR::OW, PrimitiveValue::I16(stored.into())));
        // Name from the top slice down: file-name order is the reverse of position order.
        let path = dir.join(format!("IM{:04}.dcm", nz - k));
        let file = obj
            .with_meta(
                FileMetaTableBuilder::new()
                    .transfer_syntax("1.2.840.10008.1.2.1")
                    .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.2")
                    .media_storage_sop_instance_uid(&sop),
            )
            .map_err(|e| SynthError::Dicom { path: path.clone(), message: e.to_string() })?;
        write_atomic(&path, |w| file.write_all(w).map_err(std::io::Error::other))
            .map_err(io_err(&path))
    })
}

/// Where [`generate`] writes the nnU-Net copy, under its output folder.
pub const NNUNET_DATASET: &str = "nnunet/Dataset001_SynthLung";

/// Writes a synthetic dataset under `out` (see the module docs for the layout).
///
/// # Errors
/// [`SynthError`] naming the file that could not be written.
pub fn generate(
    out: &Path,
    cfg: &SynthConfig,
    progress: &dyn Progress,
) -> Result<SynthSummary, SynthError> {
    if !(1..=MAX_SCANS).contains(&cfg.scans) {
        return Err(SynthError::Config(format!("scans {}: give 1 to {MAX_SCANS}", cfg.scans)));
    }
    if out.as_os_str().is_empty() {
        return Err(SynthError::Config("out: empty path; give the dataset's folder".into()));
    }
    let subset = out.join("subset0");
    std::fs::create_dir_all(&subset).map_err(io_err(&subset))?;
    let mut all_nodules = Vec::new();
    let mut all_candidates = Vec::new();
    let mut scans = Vec::new();
    let mut dicom_series = Vec::new();
    progress.start("writing synthetic scans", Some(cfg.scans as u64));
    for i in 0..cfg.scans {
        let scan = synth_scan(cfg.seed, i, cfg.small);
        let mhd = subset.join(format!("{}.mhd", scan.series_id));
        metaimage::write(&mhd, &scan.hu, &scan.geometry, WriteOptions::default())?;
        if cfg.dicom {
            let dir = out.join("dicom").join(&scan.series_id);
            write_dicom_series(&dir, &scan)?;
            dicom_series.push(dir);
        }
        if cfg.labels || cfg.nnunet {
            let m = scan.label_map().mapv(i16::from);
            if cfg.labels {
                let dir = out.join("labels");
                std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                metaimage::write(
                    &dir.join(format!("{}.mha", scan.series_id)),
                    &m,
                    &scan.geometry,
                    WriteOptions { compress: true },
                )?;
            }
            if cfg.nnunet {
                let root = out.join(NNUNET_DATASET);
                let (images, labels) = (root.join("imagesTr"), root.join("labelsTr"));
                for d in [&images, &labels] {
                    std::fs::create_dir_all(d).map_err(io_err(d))?;
                }
                let case = format!("lung_{i:03}");
                crate::io::nifti::write(
                    &images.join(format!("{case}_0000.nii.gz")),
                    &scan.hu,
                    &scan.geometry,
                )?;
                crate::io::nifti::write(
                    &labels.join(format!("{case}.nii.gz")),
                    &m,
                    &scan.geometry,
                )?;
            }
        }
        scans.push(mhd);
        all_nodules.extend(scan.nodules);
        all_candidates.extend(scan.candidates);
        progress.advance(1);
    }
    progress.finish();
    let annotations = out.join("annotations.csv");
    let candidates = out.join("candidates.csv");
    annotations::write_annotations(&annotations, &all_nodules)?;
    annotations::write_candidates(&candidates, &all_candidates)?;
    if cfg.nnunet {
        let path = out.join(NNUNET_DATASET).join("dataset.json");
        let json = serde_json::json!({
            "name": "SynthLung",
            "description": "ctstream synth: LUNA-like synthetic CT with lung and nodule labels",
            "channel_names": {"0": "CT"},
            "labels": {"background": 0, "lung": 1, "nodule": 2},
            "numTraining": cfg.scans,
            "file_ending": ".nii.gz"
        });
        let bytes = serde_json::to_vec_pretty(&json)
            .map_err(|e| SynthError::Io { path: path.clone(), source: std::io::Error::other(e) })?;
        crate::fsutil::write_bytes_atomic(&path, &bytes).map_err(io_err(&path))?;
    }
    Ok(SynthSummary {
        out: out.to_path_buf(),
        scans,
        dicom_series,
        annotations,
        candidates,
        nodules: all_nodules.len(),
    })
}
