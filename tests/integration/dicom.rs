//! DICOM series assembly: grouping, skipping, ordering, and clear errors for broken input.
//! Fixture files are copied (and where needed edited with dicom-object) into temporary
//! folders; the shared fixtures are never modified.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use ctstream::io::dicom::{DicomError, DicomOptions};
use ctstream::io::{self, ReadError};
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;

fn read(p: &Path) -> Result<io::ScanRead, ReadError> {
    io::read_scan(p, &DicomOptions::default(), &())
}

fn read_series(p: &Path, id: &str) -> Result<io::ScanRead, ReadError> {
    io::read_scan(p, &DicomOptions { series: Some(id.into()), ..Default::default() }, &())
}

/// Copies `src` to `dir/name`, applying `edit` to the DICOM object first.
fn copy_edited(
    src: &Path,
    dir: &Path,
    name: &str,
    edit: impl FnOnce(&mut dicom_object::DefaultDicomObject),
) -> PathBuf {
    let mut obj = dicom_object::open_file(src).unwrap();
    edit(&mut obj);
    let out = dir.join(name);
    obj.write_to_file(&out).unwrap();
    out
}

fn ct3(n: u32) -> PathBuf {
    data(&format!("dicom-test-files/dcmqi/ct-3slice/0{n}.dcm"))
}

fn put_str(obj: &mut dicom_object::DefaultDicomObject, tag: dicom_core::Tag, vr: VR, v: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
}

#[test]
fn file_without_pixel_data_is_a_clear_error() {
    let dir = tempdir();
    let p = copy_edited(&data("pydicom/CT_small.dcm"), dir.path(), "nopixels.dcm", |o| {
        o.remove_element(tags::PIXEL_DATA);
    });
    let e = read(&p).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ReadError::Dicom(DicomError::NoPixelData { .. })), "{msg}");
    assert!(msg.contains("nopixels.dcm") && msg.contains("Pixel Data"), "{msg}");
}

#[test]
fn empty_folder_missing_path_and_non_dicom_file() {
    let dir = tempdir();
    let e = read(dir.path()).unwrap_err();
    assert!(matches!(e, ReadError::Dicom(DicomError::NoImages { .. })), "{e}");
    assert!(e.to_string().contains(&dir.path().display().to_string()), "{e}");

    let missing = dir.path().join("no-such-scan");
    let e = read(&missing).unwrap_err();
    assert!(
        matches!(e, ReadError::Dicom(DicomError::Io { .. }))
            && e.to_string().contains("no-such-scan"),
        "{e}"
    );

    let txt = dir.path().join("notes.txt");
    fs::write(&txt, "not a scan").unwrap();
    let e = read(&txt).unwrap_err();
    assert!(
        matches!(e, ReadError::Dicom(DicomError::NotDicom { .. }))
            && e.to_string().contains("notes.txt"),
        "{e}"
    );

    // A folder of non-DICOM files says what it skipped.
    let e = read(dir.path()).unwrap_err();
    assert!(e.to_string().contains("1 not DICOM"), "{e}");
}

/// WG04 holds several series (the CT1 syntaxes and CT2): listed, and one can be chosen.
#[test]
fn folder_with_several_series_lists_them_and_reads_the_chosen_one() {
    let wg04 = data("dicom-test-files/WG04");
    let e = read(&wg04).unwrap_err();
    let msg = e.to_string();
    let ReadError::MultipleSeries { series, .. } = &e else {
        panic!("expected MultipleSeries, got {msg}")
    };
    assert!(series.len() >= 2, "{msg}");
    assert!(msg.contains("--series"), "{msg}");

    // CT2's series id, as pydicom reads it.
    let ct2 = "1.3.6.1.4.1.5962.1.3.2.1.20040826185059.5457";
    let v = read_series(&wg04, ct2).unwrap().volume;
    assert_eq!(sha256_volume(&v.hu), golden("wg04_ct2_unc")["values"]["sha256"].as_str().unwrap());

    let e = read_series(&wg04, "1.2.3.4").unwrap_err();
    assert!(matches!(e, ReadError::SeriesNotFound { .. }) && e.to_string().contains(ct2), "{e}");
}

#[test]
fn duplicate_positions_name_both_files() {
    let dir = tempdir();
    for n in 1..=3 {
        fs::copy(ct3(n), dir.path().join(format!("0{n}.dcm"))).unwrap();
    }
    fs::copy(ct3(2), dir.path().join("02-again.dcm")).unwrap();
    let e = read(dir.path()).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ReadError::Dicom(DicomError::DuplicatePosition { .. })), "{msg}");
    assert!(
        msg.contains("02.dcm") && msg.contains("02-again.dcm") && msg.contains("-127.690"),
        "{msg}"
    );
}

/// A localizer and an image of another size that share the series UID are skipped and
/// counted; the three axial slices read exactly as pydicom reads them.
#[test]
fn localizers_and_other_sizes_are_skipped_and_counted() {
    let dir = tempdir();
    for n in 1..=3 {
        fs::copy(ct3(n), dir.path().join(format!("0{n}.dcm"))).unwrap();
    }
    let uid = "1.2.392.200103.20080913.113635.1.2009.6.22.21.43.10.23430.1";
    copy_edited(&ct3(2), dir.path(), "scout.dcm", |o| {
        put_str(o, tags::IMAGE_TYPE, VR::CS, "ORIGINAL\\PRIMARY\\LOCALIZER");
        put_str(o, tags::IMAGE_POSITION_PATIENT, VR::DS, "-235.2\\-226.8\\-150");
    });
    copy_edited(&data("pydicom/CT_small.dcm"), dir.path(), "small.dcm", |o| {
        put_str(o, tags::SERIES_INSTANCE_UID, VR::UI, uid);
    });
    let r = read(dir.path()).unwrap();
    let d = r.dicom.as_ref().unwrap();
    assert_eq!(d.slices, 3);
    assert_eq!(d.skipped.localizer, 1);
    assert_eq!(d.skipped.other_geometry, 1);
    assert!(
        r.warnings.iter().any(|w| w.contains("1 localizers") && w.contains("1 other size")),
        "{:?}",
        r.warnings
    );
    assert_eq!(
        sha256_volume(&r.volume.hu),
        golden("dcmqi_ct3slice")["values"]["sha256"].as_str().unwrap()
    );
}

/// Slices whose positions drift sideways (gantry tilt) cannot form a 3D grid.
#[test]
fn sheared_series_is_refused() {
    let dir = tempdir();
    for (n, z) in [(1u32, -126.69), (2, -127.69), (3, -128.69)] {
        copy_edited(&ct3(n), dir.path(), &format!("0{n}.dcm"), |o| {
            let x = -235.2 + (z + 126.69) * 0.5; // 0.5 mm sideways per mm along z
            put_str(o, tags::IMAGE_POSITION_PATIENT, VR::DS, &format!("{x:.3}\\-226.8\\{z}"));
        });
    }
    let e = read(dir.path()).unwrap_err();
    assert!(matches!(e, ReadError::Dicom(DicomError::Sheared { .. })), "{e}");
}

/// Per-slice rescale: each slice uses its own slope and intercept.
#[test]
fn rescale_is_per_slice() {
    let dir = tempdir();
    fs::copy(ct3(1), dir.path().join("01.dcm")).unwrap();
    fs::copy(ct3(2), dir.path().join("02.dcm")).unwrap();
    copy_edited(&ct3(3), dir.path(), "03.dcm", |o| {
        put_str(o, tags::RESCALE_INTERCEPT, VR::DS, "-1000");
        put_str(o, tags::RESCALE_SLOPE, VR::DS, "0.5");
    });
    let v = read(dir.path()).unwrap().volume;
    let reference = read(&data("dicom-test-files/dcmqi/ct-3slice")).unwrap().volume;
    // Slice 0 is 03.dcm (lowest z). Its stored value s gave s - 1024; now s * 0.5 - 1000,
    // rounded half away from zero.
    for ((y, x), &r) in reference.hu.index_axis(ndarray::Axis(0), 0).indexed_iter().step_by(997) {
        let stored = r as f64 + 1024.0;
        let want = (stored * 0.5 - 1000.0).round() as i16;
        assert_eq!(v.hu[[0, y, x]], want, "voxel (0, {y}, {x})");
    }
    assert_eq!(v.hu.index_axis(ndarray::Axis(0), 1), reference.hu.index_axis(ndarray::Axis(0), 1));
}

/// The DICOM SEG object in dcmqi is a multi-frame, 1-bit segmentation: not a CT image.
#[test]
fn segmentation_object_is_refused_clearly() {
    let e = read(&data("dicom-test-files/dcmqi/liver_seg.dcm")).unwrap_err();
    assert!(matches!(e, ReadError::Dicom(DicomError::Unsupported { .. })), "{e}");
    assert!(
        e.to_string().contains("liver_seg.dcm") && e.to_string().contains("multi-frame"),
        "{e}"
    );
}

/// A transfer syntax no decoder here handles (JPIP Referenced, patched
/// into a copy of the JPEG Lossless file's meta header) is an error naming it.
#[test]
fn undecodable_transfer_syntax_is_named() {
    let dir = tempdir();
    let mut bytes = fs::read(data("dicom-test-files/WG04/CT1_JPLL.dcm")).unwrap();
    let (from, to) = (b"1.2.840.10008.1.2.4.70", b"1.2.840.10008.1.2.4.94");
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("JPEG Lossless UID in the meta header");
    bytes[at..at + to.len()].copy_from_slice(to);
    let p = dir.path().join("part2.dcm");
    fs::write(&p, bytes).unwrap();
    let e = read(&p).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ReadError::Dicom(DicomError::UnsupportedTransferSyntax { .. })), "{msg}");
    assert!(msg.contains("1.2.840.10008.1.2.4.94") && msg.contains("part2.dcm"), "{msg}");
}
