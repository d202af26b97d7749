//! Helpers shared by the integration tests: where the fixtures are, goldens, hashes.
#![allow(dead_code)]

use std::path::PathBuf;

use ndarray::Array3;
use sha2::{Digest, Sha256};

/// The real fixtures: `$CTSTREAM_TEST_DATA`, else `../shared/data` beside the project.
pub fn data_dir() -> PathBuf {
    let dir = std::env::var_os("CTSTREAM_TEST_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    assert!(
        dir.join("README.md").is_file(),
        "test fixtures not found at {}; fetch them with `tools/fixtures.sh DIR` and set \
         CTSTREAM_TEST_DATA=DIR (or set it to a folder that holds them already)",
        dir.display()
    );
    dir
}

/// A fixture path under the data folder.
pub fn data(rel: &str) -> PathBuf {
    data_dir().join(rel)
}

/// A golden JSON file from tests/goldens/.
pub fn golden(name: &str) -> serde_json::Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/goldens")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// SHA-256 of the int16 little-endian bytes in (z, y, x) order, as the golden script computes it.
pub fn sha256_i16<'a>(values: impl IntoIterator<Item = &'a i16>) -> String {
    let mut h = Sha256::new();
    for v in values {
        h.update(v.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn sha256_volume(a: &Array3<i16>) -> String {
    sha256_i16(a.iter())
}

pub fn f64s(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol,
            "{what}[{i}]: got {g}, SimpleITK {w} (tolerance {tol})\n got  {got:?}\n want {want:?}"
        );
    }
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary folder")
}

/// What SimpleITK reads from each path (tools/goldens/sitk_digest.py).
pub fn sitk_digest(paths: &[&std::path::Path]) -> serde_json::Value {
    let args: Vec<std::ffi::OsString> = paths.iter().map(|p| p.as_os_str().to_owned()).collect();
    python_json("tools/goldens/sitk_digest.py", &args)
}

/// Runs a Python script of the project with `args` and parses its JSON output. Only the
/// tests marked `#[ignore = "needs Python ..."]` call it (tools/test.sh runs them where the
/// pinned packages are installed), so a missing module is a failure here, never a pass.
pub fn python_json(script: &str, args: &[std::ffi::OsString]) -> serde_json::Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(script);
    let out = std::process::Command::new("python3")
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("python3 (for {}): {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed (the pinned packages: python3 -m pip install -r \
         tools/goldens/requirements.txt -r tools/python/requirements.txt): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

/// Asserts that SimpleITK's digest of a file matches a volume read by ctstream.
pub fn assert_matches_sitk(
    what: &str,
    d: &serde_json::Value,
    v: &ctstream::volume::Volume,
    tol: f64,
) {
    let shape: Vec<usize> =
        d["shape_zyx"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
    assert_eq!(v.shape_zyx().to_vec(), shape, "{what}: shape");
    assert_close(
        &format!("{what}: spacing"),
        &v.geometry.spacing_xyz,
        &f64s(&d["spacing_xyz"]),
        tol,
    );
    assert_close(&format!("{what}: origin"), &v.geometry.origin_xyz, &f64s(&d["origin_xyz"]), tol);
    assert_close(&format!("{what}: direction"), &v.geometry.direction, &f64s(&d["direction"]), tol);
    assert_eq!(
        sha256_volume(&v.hu),
        d["values"]["sha256"].as_str().unwrap(),
        "{what}: voxels as SimpleITK reads them"
    );
}

/// A small synthetic LUNA-like dataset (MetaImage scans, annotations and candidates) in `dir`.
pub fn dataset(dir: &std::path::Path, scans: usize, seed: u64) -> ctstream::synth::SynthSummary {
    ctstream::synth::generate(
        dir,
        &ctstream::synth::SynthConfig {
            small: true,
            ..ctstream::synth::SynthConfig::new(scans, seed)
        },
        &(),
    )
    .unwrap()
}

/// The ingest the tests run: the scans under `data` with its annotations and candidates
/// into `out`, two jobs.
pub fn ingest_config(
    data: &std::path::Path,
    out: &std::path::Path,
) -> ctstream::ingest::IngestConfig {
    let mut c = ctstream::ingest::IngestConfig::new(vec![data.to_path_buf()], out.to_path_buf());
    c.annotations = Some(data.join("annotations.csv"));
    c.candidates = Some(data.join("candidates.csv"));
    c.jobs = 2;
    c
}

/// Every file of a local store (not the lock or other dot files), by path relative to it.
pub fn snapshot(store: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    for p in ctstream::io::dicom::list_files(store).unwrap() {
        let rel = p.strip_prefix(store).unwrap().display().to_string();
        if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
            out.insert(rel, std::fs::read(&p).unwrap());
        }
    }
    out
}
