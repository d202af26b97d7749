//! Chooses the store's default chunk shape by measurement: random 32x64x64 (z, y, x)
//! patch reads from one full-size synthetic scan resampled to 1 mm, for several chunk
//! shapes. Prints a markdown table (format/CHUNKS.md holds a copy):
//!
//! - read amplification: voxels decoded / voxels requested, mean over the patches;
//! - patch read time: mean wall time of `read_region` (single thread, page cache warm);
//! - ratio: int16 bytes / file bytes; write: time to chunk + compress + write the file.
//!
//! `cargo bench --bench chunk_shape`

use std::time::Instant;

use ctstream::resample;
use ctstream::store::writer::{ChunkOptions, write_volume};
use ctstream::store::{Region, VolumeFile};
use ctstream::synth;
use rand::{Rng, SeedableRng};

fn main() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let scan = synth::synth_scan(3, 0, false);
    let (hu, g) = resample::resample_linear(&scan.hu, &scan.geometry, [1.0; 3], [-1024, 3071])
        .expect("resample");
    let shape = hu.shape().to_vec();
    println!(
        "volume {shape:?} (z, y, x) at 1 mm, {} MB as int16; 400 random 32x64x64 patches",
        hu.len() * 2 / 1_000_000
    );
    println!();
    println!(
        "| chunk (z, y, x) | read amplification | patch read (ms) | patches/s | ratio | write (s) |"
    );
    println!("|---|---|---|---|---|---|");
    for chunk in [[16, 32, 32], [32, 32, 32], [16, 64, 64], [32, 64, 64], [64, 64, 64]] {
        let p = dir.path().join(format!("{}x{}x{}.ctv", chunk[0], chunk[1], chunk[2]));
        let t = Instant::now();
        let bytes = write_volume(
            &p,
            &hu,
            &g,
            &ChunkOptions { chunk_shape_zyx: chunk, level: 3, fill_value: -1024 },
        )
        .expect("write");
        let write_s = t.elapsed().as_secs_f64();
        let v = VolumeFile::open(&p).expect("open");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let patches: Vec<[i64; 3]> = (0..400)
            .map(|_| {
                [
                    rng.random_range(0..shape[0] as i64 - 32),
                    rng.random_range(0..shape[1] as i64 - 64),
                    rng.random_range(0..shape[2] as i64 - 64),
                ]
            })
            .collect();
        let mut decoded = 0usize;
        for s in &patches {
            let chunks: usize = (0..3)
                .map(|a| {
                    let len = [32, 64, 64][a];
                    let first = s[a] as usize / chunk[a];
                    let last = (s[a] as usize + len - 1) / chunk[a];
                    last - first + 1
                })
                .product();
            decoded += chunks * chunk.iter().product::<usize>();
        }
        let t = Instant::now();
        for s in &patches {
            std::hint::black_box(
                v.read_region(Region::new(*s, [s[0] + 32, s[1] + 64, s[2] + 64])).expect("read"),
            );
        }
        let per = t.elapsed().as_secs_f64() / patches.len() as f64;
        println!(
            "| {}x{}x{} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} |",
            chunk[0],
            chunk[1],
            chunk[2],
            decoded as f64 / (patches.len() * 32 * 64 * 64) as f64,
            per * 1e3,
            1.0 / per,
            (hu.len() * 2) as f64 / bytes as f64,
            write_s
        );
    }
}
