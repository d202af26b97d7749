//! Whole-scan prediction (feature `train`) and the LUNA16 evaluation command.
//!
//! - The sliding window equals a naive reference written here: decode the whole volume,
//!   cut every tile out of it (padding with the store's fill value), predict each tile on
//!   its own, add `gaussian x probability` and `gaussian` into two volumes, divide.
//! - `ctstream predict` writes that same map (per mille) and one LUNA16 row per component.
//! - `ctstream evaluate` reproduces the hand-worked FROC of `src/evaluate.rs`'s tests.
#![cfg(feature = "train")]

use std::path::Path;
use std::process::Command;

use crate::common::*;
use ctstream::ingest::{self, IngestConfig};
use ctstream::predict::{self, SlidingWindow, window};
use ctstream::store::{Store, VolumeFile};
use ctstream::synth::{self, SynthConfig};
use ctstream::train::trained::Trained;
use ndarray::Array3;

type Cpu = burn::backend::Flex;

fn ctstream(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ctstream")).args(args).output().unwrap()
}

/// A store of 3 small synthetic scans and a U-Net (width 0.125, 16x32x32) trained 3 steps.
fn store_and_run(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join("data");
    synth::generate(&data, &SynthConfig { small: true, ..SynthConfig::new(3, 41) }, &()).unwrap();
    let store = dir.join("store");
    let mut cfg = IngestConfig::new(vec![data.clone()], store.clone());
    cfg.annotations = Some(data.join("annotations.csv"));
    ingest::ingest(&cfg, &()).unwrap();
    let run = dir.join("run");
    let o = ctstream(&[
        "--quiet",
        "train",
        "--store",
        store.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--width",
        "0.125",
        "--patch",
        "16,32,32",
        "--batch-size",
        "2",
        "--steps",
        "3",
        "--val-fraction",
        "0.3",
        "--val-every",
        "3",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (store, run)
}

/// The naive reference: every tile that `keep` keeps predicted alone on the fully decoded
/// volume; 0 where no kept tile reaches.
fn naive(
    volume: &VolumeFile,
    net: &Trained<Cpu>,
    patch: [usize; 3],
    overlap: f64,
    window_hu: [f32; 2],
    keep: &dyn Fn([usize; 3]) -> bool,
) -> Array3<f32> {
    let hu = volume.read_all().unwrap();
    let shape = volume.shape_zyx();
    let fill = volume.header().fill_value;
    let g = window::gaussian(patch);
    let (mut acc, mut wsum) =
        (Array3::<f32>::zeros(hu.raw_dim()), Array3::<f32>::zeros(hu.raw_dim()));
    let device = Default::default();
    for z in window::tile_starts(shape[0], patch[0], overlap) {
        for y in window::tile_starts(shape[1], patch[1], overlap) {
            for x in window::tile_starts(shape[2], patch[2], overlap) {
                if !keep([z, y, x]) {
                    continue;
                }
                let mut tile = Vec::with_capacity(patch.iter().product());
                for dz in 0..patch[0] {
                    for dy in 0..patch[1] {
                        for dx in 0..patch[2] {
                            let v = hu.get([z + dz, y + dy, x + dx]).copied().unwrap_or(fill);
                            tile.push(
                                ((v as f32 - window_hu[0]) / (window_hu[1] - window_hu[0]))
                                    .clamp(0.0, 1.0),
                            );
                        }
                    }
                }
                let p = net
                    .network
                    .predict_batch(&tile, [1, 1, patch[0], patch[1], patch[2]], &device)
                    .unwrap();
                let mut k = 0;
                for dz in 0..patch[0] {
                    for dy in 0..patch[1] {
                        for dx in 0..patch[2] {
                            let at = [z + dz, y + dy, x + dx];
                            if at[0] < shape[0] && at[1] < shape[1] && at[2] < shape[2] {
                                acc[at] += g[k] * p[k];
                                wsum[at] += g[k];
                            }
                            k += 1;
                        }
                    }
                }
            }
        }
    }
    acc.zip_mut_with(&wsum, |a, &w| *a = if w > 0.0 { *a / w } else { 0.0 });
    acc
}

#[test]
fn sliding_window_equals_the_naive_reference_and_predict_writes_it() {
    let dir = tempdir();
    let (store_path, run) = store_and_run(dir.path());
    let store = Store::open(&store_path).unwrap();
    let device = Default::default();
    let net = Trained::<Cpu>::load(&run, None, &device).unwrap();
    assert_eq!(net.checkpoint.state.position.step, 3);
    let id = net.config.val_series[0].clone();
    let volume = store.volume(&id).unwrap();
    // A volume side not a multiple of the stride, and batches that do not divide the tiles.
    // Overlap 0.25 (`predict`'s default is 0.5): the same arithmetic on 2.4 times fewer tiles.
    let sw = SlidingWindow {
        patch_zyx: [16, 32, 32],
        overlap: 0.25,
        batch_size: 3,
        hu_window: net.config.loader.hu_window,
        cache_bytes: 1 << 20,
        mirror_zyx: [false; 3],
    };
    let fast = predict::predict_volume(
        &volume,
        &sw,
        2,
        |x, s| net.network.predict_batch(x, s, &device),
        &(),
    )
    .unwrap();
    let serial = predict::predict_volume(
        &volume,
        &sw,
        1,
        |x, s| net.network.predict_batch(x, s, &device),
        &(),
    )
    .unwrap();
    assert_eq!(fast, serial, "the map does not depend on the number of threads");
    let slow = naive(&volume, &net, sw.patch_zyx, sw.overlap, sw.hu_window, &|_| true);
    let diff = fast.iter().zip(slow.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    eprintln!(
        "{id}: shape {:?}, {} tiles, largest difference {diff:e}",
        volume.shape_zyx(),
        predict::tiles(volume.shape_zyx(), &sw).len()
    );
    assert!(diff <= 1e-5, "sliding window and naive reference differ by {diff}");
    assert!(fast.iter().all(|p| (0.0..=1.0).contains(p)));
    // Not a constant map: the network saw the scan (after 3 steps it varies little).
    let (lo, hi) = fast.iter().fold((f32::MAX, f32::MIN), |(l, h), &p| (l.min(p), h.max(p)));
    assert!(hi > lo, "{lo}..{hi}");

    // The command writes the same map (probability x 1000 as int16) and one LUNA16 row
    // per component.
    let out = dir.path().join("pred");
    let o = ctstream(&[
        "--quiet",
        "predict",
        "--store",
        store_path.to_str().unwrap(),
        "--run",
        run.to_str().unwrap(),
        "--split",
        "val",
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "5",
        "--overlap",
        "0.25",
        "--no-lung-roi",
        // The reference's post-processing, not the operating point the run chose.
        "--threshold",
        "0.5",
        "--min-voxels",
        "1",
        "--merge-mm",
        "0",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let map = VolumeFile::open(&out.join("volumes").join(format!("{id}.ctv")))
        .unwrap()
        .read_all()
        .unwrap();
    let worst = map
        .iter()
        .zip(slow.iter())
        .map(|(&m, &p)| (m as f32 - 1000.0 * p).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 0.5 + 1e-2, "per-mille map off by {worst}");
    assert_eq!(
        VolumeFile::open(&out.join("volumes").join(format!("{id}.ctv"))).unwrap().geometry(),
        volume.geometry()
    );
    let comps = predict::components::components(
        slow.as_slice().unwrap(),
        volume.shape_zyx(),
        0.5,
        &volume.geometry(),
    );
    let csv = std::fs::read_to_string(out.join("candidates.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("seriesuid,coordX,coordY,coordZ,probability"));
    assert_eq!(csv.lines().count() - 1, comps.len());
    assert_eq!(std::fs::read_to_string(out.join("series.txt")).unwrap(), format!("{id}\n"));

    // Within the lung region (the default): only the tiles that are the nearest tile (by
    // centre) of some voxel of the region are computed. The set is found here voxel by
    // voxel, each voxel's nearest tile by a search over all tile starts, and the naive
    // reference over that set gives the map; findings are the components whose centre
    // lies in the region. At overlap 0.5, `predict`'s default, where tiles reach far past
    // their nearest voxels (at 0.25 every tile touching this small scan's region is some
    // voxel's nearest).
    let roi = predict::Roi::lung_region(&store.label(&id, "lungs").unwrap()).unwrap();
    let sw = SlidingWindow { overlap: 0.5, ..sw };
    let shape = volume.shape_zyx();
    let starts: [Vec<usize>; 3] =
        std::array::from_fn(|a| window::tile_starts(shape[a], sw.patch_zyx[a], sw.overlap));
    // The start of the tile whose centre is nearest voxel v along axis a (the earlier on
    // a tie).
    let nearest = |a: usize, v: usize| -> usize {
        let d = |s: usize| ((v as f64 + 0.5) - (s as f64 + sw.patch_zyx[a] as f64 / 2.0)).abs();
        *starts[a].iter().min_by(|&&s, &&t| d(s).total_cmp(&d(t))).unwrap()
    };
    let mut wanted = std::collections::BTreeSet::new();
    for ((z, y, x), &m) in roi.mask.indexed_iter() {
        if m != 0 {
            wanted.insert([nearest(0, z), nearest(1, y), nearest(2, x)]);
        }
    }
    let all = predict::tiles(shape, &sw);
    let computed = predict::tiles_in(shape, &sw, Some(&roi));
    assert_eq!(computed.iter().copied().collect::<std::collections::BTreeSet<_>>(), wanted);
    let touching = all.iter().filter(|t| roi.touches(**t, sw.patch_zyx)).count();
    assert!(
        !computed.is_empty() && computed.len() < touching && touching < all.len(),
        "{} computed, {touching} touching the region, of {} tiles",
        computed.len(),
        all.len()
    );
    let inside = predict::predict_volume_in(
        &volume,
        &sw,
        2,
        Some(&roi),
        |x, s| net.network.predict_batch(x, s, &device),
        &(),
    )
    .unwrap();
    let reference =
        naive(&volume, &net, sw.patch_zyx, sw.overlap, sw.hu_window, &|t| wanted.contains(&t));
    let diff = inside.iter().zip(reference.iter()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-5, "the map and the naive reference over those tiles differ by {diff}");
    assert!(inside.iter().any(|&p| p == 0.0), "the map is 0 where no tile was computed");
    let out = dir.path().join("pred-roi");
    let o = ctstream(&[
        "--quiet",
        "predict",
        "--store",
        store_path.to_str().unwrap(),
        "--run",
        run.to_str().unwrap(),
        "--split",
        "val",
        "--out",
        out.to_str().unwrap(),
        "--batch-size",
        "3",
        "--threshold",
        "0.45",
        "--min-voxels",
        "1",
        "--merge-mm",
        "0",
        "--overlap",
        "0.5",
        "--backend",
        "burn",
        "--threads",
        "2",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let comps: Vec<_> = predict::components::components(
        inside.as_slice().unwrap(),
        volume.shape_zyx(),
        0.45,
        &volume.geometry(),
    )
    .into_iter()
    .filter(|c| roi.contains(c.centre_zyx))
    .collect();
    let csv = std::fs::read_to_string(out.join("candidates.csv")).unwrap();
    assert_eq!(csv.lines().count() - 1, comps.len());
}

/// The run validated on its held-out scan: `checkpoints/best/operating_point.json` holds
/// the operating point of the best validation (its CPM, false positives and
/// post-processing equal to that row of `val.csv`); `predict` without flags takes the best
/// checkpoint and that operating point, says so, and its findings scored by the LUNA16
/// evaluation give the validation's CPM, sensitivity and false positives per scan.
#[test]
fn predict_reproduces_the_operating_point_chosen_on_validation() {
    use ctstream::predict::operating::OperatingPoint;
    let dir = tempdir();
    let (store_path, run) = store_and_run(dir.path());
    let best = run.join("checkpoints/best");
    let op = OperatingPoint::read(&best).unwrap().expect("the run kept a best checkpoint");
    let val = std::fs::read_to_string(run.join("val.csv")).unwrap();
    let header: Vec<&str> = val.lines().next().unwrap().split(',').collect();
    let col = |row: &str, name: &str| -> String {
        let k = header.iter().position(|h| *h == name).unwrap();
        row.split(',').nth(k).unwrap().to_string()
    };
    let row = val.lines().skip(1).find(|r| col(r, "step") == op.step.to_string()).unwrap();
    assert_eq!(col(row, "cpm").parse::<f64>().unwrap(), op.cpm);
    assert_eq!(col(row, "fps_per_scan").parse::<f64>().unwrap(), op.fps_per_scan);
    assert_eq!(col(row, "threshold").parse::<f32>().unwrap(), op.post.threshold);
    assert_eq!(col(row, "min_voxels").parse::<usize>().unwrap(), op.post.min_voxels);
    let out = dir.path().join("pred-best");
    let o = ctstream(&[
        "predict",
        "--store",
        store_path.to_str().unwrap(),
        "--run",
        run.to_str().unwrap(),
        "--split",
        "val",
        "--out",
        out.to_str().unwrap(),
        "--backend",
        "burn",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("checkpoints/best") && said.contains("operating point: p >= "), "{said}");
    let store = Store::open(&store_path).unwrap();
    let (truth, excluded) = ctstream::evaluate::truth_from_store(&store).unwrap();
    let dets = ctstream::annotations::read_predictions(&out.join("candidates.csv")).unwrap();
    let series = ctstream::annotations::read_series_list(&out.join("series.txt")).unwrap();
    let f = ctstream::evaluate::froc(&series, &truth, &excluded, &dets, 0, 0);
    assert_eq!(f.cpm, op.cpm);
    assert_eq!(f.false_positives as f64 / series.len() as f64, op.fps_per_scan);
    assert_eq!((f.nodules, series.len()), (op.nodules, op.scans));
    // Hard-negative mining: the training scans predicted (a low threshold, so this
    // three-step network leaves findings), then a run that draws half its negatives there
    // (and validates without them: they lie on the training scans).
    let mined = dir.path().join("mined");
    let o = ctstream(&[
        "--quiet",
        "predict",
        "--store",
        store_path.to_str().unwrap(),
        "--run",
        run.to_str().unwrap(),
        "--split",
        "train",
        "--out",
        mined.to_str().unwrap(),
        "--threshold",
        "0.01",
        "--format",
        "none",
        "--backend",
        "burn",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let hard = dir.path().join("hard");
    let o = ctstream(&[
        "--quiet",
        "train",
        "--store",
        store_path.to_str().unwrap(),
        "--out",
        hard.to_str().unwrap(),
        "--width",
        "0.125",
        "--patch",
        "16,32,32",
        "--batch-size",
        "2",
        "--steps",
        "2",
        "--val-fraction",
        "0.3",
        "--no-val-scans",
        "--hard-negatives",
        mined.join("candidates.csv").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let cfg = std::fs::read_to_string(hard.join("config.json")).unwrap();
    assert!(cfg.contains("\"negatives\": \"lungs=0.125,body=0.125,dense=0.25,hard=0.5\""), "{cfg}");
}

/// The two-scan example worked by hand in `src/evaluate.rs` (CPM 11/21), through the CSV
/// files and the command, with the scan list from a file.
#[test]
fn evaluate_command_reproduces_the_hand_worked_froc() {
    let dir = tempdir();
    let w = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let ann = w(
        "annotations.csv",
        "seriesuid,coordX,coordY,coordZ,diameter_mm\nA,0,0,0,10\nA,50,0,0,6\nB,0,0,0,4\n",
    );
    let exc = w("excluded.csv", "seriesuid,coordX,coordY,coordZ,diameter_mm\nA,0,50,0,-1\n");
    let pred = w(
        "pred.csv",
        "seriesuid,coordX,coordY,coordZ,probability\nA,1,1,1,0.9\nA,0,-4,0,0.6\nA,52,0,0,0.4\nA,0,52,0,0.8\nA,0,5,0,0.7\nA,100,100,100,0.3\nB,30,0,0,0.5\nC,0,0,0,0.99\n",
    );
    let list = w("series.txt", "seriesuid\nA\nB\n");
    let out = dir.path().join("eval");
    let o = ctstream(&[
        "evaluate",
        "--annotations",
        ann.to_str().unwrap(),
        "--excluded",
        exc.to_str().unwrap(),
        "--predictions",
        pred.to_str().unwrap(),
        "--series-list",
        list.to_str().unwrap(),
        "--bootstrap",
        "50",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        (
            j["scans"].as_u64(),
            j["nodules"].as_u64(),
            j["detected"].as_u64(),
            j["false_positives"].as_u64(),
            j["ignored"].as_u64()
        ),
        (Some(2), Some(3), Some(2), Some(3), Some(1))
    );
    assert!((j["cpm"].as_f64().unwrap() - 11.0 / 21.0).abs() < 1e-12);
    assert_eq!(j["intervals"].as_array().unwrap().len(), 8);
    assert!(out.join("froc.json").is_file());
    assert_eq!(std::fs::read_to_string(out.join("froc.csv")).unwrap().lines().count(), 1 + 6);
    // A bad row is a clear error naming the file and line.
    let bad = w("bad.csv", "seriesuid,coordX,coordY,coordZ,probability\nA,1,x,1,0.9\n");
    let o = ctstream(&[
        "evaluate",
        "--annotations",
        ann.to_str().unwrap(),
        "--predictions",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.csv") && err.contains("coordY"), "{err}");
}

/// Test-time mirroring averages the predictions of the mirrored tiles, each mirrored back.
/// By hand: a model that multiplies each value by `1 + a z + b y + c x` (its place in the
/// tile) gives, averaged over the 8 mirrorings of z, y and x, `1 + a (pz - 1) / 2 +
/// b (py - 1) / 2 + c (px - 1) / 2` at every place (each index and its mirror average to
/// the middle), so the mirrored map equals the map of a model that multiplies by that
/// constant; with y and x only, the z term stays as it is. Without mirroring back (or
/// without mirroring at all) the maps differ.
#[test]
fn test_time_mirroring_averages_the_mirrored_predictions() {
    let dir = tempdir();
    let data = dir.path().join("data");
    synth::generate(&data, &SynthConfig { small: true, ..SynthConfig::new(1, 5) }, &()).unwrap();
    let out = dir.path().join("store");
    ingest::ingest(&IngestConfig::new(vec![data], out.clone()), &()).unwrap();
    let store = Store::open(&out).unwrap();
    let id = store.series_ids().next().unwrap().to_string();
    let volume = store.volume(&id).unwrap();
    let p = [8usize, 16, 12];
    let (a, b, c) = (0.05f32, 0.02, 0.03);
    let ramp = move |x: &[f32], s: [usize; 5]| -> Result<Vec<f32>, String> {
        let n = p[0] * p[1] * p[2];
        assert_eq!(s, [x.len() / n, 1, p[0], p[1], p[2]]);
        Ok(x.iter()
            .enumerate()
            .map(|(i, &v)| {
                let (z, y, xx) = ((i % n) / (p[1] * p[2]), (i / p[2]) % p[1], i % p[2]);
                v * (1.0 + a * z as f32 + b * y as f32 + c * xx as f32)
            })
            .collect())
    };
    let sw = |mirror_zyx| SlidingWindow {
        patch_zyx: p,
        overlap: 0.5,
        batch_size: 5,
        mirror_zyx,
        ..SlidingWindow::default()
    };
    let half = |n: usize| (n as f32 - 1.0) / 2.0;
    let all = 1.0 + a * half(p[0]) + b * half(p[1]) + c * half(p[2]);
    let constant =
        |k: f32| move |x: &[f32], _: [usize; 5]| Ok::<_, String>(x.iter().map(|v| v * k).collect());
    let mirrored = predict::predict_volume(&volume, &sw([true; 3]), 2, ramp, &()).unwrap();
    let expected =
        predict::predict_volume(&volume, &sw([false; 3]), 2, constant(all), &()).unwrap();
    let plain = predict::predict_volume(&volume, &sw([false; 3]), 2, ramp, &()).unwrap();
    let close = |x: &Array3<f32>, y: &Array3<f32>| {
        x.iter().zip(y.iter()).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max)
    };
    assert!(close(&mirrored, &expected) < 1e-5, "{}", close(&mirrored, &expected));
    assert!(close(&plain, &expected) > 1e-2, "the ramp is not constant without mirroring");
    // Only y and x: the z term stays.
    let yx = predict::predict_volume(&volume, &sw([false, true, true]), 1, ramp, &()).unwrap();
    let z_ramp = move |x: &[f32], _: [usize; 5]| -> Result<Vec<f32>, String> {
        let n = p[0] * p[1] * p[2];
        Ok(x.iter()
            .enumerate()
            .map(|(i, &v)| {
                let z = (i % n) / (p[1] * p[2]);
                v * (1.0 + a * z as f32 + b * half(p[1]) + c * half(p[2]))
            })
            .collect())
    };
    let yx_expected = predict::predict_volume(&volume, &sw([false; 3]), 1, z_ramp, &()).unwrap();
    assert!(close(&yx, &yx_expected) < 1e-5, "{}", close(&yx, &yx_expected));
}
