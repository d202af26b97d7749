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

#[test]
fn every_broken_input_gets_its_clear_error() {
    let dir = crate::common::tempdir();
    for c in cases() {
        let path = corpus().join(&c.path);
        assert!(path.exists(), "{} is missing from the corpus", c.path);
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
