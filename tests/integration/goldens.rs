//! Every CT fixture in shared/data, read by ctstream, compared with the goldens that
//! SimpleITK and pydicom made (tools/goldens/make_goldens.py): shape, spacing, origin,
//! direction (SimpleITK, within 1e-4 mm; MetaImage exactly), index <-> world transforms
//! (SimpleITK, within 1e-6 mm), and every voxel (SHA-256 of the HU, pydicom's
//! `apply_modality_lut` for DICOM, SimpleITK for MetaImage).

use crate::common::*;
use ctstream::geometry::Geometry;
use ctstream::io::dicom::{DicomError, DicomOptions, UnevenPolicy};
use ctstream::io::{self, ReadError};
use ctstream::volume::Volume;

fn read(rel: &str) -> Result<io::ScanRead, ReadError> {
    io::read_scan(&data(rel), &DicomOptions::default(), &())
}

fn check_geometry(name: &str, v: &Volume, g: &serde_json::Value, tol: f64) {
    let shape: Vec<usize> =
        g["shape_zyx"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    assert_eq!(v.shape_zyx().to_vec(), shape, "{name}: shape (z, y, x)");
    assert_close(
        &format!("{name}: spacing"),
        &v.geometry.spacing_xyz,
        &f64s(&g["spacing_xyz"]),
        tol,
    );
    assert_close(&format!("{name}: origin"), &v.geometry.origin_xyz, &f64s(&g["origin_xyz"]), tol);
    assert_close(&format!("{name}: direction"), &v.geometry.direction, &f64s(&g["direction"]), tol);
}

/// The transforms, on SimpleITK's own geometry, agree with SimpleITK's to 1e-6 mm (and
/// 1e-6 voxel). The reader's geometry is checked separately against the same golden.
fn check_transforms(name: &str, g: &serde_json::Value) {
    let geometry = Geometry {
        origin_xyz: f64s(&g["origin_xyz"]).try_into().unwrap(),
        spacing_xyz: f64s(&g["spacing_xyz"]).try_into().unwrap(),
        direction: f64s(&g["direction"]).try_into().unwrap(),
    };
    for t in g["transforms"].as_array().unwrap() {
        let i = f64s(&t["index_xyz"]);
        let w = geometry.index_to_world([i[2], i[1], i[0]]);
        assert_close(&format!("{name}: index {i:?} to world"), &w, &f64s(&t["world_xyz"]), 1e-6);
        let sw = f64s(&t["shifted_world_xyz"]);
        let zyx = geometry.world_to_index([sw[0], sw[1], sw[2]]).unwrap();
        assert_close(
            &format!("{name}: world {sw:?} to index"),
            &[zyx[2], zyx[1], zyx[0]],
            &f64s(&t["shifted_index_xyz"]),
            1e-6,
        );
        assert_close(
            &format!("{name}: world {sw:?} round trip"),
            &geometry.index_to_world(zyx),
            &sw,
            1e-6,
        );
    }
}

fn check_values(name: &str, v: &Volume, g: &serde_json::Value) {
    let want = &g["values"];
    let stats = v.stats().unwrap();
    assert_eq!(stats.min as i64, want["min"].as_i64().unwrap(), "{name}: min HU");
    assert_eq!(stats.max as i64, want["max"].as_i64().unwrap(), "{name}: max HU");
    let sum: i64 = v.hu.iter().map(|&x| x as i64).sum();
    assert_eq!(sum, want["sum"].as_i64().unwrap(), "{name}: sum of HU");
    assert_eq!(v.clamped, want["clamped"].as_u64().unwrap(), "{name}: clamped voxels");
    assert_eq!(
        sha256_volume(&v.hu),
        want["sha256"].as_str().unwrap(),
        "{name}: voxels differ from the golden"
    );
}

/// A fixture that must read and match its golden in geometry and every voxel.
fn check_case(name: &str) {
    let g = golden(name);
    let rel = g["path"].as_str().unwrap();
    let v = read(rel).unwrap_or_else(|e| panic!("{name}: {e}")).volume;
    // MetaImage and NIfTI geometry is read, not derived: it must agree exactly (to 1e-12).
    // DICOM geometry is derived from positions: within 1e-4 mm.
    let tol = if g["kind"] == "dicom-file" || g["kind"] == "dicom-dir" { 1e-4 } else { 1e-12 };
    check_geometry(name, &v, &g, tol);
    check_transforms(name, &g);
    check_values(name, &v, &g);
}

macro_rules! golden_cases {
    ($($name:ident),* $(,)?) => {$(
        #[test]
        fn $name() { check_case(stringify!($name)); }
    )*};
}

golden_cases!(
    elastix_lung_small,
    elastix_lung_mask,
    elastix_lung_followup_mask,
    elastix_fixed,
    elastix_moving,
    elastix_square_float,
    itkelastix_head,
    wg04_ct1_unc,
    wg04_ct1_rle,
    wg04_ct1_jpll,
    wg04_ct1_j2kr,
    wg04_ct1_j2ki,
    wg04_ct2_unc,
    pydicom_ct_small,
    dcmqi_ct3slice,
    rtutils_oblique,
    totalseg_j2k,
    totalseg_nifti_ct,
    totalseg_nifti_lung,
);

#[cfg(feature = "jpegls")]
golden_cases!(wg04_ct1_jlsl, wg04_ct1_jlsn);

/// Without CharLS, JPEG-LS fails with an error that names the transfer syntax and the fix.
#[cfg(not(feature = "jpegls"))]
#[test]
fn jpegls_without_feature_names_the_transfer_syntax() {
    for (name, uid) in
        [("CT1_JLSL", "1.2.840.10008.1.2.4.80"), ("CT1_JLSN", "1.2.840.10008.1.2.4.81")]
    {
        let e = read(&format!("dicom-test-files/WG04/{name}.dcm")).unwrap_err();
        let msg = e.to_string();
        assert!(
            matches!(e, ReadError::Dicom(DicomError::UnsupportedTransferSyntax { .. })),
            "{msg}"
        );
        assert!(
            msg.contains(uid)
                && msg.contains("JPEG-LS")
                && msg.contains(&format!("{name}.dcm"))
                && msg.contains("--features jpegls"),
            "{msg}"
        );
    }
}

/// The MONAI crops jump 202.5 mm (162 x the 1.25 mm step; InstanceNumber 18 -> 180), then
/// step 1.25 mm: slices are missing, which is damage, not uneven spacing. Refused by
/// default with the gap named, and `--resample-uneven` does not hide it.
#[test]
fn monai_gap_is_refused_with_the_gap_named() {
    for uneven in [UnevenPolicy::Refuse, UnevenPolicy::Resample] {
        let e = io::read_scan(
            &data("monai/CT_DICOM"),
            &DicomOptions { uneven, ..Default::default() },
            &(),
        )
        .unwrap_err();
        let msg = e.to_string();
        match e {
            ReadError::Dicom(DicomError::MissingSlices { gaps, .. }) => {
                assert_eq!(gaps.len(), 1, "{msg}");
                // -99.48 to 103.02
                assert!(
                    gaps[0].contains("7106 at -99.480 mm")
                        && gaps[0].contains("7136 at 103.020 mm"),
                    "{msg}"
                );
                assert!(
                    gaps[0].contains("202.500 mm apart")
                        && gaps[0].contains("161 slice(s) missing")
                        && gaps[0].contains("InstanceNumber 18 -> 180"),
                    "{msg}"
                );
            }
            other => panic!("expected MissingSlices, got {other}"),
        }
        assert!(
            msg.contains("--allow-missing-slices") && !msg.contains("--resample-uneven"),
            "{msg}"
        );
    }
}

/// With the missing slices accepted: a uniform 1.25 mm grid from -99.48 to 105.52 (165 slices);
/// the first and last slices are the first and last files exactly (pydicom's HU), the
/// in-plane geometry is SimpleITK's.
#[test]
fn monai_gap_resampled_onto_uniform_grid() {
    let g = golden("monai_gap");
    let opts = DicomOptions { allow_missing_slices: true, ..Default::default() };
    let r = io::read_scan(&data("monai/CT_DICOM"), &opts, &()).unwrap();
    assert!(r.warnings.iter().any(|w| w.contains("161 slice(s) missing")), "{:?}", r.warnings);
    let v = &r.volume;
    // (105.52 - -99.48) / 1.25 = 164 steps.
    assert_eq!(v.shape_zyx(), [165, 16, 16]);
    assert_close("origin", &v.geometry.origin_xyz, &f64s(&g["origin_xyz"]), 1e-4);
    assert_close(
        "in-plane spacing",
        &v.geometry.spacing_xyz[..2],
        &f64s(&g["spacing_xyz"])[..2],
        1e-9,
    );
    assert!((v.geometry.spacing_xyz[2] - 1.25).abs() < 1e-9);
    assert_close("direction", &v.geometry.direction, &f64s(&g["direction"]), 1e-9);
    let slices = g["slice_sha256"].as_array().unwrap();
    let plane = |k: usize| sha256_i16(v.hu.index_axis(ndarray::Axis(0), k).iter());
    assert_eq!(plane(0), slices[0].as_str().unwrap(), "first slice = file 7106");
    assert_eq!(plane(164), slices[3].as_str().unwrap(), "last slice = file 7196");
    assert!(r.dicom.as_ref().unwrap().resampled);
    assert!(r.warnings.iter().any(|w| w.contains("resampled")), "{:?}", r.warnings);
    // Halfway between 104.27 and 105.52 lies slice 163.5 -- not on the grid; slice 163 is
    // at 104.27 exactly (file 7166).
    assert_eq!(plane(163), slices[2].as_str().unwrap(), "slice at 104.27 mm = file 7166");
}

/// The TotalSegmentator series has no SeriesInstanceUID: it is grouped anyway, under a
/// derived id, with a warning.
#[test]
fn totalseg_without_series_uid_gets_a_derived_id_and_a_warning() {
    let r = read("totalsegmentator/example_ct_dicom").unwrap();
    assert!(r.volume.series_id.starts_with("derived-"), "{}", r.volume.series_id);
    assert!(r.warnings.iter().any(|w| w.contains("no SeriesInstanceUID")), "{:?}", r.warnings);
    // The slices come in the order SimpleITK uses: by position, not by file name.
    let g = golden("totalseg_j2k");
    let first = g["files_in_order"][0].as_str().unwrap();
    assert!(first.ends_with("16592"), "SimpleITK starts at the lowest z: {first}");
}
