//! Reader throughput on a full-size synthetic LUNA-like scan (512 x 512 x ~150 slices):
//! MetaImage (raw and zlib) and DICOM series (header scan + ordering + parallel decode),
//! reported as MB/s of int16 HU produced. The bound to compare against is `memcpy` of
//! the same bytes, measured in the same run.
//!
//! `cargo bench --bench readers`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ctstream::io::{self, dicom::DicomOptions, metaimage};
use ctstream::synth;

fn readers(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let scan = synth::synth_scan(1, 0, false);
    let bytes = (scan.hu.len() * 2) as u64;
    let raw = dir.path().join("scan.mhd");
    let zraw = dir.path().join("scanz.mha");
    metaimage::write(&raw, &scan.hu, &scan.geometry, metaimage::WriteOptions { compress: false })
        .expect("write .mhd");
    metaimage::write(&zraw, &scan.hu, &scan.geometry, metaimage::WriteOptions { compress: true })
        .expect("write .mha");
    let dcm = dir.path().join("dicom");
    synth::write_dicom_series(&dcm, &scan).expect("write DICOM");

    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Bytes(bytes));
    g.sample_size(10);
    let src: Vec<i16> = scan.hu.iter().copied().collect();
    g.bench_function("memcpy (bound)", |b| b.iter(|| black_box(src.clone())));
    g.bench_function("metaimage raw", |b| {
        b.iter(|| black_box(metaimage::read(&raw).expect("read")))
    });
    g.bench_function("metaimage zlib", |b| {
        b.iter(|| black_box(metaimage::read(&zraw).expect("read")))
    });
    g.bench_function("dicom series", |b| {
        b.iter(|| black_box(io::read_scan(&dcm, &DicomOptions::default(), &()).expect("read")))
    });
    g.finish();
}

criterion_group!(benches, readers);
criterion_main!(benches);
