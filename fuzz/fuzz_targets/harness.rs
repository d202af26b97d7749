//! What each fuzz target does with its input, as plain functions: the targets call them,
//! and `tests/fuzz_regressions.rs` replays every saved finding through them, so a fixed
//! crash stays fixed in the normal `cargo test`. Each returns nothing: an `Err` from
//! ctstream is a fine answer; a panic, hang or runaway allocation is a finding.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A scratch folder for this process, created once.
pub fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("ctstream-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("scratch folder");
    d
}

/// The MetaImage header parser on arbitrary bytes.
pub fn metaimage_header(data: &[u8]) {
    let _ = ctstream::io::metaimage::parse_header("fuzz.mhd".as_ref(), data);
}

/// A whole MetaImage read: the input is split at the first 0xFF 0x00 0xFF into the
/// header file (`scan.mha`, possibly with LOCAL data) and `data.raw`.
pub fn metaimage_read(dir: &Path, data: &[u8]) {
    let split = data.windows(3).position(|w| w == [0xFF, 0x00, 0xFF]);
    let (head, raw) = match split {
        Some(i) => (&data[..i], &data[i + 3..]),
        None => (data, &[][..]),
    };
    let _ = std::fs::write(dir.join("data.raw"), raw);
    let p = dir.join("scan.mha");
    if std::fs::write(&p, head).is_ok() {
        let _ = ctstream::io::metaimage::read(&p);
    }
}

/// The four LUNA16 CSV readers on the same bytes.
pub fn csv_readers(dir: &Path, data: &[u8]) {
    let p = dir.join("rows.csv");
    if std::fs::write(&p, data).is_ok() {
        let _ = ctstream::annotations::read_annotations(&p);
        let _ = ctstream::annotations::read_excluded(&p);
        let _ = ctstream::annotations::read_candidates(&p);
        let _ = ctstream::annotations::read_predictions(&p);
    }
}

/// A store volume file from arbitrary bytes: opened, two regions read, and all of it
/// when it is small.
pub fn volume_file(dir: &Path, data: &[u8]) {
    let p = dir.join("scan.ctv");
    if std::fs::write(&p, data).is_ok() {
        read_volume(&p);
    }
}

fn read_volume(p: &Path) {
    let Ok(v) = ctstream::store::VolumeFile::open(p) else { return };
    let [z, y, x] = v.shape_zyx();
    let _ = v.read_region(ctstream::store::Region::new([-2, -2, -2], [3, 5, 7]));
    let (cz, cy, cx) = (z as i64 / 2, y as i64 / 2, x as i64 / 2);
    let _ = v.read_region(ctstream::store::Region::new([cz, cy, cx], [cz + 4, cy + 8, cx + 8]));
    if z.saturating_mul(y).saturating_mul(x) <= 1 << 22 {
        let _ = v.read_all();
    }
}

/// A valid 40x48x56 volume file written by the store's own writer.
fn valid_volume(dir: &Path) -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| {
        let hu = ndarray::Array3::from_shape_fn((40, 48, 56), |(z, y, x)| {
            ((z * 7 + y * 3 + x) % 300) as i16 - 1000
        });
        let g = ctstream::geometry::Geometry {
            origin_xyz: [-10.0, 5.0, 2.5],
            spacing_xyz: [1.0, 1.0, 1.0],
            direction: ctstream::geometry::IDENTITY,
        };
        let p = dir.join("valid.ctv");
        let opts = ctstream::store::writer::ChunkOptions {
            chunk_shape_zyx: [16, 32, 32],
            level: 1,
            fill_value: -1024,
        };
        ctstream::store::writer::write_volume(&p, &hu, &g, &opts)
            .expect("writing the valid volume");
        std::fs::read(&p).expect("reading it back")
    })
}

/// Region reads on a valid volume file changed by the input, a list of (offset u16 LE,
/// value u8) edits; for inputs of odd length the header and table CRCs are recomputed
/// afterwards, so the edits reach the checks of meaning behind the checksums.
pub fn volume_mutated(dir: &Path, data: &[u8]) {
    let mut bytes = valid_volume(dir).to_vec();
    for e in data.chunks_exact(3) {
        let off = u16::from_le_bytes([e[0], e[1]]) as usize % bytes.len();
        bytes[off] = e[2];
    }
    if data.len() % 2 == 1 {
        reseal(&mut bytes);
    }
    let p = dir.join("mutated.ctv");
    if std::fs::write(&p, &bytes).is_ok() {
        read_volume(&p);
    }
}

/// Recomputes the header CRC and, if the table it declares fits, the table CRC.
fn reseal(b: &mut [u8]) {
    let crc = crc32fast::hash(&b[0..252]);
    b[252..256].copy_from_slice(&crc.to_le_bytes());
    let n = u32::from_le_bytes([b[168], b[169], b[170], b[171]]) as usize;
    let end = 256usize.saturating_add(n.saturating_mul(16));
    if end.saturating_add(4) <= b.len() {
        let crc = crc32fast::hash(&b[256..end]);
        b[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// The separator of files in a `dicom_series` input.
pub const SPLIT: &[u8] = b"\xFFSPLIT\xFF";

/// DICOM discovery and series assembly on a folder of up to four files cut from the
/// input at each [`SPLIT`].
pub fn dicom_series(dir: &Path, data: &[u8]) {
    let folder = dir.join("series");
    let _ = std::fs::remove_dir_all(&folder);
    if std::fs::create_dir_all(&folder).is_err() {
        return;
    }
    let mut rest = data;
    for k in 0..4 {
        let cut = rest.windows(SPLIT.len()).position(|w| w == SPLIT);
        let (file, next) = match cut {
            Some(i) if k < 3 => (&rest[..i], &rest[i + SPLIT.len()..]),
            _ => (rest, &[][..]),
        };
        let _ = std::fs::write(folder.join(format!("{k}.dcm")), file);
        rest = next;
        if rest.is_empty() {
            break;
        }
    }
    let _ = ctstream::io::discover(&folder, &());
    let _ = ctstream::io::read_scan(&folder, &ctstream::io::dicom::DicomOptions::default(), &());
}

/// The most voxels a resampled grid may have in the ingest targets (64 MiB of int16; the
/// fuzzer's malloc limit is 1 GiB), so that large but valid grids are refused by the
/// ingest's own limit rather than counted as findings.
const INGEST_MAX_VOXELS: u64 = 1 << 25;

/// Whole-scan ingest of one scan file in a fresh input folder into a fresh store, as
/// `ctstream ingest` runs it (resampling to 1 mm, chunking, writing, indexing). Then the
/// store must open and verify in full: whatever the input, what is stored is sound. A
/// scan that failed with an internal error (a caught panic) is a finding.
fn ingest_files(dir: &Path, files: &[(&str, &[u8])]) {
    let input = dir.join("in");
    let out = dir.join("store");
    let _ = std::fs::remove_dir_all(&input);
    let _ = std::fs::remove_dir_all(&out);
    if std::fs::create_dir_all(&input).is_err() {
        return;
    }
    for (name, bytes) in files {
        if std::fs::write(input.join(name), bytes).is_err() {
            return;
        }
    }
    let mut cfg = ctstream::ingest::IngestConfig::new(vec![input], out.clone());
    cfg.jobs = 1;
    cfg.max_voxels = INGEST_MAX_VOXELS;
    let Ok(summary) = ctstream::ingest::ingest(&cfg, &()) else { return };
    for f in &summary.failed {
        assert!(!f.reason.contains("internal error"), "{}: {}", f.source, f.reason);
    }
    let report = ctstream::verify::verify(&out, &()).expect("a store ingest made opens");
    assert!(report.is_ok(), "a store ingest made does not verify: {:?}", report.problems);
    assert_eq!(report.scans_ok.len(), summary.stored.len(), "stored scans that do not verify");
}

/// Ingest of a mutated MetaImage: split as [`metaimage_read`] into `scan.mha` and
/// `data.raw`.
pub fn ingest_metaimage(dir: &Path, data: &[u8]) {
    let split = data.windows(3).position(|w| w == [0xFF, 0x00, 0xFF]);
    let (head, raw) = match split {
        Some(i) => (&data[..i], &data[i + 3..]),
        None => (data, &[][..]),
    };
    ingest_files(dir, &[("scan.mha", head), ("data.raw", raw)]);
}

/// Ingest of a mutated NIfTI file (`scan.nii`, gzipped or not by its first bytes).
pub fn ingest_nifti(dir: &Path, data: &[u8]) {
    ingest_files(dir, &[("scan.nii", data)]);
}

/// A small store (2 synthetic scans), made once per process, for the loader target.
fn loader_store() -> &'static Path {
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = scratch().join("loader-store");
        let data = dir.join("data");
        let out = dir.join("store");
        if !out.join("manifest.json").exists() {
            let cfg = ctstream::synth::SynthConfig {
                small: true,
                ..ctstream::synth::SynthConfig::new(2, 1)
            };
            ctstream::synth::generate(&data, &cfg, &()).expect("synthetic data");
            let mut ic = ctstream::ingest::IngestConfig::new(vec![data.clone()], out.clone());
            ic.annotations = Some(data.join("annotations.csv"));
            ic.jobs = 1;
            ctstream::ingest::ingest(&ic, &()).expect("the loader target's store");
        }
        out
    })
}

/// The most bytes of batches a configuration may hold for the target to build a batch
/// with it (the regressions' allocator refuses 256 MiB at once; larger configurations
/// the library accepts are checked by their arithmetic only).
const LOADER_BUILD_BYTES: u128 = 32 << 20;

/// A loader configuration as JSON (what `train` records, and what a user's config file
/// holds): validation must refuse, or accept only what fits the library's limits; an
/// accepted configuration small enough to build here builds a loader on a small store
/// and delivers its first batch, without a panic or a runaway allocation.
pub fn loader_config(_dir: &Path, data: &[u8]) {
    use ctstream::loader::{LoaderConfig, MAX_BATCH_BYTES, MAX_IN_FLIGHT_BYTES};
    let Ok(cfg) = serde_json::from_slice::<LoaderConfig>(data) else { return };
    if cfg.validate().is_err() {
        return;
    }
    let voxels: u128 = cfg.patch_zyx.iter().map(|&s| s as u128).product();
    let batch = voxels * cfg.batch_size as u128 * 8;
    assert!(batch <= u128::from(MAX_BATCH_BYTES), "accepted a batch of {batch} bytes");
    let held = (cfg.prefetch + cfg.workers + 1) as u128 * batch;
    assert!(held <= u128::from(MAX_IN_FLIGHT_BYTES), "accepted {held} bytes in flight");
    if held > LOADER_BUILD_BYTES || cfg.workers > 8 || cfg.hard_negatives.is_some() {
        return;
    }
    let Ok(store) = ctstream::store::Store::open(loader_store()) else {
        panic!("the loader target's store does not open")
    };
    let cfg = LoaderConfig { fetchers: 0, ..cfg };
    if let Ok(loader) = ctstream::loader::Loader::builder(&store).config(cfg).build() {
        let _ = loader.epoch(0).next();
    }
}
