//! NIfTI-1: hand-built headers for the qform path, scaling and the refusals (the real
//! TotalSegmentator files are covered by the goldens).

use std::path::PathBuf;

use crate::common::*;
use ctstream::io::nifti::{self, NiftiError};

/// A NIfTI-1 single-file header (348 bytes + 4 bytes of extension flag), little-endian.
fn header(dim: [i16; 8], datatype: i16, bitpix: i16, pixdim: [f32; 8]) -> Vec<u8> {
    let mut h = vec![0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    for (i, d) in dim.iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&datatype.to_le_bytes());
    h[72..74].copy_from_slice(&bitpix.to_le_bytes());
    for (i, p) in pixdim.iter().enumerate() {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&p.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[344..348].copy_from_slice(b"n+1\0");
    h
}

fn put_f32(h: &mut [u8], at: usize, v: f32) {
    h[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// qform: a 90-degree rotation about z (quaternion b=c=0, d=sin(45deg)), RAS -> LPS.
/// Hand computation: R = [[0,-1,0],[1,0,0],[0,0,1]] in RAS; negating the x and y rows
/// gives the LPS direction [[0,1,0],[-1,0,0],[0,0,1]]; origin (10, 20, 30) RAS is
/// (-10, -20, 30) LPS. Scaling: stored 100 * 0.5 - 7 = 43.
#[test]
fn qform_rotation_and_scaling() {
    let dir = tempdir();
    let mut h = header([3, 2, 1, 1, 1, 1, 1, 1], 4, 16, [1.0, 0.5, 0.8, 2.0, 0.0, 0.0, 0.0, 0.0]);
    h[252..254].copy_from_slice(&1i16.to_le_bytes()); // qform_code
    put_f32(&mut h, 264, std::f32::consts::FRAC_1_SQRT_2); // quatern_d
    put_f32(&mut h, 268, 10.0);
    put_f32(&mut h, 272, 20.0);
    put_f32(&mut h, 276, 30.0);
    put_f32(&mut h, 112, 0.5); // scl_slope
    put_f32(&mut h, 116, -7.0); // scl_inter
    h.extend([100i16, -3].iter().flat_map(|v| v.to_le_bytes()));
    let v = nifti::read(&write(dir.path(), "rot.nii", &h)).unwrap();
    assert_eq!(v.series_id, "rot");
    assert_eq!(v.shape_zyx(), [1, 1, 2]);
    assert_eq!(v.geometry.spacing_xyz, [0.5, 0.800000011920929, 2.0]);
    assert_eq!(v.geometry.origin_xyz, [-10.0, -20.0, 30.0]);
    let want = [0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    assert_close("direction", &v.geometry.direction, &want, 1e-7);
    // 100 * 0.5 - 7 = 43; -3 * 0.5 - 7 = -8.5 -> -9 (half away from zero).
    assert_eq!(v.hu.iter().copied().collect::<Vec<_>>(), vec![43, -9]);
}

#[test]
fn refusals_name_the_file_and_field() {
    let dir = tempdir();
    // Truncated data.
    let mut h = header([3, 4, 4, 4, 1, 1, 1, 1], 4, 16, [1.0; 8]);
    h.extend([0u8; 10]);
    let e = nifti::read(&write(dir.path(), "short.nii", &h)).unwrap_err();
    assert!(
        matches!(e, NiftiError::Truncated { need: 128, have: 10, .. })
            && e.to_string().contains("short.nii"),
        "{e}"
    );
    // A time series.
    let h = header([4, 4, 4, 4, 3, 1, 1, 1], 4, 16, [1.0; 8]);
    let e = nifti::read(&write(dir.path(), "4d.nii", &h)).unwrap_err();
    assert!(
        matches!(e, NiftiError::Unsupported { .. })
            && e.to_string().contains("more than one volume"),
        "{e}"
    );
    // RGB.
    let h = header([3, 4, 4, 4, 1, 1, 1, 1], 128, 24, [1.0; 8]);
    let e = nifti::read(&write(dir.path(), "rgb.nii", &h)).unwrap_err();
    assert!(e.to_string().contains("datatype 128") && e.to_string().contains("rgb.nii"), "{e}");
    // Not NIfTI at all.
    let e = nifti::read(&write(dir.path(), "junk.nii", &[7u8; 400])).unwrap_err();
    assert!(matches!(e, NiftiError::Header { field: "sizeof_hdr", .. }), "{e}");
    // A huge claimed size is refused before allocating.
    let h = header([3, 30000, 30000, 30000, 1, 1, 1, 1], 4, 16, [1.0; 8]);
    let e = nifti::read(&write(dir.path(), "huge.nii", &h)).unwrap_err();
    assert!(matches!(e, NiftiError::TooLarge { .. }), "{e}");
}

/// Gzipped files read the same as plain ones.
#[test]
fn gzip_is_transparent() {
    let dir = tempdir();
    let mut h = header([3, 2, 2, 1, 1, 1, 1, 1], 512, 16, [1.0; 8]);
    h.extend([0u16, 1, 65535, 1024].iter().flat_map(|v| v.to_le_bytes()));
    let plain = nifti::read(&write(dir.path(), "a.nii", &h)).unwrap();
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut z, &h).unwrap();
    let gz = nifti::read(&write(dir.path(), "a.nii.gz", &z.finish().unwrap())).unwrap();
    assert_eq!(plain.hu, gz.hu);
    assert_eq!(plain.hu.iter().copied().collect::<Vec<_>>(), vec![0, 1, 32767, 1024]);
    assert_eq!(plain.clamped, 1);
    assert_eq!(gz.series_id, "a");
}
