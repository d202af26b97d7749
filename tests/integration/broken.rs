//! The broken-input corpus (`tests/broken/README.md`): every file ends in a clear error
//! that names it, from the library and from the command line, and nothing panics.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

use ctstream::annotations;
use ctstream::io::{self, dicom::DicomOptions};

struct Case {
    path: String,
    reader: String,
    exit: Option<i32>,
    fragments: Vec<String>,
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken")
}

/// The rows of the README's table.
fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(corpus().join("README.md")).unwrap();
    let rows: Vec<Case> = text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| path") && !l.starts_with("|---"))
        .map(|l| {
            let c: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(c.len(), 5, "row `{l}`");
            Case {
                path: c[0].into(),
                reader: c[1].into(),
                exit: c[2].parse().ok(),
                fragments: c[4].split(" ; ").map(String::from).collect(),
            }
        })
        .collect();
    assert!(rows.len() >= 20, "{} rows", rows.len());
    rows
}

/// The library's answer for a case: its error message, or None if it read the input.
fn library_error(c: &Case, path: &Path) -> Option<String> {
    let r = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
        let s = |e: &dyn std::fmt::Display| e.to_string();
        match c.reader.as_str() {
            "scan" | "ingest" => {
                io::read_scan(path, &DicomOptions::default(), &()).map(drop).map_err(|e| s(&e))
            }
            "annotations" => annotations::read_annotations(path).map(drop).map_err(|e| s(&e)),
            "candidates" => annotations::read_candidates(path).map(drop).map_err(|e| s(&e)),
            "predictions" => annotations::read_predictions(path).map(drop).map_err(|e| s(&e)),
            // A damaged store: `verify` names every problem (or the store cannot open).
            "store" => match ctstream::verify::verify(path, &()) {
                Ok(r) if r.is_ok() => Ok(()),
                Ok(r) => Err(r
                    .problems
                    .iter()
                    .map(|p| format!("{}: {}", p.path.display(), p.message))
                    .collect::<Vec<_>>()
                    .join("\n")),
                Err(e) => Err(s(&e)),
            },
            // A reader XML of the three-slice series `lidc_series` writes: what annotating
            // that series with it leaves out (nothing: None).
            "lidc" => {
                let r = ctstream::lidc::series::annotate(&[path.to_path_buf()], &lidc_grid());
                if r.record.failed.is_empty() { Ok(()) } else { Err(r.record.failed.join("\n")) }
            }
            other => panic!("unknown reader `{other}`"),
        }
    }));
    match r {
        Ok(Ok(())) => None,
        Ok(Err(msg)) => Some(msg),
        Err(_) => panic!("{}: the {} reader panicked", c.path, c.reader),
    }
}

fn contains_all(c: &Case, msg: &str) {
    for f in &c.fragments {
        assert!(msg.contains(f.as_str()), "{}: `{f}` not in: {msg}", c.path);
    }
}

/// The series the LIDC cases are of: three 16 x 16 slices at z -10, -7.5, -5 mm, SOP
/// Instance UIDs `1.2.3.4.5.1` to `.3` (as ctstream's synthetic DICOM writer names them).
fn lidc_scan() -> ctstream::synth::SynthScan {
    let geometry = ctstream::geometry::Geometry::axis_aligned([0.0, 0.0, -10.0], [1.0, 1.0, 2.5]);
    ctstream::synth::SynthScan {
        series_id: "1.2.3.4.5".into(),
        hu: ndarray::Array3::from_elem((3, 16, 16), -1000),
        geometry,
        nodules: vec![],
        candidates: vec![],
        lungs: ndarray::Array3::zeros((3, 16, 16)),
        nodule_ellipsoids: vec![],
        airway: vec![],
    }
}

fn lidc_grid() -> ctstream::lidc::series::SourceGrid {
    let s = lidc_scan();
    let order: Vec<ctstream::io::dicom::PlacedSlice> = (0..3)
        .map(|k| ctstream::io::dicom::PlacedSlice {
            sop_instance_uid: Some(format!("1.2.3.4.5.{}", k + 1)),
            position_xyz: [0.0, 0.0, -10.0 + 2.5 * k as f64],
            slice_thickness: Some(2.5),
            index_z: k as f64,
        })
        .collect();
    ctstream::lidc::series::SourceGrid::new(&s.series_id, Some(&order), [3, 16, 16], &s.geometry)
}

/// A case's file, decompressed into `dir` when it is kept compressed (`.zst`).
fn case_file(path: &Path, dir: &Path) -> PathBuf {
    if path.extension().is_some_and(|e| e == "zst") {
        let out = dir.join(path.file_stem().unwrap());
        let data = zstd::decode_all(std::fs::File::open(path).unwrap()).unwrap();
        std::fs::write(&out, data).unwrap();
        out
    } else {
        path.to_path_buf()
    }
}

/// The LIDC case at `path` through `ctstream ingest --lidc-xml`: the series is stored
/// (exit `c.exit`), the summary names the problem, and the good nodule of the file's
/// other reader is kept unless the whole file is unusable.
fn lidc_ingest(c: &Case, path: &Path, series: &Path, tmp: &Path) {
    let xml_dir = tmp.join(format!("xml-{}", c.path.replace('/', "_")));
    std::fs::create_dir_all(&xml_dir).unwrap();
    std::fs::copy(path, xml_dir.join(path.file_name().unwrap())).unwrap();
    let out = tmp.join(format!("store-{}", c.path.replace('/', "_")));
    let o = Command::new(env!("CARGO_BIN_EXE_ctstream"))
        .args(["--quiet", "ingest", "--no-lung-mask", "--json", "--input"])
        .arg(series)
        .arg("--lidc-xml")
        .arg(&xml_dir)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), c.exit, "{}: {text}", c.path);
    assert!(!text.contains("panicked"), "{}: {text}", c.path);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["stored"].as_array().unwrap().len(), 1, "{}: {text}", c.path);
    let failed: Vec<&str> = s["lidc_failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["reason"].as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 1, "{}: {failed:?}", c.path);
    contains_all(c, failed[0]);
    let whole_file = c.path.contains("truncated") || c.path.contains("namespace");
    assert_eq!(s["lidc_nodules"], if whole_file { 0 } else { 1 }, "{}: {text}", c.path);
}

#[test]
fn every_broken_input_gets_its_clear_error() {
    let dir = crate::common::tempdir();
    let series = dir.path().join("lidc-series");
    ctstream::synth::write_dicom_series(&series, &lidc_scan()).unwrap();
    for c in cases() {
        let path = corpus().join(&c.path);
        assert!(path.exists(), "{} is missing from the corpus", c.path);
        if c.reader == "lidc" {
            let path = case_file(&path, dir.path());
            let msg = library_error(&c, &path)
                .unwrap_or_else(|| panic!("{}: read without an error", c.path));
            contains_all(&c, &msg);
            lidc_ingest(&c, &path, &series, dir.path());
            continue;
        }
        match c.reader.as_str() {
            // The id is readable; it is storing under it that is refused.
            "ingest" => {
                let out = dir.path().join("store");
                let o = Command::new(env!("CARGO_BIN_EXE_ctstream"))
                    .args(["--quiet", "ingest", "--input"])
                    .arg(&path)
                    .arg("--out")
                    .arg(&out)
                    .output()
                    .unwrap();
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                assert_eq!(o.status.code(), c.exit, "{}: {text}", c.path);
                contains_all(&c, &text);
                assert!(
                    !out.join("evil").exists()
                        && !dir.path().join("evil").exists()
                        && !dir.path().join("evil.ctv").exists(),
                    "{}: a file escaped the store",
                    c.path
                );
            }
            _ => {
                let msg = library_error(&c, &path);
                if c.reader == "scan" && c.exit == Some(3) {
                    // Several series: the library lists them (read_scan picks none).
                    let msg =
                        msg.unwrap_or_else(|| panic!("{}: read without choosing a series", c.path));
                    assert!(msg.contains("series"), "{}: {msg}", c.path);
                } else {
                    let msg = msg.unwrap_or_else(|| panic!("{}: read without an error", c.path));
                    contains_all(&c, &msg);
                }
                if c.reader == "store" {
                    let o = Command::new(env!("CARGO_BIN_EXE_ctstream"))
                        .args(["--quiet", "verify"])
                        .arg(&path)
                        .output()
                        .unwrap();
                    let text = format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    );
                    assert_eq!(o.status.code(), c.exit, "{}: {text}", c.path);
                    contains_all(&c, &text);
                    assert!(!text.contains("panicked"), "{}: {text}", c.path);
                }
                if c.reader == "scan" {
                    let o = Command::new(env!("CARGO_BIN_EXE_ctstream"))
                        .arg("info")
                        .arg(&path)
                        .output()
                        .unwrap();
                    let err = String::from_utf8_lossy(&o.stderr);
                    assert_eq!(o.status.code(), c.exit, "{}: {err}", c.path);
                    contains_all(&c, &err);
                    assert!(!err.contains("panicked"), "{}: {err}", c.path);
                }
            }
        }
    }
}
