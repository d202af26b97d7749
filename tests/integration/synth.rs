//! The synthetic LUNA-like dataset: deterministic, LUNA-like geometry and content,
//! nodules inside their scans, and readable by SimpleITK (MetaImage and DICOM) with the
//! geometry ctstream's reader reports.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::common::*;
use ctstream::annotations;
use ctstream::geometry::Geometry;
use ctstream::io::{self, dicom::DicomOptions};
use ctstream::synth::{self, SynthConfig};

fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for p in ctstream::io::dicom::list_files(dir).unwrap() {
        out.push((p.strip_prefix(dir).unwrap().display().to_string(), fs::read(&p).unwrap()));
    }
    out
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (tempdir(), tempdir(), tempdir());
    let cfg = SynthConfig { small: true, dicom: true, ..SynthConfig::new(2, 11) };
    synth::generate(a.path(), &cfg, &()).unwrap();
    synth::generate(b.path(), &cfg, &()).unwrap();
    synth::generate(c.path(), &SynthConfig { seed: 12, ..cfg }, &()).unwrap();
    let (fa, fb, fc) = (all_bytes(a.path()), all_bytes(b.path()), all_bytes(c.path()));
    assert!(fa.len() > 2 * 32 + 4, "scans, data files, DICOM slices and CSVs: {}", fa.len());
    assert_eq!(fa, fb, "same seed must give the same bytes");
    assert_ne!(
        fa.iter().find(|f| f.0 == "annotations.csv"),
        fc.iter().find(|f| f.0 == "annotations.csv")
    );
}

/// A full-size scan: LUNA16-like geometry, CT-like HU, nodules inside lungs and scan.
#[test]
fn full_size_scan_looks_like_luna16() {
    for i in 0..2 {
        let s = synth::synth_scan(5, i, false);
        let [nz, ny, nx] = [s.hu.shape()[0], s.hu.shape()[1], s.hu.shape()[2]];
        assert_eq!((ny, nx), (512, 512));
        let g = &s.geometry;
        assert!(
            (0.55..=0.85).contains(&g.spacing_xyz[0]) && g.spacing_xyz[0] == g.spacing_xyz[1],
            "{g:?}"
        );
        assert!((0.7..=2.5).contains(&g.spacing_xyz[2]), "{g:?}");
        assert!((100..=480).contains(&nz));
        assert!(g.is_identity_direction());
        check_content(&s);
        // Compresses like CT: neither constant nor random (zlib ratio of LUNA16 raws is 2-4).
        let bytes: Vec<u8> = s.hu.iter().flat_map(|v| v.to_le_bytes()).collect();
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&bytes).unwrap();
        let ratio = bytes.len() as f64 / z.finish().unwrap().len() as f64;
        assert!((1.5..6.0).contains(&ratio), "zlib ratio {ratio}");
    }
}

fn check_content(s: &synth::SynthScan) {
    let shape = [s.hu.shape()[0], s.hu.shape()[1], s.hu.shape()[2]];
    let hu_at = |xyz: [f64; 3]| {
        let i = s.geometry.world_to_index(xyz).unwrap();
        s.hu[[i[0].round() as usize, i[1].round() as usize, i[2].round() as usize]]
    };
    assert!((2..=5).contains(&s.nodules.len()), "{} nodules", s.nodules.len());
    for n in &s.nodules {
        let d = n.diameter_mm.unwrap();
        assert!((3.0..=30.0).contains(&d), "diameter {d}");
        // The whole sphere lies inside the scan.
        let r_vox: Vec<f64> = (0..3).map(|a| d / 2.0 / s.geometry.spacing_xyz[a]).collect();
        let c = s.geometry.world_to_index(n.world_xyz).unwrap();
        for a in 0..3 {
            let ra = r_vox[2 - a];
            assert!(
                c[a] - ra >= 0.0 && c[a] + ra <= (shape[a] - 1) as f64,
                "nodule {n:?} crosses the scan's edge"
            );
        }
        // Soft tissue at the centre of a nodule (lung parenchyma is about -850).
        assert!(hu_at(n.world_xyz) > -400, "HU {} at nodule {:?}", hu_at(n.world_xyz), n);
    }
    // Class-0 candidates are lung points: mostly air-like parenchyma.
    let mut lung: Vec<i16> =
        s.candidates.iter().filter(|c| c.class == 0).map(|c| hu_at(c.world_xyz)).collect();
    lung.sort();
    let median = lung[lung.len() / 2];
    assert!((-950..=-700).contains(&median), "median lung HU {median}");
    assert_eq!(s.candidates.iter().filter(|c| c.class == 1).count(), s.nodules.len());
    // Air outside the body, bone somewhere.
    assert!(s.hu[[0, 0, 0]] < -900);
    assert!(s.hu.iter().any(|&v| v > 400));
}

/// What `synth` writes reads back through both readers identically; every annotation lies
/// inside its scan. (SimpleITK's reading of the same files: `with_python`.)
#[test]
fn written_dataset_reads_in_ctstream_and_simpleitk_alike() {
    let dir = tempdir();
    let s = synth::generate(
        dir.path(),
        &SynthConfig { small: true, dicom: true, ..SynthConfig::new(2, 3) },
        &(),
    )
    .unwrap();
    let nodules = annotations::read_annotations(&s.annotations).unwrap();
    let cands = annotations::read_candidates(&s.candidates).unwrap();
    assert_eq!(nodules.len(), s.nodules);
    assert_eq!(cands.iter().filter(|c| c.class == 1).count(), nodules.len());
    for (mhd, dir) in s.scans.iter().zip(&s.dicom_series) {
        let m = io::read_scan(mhd, &DicomOptions::default(), &()).unwrap().volume;
        let d = io::read_scan(dir, &DicomOptions::default(), &()).unwrap().volume;
        assert_eq!(m.series_id, d.series_id);
        assert_eq!(m.hu, d.hu, "DICOM slices are ordered by position, not by file name");
        assert_close("origin", &d.geometry.origin_xyz, &m.geometry.origin_xyz, 1e-4);
        assert_close("spacing", &d.geometry.spacing_xyz, &m.geometry.spacing_xyz, 1e-4);
        assert_eq!(d.geometry.direction, m.geometry.direction);
        for n in nodules.iter().filter(|n| n.series_id == m.series_id) {
            let zyx = m.geometry.world_to_index(n.world_xyz).unwrap();
            assert!(Geometry::contains_index(m.shape_zyx(), zyx), "{n:?}");
        }
    }
}

/// The label map's nodules hold as many voxels as their ellipsoids' volumes give
/// (4/3 pi a b c over the voxel volume, within 15 % for these 3-15 mm nodules on
/// 0.9-1.4 mm voxels), and its lungs are the generator's lungs.
#[test]
fn label_maps_hold_the_nodules_and_lungs() {
    for k in 0..3 {
        let s = synth::synth_scan(8, k, true);
        let m = s.label_map();
        let voxel = s.geometry.spacing_xyz.iter().product::<f64>();
        let want: f64 = s
            .nodule_ellipsoids
            .iter()
            .map(|(_, r)| 4.0 / 3.0 * std::f64::consts::PI * r[0] * r[1] * r[2] / voxel)
            .sum();
        let got = m.iter().filter(|&&v| v == 2).count() as f64;
        assert!(
            (got - want).abs() <= 0.15 * want,
            "scan {k}: {got} nodule voxels, ellipsoids {want:.0}"
        );
        assert!(
            m.iter().zip(s.lungs.iter()).all(|(&l, &t)| (t != 0) <= (l != 0)),
            "every lung voxel is labelled"
        );
    }
}

/// The tests that need Python with the pinned packages (tools/goldens and tools/python
/// requirements): ignored where they are missing (cargo test says so); tools/test.sh runs
/// them with `--ignored with_python::` where they are installed.
mod with_python {
    use super::*;

    /// SimpleITK reads the MetaImage and DICOM series `synth` writes with the geometry and
    /// voxels ctstream reads.
    #[test]
    #[ignore = "needs Python with the pinned packages (tools/goldens and tools/python requirements): tools/test.sh runs it where they are installed"]
    fn simpleitk_reads_the_written_dataset_as_ctstream_does() {
        let dir = tempdir();
        let s = synth::generate(
            dir.path(),
            &SynthConfig { small: true, dicom: true, ..SynthConfig::new(2, 3) },
            &(),
        )
        .unwrap();
        let mut paths: Vec<&Path> = s.scans.iter().map(|p| p.as_path()).collect();
        paths.extend(s.dicom_series.iter().map(|p| p.as_path()));
        let dg = sitk_digest(&paths);
        for (mhd, dir) in s.scans.iter().zip(&s.dicom_series) {
            let m = io::read_scan(mhd, &DicomOptions::default(), &()).unwrap().volume;
            let d = io::read_scan(dir, &DicomOptions::default(), &()).unwrap().volume;
            assert_matches_sitk("synthetic MetaImage", &dg[mhd.to_str().unwrap()], &m, 0.0);
            assert_matches_sitk("synthetic DICOM", &dg[dir.to_str().unwrap()], &d, 1e-4);
        }
    }
}
