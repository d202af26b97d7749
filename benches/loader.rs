//! The loader's pieces, one small store of synthetic scans at 1 mm: chunk decode, region
//! read (uncached), patch assembly (window + layout of a decoded patch), mask
//! rasterisation, and whole batches through the cache.
//!
//! `cargo bench --bench loader`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ctstream::ingest::{self, IngestConfig};
use ctstream::loader::patch::{rasterize, write_patch};
use ctstream::loader::{Loader, Sphere, augment::AugmentParams};
use ctstream::store::{Region, Store};
use ctstream::synth::{self, SynthConfig};

fn pieces(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let data = dir.path().join("data");
    let s = synth::generate(&data, &SynthConfig::new(2, 5), &()).expect("synth");
    let out = dir.path().join("store");
    let mut cfg = IngestConfig::new(vec![data.clone()], out.clone());
    cfg.annotations = Some(s.annotations.clone());
    ingest::ingest(&cfg, &()).expect("ingest");
    let store = Store::open(&out).expect("open");
    let id = store.series_ids().next().expect("a scan").to_string();
    let v = store.volume(&id).expect("volume");
    let shape = v.shape_zyx();
    let centre = [shape[0] as i64 / 2 - 16, shape[1] as i64 / 2 - 32, shape[2] as i64 / 2 - 32];
    let region = Region::new(centre, [centre[0] + 32, centre[1] + 64, centre[2] + 64]);
    let n = 32 * 64 * 64;

    let mut g = c.benchmark_group("loader");
    g.sample_size(20);
    g.throughput(Throughput::Bytes((16 * 32 * 32 * 2) as u64));
    g.bench_function("chunk decode (16x32x32)", |b| {
        b.iter(|| black_box(v.decode_chunk([2, 3, 3]).expect("decode")))
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function("region read 32x64x64 (uncached)", |b| {
        b.iter(|| black_box(v.read_region(region).expect("read")))
    });
    let hu = v.read_region(region).expect("read");
    let spheres = vec![Sphere {
        centre_zyx: [16.0 + centre[0] as f64, 32.0 + centre[1] as f64, 32.0 + centre[2] as f64],
        radius_zyx: [6.0, 6.0, 6.0],
    }];
    let m = rasterize(&spheres, centre, [32, 64, 64]);
    let (mut img, mut msk) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let plain = AugmentParams { hu_scale: 1.0, ..Default::default() };
    g.bench_function("patch assembly (window + mask copy)", |b| {
        b.iter(|| {
            img.clear();
            msk.clear();
            write_patch(
                hu.as_slice().expect("contiguous"),
                &m,
                &plain,
                [32, 64, 64],
                [-1000.0, 400.0],
                &mut img,
                &mut msk,
            )
        })
    });
    let flipped = AugmentParams {
        flip_zyx: [true, false, true],
        quarter_turns: 1,
        hu_scale: 1.0,
        ..Default::default()
    };
    g.bench_function("patch assembly, flipped and rotated", |b| {
        b.iter(|| {
            img.clear();
            msk.clear();
            write_patch(
                hu.as_slice().expect("contiguous"),
                &m,
                &flipped,
                [32, 64, 64],
                [-1000.0, 400.0],
                &mut img,
                &mut msk,
            )
        })
    });
    g.bench_function("mask rasterisation (one 12 mm sphere)", |b| {
        b.iter(|| black_box(rasterize(&spheres, centre, [32, 64, 64])))
    });
    let loader = Loader::builder(&store).batch_size(8).workers(1).build().expect("loader");
    g.throughput(Throughput::Elements(8));
    let mut k = 0;
    g.bench_function("batch of 8 through the cache (1 thread)", |b| {
        b.iter(|| {
            k += 1;
            black_box(loader.build_batch(0, k).expect("batch"))
        })
    });
    g.finish();
}

criterion_group!(benches, pieces);
criterion_main!(benches);
