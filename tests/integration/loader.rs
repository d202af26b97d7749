//! The loader: patches equal the regions of the fully decoded volume, positives sit on
//! their nodule, masks equal an independent sphere test, batches are identical across
//! worker counts and runs, shards are disjoint and cover, augmentation moves image and
//! mask together, a corrupt chunk surfaces as an error, and dropping stops the workers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;
use ctstream::annotations;
use ctstream::ingest::{self, IngestConfig};
use ctstream::loader::{Augment, Batch, Loader, PatchMut, Split, Transform, TransformError};
use ctstream::store::Store;
use ctstream::synth::{self, SynthConfig};

fn make_store(dir: &Path, scans: usize) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    synth::generate(&data, &SynthConfig { small: true, ..SynthConfig::new(scans, 77) }, &())
        .unwrap();
    let out = dir.join("store");
    let mut cfg = IngestConfig::new(vec![data.clone()], out.clone());
    cfg.annotations = Some(data.join("annotations.csv"));
    cfg.candidates = Some(data.join("candidates.csv"));
    ingest::ingest(&cfg, &()).unwrap();
    (out, data)
}

const P: [usize; 3] = [32, 64, 64];
const N: usize = 32 * 64 * 64;

fn window(v: i16) -> f32 {
    ((v as f32 + 1000.0) / 1400.0).clamp(0.0, 1.0)
}

#[test]
fn patches_equal_regions_of_the_decoded_volume_and_masks_equal_spheres() {
    let dir = tempdir();
    let (out, data) = make_store(dir.path(), 3);
    let store = Store::open(&out).unwrap();
    let loader = Loader::builder(&store)
        .patch(P)
        .batch_size(6)
        .workers(2)
        .seed(3)
        .batches_per_epoch(Some(6))
        .build()
        .unwrap();
    // The annotations as written by synth, in world mm: an independent source for masks.
    let truth = annotations::read_annotations(&data.join("annotations.csv")).unwrap();
    let mut positives = 0;
    for batch in loader.epoch(0) {
        let batch = batch.unwrap();
        assert_eq!(batch.shape, [6, 1, 32, 64, 64]);
        for (i, meta) in batch.patches.iter().enumerate() {
            let rec = store.scan(&meta.series_id).unwrap();
            let full = store.volume(&meta.series_id).unwrap().read_all().unwrap();
            let img = &batch.images[i * N..(i + 1) * N];
            let mask = &batch.masks[i * N..(i + 1) * N];
            let s = meta.start_zyx;
            let spheres: Vec<([f64; 3], f64)> = truth
                .iter()
                .filter(|a| a.series_id == meta.series_id)
                .map(|a| {
                    // World -> stored voxel by hand: the stored grid is axis-aligned.
                    let c: [f64; 3] = std::array::from_fn(|k| {
                        (a.world_xyz[2 - k] - rec.origin_xyz[2 - k]) / rec.spacing_xyz[2 - k]
                    });
                    (c, a.diameter_mm.unwrap() / 2.0)
                })
                .collect();
            let mut k = 0;
            for z in 0..32i64 {
                for y in 0..64i64 {
                    for x in 0..64i64 {
                        let p = [s[0] + z, s[1] + y, s[2] + x];
                        let inside =
                            (0..3).all(|a| p[a] >= 0 && (p[a] as usize) < rec.shape_zyx[a]);
                        let hu = if inside {
                            full[[p[0] as usize, p[1] as usize, p[2] as usize]]
                        } else {
                            -1024
                        };
                        // f32 arithmetic: (hu - lo) * (1 / 1400) here vs / 1400 in the test.
                        assert!(
                            (img[k] - window(hu)).abs() <= 1e-6,
                            "{} patch {i} voxel {:?}: {} vs {}",
                            meta.series_id,
                            (z, y, x),
                            img[k],
                            window(hu)
                        );
                        // Spacing is 1 mm, so the radius in voxels is the radius in mm.
                        let in_sphere = spheres.iter().any(|(c, r)| {
                            (0..3).map(|a| ((p[a] as f64 - c[a]) / r).powi(2)).sum::<f64>() <= 1.0
                        });
                        assert_eq!(mask[k], in_sphere as u8 as f32, "mask at {p:?}");
                        k += 1;
                    }
                }
            }
            if meta.positive {
                positives += 1;
                let n = meta.nodule_id.unwrap() as usize;
                let (c, _) = spheres[n];
                // The nodule centre lies at patch/2 minus the jitter (at most 8) from the start.
                for a in 0..3 {
                    let off = c[a].round() as i64 - s[a];
                    assert!(
                        (off - (P[a] / 2) as i64).abs() <= 8,
                        "axis {a}: centre at offset {off}"
                    );
                }
                let ci = |a: usize| (c[a].round() as i64 - s[a]) as usize;
                assert_eq!(
                    mask[(ci(0) * 64 + ci(1)) * 64 + ci(2)],
                    1.0,
                    "mask at the nodule centre"
                );
            }
        }
    }
    assert!(positives >= 20, "with share 0.8, 36 patches give about 29 positives: {positives}");
}

fn collect(loader: &Loader, epoch: u64) -> Vec<Batch> {
    loader.epoch(epoch).map(|b| b.unwrap()).collect()
}

/// [`collect`], each batch copied and its buffers handed back ([`Loader::recycle`]), so
/// that the workers build the later batches in buffers that held earlier ones.
fn collect_recycling(loader: &Loader, epoch: u64) -> Vec<Batch> {
    let mut kept = Vec::new();
    for b in loader.epoch(epoch) {
        let b = b.unwrap();
        kept.push(b.clone());
        loader.recycle(b);
    }
    kept
}

#[test]
fn batches_are_identical_across_worker_counts_and_runs() {
    let dir = tempdir();
    let (out, _) = make_store(dir.path(), 2);
    let store = Store::open(&out).unwrap();
    let aug = Augment {
        flip_zyx: [true; 3],
        rot90: true,
        hu_shift: 30.0,
        hu_scale: 0.1,
        noise_sigma: 0.01,
        ..Default::default()
    };
    let build = |workers: usize, seed: u64| {
        Loader::builder(&store)
            .batch_size(4)
            .workers(workers)
            .prefetch(3)
            .augment(aug.clone())
            .seed(seed)
            .batches_per_epoch(Some(7))
            .build()
            .unwrap()
    };
    let one = collect(&build(1, 5), 1);
    assert_eq!(one.len(), 7);
    assert_eq!(one, collect(&build(2, 5), 1));
    assert_eq!(one, collect(&build(4, 5), 1));
    assert_eq!(one, collect(&build(3, 5), 1), "another run");
    assert_eq!(one, collect_recycling(&build(2, 5), 1), "in recycled buffers");
    assert_ne!(one, collect(&build(2, 6), 1), "another seed");
    assert_ne!(one, collect(&build(2, 5), 2), "another epoch");
    // Batches are in order and a range resumes mid-epoch with the same content.
    assert!(one.iter().enumerate().all(|(i, b)| b.index == i));
    let l = build(2, 5);
    let tail: Vec<Batch> = l.batches(1, 4, 3).unwrap().map(|b| b.unwrap()).collect();
    assert_eq!(tail, one[4..].to_vec());
}

/// Augmented patches are the unaugmented ones moved: image and mask by the same map.
#[test]
fn augmentation_moves_image_and_mask_together() {
    let dir = tempdir();
    let (out, _) = make_store(dir.path(), 2);
    let store = Store::open(&out).unwrap();
    let plain =
        Loader::builder(&store).batch_size(8).seed(9).batches_per_epoch(Some(2)).build().unwrap();
    let moved = Loader::builder(&store)
        .batch_size(8)
        .seed(9)
        .batches_per_epoch(Some(2))
        .augment(Augment { flip_zyx: [true; 3], rot90: true, ..Default::default() })
        .build()
        .unwrap();
    let (a, b) = (collect(&plain, 0), collect(&moved, 0));
    let mut moved_any = false;
    for (ba, bb) in a.iter().zip(&b) {
        for (i, (pa, pb)) in ba.patches.iter().zip(&bb.patches).enumerate() {
            assert_eq!(
                (pa.start_zyx, &pa.series_id),
                (pb.start_zyx, &pb.series_id),
                "the same patches are drawn"
            );
            let aug = &pb.augment;
            moved_any |= aug.flip_zyx.iter().any(|f| *f) || aug.quarter_turns > 0;
            let mut k = 0;
            for z in 0..32 {
                for y in 0..64 {
                    for x in 0..64 {
                        let [sz, sy, sx] = aug.source_of([z, y, x], P);
                        let src = i * N + (sz * 64 + sy) * 64 + sx;
                        assert_eq!(bb.images[i * N + k], ba.images[src]);
                        assert_eq!(bb.masks[i * N + k], ba.masks[src]);
                        k += 1;
                    }
                }
            }
            // A moved mask keeps its volume.
            let count = |m: &[f32]| m.iter().filter(|v| **v > 0.0).count();
            assert_eq!(count(&ba.masks[i * N..(i + 1) * N]), count(&bb.masks[i * N..(i + 1) * N]));
        }
    }
    assert!(moved_any);
}

#[test]
fn shards_are_disjoint_and_cover_and_splits_partition() {
    let dir = tempdir();
    let (out, _) = make_store(dir.path(), 5);
    let store = Store::open(&out).unwrap();
    let all: Vec<String> = store.series_ids().map(String::from).collect();
    let mut seen: Vec<String> = Vec::new();
    for rank in 0..3 {
        let l = Loader::builder(&store).shard(rank, 3).build().unwrap();
        for id in l.series_ids() {
            assert!(!seen.contains(&id.to_string()), "{id} in two shards");
            seen.push(id.to_string());
        }
        // Every patch of a rank comes from its own scans.
        let ids = l.series_ids().iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for b in l.epoch(0).take(2) {
            assert!(b.unwrap().patches.iter().all(|p| ids.contains(&p.series_id)));
        }
    }
    seen.sort();
    assert_eq!(seen, all, "the shards cover the selection");
    let ids = |s: Split| {
        Loader::builder(&store)
            .split(Some(s))
            .build()
            .map(|l| l.series_ids().iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let (mut train, val) =
        (ids(Split::Train { val_fraction: 0.4 }), ids(Split::Val { val_fraction: 0.4 }));
    assert!(train.iter().all(|t| !val.contains(t)));
    train.extend(val);
    train.sort();
    assert_eq!(train, all);
    let e = Loader::builder(&store).shard(3, 3).build().unwrap_err();
    assert!(e.to_string().contains("rank < world"), "{e}");
}

/// A corrupt chunk in the scan surfaces as an error naming the file and chunk; the epoch
/// ends there, with no hang.
#[test]
fn corrupt_chunk_is_an_error_not_a_hang() {
    let dir = tempdir();
    let (out, _) = make_store(dir.path(), 1);
    let store = Store::open(&out).unwrap();
    let id = store.series_ids().next().unwrap().to_string();
    let vol = store.root().join(&store.scan(&id).unwrap().volume_file);
    drop(store);
    // Flip one byte in every chunk payload after the table: any patch touches one.
    let mut bytes = std::fs::read(&vol).unwrap();
    let h = ctstream::store::format::VolumeHeader::try_from_bytes(&vol, &bytes).unwrap();
    let start = h.payload_start() as usize;
    for i in (start..bytes.len()).step_by(997) {
        bytes[i] ^= 0x40;
    }
    std::fs::write(&vol, &bytes).unwrap();
    let store = Store::open(&out).unwrap();
    let loader = Loader::builder(&store).workers(2).batches_per_epoch(Some(50)).build().unwrap();
    let t = Instant::now();
    let results: Vec<_> = loader.epoch(0).collect();
    assert!(t.elapsed() < Duration::from_secs(20));
    let last = results.last().unwrap();
    let e = last.as_ref().unwrap_err();
    assert!(e.to_string().contains("corrupt chunk") && e.to_string().contains(&id), "{e}");
    assert!(
        results[..results.len() - 1].iter().all(|r| r.is_ok()),
        "the epoch ends at the first error"
    );
}

/// Dropping an epoch after one batch of many stops the workers promptly.
#[test]
fn dropping_stops_the_workers() {
    let dir = tempdir();
    let (out, _) = make_store(dir.path(), 1);
    let store = Store::open(&out).unwrap();
    let loader = Loader::builder(&store)
        .workers(3)
        .prefetch(2)
        .batches_per_epoch(Some(100_000))
        .build()
        .unwrap();
    let t = Instant::now();
    {
        let mut e = loader.epoch(0);
        e.next().unwrap().unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

/// `ctstream bench --json` reports the documented keys with sane values.
#[test]
fn bench_reports_the_documented_keys() {
    let dir = tempdir();
    let (out, _) = make_store(dir.path(), 1);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ctstream"))
        .args(["bench", "--seconds", "0.5", "--json", "--store"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for k in [
        "patches_per_s",
        "decode_bound_patches_per_s",
        "copy_bound_patches_per_s",
        "read_amplification",
        "cache_hit_rate",
        "peak_rss_bytes",
    ] {
        assert!(j[k].is_number(), "{k} missing: {j}");
    }
    assert!(j["patches_per_s"].as_f64().unwrap() > 0.0);
    assert!((0.0..=1.0).contains(&j["cache_hit_rate"].as_f64().unwrap()));
    assert!(j["peak_rss_bytes"].as_u64().unwrap() > 0);
}

/// A mixture of negative sources draws each at its share, counted over an epoch of 2,048
/// negatives (within 4.5 binomial standard deviations: a false alarm about once in
/// 150,000 runs), the same patches for 1 and 3 workers; each source's patches are where
/// that source puts them: lung negatives centred on a voxel of the lung mask, body
/// negatives on a voxel of at least -300 HU, dense negatives on a voxel of at least -300 HU
/// with a lung voxel within 10 voxels along each axis (10 mm at the store's 1 mm; all read
/// from the stored volumes, not from the loader), candidate negatives on a class-0
/// candidate.
#[test]
fn a_negative_mixture_draws_each_source_at_its_share() {
    use ctstream::loader::{NegativeSource, Negatives};
    use ctstream::store::Region;
    let dir = tempdir();
    let (out, _) = make_store(dir.path(), 3);
    let store = Store::open(&out).unwrap();
    let cands =
        ctstream::store::index::read_candidates(&out.join("index/candidates.parquet")).unwrap();
    let mix: Negatives = "lungs=0.3,body=0.2,dense=0.2,candidates=0.2,random=0.1".parse().unwrap();
    let p = [16usize, 32, 32];
    let build = |workers: usize| {
        Loader::builder(&store)
            .positive_share(0.0)
            .negatives(mix)
            .patch(p)
            .jitter([0, 0, 0])
            .batch_size(64)
            .batches_per_epoch(Some(32))
            .workers(workers)
            .seed(11)
            .build()
            .unwrap()
    };
    let metas = |l: &Loader| -> Vec<ctstream::loader::PatchMeta> {
        l.epoch(0).flat_map(|b| b.unwrap().patches).collect()
    };
    let patches = metas(&build(3));
    assert_eq!(patches, metas(&build(1)), "the same patches for 1 and 3 workers");
    let n = patches.len() as f64;
    assert_eq!(n, 2048.0);
    let voxel = |id: &str, label: Option<&str>, zyx: [i64; 3]| -> i16 {
        let r = Region { start_zyx: zyx, shape_zyx: [1, 1, 1] };
        match label {
            None => store.volume(id).unwrap().read_region(r).unwrap()[[0, 0, 0]],
            Some(l) => {
                store.label(id, l).unwrap().read_region_as::<u8>(r).unwrap()[[0, 0, 0]] as i16
            }
        }
    };
    for (source, share) in mix.normalised() {
        let drawn: Vec<_> = patches.iter().filter(|m| m.negative_source == Some(source)).collect();
        let k = drawn.len() as f64;
        let sd = (n * share * (1.0 - share)).sqrt();
        assert!((k - n * share).abs() <= 4.5 * sd, "{source}: {k} of {n}, share {share}");
        for m in drawn {
            assert!(!m.positive && m.nodule_id.is_none());
            let c: [i64; 3] = std::array::from_fn(|a| m.start_zyx[a] + (p[a] / 2) as i64);
            match source {
                NegativeSource::Lungs => {
                    assert_ne!(voxel(&m.series_id, Some("lungs"), c), 0, "lung negative at {c:?}")
                }
                NegativeSource::Body => {
                    assert!(voxel(&m.series_id, None, c) >= -300, "body negative at {c:?}")
                }
                NegativeSource::Dense => {
                    assert!(voxel(&m.series_id, None, c) >= -300, "dense negative at {c:?}");
                    let near = Region { start_zyx: c.map(|v| v - 10), shape_zyx: [21; 3] };
                    let lungs = store.label(&m.series_id, "lungs").unwrap();
                    let lungs = lungs.read_region_as::<u8>(near).unwrap();
                    assert!(
                        lungs.iter().any(|&v| v != 0),
                        "dense negative at {c:?}, far from the lungs"
                    );
                }
                NegativeSource::Candidates => assert!(
                    cands.iter().any(|x| x.class == 0
                        && x.series_id == m.series_id
                        && (0..3).all(|a| x.voxel_zyx[a].round() as i64 == c[a])),
                    "candidate negative at {c:?}"
                ),
                _ => {}
            }
        }
    }
    assert!(patches.iter().all(|m| m.negative_source.is_some()));
}

/// Hard negatives from a findings file land on the findings (jitter 0: the patch centre is
/// the finding's voxel, rounded), never on a finding that hits an annotated nodule, and a
/// file with nothing usable is refused, naming it.
#[test]
fn hard_negatives_land_on_the_findings_that_miss_every_nodule() {
    use ctstream::loader::NegativeSource;
    let dir = tempdir();
    let (out, data) = make_store(dir.path(), 2);
    let store = Store::open(&out).unwrap();
    let truth = annotations::read_annotations(&data.join("annotations.csv")).unwrap();
    let id = store.series_ids().next().unwrap().to_string();
    let g = store.volume(&id).unwrap().geometry();
    let shape = store.volume(&id).unwrap().shape_zyx();
    // Three findings away from the nodules, at voxel centres; one on a nodule's centre.
    let away: Vec<[f64; 3]> = vec![
        [10.0, 20.0, 30.0],
        [(shape[0] / 2) as f64, 5.0, 7.0],
        [(shape[0] - 3) as f64, (shape[1] - 4) as f64, (shape[2] - 5) as f64],
    ];
    let nodule = truth.iter().find(|a| a.series_id == id).unwrap();
    let mut csv = "seriesuid,coordX,coordY,coordZ,probability\n".to_string();
    for zyx in &away {
        let w = g.index_to_world(*zyx);
        csv += &format!("{id},{},{},{},0.9\n", w[0], w[1], w[2]);
    }
    let n = nodule.world_xyz;
    csv += &format!("{id},{},{},{},0.99\n", n[0], n[1], n[2]);
    csv += &format!("not.in.this.store,{},{},{},0.5\n", n[0], n[1], n[2]);
    let findings = dir.path().join("findings.csv");
    std::fs::write(&findings, csv).unwrap();
    let p = [16usize, 32, 32];
    let loader = Loader::builder(&store)
        .positive_share(0.0)
        .negatives(NegativeSource::Hard.into())
        .hard_negatives(Some(findings.clone()))
        .patch(p)
        .jitter([0, 0, 0])
        .batch_size(16)
        .batches_per_epoch(Some(4))
        .build()
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for m in loader.epoch(0).flat_map(|b| b.unwrap().patches) {
        assert_eq!((m.negative_source, m.series_id.as_str()), (Some(NegativeSource::Hard), &*id));
        let c: [f64; 3] = std::array::from_fn(|a| (m.start_zyx[a] + (p[a] / 2) as i64) as f64);
        let k = away.iter().position(|f| *f == c);
        assert!(
            k.is_some(),
            "hard negative centred at {c:?}, not on a finding that misses the nodules"
        );
        seen.insert(k);
    }
    assert_eq!(seen.len(), 3, "every usable finding drawn in 64 patches");
    // Only the finding on the nodule: nothing to draw.
    let on_nodule = dir.path().join("on_nodule.csv");
    std::fs::write(
        &on_nodule,
        format!(
            "seriesuid,coordX,coordY,coordZ,probability\n{id},{},{},{},0.99\n",
            n[0], n[1], n[2]
        ),
    )
    .unwrap();
    let err = Loader::builder(&store)
        .positive_share(0.5)
        .negatives(NegativeSource::Hard.into())
        .hard_negatives(Some(on_nodule.clone()))
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("on_nodule.csv") && err.contains("no hard negatives"), "{err}");
    // `hard` without a file, and a file without `hard`, are refused.
    let err = Loader::builder(&store).negatives(NegativeSource::Hard.into()).build().unwrap_err();
    assert!(err.to_string().contains("findings file"), "{err}");
    let err = Loader::builder(&store).hard_negatives(Some(findings)).build().unwrap_err();
    assert!(err.to_string().contains("hard_negatives"), "{err}");
}

/// Hard negatives sit on class-0 candidates (within the jitter); size weighting draws
/// large nodules more often than uniform weighting does.
#[test]
fn candidate_negatives_and_size_weighting() {
    use ctstream::loader::{NegativeSource, NoduleWeighting};
    let dir = tempdir();
    let (out, _) = make_store(dir.path(), 3);
    let store = Store::open(&out).unwrap();
    let cands =
        ctstream::store::index::read_candidates(&out.join("index/candidates.parquet")).unwrap();
    let loader = Loader::builder(&store)
        .positive_share(0.0)
        .negatives(NegativeSource::Candidates.into())
        .jitter([2, 2, 2])
        .batch_size(16)
        .batches_per_epoch(Some(3))
        .build()
        .unwrap();
    for b in loader.epoch(0) {
        for p in b.unwrap().patches {
            assert!(!p.positive);
            let near = cands.iter().any(|c| {
                c.class == 0
                    && c.series_id == p.series_id
                    && (0..3).all(|a| {
                        ((c.voxel_zyx[a].round() as i64 - p.start_zyx[a]) - [16, 32, 32][a]).abs()
                            <= 2
                    })
            });
            assert!(near, "negative at {:?} is not on a class-0 candidate", p.start_zyx);
        }
    }
    // Mean diameter of the drawn nodules: larger under size weighting.
    let nodules = ctstream::store::index::read_nodules(&out.join("index/nodules.parquet")).unwrap();
    let mean_d = |w: NoduleWeighting| {
        let l = Loader::builder(&store)
            .positive_share(1.0)
            .weighting(w)
            .batch_size(32)
            .batches_per_epoch(Some(8))
            .seed(1)
            .build()
            .unwrap();
        let ds: Vec<f64> = l
            .epoch(0)
            .flat_map(|b| b.unwrap().patches)
            .map(|p| {
                nodules
                    .iter()
                    .find(|n| {
                        n.series_id == p.series_id
                            && Some(n.nodule_id) == p.nodule_id
                            && n.source == "annotations"
                    })
                    .unwrap()
                    .diameter_mm
                    .unwrap()
            })
            .collect();
        ds.iter().sum::<f64>() / ds.len() as f64
    };
    let (uniform, weighted) = (mean_d(NoduleWeighting::Uniform), mean_d(NoduleWeighting::Diameter));
    assert!(weighted > uniform, "size-weighted mean diameter {weighted} <= uniform {uniform}");
}

/// With spatial and intensity augmentation on (the nnU-Net preset, rotation, scaling and
/// elastic deformation drawn often), batch k of epoch e is still a function of (seed, e, k):
/// the same with 1, 2 or 3 workers, and a range resumed mid-epoch equals the tail of the
/// whole epoch. The drawn parameters can be read back from each patch.
#[test]
fn augmented_batches_are_identical_across_worker_counts_and_resume() {
    let dir = tempdir();
    let (out, _) = make_store(dir.path(), 2);
    let store = Store::open(&out).unwrap();
    let aug = Augment::parse("nnunet,rotation:p=0.7,scaling:p=0.5,elastic:p=0.3:magnitude=1..3", P)
        .unwrap();
    let build = |workers: usize| {
        Loader::builder(&store)
            .batch_size(4)
            .workers(workers)
            .augment(aug.clone())
            .seed(21)
            .batches_per_epoch(Some(6))
            .build()
            .unwrap()
    };
    let one = collect(&build(1), 3);
    assert_eq!(one, collect(&build(2), 3));
    assert_eq!(one, collect(&build(3), 3));
    assert_eq!(one, collect_recycling(&build(2), 3), "in recycled buffers");
    let tail: Vec<Batch> = build(2).batches(3, 2, 4).unwrap().map(|b| b.unwrap()).collect();
    assert_eq!(tail, one[2..].to_vec());
    let patches: Vec<_> = one.iter().flat_map(|b| &b.patches).collect();
    let spatial = patches.iter().filter(|p| p.augment.spatial.is_some()).count();
    let elastic =
        patches.iter().filter(|p| p.augment.spatial.is_some_and(|s| s.elastic.is_some())).count();
    let stages = patches.iter().map(|p| p.augment.intensity.len()).sum::<usize>();
    println!(
        "{} patches: {spatial} moved, {elastic} deformed, {stages} intensity stages",
        patches.len()
    );
    assert!(spatial > 0 && elastic > 0 && stages > 0, "the transforms are drawn and readable");
    // Every value is finite (no NaN from a transform).
    assert!(one.iter().all(|b| b.images.iter().all(|v| v.is_finite())));
}

/// Rotation and scaling turn the patch about its centre, so a positive patch (no jitter)
/// still has its nodule at the centre. Its centre lies within 0.87 voxel of the patch's
/// centre point before the transform and within 0.87 / 0.7 = 1.24 voxels after (the
/// smallest scale is 0.7), so some mask voxel lies within 1.24 + 0.87 (half a voxel's
/// diagonal, nearest neighbour) < 2.5 voxels of the centre point. Masks stay binary.
#[test]
fn spatial_transforms_keep_positives_on_their_nodule() {
    let dir = tempdir();
    let (out, _) = make_store(dir.path(), 2);
    let store = Store::open(&out).unwrap();
    let aug =
        Augment::parse("rotation:p=1:deg=45,scaling:p=1:range=0.7..1.4:per_axis=true", P).unwrap();
    let loader = Loader::builder(&store)
        .batch_size(8)
        .positive_share(1.0)
        .jitter([0, 0, 0])
        .augment(aug)
        .seed(4)
        .batches_per_epoch(Some(3))
        .build()
        .unwrap();
    let c = [15.5f64, 31.5, 31.5];
    let mut checked = 0;
    for b in collect(&loader, 0) {
        assert!(b.masks.iter().all(|&v| v == 0.0 || v == 1.0));
        for (i, p) in b.patches.iter().enumerate() {
            assert!(p.positive && p.augment.spatial.is_some());
            let mut nearest = f64::INFINITY;
            for z in 0..32 {
                for y in 0..64 {
                    for x in 0..64 {
                        if b.masks[i * N + (z * 64 + y) * 64 + x] == 1.0 {
                            let d = [z as f64 - c[0], y as f64 - c[1], x as f64 - c[2]];
                            nearest = nearest.min((d[0] * d[0] + d[1] * d[1] + d[2] * d[2]).sqrt());
                        }
                    }
                }
            }
            assert!(
                nearest < 2.5,
                "{} at {:?}: nearest mask voxel {nearest} from the centre",
                p.series_id,
                p.start_zyx
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 24);
}

/// A rotated or scaled patch reads only the chunks its footprint meets, and is what it
/// would be from its whole region: each image equals `SourceMap::sample` of the region
/// read in full from the store (every chunk decoded), windowed as the loader windows, bit
/// for bit. Some chunks of the regions are skipped (so the comparison is of a patch built
/// without them).
#[test]
fn moved_patches_equal_the_sample_of_their_whole_region() {
    use ctstream::loader::augment::footprint::Footprint;
    use ctstream::loader::augment::sample::SourceMap;
    let dir = tempdir();
    let (out, _) = make_store(dir.path(), 2);
    let store = Store::open(&out).unwrap();
    let aug = Augment::parse("rotation:p=1,scaling:p=1:range=0.7..1.4", P).unwrap();
    let loader = Loader::builder(&store)
        .batch_size(4)
        .positive_share(0.5)
        .augment(aug)
        .seed(12)
        .batches_per_epoch(Some(3))
        .build()
        .unwrap();
    let [lo, hi] = loader.config().hu_window;
    let inv = 1.0 / (hi - lo);
    let (mut skipped, mut checked) = (0, 0);
    for b in collect(&loader, 0) {
        for (i, p) in b.patches.iter().enumerate() {
            let sp = p.augment.spatial.as_ref().expect("p = 1");
            let map = SourceMap::new(sp, P);
            let r = map.region(p.start_zyx);
            let hu = store.read_region(&p.series_id, r).unwrap();
            let zeros = vec![0u8; hu.len()];
            let (img, _) = map.sample(p.start_zyx, r, hu.as_slice().unwrap(), &zeros);
            let want: Vec<f32> = img.iter().map(|&v| ((v - lo) * inv).clamp(0.0, 1.0)).collect();
            assert!(
                b.images[i * N..(i + 1) * N] == want[..],
                "{} at {:?}",
                p.series_id,
                p.start_zyx
            );
            let volume = store.volume(&p.series_id).unwrap();
            let f = Footprint::new(sp, P, p.start_zyx).expect("linear, no field");
            let c = volume.header().chunk_shape_zyx.map(|v| v as i64);
            skipped += volume
                .chunks_touched(r)
                .iter()
                .filter(|k| {
                    !f.reads(
                        std::array::from_fn(|a| k[a] as i64 * c[a]),
                        std::array::from_fn(|a| (k[a] as i64 + 1) * c[a]),
                    )
                })
                .count();
            checked += 1;
        }
    }
    assert_eq!(checked, 12);
    assert!(skipped > 0, "no chunk of the regions was skipped");
    eprintln!("{checked} moved patches, {skipped} chunks of their regions skipped");
}

/// Adds a value drawn from its generator to every image voxel, and records the patch's
/// start in the mask's first voxel (a transform that shows what it was given).
#[derive(Debug)]
struct AddDrawn;

impl Transform for AddDrawn {
    fn name(&self) -> &str {
        "add-drawn"
    }
    fn apply(
        &self,
        mut p: PatchMut<'_>,
        rng: &mut dyn rand::RngCore,
    ) -> Result<(), TransformError> {
        let v: f32 = rand::Rng::random(rng);
        p.image.mapv_inplace(|x| x + v);
        p.mask[[0, 0, 0]] = p.start_zyx[2] as f32;
        Ok(())
    }
}

/// Doubles the image; fails on a patch whose series id is the one it is told.
#[derive(Debug)]
struct Double(Option<String>);

impl Transform for Double {
    fn name(&self) -> &str {
        "double"
    }
    fn apply(&self, mut p: PatchMut<'_>, _: &mut dyn rand::RngCore) -> Result<(), TransformError> {
        if self.0.as_deref() == Some(p.series_id) {
            return Err(format!("refusing {}", p.series_id).into());
        }
        p.image.mapv_inplace(|x| x * 2.0);
        Ok(())
    }
}

/// A user's transforms run after the built-in augmentations, in the order registered, each
/// with the generator of (seed, epoch, batch, item, 2, its position) (ctstream::seed, the
/// purpose tag 2 of sampler.rs): every image voxel is (built + v) * 2 with v that
/// generator's first f32, computed here independently of the loader. Batches stay the same
/// across worker counts and on resume, and a failing transform is an error naming it.
#[test]
fn user_transforms_chain_after_the_built_in_ones_deterministically() {
    let dir = tempdir();
    let (out, _) = make_store(dir.path(), 2);
    let store = Store::open(&out).unwrap();
    let aug = Augment::parse("nnunet,rotation:p=0.5", P).unwrap();
    let base = |workers: usize| {
        Loader::builder(&store)
            .batch_size(4)
            .workers(workers)
            .augment(aug.clone())
            .seed(5)
            .batches_per_epoch(Some(4))
    };
    let plain = collect(&base(2).build().unwrap(), 1);
    let with =
        |workers: usize| base(workers).transform(AddDrawn).transform(Double(None)).build().unwrap();
    let chained = collect(&with(1), 1);
    assert_eq!(chained, collect(&with(3), 1));
    let tail: Vec<Batch> = with(2).batches(1, 2, 2).unwrap().map(|b| b.unwrap()).collect();
    assert_eq!(tail, chained[2..].to_vec());
    for (p, c) in plain.iter().zip(&chained) {
        assert_eq!(p.patches, c.patches, "the built-in draws do not change");
        for item in 0..4 {
            let mut rng = ctstream::seed::rng(&[5, 1, p.index as u64, item as u64, 2, 0]);
            let v: f32 = rand::Rng::random(&mut rng);
            let s = item * N..(item + 1) * N;
            for (a, b) in p.images[s.clone()].iter().zip(&c.images[s.clone()]) {
                assert_eq!((a + v) * 2.0, *b);
            }
            assert_eq!(c.masks[s.start], p.patches[item].start_zyx[2] as f32);
            assert_eq!(c.masks[s.start + 1..s.end], p.masks[s.start + 1..s.end]);
        }
    }
    let victim = plain[0].patches[0].series_id.clone();
    let failing = base(2).transform(Double(Some(victim.clone()))).build().unwrap();
    let err = failing.epoch(1).find_map(|b| b.err()).expect("the transform's error comes out");
    let text = ctstream::message::causes_once(ctstream::message::chain(&err));
    assert!(
        text.contains("transform `double` failed") && text.contains(&format!("refusing {victim}")),
        "{text}"
    );
}

#[test]
fn a_stream_of_epochs_is_the_epochs_one_after_the_other() {
    let dir = tempdir();
    let (out, _) = make_store(dir.path(), 2);
    let store = Store::open(&out).unwrap();
    let loader = Loader::builder(&store)
        .patch([16, 32, 32])
        .batch_size(2)
        .workers(3)
        .seed(9)
        .batches_per_epoch(Some(3))
        .augment(Augment::parse("flip", [16, 32, 32]).unwrap())
        .build()
        .unwrap();
    // From batch 1 of epoch 4: 4/1, 4/2, 5/0, 5/1, 5/2, 6/0, 6/1.
    let mut want: Vec<Batch> = loader.batches(4, 1, 2).unwrap().map(Result::unwrap).collect();
    want.extend(loader.epoch(5).map(Result::unwrap));
    want.extend(loader.batches(6, 0, 2).unwrap().map(Result::unwrap));
    let mut stream = loader.epochs(4, 1).unwrap();
    let got: Vec<Batch> = stream.by_ref().take(want.len()).map(Result::unwrap).collect();
    let at: Vec<_> = got.iter().map(|b| (b.epoch, b.index)).collect();
    assert_eq!(at, [(4, 1), (4, 2), (5, 0), (5, 1), (5, 2), (6, 0), (6, 1)]);
    assert_eq!(got, want);
    // It goes on: position 7 from the start of epoch 4 is batch 1 of epoch 6 + 1.
    assert_eq!(stream.next_index(), 8);
    assert_eq!(stream.next().unwrap().unwrap().index, 2);
    drop(stream);
    let e = loader.epochs(0, 3).unwrap_err().to_string();
    assert!(e.contains("batches 0..3"), "{e}");
}
