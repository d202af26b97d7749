//! Label volumes and lung masks: the lung mask against reference masks drawn by others
//! (elastix's, TotalSegmentator's) and against the synthetic generator's own lungs;
//! nearest-neighbour resampling against SimpleITK.

mod common;

use common::*;
use ctstream::geometry::Geometry;
use ctstream::labels::{self, lungs, nearest::resample_nearest};
use ctstream::volume::Volume;
use ndarray::Array3;

/// A reference mask (0/1 values read as "HU" by the readers) as uint8.
fn as_labels(v: &Volume) -> Array3<u8> {
    v.hu.mapv(|x| u8::try_from(x).expect("a mask of small non-negative values"))
}

/// The scan on its axis-aligned grid (the grid a store at the scan's own spacing holds).
fn aligned(v: Volume) -> (Array3<i16>, Geometry) {
    ctstream::resample::to_axis_aligned(v.hu, &v.geometry).expect("a signed-permutation direction")
}

/// Dice of the lung mask of `ct` against `reference`, resampled by nearest neighbour
/// onto the scan's grid; also returns the two volumes in ml.
fn dice_against(ct: &str, reference: &str) -> (f64, f64, f64, lungs::LungMask) {
    let v = ctstream::io::read_scan(&data(ct), &Default::default(), &()).unwrap().volume;
    let (hu, g) = aligned(v);
    let m = lungs::segment(&hu, &g, &lungs::LungParams::default());
    let r = ctstream::io::read_scan(&data(reference), &Default::default(), &()).unwrap().volume;
    let shape = [hu.shape()[0], hu.shape()[1], hu.shape()[2]];
    let rm = resample_nearest(&as_labels(&r), &r.geometry, shape, &g).unwrap();
    let ml = g.spacing_xyz.iter().product::<f64>() / 1000.0;
    let count = |a: &Array3<u8>| a.iter().filter(|&&v| v != 0).count() as f64 * ml;
    (labels::dice(&m.lungs, &rm), count(&m.lungs), count(&rm), m)
}

#[test]
fn lung_mask_matches_elastix_reference() {
    let (d, ours, theirs, m) = dice_against("elastix/3DCT_lung_baseline_small.mha", "elastix/3DCT_lung_baseline_mask.mha");
    println!("elastix: Dice {d:.4}, ours {ours:.1} ml, reference {theirs:.1} ml, right {:.1} left {:.1}; {:?}", m.right_ml, m.left_ml, m.air_components);
    assert!(d >= 0.95, "Dice {d}");
}

#[test]
fn lung_mask_matches_totalsegmentator_reference() {
    let (d, ours, theirs, m) = dice_against("totalsegmentator/example_ct.nii.gz", "totalsegmentator/example_seg_lung.nii.gz");
    println!("totalsegmentator: Dice {d:.4}, ours {ours:.1} ml, reference {theirs:.1} ml, right {:.1} left {:.1}; {:?}", m.right_ml, m.left_ml, m.air_components);
    assert!(d >= 0.90, "Dice {d}");
}

#[test]
fn lung_mask_matches_the_synthetic_lungs() {
    for i in 0..3 {
        let s = ctstream::synth::synth_scan(7, i, false);
        let t = std::time::Instant::now();
        let m = lungs::segment(&s.hu, &s.geometry, &lungs::LungParams::default());
        let secs = t.elapsed().as_secs_f64();
        let d = labels::dice(&m.lungs, &s.lungs);
        // Sides too: right against right, left against left.
        let side = |a: &Array3<u8>, v: u8| a.mapv(|x| (x == v) as u8);
        let (dr, dl) = (labels::dice(&side(&m.lungs, 1), &side(&s.lungs, 1)), labels::dice(&side(&m.lungs, 2), &side(&s.lungs, 2)));
        println!("synthetic {i} {:?}: Dice {d:.4} (right {dr:.4}, left {dl:.4}) in {secs:.2} s", s.hu.dim());
        assert!(d >= 0.95 && dr >= 0.95 && dl >= 0.95, "scan {i}: Dice {d}, right {dr}, left {dl}");
    }
}
