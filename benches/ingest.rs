//! Ingest throughput in input MB/s, beside the throughput of merely reading the same
//! inputs (the bound), measured in one run on full-size synthetic LUNA-like scans
//! (512 x 512 x 130-480 slices, int16 MetaImage), at the default settings (1 mm,
//! 16x32x32 chunks, zstd 3) with one job per CPU; once with the lung mask (the default)
//! and once without (`--no-lung-mask`), to show what the mask costs.
//!
//! `cargo bench --bench ingest` (CTSTREAM_BENCH_SCANS sets the number of scans; default 6)

use ctstream::ingest::{self, IngestConfig};
use ctstream::synth::{self, SynthConfig};

fn main() {
    let n: usize =
        std::env::var("CTSTREAM_BENCH_SCANS").ok().and_then(|v| v.parse().ok()).unwrap_or(6);
    let dir = tempfile::tempdir().expect("temporary folder");
    let data = dir.path().join("data");
    let s = synth::generate(&data, &SynthConfig::new(n, 2024), &()).expect("synth");
    let mut cfg = IngestConfig::new(vec![data.clone()], dir.path().join("store"));
    cfg.annotations = Some(s.annotations.clone());
    // Warm the page cache the same way for both measurements.
    let _ = ingest::measure_read(&cfg, &());
    let read = ingest::measure_read(&cfg, &()).expect("read");
    let mut plain = cfg.clone();
    plain.out = dir.path().join("store-no-lungs");
    plain.lung_mask = false;
    let without = ingest::ingest(&plain, &()).expect("ingest without lung masks");
    let sum = ingest::ingest(&cfg, &()).expect("ingest");
    let ingest_mbs = sum.bytes_in as f64 / 1e6 / sum.seconds;
    let without_mbs = without.bytes_in as f64 / 1e6 / without.seconds;
    println!(
        "{} scans, {:.0} MB of MetaImage input, {} jobs",
        read.scans,
        read.bytes as f64 / 1e6,
        cfg.jobs
    );
    println!("read only               {:7.1} MB/s  ({:.2} s)", read.mb_per_s(), read.seconds);
    println!(
        "ingest, no lung mask    {:7.1} MB/s  ({:.2} s; {:.2} s per scan)",
        without_mbs,
        without.seconds,
        without.seconds / n as f64
    );
    println!(
        "ingest (with lung mask) {:7.1} MB/s  ({:.2} s; {:.2} s per scan; {:.0} MB written, ratio {:.2})",
        ingest_mbs,
        sum.seconds,
        sum.seconds / n as f64,
        sum.bytes_out as f64 / 1e6,
        sum.compression_ratio()
    );
    println!(
        "lung mask: {:.2} s per scan on one worker ({:.0} % of the worker time of an ingest with it); the run takes {:.2}x as long as without",
        sum.lung_mask_seconds / n as f64,
        100.0 * sum.lung_mask_seconds / (sum.seconds * cfg.jobs as f64),
        sum.seconds / without.seconds
    );
    println!("ingest / read-only = {:.2}", ingest_mbs / read.mb_per_s());
}
