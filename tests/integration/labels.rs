//! Label volumes and lung masks: the lung mask against reference masks drawn by others
//! (elastix's, TotalSegmentator's) and against the synthetic generator's own lungs;
//! nearest-neighbour resampling against SimpleITK.

use crate::common::*;
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
    dice_on(ct, reference, None)
}

/// As [`dice_against`], on the scan's own grid or, with `spacing_xyz`, on the grid ingest
/// stores at that spacing (trilinear, HU clipped as ingest clips them), where ingest
/// computes the mask.
fn dice_on(
    ct: &str,
    reference: &str,
    spacing_xyz: Option<[f64; 3]>,
) -> (f64, f64, f64, lungs::LungMask) {
    let (_, g, m, rm) =
        mask_and_reference(ct, reference, spacing_xyz, &lungs::LungParams::default());
    let ml = g.spacing_xyz.iter().product::<f64>() / 1000.0;
    let count = |a: &Array3<u8>| a.iter().filter(|&&v| v != 0).count() as f64 * ml;
    (labels::dice(&m.lungs, &rm), count(&m.lungs), count(&rm), m)
}

/// The scan `ct` on its own grid or the ingest grid of `spacing_xyz`, its lung mask with
/// the parameters `p`, and `reference` resampled onto that grid by nearest neighbour.
fn mask_and_reference(
    ct: &str,
    reference: &str,
    spacing_xyz: Option<[f64; 3]>,
    p: &lungs::LungParams,
) -> (Array3<i16>, Geometry, lungs::LungMask, Array3<u8>) {
    let v = ctstream::io::read_scan(&data(ct), &Default::default(), &()).unwrap().volume;
    let (mut hu, mut g) = aligned(v);
    if let Some(s) = spacing_xyz {
        (hu, g) = ctstream::resample::resample_linear(&hu, &g, s, [-1024, 3071]).unwrap();
    }
    let m = lungs::segment(&hu, &g, p);
    let r = ctstream::io::read_scan(&data(reference), &Default::default(), &()).unwrap().volume;
    let shape = [hu.shape()[0], hu.shape()[1], hu.shape()[2]];
    let rm = resample_nearest(&as_labels(&r), &r.geometry, shape, &g).unwrap();
    (hu, g, m, rm)
}

/// The trachea is cut out: elastix's scan reaches above the lung apex, where its
/// reference mask holds nothing but the lungs' air component still holds the trachea
/// (31 voxels of the top slice, 19 of them gas: SimpleITK's `ConnectedComponent` of
/// `ct < -400`). With the airway step the mask holds no voxel above the reference's
/// highest slice, and at most a tenth of the gas voxels outside the reference that it
/// holds without the step (the trachea's lumen down to the carina).
#[test]
fn the_trachea_is_cut_out_of_the_elastix_lungs() {
    let (ct, reference) =
        ("elastix/3DCT_lung_baseline_small.mha", "elastix/3DCT_lung_baseline_mask.mha");
    for spacing in [None, Some([1.0; 3])] {
        let off = lungs::LungParams { airway_max_area_mm2: 0.0, ..Default::default() };
        let stray_gas = |p: &lungs::LungParams| {
            let (hu, _, m, rm) = mask_and_reference(ct, reference, spacing, p);
            let top = (0..rm.shape()[0])
                .rev()
                .find(|&z| rm.index_axis(ndarray::Axis(0), z).iter().any(|&v| v != 0))
                .unwrap();
            let above =
                m.lungs.slice(ndarray::s![top + 1.., .., ..]).iter().filter(|&&v| v != 0).count();
            let gas = ndarray::Zip::from(&m.lungs)
                .and(&rm)
                .and(&hu)
                .fold(0usize, |n, &o, &r, &h| n + (o != 0 && r == 0 && h <= -950) as usize);
            (above, gas, m.airway)
        };
        let (above_off, gas_off, _) = stray_gas(&off);
        let (above, gas, airway) = stray_gas(&Default::default());
        println!(
            "{spacing:?}: without the airway step {above_off} voxels above the reference's apex, {gas_off} gas voxels outside it; with it {above} and {gas}; {airway:?}"
        );
        assert!(
            above_off > 0 && gas_off > 0,
            "the scan no longer shows the trachea: {above_off}, {gas_off}"
        );
        assert_eq!(above, 0, "{airway:?}");
        assert!(
            gas * 10 <= gas_off,
            "{gas} of {gas_off} gas voxels outside the reference are left; {airway:?}"
        );
        // The field of view holds one lung: no carina to see.
        assert!(airway.seed_z.is_some(), "{airway:?}");
    }
}

#[test]
fn lung_mask_matches_elastix_reference() {
    let (d, ours, theirs, m) =
        dice_against("elastix/3DCT_lung_baseline_small.mha", "elastix/3DCT_lung_baseline_mask.mha");
    println!(
        "elastix: Dice {d:.4}, ours {ours:.1} ml, reference {theirs:.1} ml, right {:.1} left {:.1}; {:?}",
        m.right_ml, m.left_ml, m.air_components
    );
    assert!(d >= 0.95, "Dice {d}");
}

#[test]
fn lung_mask_matches_totalsegmentator_reference() {
    let (d, ours, theirs, m) = dice_against(
        "totalsegmentator/example_ct.nii.gz",
        "totalsegmentator/example_seg_lung.nii.gz",
    );
    println!(
        "totalsegmentator: Dice {d:.4}, ours {ours:.1} ml, reference {theirs:.1} ml, right {:.1} left {:.1}; {:?}",
        m.right_ml, m.left_ml, m.air_components
    );
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
        let (dr, dl) = (
            labels::dice(&side(&m.lungs, 1), &side(&s.lungs, 1)),
            labels::dice(&side(&m.lungs, 2), &side(&s.lungs, 2)),
        );
        // The airway outside the generator's lungs (trachea, main bronchi up to the lung)
        // is out of the mask: at most 2 % of its voxels left, where the mask without the
        // airway step holds most of it.
        let outside = ndarray::Zip::from(&s.airway_mask())
            .and(&s.lungs)
            .map_collect(|&a, &l| (a != 0 && l == 0) as u8);
        let kept = |m: &Array3<u8>| {
            ndarray::Zip::from(m)
                .and(&outside)
                .fold(0usize, |n, &v, &o| n + (v != 0 && o != 0) as usize)
        };
        let off = lungs::segment(
            &s.hu,
            &s.geometry,
            &lungs::LungParams { airway_max_area_mm2: 0.0, ..Default::default() },
        );
        let (total, left_in, left_in_off) =
            (outside.iter().filter(|&&v| v != 0).count(), kept(&m.lungs), kept(&off.lungs));
        println!(
            "synthetic {i} {:?}: Dice {d:.4} (right {dr:.4}, left {dl:.4}) in {secs:.2} s; airway outside the lungs {total} voxels, {left_in} in the mask ({left_in_off} without the airway step); {:?}",
            s.hu.dim(),
            m.airway
        );
        assert!(d >= 0.95 && dr >= 0.95 && dl >= 0.95, "scan {i}: Dice {d}, right {dr}, left {dl}");
        assert!(
            left_in_off * 2 > total,
            "scan {i}: the airway is not in the lungs' component: {left_in_off} of {total}"
        );
        assert!(
            left_in * 50 <= total,
            "scan {i}: {left_in} of {total} airway voxels outside the lungs are in the mask; {:?}",
            m.airway
        );
        assert!(m.airway.carina_z.is_some(), "{:?}", m.airway);
    }
}

/// A label volume round-trips through the store format: the bytes FORMAT.md gives (dtype
/// 2, fill 0, one byte per voxel), the values, CRC-checked chunks (a flipped byte is
/// named with its chunk), and no reading as int16.
#[test]
fn label_volumes_round_trip_and_damage_is_caught() {
    use ctstream::store::{StoreError, VolumeFile, writer};
    let dir = tempdir();
    let mut m = Array3::<u8>::zeros((40, 50, 70));
    for ((z, y, x), v) in m.indexed_iter_mut() {
        *v = ((z * 7 + y * 3 + x) % 5 == 0) as u8 * (1 + (x % 3) as u8);
    }
    let g = Geometry::axis_aligned([-10.0, 20.5, -300.25], [0.8, 0.8, 1.25]);
    let p = dir.path().join("lungs.ctv");
    let size = writer::write_volume(
        &p,
        &m,
        &g,
        &writer::ChunkOptions { chunk_shape_zyx: [16, 32, 32], level: 3, fill_value: 0u8 },
    )
    .unwrap();
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(bytes.len() as u64, size);
    assert_eq!(&bytes[0..8], b"CTVOLUME");
    assert_eq!(u16::from_le_bytes([bytes[10], bytes[11]]), 3, "minor version 1.3");
    assert_eq!(bytes[160], 2, "dtype 2: uint8");
    assert_eq!(i16::from_le_bytes([bytes[164], bytes[165]]), 0, "fill value 0");
    let v = VolumeFile::open(&p).unwrap();
    assert_eq!(v.read_all_as::<u8>().unwrap(), m);
    // A region reaching outside reads 0 there.
    let r =
        v.read_region_as::<u8>(ctstream::store::Region::new([-2, 45, 60], [3, 55, 75])).unwrap();
    assert_eq!(r[[0, 0, 0]], 0);
    assert_eq!(r[[2, 0, 0]], m[[0, 45, 60]]);
    // One decoded chunk is exactly 16*32*32 bytes' worth of values.
    assert_eq!(v.decode_chunk_as::<u8>([1, 1, 2]).unwrap().len(), 16 * 32 * 32);
    assert!(
        matches!(v.read_all(), Err(StoreError::Invalid { .. })),
        "a label volume is not read as HU"
    );
    // Flip one payload byte of chunk (1, 0, 1) = number 1 * 2 * 3 + 0 * 3 + 1 = 7.
    let entry = 256 + 16 * 7;
    let off = u64::from_le_bytes(bytes[entry..entry + 8].try_into().unwrap()) as usize;
    let mut bad = bytes.clone();
    bad[off + 3] ^= 0x40;
    let q = dir.path().join("bad.ctv");
    std::fs::write(&q, &bad).unwrap();
    let err = VolumeFile::open(&q).unwrap().read_all_as::<u8>().unwrap_err().to_string();
    assert!(
        err.contains("bad.ctv")
            && err.contains("chunk (z 1, y 0, x 1)")
            && err.contains("checksum"),
        "{err}"
    );
}

/// Ingest stores each scan's lung mask as the label volume `lungs` on the stored grid:
/// it matches the generator's own lungs resampled onto that grid by nearest neighbour,
/// the record lists it with counts the volume holds (`verify` reads every chunk), every
/// synthetic nodule lies in the lung region, and `--no-lung-mask` stores none.
#[test]
fn ingest_stores_lung_masks_that_match_the_synthetic_lungs() {
    use ctstream::{store::Store, verify};
    let dir = tempdir();
    let data = dir.path().join("data");
    let s = dataset(&data, 2, 41);
    let out = dir.path().join("store");
    let sum = ctstream::ingest::ingest(&ingest_config(&data, &out), &()).unwrap();
    assert!(sum.failed.is_empty() && sum.warnings.is_empty(), "{sum:?}");
    assert!(sum.lung_mask_seconds > 0.0);
    let store = Store::open(&out).unwrap();
    for (k, rec) in store.scans().values().enumerate() {
        let l = rec.label(labels::LUNGS).expect("a lungs label volume");
        assert_eq!(l.file, format!("labels/{}/lungs.ctv", rec.series_id));
        assert_eq!(l.counts.iter().map(|c| c[0]).collect::<Vec<_>>(), vec![1, 2], "two lungs");
        let synth = ctstream::synth::synth_scan(
            41,
            s.scans
                .iter()
                .position(|p| p.file_stem().unwrap().to_string_lossy() == rec.series_id)
                .unwrap(),
            true,
        );
        let truth = resample_nearest(&synth.lungs, &synth.geometry, rec.shape_zyx, &rec.geometry())
            .unwrap();
        let stored =
            store.label(&rec.series_id, labels::LUNGS).unwrap().read_all_as::<u8>().unwrap();
        let d = labels::dice(&stored, &truth);
        println!("scan {k}: Dice {d:.4} against the generator's lungs on the stored grid");
        assert!(d >= 0.95, "scan {k}: Dice {d}");
        // The components the record lists are those of the volume.
        assert_eq!(l.components, labels::components::components(&stored, &rec.geometry()));
    }
    let report = verify::verify(&out, &()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let nodules = ctstream::store::index::read_nodules(&out.join("index/nodules.parquet")).unwrap();
    assert!(
        !nodules.is_empty() && nodules.iter().all(|n| n.in_lung_region == Some(true)),
        "{nodules:?}"
    );

    // Without lung masks: no label volumes, and in_lung_region is null.
    let plain = dir.path().join("plain");
    let mut cfg = ingest_config(&data, &plain);
    cfg.lung_mask = false;
    ctstream::ingest::ingest(&cfg, &()).unwrap();
    let store = Store::open(&plain).unwrap();
    assert!(store.scans().values().all(|r| r.labels.is_empty()));
    assert!(
        !plain.join("labels").exists()
            || std::fs::read_dir(plain.join("labels")).unwrap().next().is_none()
    );
    let nodules =
        ctstream::store::index::read_nodules(&plain.join("index/nodules.parquet")).unwrap();
    assert!(nodules.iter().all(|n| n.in_lung_region.is_none()));
}

/// A scan without lungs (a water phantom) is stored with an empty `lungs` volume and a
/// warning, beside a chest scan whose mask is found; a flipped byte in a stored label
/// volume is named by `verify`.
#[test]
fn a_scan_without_lungs_warns_and_is_stored() {
    use ctstream::{store::Store, verify};
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 1, 43);
    // A 20 cm water cylinder in air, 60 x 96 x 96 voxels of 2.5 mm: no air inside it.
    let mut hu = Array3::<i16>::from_elem((60, 96, 96), -1000);
    for ((_, y, x), v) in hu.indexed_iter_mut() {
        if ((y as f64 - 47.5).powi(2) + (x as f64 - 47.5).powi(2)).sqrt() * 2.5 < 100.0 {
            *v = 0;
        }
    }
    let phantom = data.join("phantom").join("water.mhd");
    std::fs::create_dir_all(phantom.parent().unwrap()).unwrap();
    ctstream::io::metaimage::write(
        &phantom,
        &hu,
        &Geometry::axis_aligned([-120.0, -120.0, 0.0], [2.5, 2.5, 2.5]),
        Default::default(),
    )
    .unwrap();
    let out = dir.path().join("store");
    let sum = ctstream::ingest::ingest(&ingest_config(&data, &out), &()).unwrap();
    assert!(sum.failed.is_empty(), "{sum:?}");
    assert_eq!(sum.stored.len(), 2);
    assert_eq!(sum.warnings.len(), 1, "{sum:?}");
    assert!(
        sum.warnings[0].source.ends_with("water.mhd")
            && sum.warnings[0].reason.contains("no lungs found"),
        "{:?}",
        sum.warnings
    );
    let store = Store::open(&out).unwrap();
    let rec = store.scan("water").unwrap();
    let l = rec.label(labels::LUNGS).unwrap();
    assert!(l.counts.is_empty() && l.bbox_zyx.is_none() && l.components.is_empty());
    assert!(rec.warnings.iter().any(|w| w.contains("no lungs found")));
    assert!(
        store
            .label("water", labels::LUNGS)
            .unwrap()
            .read_all_as::<u8>()
            .unwrap()
            .iter()
            .all(|&v| v == 0)
    );
    assert!(verify::verify(&out, &()).unwrap().problems.is_empty());

    // Flip a byte in the chest scan's lungs: verify names the label volume and the chunk.
    let chest = store.series_ids().find(|id| *id != "water").unwrap().to_string();
    let p = out.join(format!("labels/{chest}/lungs.ctv"));
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x10;
    std::fs::write(&p, &bytes).unwrap();
    let report = verify::verify(&out, &()).unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let m = &report.problems[0].message;
    assert!(m.contains("lungs.ctv") && m.contains("chunk"), "{m}");
}

/// Negatives drawn from the lung mask (the loader's default) are centred on lung voxels,
/// the same for the same seed; a store without lung masks falls back to random positions
/// and says so once, in the loader's notes.
#[test]
fn lung_negatives_lie_inside_the_lungs() {
    use ctstream::loader::{Loader, Negatives};
    use ctstream::store::{Region, Store};
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 2, 47);
    let out = dir.path().join("store");
    ctstream::ingest::ingest(&ingest_config(&data, &out), &()).unwrap();
    let store = Store::open(&out).unwrap();
    let build = || {
        Loader::builder(&store)
            .positive_share(0.0)
            .batch_size(16)
            .batches_per_epoch(Some(4))
            .patch([16, 32, 32])
            .seed(5)
            .build()
            .unwrap()
    };
    let loader = build();
    assert_eq!(loader.config().negatives, Negatives::default(), "the default");
    assert_eq!(loader.config().negatives.to_string(), "lungs");
    assert!(loader.notes().is_empty(), "{:?}", loader.notes());
    let mut per_scan = std::collections::BTreeMap::new();
    let mut fingerprints = Vec::new();
    for b in loader.epoch(0) {
        let b = b.unwrap();
        fingerprints.push((b.images.clone(), b.masks.clone()));
        for p in &b.patches {
            let c: [i64; 3] = [p.start_zyx[0] + 8, p.start_zyx[1] + 16, p.start_zyx[2] + 16];
            let v = store
                .read_label_region(
                    &p.series_id,
                    labels::LUNGS,
                    Region::new(c, [c[0] + 1, c[1] + 1, c[2] + 1]),
                )
                .unwrap()[[0, 0, 0]];
            assert_ne!(v, 0, "{} centre {c:?} is not in the lungs", p.series_id);
            *per_scan.entry((p.series_id.clone(), v)).or_insert(0) += 1;
        }
    }
    assert!(per_scan.len() >= 3, "negatives in both lungs of both scans: {per_scan:?}");
    let again: Vec<_> = build().epoch(0).map(|b| b.unwrap()).map(|b| (b.images, b.masks)).collect();
    assert_eq!(fingerprints, again, "same seed, same batches");

    // A store ingested without lung masks.
    let plain = dir.path().join("plain");
    let mut cfg = ingest_config(&data, &plain);
    cfg.lung_mask = false;
    ctstream::ingest::ingest(&cfg, &()).unwrap();
    let store = Store::open(&plain).unwrap();
    let loader = Loader::builder(&store)
        .positive_share(0.0)
        .batch_size(4)
        .batches_per_epoch(Some(2))
        .seed(5)
        .build()
        .unwrap();
    assert_eq!(loader.notes().len(), 1);
    assert!(loader.notes()[0].contains("2 of 2 scans have no lung mask"), "{}", loader.notes()[0]);
    assert_eq!(loader.epoch(0).map(|b| b.unwrap().patches.len()).sum::<usize>(), 8);
}

/// The targets hold on the grid ingest computes the mask on, too: trilinear interpolation
/// onto 1 mm turns the shell of the bowel gas beside TotalSegmentator's lung bases into
/// "parenchyma" (Dice 0.43 before the share was taken over interior voxels).
#[test]
fn lung_masks_at_the_ingest_grid_match_the_references() {
    for (ct, reference, target) in [
        ("elastix/3DCT_lung_baseline_small.mha", "elastix/3DCT_lung_baseline_mask.mha", 0.95),
        ("totalsegmentator/example_ct.nii.gz", "totalsegmentator/example_seg_lung.nii.gz", 0.90),
    ] {
        let (d, ours, theirs, m) = dice_on(ct, reference, Some([1.0; 3]));
        println!(
            "{ct} at 1 mm: Dice {d:.4}, ours {ours:.1} ml, reference {theirs:.1} ml, right {:.1} left {:.1}; {:?}",
            m.right_ml, m.left_ml, m.air_components
        );
        assert!(d >= target, "{ct}: Dice {d}");
    }
}

/// `--labels DIR`: TotalSegmentator's lung mask, named as its scan, becomes the label
/// volume `labels` on the stored grid, equal to the mask resampled by nearest neighbour
/// (SimpleITK agrees with that resampling: `nearest_neighbour_matches_simpleitk`); it is
/// listed in the record and the index; a second run with the same files skips the scan.
#[test]
fn label_maps_from_files_are_stored_on_the_scans_grid() {
    use ctstream::ingest::{IngestConfig, ingest};
    use ctstream::store::Store;
    let dir = tempdir();
    let masks = dir.path().join("masks");
    std::fs::create_dir_all(&masks).unwrap();
    std::fs::copy(
        data("totalsegmentator/example_seg_lung.nii.gz"),
        masks.join("example_ct.nii.gz"),
    )
    .unwrap();
    let out = dir.path().join("store");
    let mut cfg = IngestConfig::new(vec![data("totalsegmentator/example_ct.nii.gz")], out.clone());
    cfg.labels = ["lung_ref=".to_string() + masks.to_str().unwrap()]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let sum = ingest(&cfg, &()).unwrap();
    assert!(sum.failed.is_empty() && sum.warnings.is_empty(), "{sum:?}");
    let store = Store::open(&out).unwrap();
    let rec = &store.scans()["example_ct"];
    let l = rec.label("lung_ref").expect("the label volume");
    assert_eq!(l.source, masks.join("example_ct.nii.gz").display().to_string());
    let stored = store.label("example_ct", "lung_ref").unwrap().read_all_as::<u8>().unwrap();
    let r = ctstream::io::read_scan(
        &data("totalsegmentator/example_seg_lung.nii.gz"),
        &Default::default(),
        &(),
    )
    .unwrap()
    .volume;
    let want =
        resample_nearest(&as_labels(&r), &r.geometry, rec.shape_zyx, &rec.geometry()).unwrap();
    assert!(
        stored == want,
        "the stored label volume is the reference resampled by nearest neighbour"
    );
    assert_eq!(l.counts, vec![[1, want.iter().filter(|&&v| v == 1).count() as u64]]);
    // The computed lungs and the reference agree as in `lung_masks_at_the_ingest_grid_...`.
    let lungs = store.label("example_ct", labels::LUNGS).unwrap().read_all_as::<u8>().unwrap();
    assert!(labels::dice(&lungs, &stored) >= 0.90);
    // The index lists it (labels.parquet, read as any parquet reader reads it).
    let f = std::fs::File::open(out.join("index/labels.parquet")).unwrap();
    let rows: Vec<(String, String, i32, i64, String)> =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap()
            .flat_map(|b| {
                use arrow_array::{Array, Int32Array, Int64Array, StringArray};
                let b = b.unwrap();
                let col = |n: &str| b.column_by_name(n).unwrap().clone();
                let (s, n, v, c, src) =
                    (col("series_id"), col("label"), col("value"), col("voxels"), col("source"));
                let (s, n, v, c, src) = (
                    s.as_any().downcast_ref::<StringArray>().unwrap().clone(),
                    n.as_any().downcast_ref::<StringArray>().unwrap().clone(),
                    v.as_any().downcast_ref::<Int32Array>().unwrap().clone(),
                    c.as_any().downcast_ref::<Int64Array>().unwrap().clone(),
                    src.as_any().downcast_ref::<StringArray>().unwrap().clone(),
                );
                (0..s.len())
                    .map(move |i| {
                        (
                            s.value(i).to_string(),
                            n.value(i).to_string(),
                            v.value(i),
                            c.value(i),
                            src.value(i).to_string(),
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
    assert!(
        rows.contains(&(
            "example_ct".into(),
            "lung_ref".into(),
            1,
            l.counts[0][1] as i64,
            l.source.clone()
        )),
        "{rows:?}"
    );
    cfg.resume = true;
    assert_eq!(ingest(&cfg, &()).unwrap().skipped, vec!["example_ct".to_string()]);
    // A changed label file is a changed input: the scan is stored again.
    std::fs::copy(
        data("totalsegmentator/example_seg_lung.nii.gz"),
        masks.join("example_ct.nii.gz"),
    )
    .unwrap();
    let f = std::fs::File::options().write(true).open(masks.join("example_ct.nii.gz")).unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000))
        .unwrap();
    assert_eq!(ingest(&cfg, &()).unwrap().stored, vec!["example_ct".to_string()]);
}

/// A label map on another grid (elastix's full-resolution mask beside its 2x down-sampled
/// scan), a fraction and a negative value are each refused with both files (or the voxel)
/// named; the scan fails alone, the others are stored.
#[test]
fn label_maps_off_the_grid_or_with_bad_values_are_refused() {
    use ctstream::ingest::{IngestConfig, ingest};
    use ctstream::io::metaimage;
    let dir = tempdir();
    let (scans, masks) = (dir.path().join("scans"), dir.path().join("masks"));
    std::fs::create_dir_all(&scans).unwrap();
    std::fs::create_dir_all(&masks).unwrap();
    std::fs::copy(data("elastix/3DCT_lung_baseline_small.mha"), scans.join("small.mha")).unwrap();
    std::fs::copy(data("elastix/3DCT_lung_baseline_mask.mha"), masks.join("small.mha")).unwrap();
    // Two scans on a 4x3x2 grid with label maps holding 0.5 and -1.
    let g = Geometry::axis_aligned([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]);
    let hu = Array3::<i16>::from_elem((2, 3, 4), -500);
    for name in ["half", "negative", "good"] {
        metaimage::write(&scans.join(format!("{name}.mha")), &hu, &g, Default::default()).unwrap();
    }
    let mut half = Array3::<f32>::zeros((2, 3, 4));
    half[[1, 2, 3]] = 0.5;
    metaimage::write_f32(&masks.join("half.mha"), &half, &g, Default::default()).unwrap();
    let mut negative = Array3::<i16>::zeros((2, 3, 4));
    negative[[0, 1, 2]] = -1;
    metaimage::write(&masks.join("negative.mha"), &negative, &g, Default::default()).unwrap();
    let mut good = Array3::<i16>::zeros((2, 3, 4));
    good[[1, 1, 1]] = 3;
    metaimage::write(&masks.join("good.mha"), &good, &g, Default::default()).unwrap();
    metaimage::write(&masks.join("orphan.mha"), &good, &g, Default::default()).unwrap();

    let mut cfg = IngestConfig::new(vec![scans.clone()], dir.path().join("store"));
    cfg.lung_mask = false;
    cfg.labels = vec![masks.to_str().unwrap().parse().unwrap()];
    let sum = ingest(&cfg, &()).unwrap();
    assert_eq!(sum.stored, vec!["good".to_string()], "{sum:?}");
    let reason = |stem: &str| {
        sum.failed
            .iter()
            .find(|f| f.source.ends_with(&format!("{stem}.mha")))
            .map(|f| f.reason.clone())
            .unwrap_or_else(|| panic!("{stem}: {sum:?}"))
    };
    let r = reason("small");
    // elastix's mask: 115 x 157 x 129 voxels beside the scan's 57 x 78 x 64 (SimpleITK GetSize).
    assert!(
        r.contains(&masks.join("small.mha").display().to_string())
            && r.contains(&scans.join("small.mha").display().to_string())
            && r.contains("size is 115 x 157 x 129 (x, y, z) in the label map, 57 x 78 x 64"),
        "{r}"
    );
    let r = reason("half");
    assert!(
        r.contains("half.mha")
            && r.contains("(z, y, x) [1, 2, 3] is 0.5")
            && r.contains("not an integer"),
        "{r}"
    );
    let r = reason("negative");
    assert!(r.contains("[0, 1, 2] is -1") && r.contains("negative"), "{r}");
    assert!(
        sum.warnings
            .iter()
            .any(|w| w.source.ends_with("orphan.mha") && w.reason.contains("pairs with no scan")),
        "{sum:?}"
    );
    let store = ctstream::store::Store::open(&dir.path().join("store")).unwrap();
    assert_eq!(store.scans()["good"].label("labels").unwrap().counts, vec![[3, 1]]);

    // The computed lung mask's name is not a user's while it is computed.
    let mut cfg = IngestConfig::new(vec![scans], dir.path().join("other"));
    cfg.labels = vec![format!("lungs={}", masks.display()).parse().unwrap()];
    let e = ingest(&cfg, &()).unwrap_err().to_string();
    assert!(e.contains("labels lungs=") && e.contains("lung_mask=False"), "{e}");
}

/// DICOM SEG: dcmqi's liver segmentation of its three CT slices becomes the label volume
/// `liver` of that series, each frame on the slice at its position. Per-slice voxel counts
/// are pydicom's (`pixel_array.reshape(3, -1).sum(1)` = 36233, 35645, 35220 for frames at
/// z = -128.69, -127.69, -126.69, which are slices 03, 02, 01), and frame 1's first set
/// pixel in row 145 is at column 254 (pydicom).
#[test]
fn dicom_seg_becomes_a_label_volume_of_its_series() {
    use ctstream::labels::seg;
    let scan = data("dicom-test-files/dcmqi/ct-3slice");
    let v = ctstream::io::read_scan(&scan, &Default::default(), &()).unwrap().volume;
    let s = seg::read(&data("dicom-test-files/dcmqi/liver_seg.dcm")).unwrap();
    assert_eq!(s.referenced_series, v.series_id);
    assert_eq!(
        s.segments.iter().map(|(n, l)| (*n, l.as_str())).collect::<Vec<_>>(),
        vec![(1, "Liver")]
    );
    let p = s.place(&scan, v.shape_zyx(), &v.geometry).unwrap();
    let per_slice: Vec<usize> =
        p.labels.outer_iter().map(|sl| sl.iter().filter(|&&x| x == 1).count()).collect();
    assert_eq!(per_slice, vec![36233, 35645, 35220]);
    assert_eq!((p.labels[[0, 145, 253]], p.labels[[0, 145, 254]]), (0, 1));
    assert_eq!(p.overlapping, 0);
    // A scan one slice short cannot hold frame 3.
    let short = Geometry {
        origin_xyz: [
            v.geometry.origin_xyz[0],
            v.geometry.origin_xyz[1],
            v.geometry.origin_xyz[2] + 1.0,
        ],
        ..v.geometry
    };
    let e = s.place(&scan, [2, 512, 512], &short).unwrap_err().to_string();
    assert!(e.contains("frame 1") && e.contains("not on one of its 2 slices"), "{e}");

    // Through ingest: `--labels liver=DIR` with the SEG; its classes are its segments.
    let dir = tempdir();
    let segs = dir.path().join("segs");
    std::fs::create_dir_all(&segs).unwrap();
    std::fs::copy(data("dicom-test-files/dcmqi/liver_seg.dcm"), segs.join("liver_seg.dcm"))
        .unwrap();
    std::fs::write(segs.join("README.txt"), "not a label file").unwrap();
    // A damaged DICOM file beside it (the SEG cut after 600 bytes: its preamble and part
    // of its header) fails alone, named; the SEG still pairs.
    let whole = std::fs::read(data("dicom-test-files/dcmqi/liver_seg.dcm")).unwrap();
    std::fs::write(segs.join("cut_seg.dcm"), &whole[..600]).unwrap();
    let mut cfg = ctstream::ingest::IngestConfig::new(vec![scan], dir.path().join("store"));
    cfg.labels = vec![format!("liver={}", segs.display()).parse().unwrap()];
    let sum = ctstream::ingest::ingest(&cfg, &()).unwrap();
    assert_eq!(sum.failed.len(), 1, "{sum:?}");
    assert!(
        sum.failed[0].source.ends_with("cut_seg.dcm")
            && sum.failed[0].reason.contains("label file not used"),
        "{sum:?}"
    );
    assert_eq!(sum.stored.len(), 1, "{sum:?}");
    let store = ctstream::store::Store::open(&dir.path().join("store")).unwrap();
    let rec = &store.scans()[&v.series_id];
    let l = rec.label("liver").unwrap();
    assert_eq!(l.classes, [("1".to_string(), "Liver".to_string())].into_iter().collect());
    let stored = store.label(&v.series_id, "liver").unwrap().read_all_as::<u8>().unwrap();
    let want = resample_nearest(&p.labels, &v.geometry, rec.shape_zyx, &rec.geometry()).unwrap();
    assert!(stored == want);
}

/// nnU-Net end to end: `synth --nnunet` writes a raw dataset, `ingest --nnunet` stores
/// every case with its label map as `labels` under dataset.json's names, the components are
/// indexed, and a loader with masks from `labels:2` (nodules) and no nodules table centres
/// its positives on the nodule components; every batch mask equals the nnU-Net label map,
/// resampled onto the stored grid by nearest neighbour, cut at the patch's place.
#[test]
fn an_nnunet_dataset_ingests_and_its_masks_reach_the_batches() {
    use ctstream::ingest::{IngestConfig, ingest};
    use ctstream::loader::Loader;
    use ctstream::store::Store;
    use ctstream::synth::{self, SynthConfig};
    let dir = tempdir();
    let data = dir.path().join("data");
    synth::generate(
        &data,
        &SynthConfig { small: true, nnunet: true, labels: true, ..SynthConfig::new(3, 5) },
        &(),
    )
    .unwrap();
    let nn = data.join(synth::NNUNET_DATASET);
    let out = dir.path().join("store");
    let mut cfg = IngestConfig::new(Vec::new(), out.clone());
    cfg.add_nnunet(&nn).unwrap();
    let sum = ingest(&cfg, &()).unwrap();
    assert!(sum.failed.is_empty() && sum.warnings.is_empty() && sum.stored.len() == 3, "{sum:?}");
    let store = Store::open(&out).unwrap();
    let mut nodule_components = 0;
    for (k, rec) in store.scans().values().enumerate() {
        assert_eq!(rec.series_id, format!("lung_{k:03}_0000"));
        let l = rec.label("labels").unwrap();
        let names: Vec<(&str, &str)> =
            l.classes.iter().map(|(v, n)| (v.as_str(), n.as_str())).collect();
        assert_eq!(names, [("1", "lung"), ("2", "nodule")]);
        // The generator's own label map, on the store's grid, is what was stored.
        let truth = synth::synth_scan(5, k, true);
        let want =
            resample_nearest(&truth.label_map(), &truth.geometry, rec.shape_zyx, &rec.geometry())
                .unwrap();
        let stored = store.label(&rec.series_id, "labels").unwrap().read_all_as::<u8>().unwrap();
        assert!(stored == want, "{}", rec.series_id);
        nodule_components += l.components.iter().filter(|c| c.value == 2).count();
    }
    assert!(nodule_components >= 3, "{nodule_components} nodule components");

    let loader = Loader::builder(&store)
        .mask_label("labels", &[2])
        .positive_share(0.5)
        .batch_size(4)
        .seed(3)
        .build()
        .unwrap();
    assert_eq!(loader.positive_targets(), nodule_components);
    let (mut positives, mut foreground) = (0, 0.0f32);
    for batch in loader.epoch(0) {
        let b = batch.unwrap();
        let n: usize = b.shape[2..].iter().product();
        for (i, p) in b.patches.iter().enumerate() {
            let rec = &store.scans()[&p.series_id];
            let k = rec.series_id[5..8].parse::<usize>().unwrap();
            let truth = synth::synth_scan(5, k, true);
            let full = resample_nearest(
                &truth.label_map(),
                &truth.geometry,
                rec.shape_zyx,
                &rec.geometry(),
            )
            .unwrap();
            let [d, h, w] = [b.shape[2], b.shape[3], b.shape[4]];
            for z in 0..d {
                for y in 0..h {
                    for x in 0..w {
                        let at = [
                            p.start_zyx[0] + z as i64,
                            p.start_zyx[1] + y as i64,
                            p.start_zyx[2] + x as i64,
                        ];
                        let inside =
                            (0..3).all(|a| at[a] >= 0 && (at[a] as usize) < rec.shape_zyx[a]);
                        let want =
                            inside && full[[at[0] as usize, at[1] as usize, at[2] as usize]] == 2;
                        assert_eq!(
                            b.masks[i * n + (z * h + y) * w + x],
                            want as u8 as f32,
                            "{} at {at:?}",
                            p.series_id
                        );
                    }
                }
            }
            if p.positive {
                positives += 1;
                foreground += b.masks[i * n..(i + 1) * n].iter().sum::<f32>();
            }
        }
    }
    assert!(
        positives > 0 && foreground > 0.0,
        "positives centred on nodule components hold nodule voxels"
    );
    // Compact batches read the label volume straight into their masks: the masks above.
    let compact = Loader::builder(&store)
        .mask_label("labels", &[2])
        .positive_share(0.5)
        .batch_size(4)
        .seed(3)
        .compact(true)
        .build()
        .unwrap();
    for (f, c) in loader.epoch(0).zip(compact.epoch(0)) {
        let (f, c) = (f.unwrap(), c.unwrap());
        let masks = &c.compact.as_ref().expect("a compact batch").masks;
        assert_eq!(masks.iter().map(|&v| f32::from(v)).collect::<Vec<_>>(), f.masks);
    }

    // A value dataset.json does not name is refused, naming the file and dataset.json.
    let bad = nn.join("labelsTr/lung_001.nii.gz");
    let mut m = ctstream::io::read_scan(&bad, &Default::default(), &()).unwrap().volume;
    m.hu[[0, 0, 0]] = 7;
    ctstream::io::nifti::write(&bad, &m.hu, &m.geometry).unwrap();
    let mut cfg = IngestConfig::new(Vec::new(), dir.path().join("store2"));
    cfg.add_nnunet(&nn).unwrap();
    let sum = ingest(&cfg, &()).unwrap();
    assert_eq!(sum.failed.len(), 1, "{sum:?}");
    let r = &sum.failed[0].reason;
    assert!(
        r.contains("lung_001.nii.gz") && r.contains("is 7") && r.contains("dataset.json"),
        "{r}"
    );
    // Not a dataset: a clear error.
    let e = IngestConfig::new(Vec::new(), dir.path().join("x"))
        .add_nnunet(&data)
        .unwrap_err()
        .to_string();
    assert!(e.contains("imagesTr") && e.contains("not an nnU-Net raw dataset"), "{e}");
}

/// nnU-Net layouts that were stored silently wrong (issue 32, class 5): a case without
/// its label map (missing, a FIFO, a looping link) fails alone, naming the file it needs,
/// while the other cases are stored with theirs; a second channel (`_0001`), a file
/// without the dataset's `file_ending`, and a `file_ending` ctstream cannot read are
/// refused before anything is written, naming the file and `nnunet` (not `labels`).
#[test]
fn an_nnunet_case_without_its_label_fails_alone_and_odd_layouts_are_refused() {
    use ctstream::ingest::{IngestConfig, ingest};
    use ctstream::synth::{self, SynthConfig};
    let dir = tempdir();
    let data = dir.path().join("data");
    synth::generate(
        &data,
        &SynthConfig { small: true, nnunet: true, labels: true, ..SynthConfig::new(4, 8) },
        &(),
    )
    .unwrap();
    let nn = data.join(synth::NNUNET_DATASET);
    let label = |k: usize| nn.join(format!("labelsTr/lung_{k:03}.nii.gz"));
    // Case 1: no label map; case 2: a FIFO in its place; case 3: a link to itself.
    std::fs::remove_file(label(1)).unwrap();
    std::fs::remove_file(label(2)).unwrap();
    let fifo = std::ffi::CString::new(label(2).to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::fs::remove_file(label(3)).unwrap();
    std::os::unix::fs::symlink(label(3), label(3)).unwrap();
    let out = dir.path().join("store");
    let mut cfg = IngestConfig::new(Vec::new(), out.clone());
    cfg.add_nnunet(&nn).unwrap();
    let sum = ingest(&cfg, &()).unwrap();
    assert_eq!(sum.stored, ["lung_000_0000"], "{sum:?}");
    assert_eq!(sum.failed.len(), 3, "{sum:?}");
    for (k, why) in [(1, "is missing"), (2, "not a regular file"), (3, "symbolic link")] {
        let f =
            sum.failed.iter().find(|f| f.source.contains(&format!("lung_{k:03}_0000"))).unwrap();
        assert!(
            f.reason.contains(&format!("case lung_{k:03} has no label map"))
                && f.reason.contains(&format!("lung_{k:03}.nii.gz"))
                && f.reason.contains(why)
                && f.reason.starts_with("nnunet "),
            "{}",
            f.reason
        );
    }
    let store = ctstream::store::Store::open(&out).unwrap();
    assert!(store.scans()["lung_000_0000"].label("labels").is_some());

    // Refused before anything is written, naming the file and the option.
    let refused = |what: &str| {
        let e = IngestConfig::new(Vec::new(), dir.path().join("x")).add_nnunet(&nn).unwrap_err();
        let e = e.to_string();
        assert!(e.starts_with("nnunet ") && e.contains(what), "{e}");
        assert!(!dir.path().join("x").exists());
    };
    for k in 1..4 {
        let _ = std::fs::remove_file(label(k));
        std::fs::copy(label(0), label(k)).unwrap();
    }
    let extra = nn.join("imagesTr/lung_000_0001.nii.gz");
    std::fs::copy(nn.join("imagesTr/lung_000_0000.nii.gz"), &extra).unwrap();
    refused("lung_000_0001.nii.gz is channel 0001 of case lung_000");
    std::fs::remove_file(&extra).unwrap();
    let stray = nn.join("imagesTr/lung_009_0000.mha");
    std::fs::write(&stray, b"ObjectType = Image\n").unwrap();
    refused("lung_009_0000.mha does not end in file_ending `.nii.gz`");
    std::fs::remove_file(&stray).unwrap();
    let json = nn.join("dataset.json");
    let text = std::fs::read_to_string(&json).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["file_ending"] = ".nrrd".into();
    std::fs::write(&json, v.to_string()).unwrap();
    refused("file_ending `.nrrd`: ctstream reads .nii.gz, .nii, .mha, .mhd");
    v["file_ending"] = ".mha".into();
    std::fs::write(&json, v.to_string()).unwrap();
    refused("lung_000_0000.nii.gz does not end in file_ending `.mha`");
    std::fs::write(&json, text).unwrap();
    IngestConfig::new(Vec::new(), dir.path().join("x")).add_nnunet(&nn).unwrap();

    // The CLI names the flag, with the usage exit code.
    std::fs::copy(nn.join("imagesTr/lung_000_0000.nii.gz"), &extra).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ctstream"))
        .args(["ingest", "--nnunet"])
        .arg(&nn)
        .arg("--out")
        .arg(dir.path().join("y"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nnunet") && err.contains("channel 0001") && !err.contains("labels "),
        "{err}"
    );
}

/// The tests that need Python with the pinned packages (tools/goldens and tools/python requirements): ignored where it is missing (cargo test says
/// so); tools/test.sh runs them with `--ignored with_python::` where it is installed.
mod with_python {
    use super::*;

    /// Nearest-neighbour resampling equals SimpleITK's `sitkNearestNeighbor`, voxel for voxel
    /// except where a target centre falls within 1e-6 voxel of a half (the documented tie):
    /// elastix's mask onto its 2x down-sampled scan's grid and onto a 1 mm grid shifted by a
    /// third of a voxel; TotalSegmentator's RAS mask (flipped x and y) onto a 1.5 mm grid.
    #[test]
    #[ignore = "needs Python with the pinned packages (tools/goldens and tools/python requirements): tools/test.sh runs it where they are installed"]
    fn nearest_resampling_equals_simpleitk() {
        let dir = tempdir();
        let cases: [(&str, [f64; 3], [f64; 3], [usize; 3]); 3] = [
            (
                "elastix/3DCT_lung_baseline_mask.mha",
                [-152.461, -148.986, -1432.0],
                [2.732, 2.732, 5.0],
                [57, 78, 64],
            ),
            (
                "elastix/3DCT_lung_baseline_mask.mha",
                [-160.0 + 1.0 / 3.0, -155.0, -1440.0],
                [1.0, 1.0, 1.0],
                [170, 220, 340],
            ),
            (
                "totalsegmentator/example_seg_lung.nii.gz",
                [-190.0, -320.0, 90.0],
                [1.5, 1.5, 1.5],
                [250, 220, 230],
            ),
        ];
        for (k, (file, origin, spacing, size_xyz)) in cases.into_iter().enumerate() {
            let src =
                ctstream::io::read_scan(&data(file), &Default::default(), &()).unwrap().volume;
            let g = Geometry::axis_aligned(origin, spacing);
            let shape = [size_xyz[2], size_xyz[1], size_xyz[0]];
            let ours = resample_nearest(&as_labels(&src), &src.geometry, shape, &g).unwrap();
            let raw = dir.path().join(format!("sitk{k}.raw"));
            let args: Vec<std::ffi::OsString> = vec![
                data(file).into(),
                raw.clone().into(),
                serde_json::to_string(&size_xyz).unwrap().into(),
                serde_json::to_string(&spacing).unwrap().into(),
                serde_json::to_string(&origin).unwrap().into(),
            ];
            let j = python_json("tools/goldens/sitk_nearest.py", &args);
            assert_eq!(j["shape_zyx"], serde_json::json!(shape));
            let theirs = std::fs::read(&raw).unwrap();
            let (mut differ, mut ties) = (0usize, 0usize);
            for ((z, y, x), &v) in ours.indexed_iter() {
                let t = theirs[(z * shape[1] + y) * shape[2] + x];
                if v != t {
                    differ += 1;
                    let i = src
                        .geometry
                        .world_to_index(g.index_to_world([z as f64, y as f64, x as f64]))
                        .unwrap();
                    if i.iter().any(|c| ((c - c.floor()) - 0.5).abs() < 1e-6) {
                        ties += 1;
                    }
                }
            }
            let nonzero = ours.iter().filter(|&&v| v != 0).count();
            println!(
                "{file} onto {spacing:?}: {nonzero} labelled voxels, {differ} differ from SimpleITK ({ties} at ties)"
            );
            assert!(nonzero > 1000, "{file}: the case must overlap the mask");
            assert_eq!(
                j["nonzero"].as_u64().unwrap() as usize,
                theirs.iter().filter(|&&v| v != 0).count()
            );
            assert_eq!(differ, ties, "{file}: voxels differ from SimpleITK away from ties");
        }
    }
}
