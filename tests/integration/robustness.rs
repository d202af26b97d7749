//! One bad scan never stops an ingest or spoils a store (issue 13), end to end: bad scans
//! among good ones fail alone, damaged records leave the rest usable and are restored by
//! `--resume`, flags are refused before anything is written, temporary files of killed
//! ingests are removed, FIFOs and devices are refused, DICOM damage is never silent.
//! The single-file cases, each with its exact error, are in `tests/broken/` (`broken.rs`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use ctstream::ingest::{self, IngestConfig};
use ctstream::io::dicom::{DicomError, DicomOptions, UnevenPolicy};
use ctstream::io::{self, ReadError, metaimage, nifti};
use ctstream::loader::Loader;
use ctstream::store::Store;
use ctstream::verify;

fn ctstream() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ctstream"))
}

/// Rewrites one `Key = value` line of a MetaImage header.
fn set_header(mhd: &Path, key: &str, value: &str) {
    let text = fs::read_to_string(mhd).unwrap();
    let lines: Vec<String> = text
        .lines()
        .map(|l| if l.starts_with(key) { format!("{key} = {value}") } else { l.to_string() })
        .collect();
    assert!(lines.iter().any(|l| l.starts_with(key)), "{key} not in {}", mhd.display());
    fs::write(mhd, lines.join("\n") + "\n").unwrap();
}

/// A copy of a scan (header and data) under a new name in the same folder.
fn copy_scan(mhd: &Path, name: &str) -> PathBuf {
    let v = metaimage::read(mhd).unwrap();
    let p = mhd.with_file_name(format!("{name}.mhd"));
    metaimage::write(&p, &v.hu, &v.geometry, metaimage::WriteOptions::default()).unwrap();
    p
}

/// Bad scans of four kinds among three good ones: each fails alone with its file and the
/// field at fault; the good ones are stored and indexed, and the store opens, verifies
/// (every chunk, every index row) and streams patches.
#[test]
fn bad_scans_fail_alone_and_the_store_stays_usable() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let s = dataset(&data, 3, 21);
    let folder = s.scans[0].parent().unwrap().to_path_buf();
    // A NIfTI whose origin is NaN (srow_x[3], byte 292 of the header).
    let v = metaimage::read(&s.scans[0]).unwrap();
    let nan_origin = folder.join("nan_origin.nii");
    nifti::write(&nan_origin, &v.hu, &v.geometry).unwrap();
    let mut b = fs::read(&nan_origin).unwrap();
    b[292..296].copy_from_slice(&f32::NAN.to_le_bytes());
    fs::write(&nan_origin, b).unwrap();
    // 25 mm voxels: a grid of thousands of voxels per axis at 1 mm (was a 22 GB abort).
    set_header(&copy_scan(&s.scans[1], "spacing25"), "ElementSpacing", "25 25 25");
    // 1e300 mm voxels (was a panic in resample).
    set_header(&copy_scan(&s.scans[2], "spacing1e300"), "ElementSpacing", "1e300 1e300 1e300");
    // Data truncated to half.
    let trunc = copy_scan(&s.scans[0], "truncated");
    let raw = trunc.with_extension("raw");
    let len = fs::metadata(&raw).unwrap().len();
    fs::OpenOptions::new().write(true).open(&raw).unwrap().set_len(len / 2).unwrap();

    let out = dir.path().join("store");
    let sum = ingest::ingest(&ingest_config(&data, &out), &()).unwrap();
    assert_eq!(sum.stored.len(), 3, "{:?}", sum.failed);
    let want = [
        ("nan_origin.nii", "srow_x"),
        ("spacing25.mhd", "the resampled grid"),
        ("spacing1e300.mhd", "ElementSpacing"),
        ("truncated.mhd", "truncated"),
    ];
    assert_eq!(sum.failed.len(), want.len(), "{:?}", sum.failed);
    for (file, field) in want {
        let f = sum
            .failed
            .iter()
            .find(|f| f.source.ends_with(file))
            .unwrap_or_else(|| panic!("{file} not among {:?}", sum.failed));
        assert!(f.reason.contains(field), "{file}: {}", f.reason);
    }
    let store = Store::open(&out).unwrap();
    assert_eq!(store.scans().len(), 3);
    assert!(store.damaged().is_empty());
    let r = verify::verify(&out, &()).unwrap();
    assert!(r.is_ok(), "{:?}", r.problems);
    assert_eq!(r.scans_ok.len(), 3);
    assert_eq!(r.index_rows_checked as usize, sum.nodules_indexed + sum.candidates_indexed);
    let loader = Loader::builder(&store)
        .patch([16, 32, 32])
        .batch_size(2)
        .workers(1)
        .seed(1)
        .build()
        .unwrap();
    let batch = loader.epoch(0).next().unwrap().unwrap();
    assert_eq!(batch.shape, [2, 1, 16, 32, 32]);
}

/// A record made unreadable: the store opens with the other scans and names the damaged
/// record; `inspect` shows it; `ingest --resume` stores the scan again, byte for byte.
#[test]
fn a_damaged_record_leaves_the_others_usable_and_resume_restores_it() {
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 3, 22);
    let out = dir.path().join("store");
    let cfg = ingest_config(&data, &out);
    ingest::ingest(&cfg, &()).unwrap();
    let id = Store::open(&out).unwrap().series_ids().nth(1).unwrap().to_string();
    let rec = out.join("volumes").join(format!("{id}.json"));
    let good = fs::read(&rec).unwrap();
    // What an earlier version wrote for a NaN origin: `null` where a number belongs.
    fs::write(
        &rec,
        String::from_utf8(good.clone()).unwrap().replacen(
            "\"origin_xyz\": [",
            "\"origin_xyz\": [null, ",
            1,
        ),
    )
    .unwrap();

    let store = Store::open(&out).unwrap();
    assert_eq!(store.scans().len(), 2);
    assert_eq!(store.damaged().len(), 1);
    assert_eq!(store.damaged()[0].path, rec);
    assert!(store.damaged()[0].reason.contains("not a scan record"), "{:?}", store.damaged());
    let loader = Loader::builder(&store).patch([16, 32, 32]).batch_size(2).workers(1).build();
    let notes = loader.expect("a loader on the other scans").notes().to_vec();
    assert!(
        notes.iter().any(|n| n.starts_with("1 scan of the store left out")
            && n.contains(&format!("{id}.json"))
            && n.contains("not a scan record")),
        "{notes:?}"
    );
    // `bench` says so too (a loader's notes go to stderr).
    let o = ctstream()
        .args(["bench", "--quiet", "--seconds", "0.2", "--cache", "16", "--store"])
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.contains("note: 1 scan of the store left out"), "{err}");
    let o = ctstream().arg("inspect").arg(&out).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("DAMAGED") && text.contains(&format!("{id}.json")),
        "{text}"
    );
    // verify reports it (exit 1).
    let o = ctstream().args(["--quiet", "verify"]).arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stdout));

    let again = ingest::ingest(&IngestConfig { resume: true, ..cfg }, &()).unwrap();
    assert_eq!(again.stored, vec![id.clone()]);
    assert!(again.damaged.is_empty());
    assert_eq!(fs::read(&rec).unwrap(), good, "the re-ingested record is the original");
    assert!(verify::verify(&out, &()).unwrap().is_ok());
}

/// Flags that would write a store no reader opens are refused (exit 2) before anything
/// is written: NaN or zero spacing, chunks the reader refuses, chunk sides past u32.
#[test]
fn bad_flags_are_refused_before_anything_is_written() {
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 1, 23);
    for (flag, value, says) in [
        ("--spacing", "nan,1,1", "spacing: "),
        ("--spacing", "0,1,1", "spacing: "),
        ("--chunk", "512,512,512", "chunk shape [512, 512, 512]"),
        ("--chunk", "4294967297,1,1", "chunk shape"),
        ("--chunk", "1,1,1", "16x16x16 to 256x256x256"),
        ("--jobs", "0", "jobs 0: must be 1..=1024"),
    ] {
        let out = dir.path().join("store");
        let o = ctstream()
            .args(["--quiet", "ingest", "--input"])
            .arg(&data)
            .arg("--out")
            .arg(&out)
            .args([flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(says), "{flag} {value}: {err}");
        assert!(!out.exists(), "{flag} {value}: something was written");
    }
}

/// A target spacing that makes every resampled grid too large fails each scan with the
/// grid's size, before resampling allocates; the store is still written, empty, and opens.
#[test]
fn a_fine_target_spacing_fails_each_scan_with_its_size() {
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 2, 26);
    let out = dir.path().join("store");
    let o = ctstream()
        .args(["--quiet", "ingest", "--input"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .args(["--spacing", "0.01,0.01,0.01"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert_eq!(text.matches("the resampled grid").count(), 2, "{text}");
    assert!(text.contains("more than the limit of 2147483648"), "{text}");
    let store = Store::open(&out).unwrap();
    assert!(store.scans().is_empty());
    assert!(verify::verify(&out, &()).unwrap().is_ok());
}

/// Temporary files left by killed ingests are removed by the next ingest (which holds
/// the lock, so no live writer owns them), and the summary counts them.
#[test]
fn temporary_files_of_killed_ingests_are_removed() {
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 1, 24);
    let out = dir.path().join("store");
    let cfg = ingest_config(&data, &out);
    ingest::ingest(&cfg, &()).unwrap();
    let planted = [
        out.join("volumes/.x.ctv.tmp-4242"),
        out.join("index/.nodules.parquet.tmp-4242"),
        out.join(".manifest.json.tmp-1"),
    ];
    for p in &planted {
        fs::write(p, vec![7u8; 1000]).unwrap();
    }
    let s = ingest::ingest(&IngestConfig { resume: true, ..cfg }, &()).unwrap();
    assert_eq!(s.temporary_files_removed, 3);
    for p in &planted {
        assert!(!p.exists(), "{} is still there", p.display());
    }
}

/// Waits for a child at most `secs`, killing it (and failing) if it hangs.
fn wait_or_kill(mut child: std::process::Child, secs: u64, what: &str) -> std::process::Output {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(secs) {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("{what}: still running after {secs} s (it hangs)");
}

/// A FIFO as a scan, as a MetaImage data file or as `--annotations`, and `/dev/zero` as
/// `--annotations`, are refused at once with a clear error: nothing blocks or grows.
#[test]
fn fifos_and_devices_are_refused_not_read() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let s = dataset(&data, 1, 25);
    let fifo = dir.path().join("pipe.mhd");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let raw_fifo = dir.path().join("pipe.raw");
    assert!(Command::new("mkfifo").arg(&raw_fifo).status().unwrap().success());
    let hdr = copy_scan(&s.scans[0], "fifo_data");
    set_header(&hdr, "ElementDataFile", raw_fifo.to_str().unwrap());
    let out = dir.path().join("store");
    let runs: Vec<(Vec<std::ffi::OsString>, &str)> = vec![
        (vec!["info".into(), fifo.clone().into()], "pipe.mhd"),
        (vec!["info".into(), hdr.clone().into()], "pipe.raw"),
        (
            vec![
                "ingest".into(),
                "--input".into(),
                data.clone().into(),
                "--annotations".into(),
                fifo.clone().into(),
                "--out".into(),
                out.clone().into(),
            ],
            "pipe.mhd",
        ),
        (
            vec![
                "ingest".into(),
                "--input".into(),
                data.clone().into(),
                "--annotations".into(),
                "/dev/zero".into(),
                "--out".into(),
                out.clone().into(),
            ],
            "/dev/zero",
        ),
    ];
    for (args, names) in runs {
        let child = ctstream()
            .arg("--quiet")
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let o = wait_or_kill(child, 30, &format!("{args:?}"));
        let text =
            format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.status.code(), Some(1), "{args:?}: {text}");
        assert!(text.contains(names) && text.contains("not a regular file"), "{args:?}: {text}");
    }
}

/// DICOM damage is refused by default, and only `--allow-missing-slices` stores such a
/// series, with the damage named in a warning; `--resample-uneven` never hides a gap.
#[test]
fn missing_and_damaged_slices_are_refused_unless_accepted_by_name() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken/dicom");
    let read = |dir: &str, opts: DicomOptions| io::read_scan(&corpus.join(dir), &opts, &());
    // A gap is not "uneven spacing": resampling does not make it go away.
    let e = read(
        "missing_middle",
        DicomOptions { uneven: UnevenPolicy::Resample, ..Default::default() },
    )
    .unwrap_err();
    assert!(matches!(e, ReadError::Dicom(DicomError::MissingSlices { .. })), "{e}");
    assert!(!e.to_string().contains("--resample-uneven"), "advice must not hide damage: {e}");
    // Accepted by name: the gap is interpolated onto the 1.25 mm grid (5 slices) and named.
    let r =
        read("missing_middle", DicomOptions { allow_missing_slices: true, ..Default::default() })
            .unwrap();
    assert_eq!(r.volume.shape_zyx()[0], 5);
    assert!((r.volume.geometry.spacing_xyz[2] - 1.25).abs() < 1e-6, "{:?}", r.volume.geometry);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("slices missing") && w.contains("b.dcm") && w.contains("d.dcm")),
        "{:?}",
        r.warnings
    );
    // A truncated end slice: refused; accepted, the three good slices with a warning.
    assert!(matches!(
        read("truncated_end", DicomOptions::default()),
        Err(ReadError::Dicom(DicomError::DamagedSlices { .. }))
    ));
    let r =
        read("truncated_end", DicomOptions { allow_missing_slices: true, ..Default::default() })
            .unwrap();
    assert_eq!(r.volume.shape_zyx()[0], 3);
    assert!(r.warnings.iter().any(|w| w.contains("truncated_end/d.dcm")), "{:?}", r.warnings);
    // Through ingest: the warning is in the summary and in the scan's record.
    let dir = tempdir();
    let input = dir.path().join("in");
    fs::create_dir_all(&input).unwrap();
    for e in fs::read_dir(corpus.join("missing_middle")).unwrap() {
        let p = e.unwrap().path();
        fs::copy(&p, input.join(p.file_name().unwrap())).unwrap();
    }
    let out = dir.path().join("store");
    let mut cfg = IngestConfig::new(vec![input.clone()], out.clone());
    let e = ingest::ingest(&cfg, &()).unwrap();
    assert_eq!((e.stored.len(), e.failed.len()), (0, 1), "{:?}", e.failed);
    assert!(e.failed[0].reason.contains("slices are missing"), "{}", e.failed[0].reason);
    cfg.dicom.allow_missing_slices = true;
    cfg.resume = true;
    let s = ingest::ingest(&cfg, &()).unwrap();
    assert_eq!(s.stored.len(), 1);
    assert!(s.warnings.iter().any(|w| w.reason.contains("slices missing")), "{:?}", s.warnings);
    let store = Store::open(&out).unwrap();
    let rec = store.scans().values().next().unwrap();
    assert!(rec.warnings.iter().any(|w| w.contains("slices missing")), "{:?}", rec.warnings);
}

/// A flipped byte of the nodules table is caught before training uses it: the loader
/// refuses the store, naming the table and how to rewrite it.
#[test]
fn a_damaged_index_is_refused_by_the_loader() {
    let store_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken/store/flipped_index");
    let store = Store::open(&store_dir).unwrap();
    let e = Loader::builder(&store)
        .patch([16, 32, 32])
        .batch_size(1)
        .workers(1)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("nodules.parquet") && e.contains("checksums.json") && e.contains("--resume"),
        "{e}"
    );
}

/// A table that `checksums.json` lists but that is not there (a partial copy or sync) is
/// damage, not an empty table: the nodules and candidates are refused by the store, the
/// loader and `inspect`, naming the file; a table the checksums do not list is simply
/// absent (a store without candidates).
#[test]
fn a_missing_index_table_is_refused_not_read_as_empty() {
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 1, 5);
    let out = dir.path().join("store");
    ingest::ingest(&ingest_config(&data, &out), &()).unwrap();
    let store = Store::open(&out).unwrap();
    assert!(!store.nodules().unwrap().is_empty());
    assert!(!store.candidates().unwrap().is_empty());

    fs::remove_file(out.join("index/nodules.parquet")).unwrap();
    let store = Store::open(&out).unwrap();
    let e = store.nodules().unwrap_err().to_string();
    assert!(
        e.contains("nodules.parquet") && e.contains("missing") && e.contains("checksums.json"),
        "{e}"
    );
    let e = Loader::builder(&store).patch([16, 32, 32]).workers(1).build().unwrap_err();
    assert!(e.to_string().contains("nodules.parquet"), "{e}");
    // Damage is a failure (exit 1) in every command, the loader's included, not the usage
    // code (2) its options get.
    for cmd in [&["inspect"][..], &["batches", "--store"], &["bench", "--seconds", "1", "--store"]]
    {
        let o = ctstream().args(cmd).arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{cmd:?}: {err}");
        assert!(err.contains("nodules.parquet") && err.contains("missing"), "{cmd:?}: {err}");
    }

    // An emptied table (0 bytes, a failed copy) is damage too, not an empty table.
    let candidates = fs::read(out.join("index/candidates.parquet")).unwrap();
    fs::write(out.join("index/candidates.parquet"), b"").unwrap();
    let e = store.candidates().unwrap_err().to_string();
    assert!(e.contains("candidates.parquet") && e.contains("corrupt: 0 bytes"), "{e}");
    fs::write(out.join("index/candidates.parquet"), candidates).unwrap();
    assert!(!store.candidates().unwrap().is_empty());
    // Without its entry in checksums.json the table is simply not there: no rows.
    fs::remove_file(out.join("index/candidates.parquet")).unwrap();
    assert!(store.candidates().is_err());
    let sums_path = out.join("index/checksums.json");
    let mut sums: serde_json::Value =
        serde_json::from_slice(&fs::read(&sums_path).unwrap()).unwrap();
    sums["tables"].as_object_mut().unwrap().remove("candidates.parquet").unwrap();
    fs::write(&sums_path, serde_json::to_vec(&sums).unwrap()).unwrap();
    assert!(store.candidates().unwrap().is_empty());
}

/// Values that mean nothing are refused where they enter, naming the value, and nothing
/// is written: no scans for `synth --scans 0` or a billion, no store in the current folder
/// for `ingest --out ''`, no panic for `bench --seconds nan` or `1e300`.
#[test]
fn meaningless_values_are_refused_before_anything_is_written() {
    let dir = tempdir();
    for (n, want) in [("0", "scans 0: give 1 to 10000"), ("1000000000", "scans 1000000000")] {
        let out = dir.path().join(format!("synth{n}"));
        let o = ctstream().args(["synth", "--small", "--scans", n, "--out"]).arg(&out).output();
        let o = o.unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains(want), "{err}");
        assert!(!out.join("subset0").exists());
    }

    let cwd = dir.path().join("cwd");
    fs::create_dir(&cwd).unwrap();
    let o = ctstream()
        .current_dir(&cwd)
        .args(["ingest", "--out", "", "--input"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("out: empty path"), "{err}");
    assert_eq!(fs::read_dir(&cwd).unwrap().count(), 0, "nothing written in the current folder");

    for s in ["nan", "1e300", "0", "-1", "inf"] {
        let o = ctstream()
            .args(["bench", "--store"])
            .arg(dir.path().join("none"))
            .arg(format!("--seconds={s}"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "--seconds {s}: {err}");
        assert!(err.contains("--seconds") && err.contains("give seconds above 0"), "{err}");
    }
}

/// Each cause of an error is printed once (no "os error 2: os error 2").
#[test]
fn each_error_cause_is_printed_once() {
    for args in [
        ["info", "/nonexistent/scan.mhd"],
        ["inspect", "/nonexistent/store"],
        ["info", "/nonexistent/dicom"],
    ] {
        let o = ctstream().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(err.matches("os error 2").count(), 1, "{args:?}: {err}");
    }
}

/// Every size a flag sets is checked against its documented limit before anything is
/// allocated or spawned (class 2 of issue 32): patch voxels, batch bytes, bytes in flight,
/// workers, prefetch, jitter, cache, panel width. Each is refused with the usage exit
/// code and a message naming the flag and its value, where each once ended in "memory
/// allocation of ... failed" (SIGABRT), "capacity overflow" or thousands of threads. The
/// limits are the library's constants; the values just past them are refused and the
/// values at them pass validation (the arithmetic of the batch and in-flight bytes shown).
#[test]
fn sizes_from_flags_are_bounded_before_anything_is_allocated() {
    use ctstream::loader::{
        LoaderConfig, MAX_BATCH_BYTES, MAX_IN_FLIGHT_BYTES, MAX_PATCH_VOXELS, MAX_PREFETCH,
        MAX_WORKERS,
    };
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 1, 6);
    let out = dir.path().join("store");
    ingest::ingest(&ingest_config(&data, &out), &()).unwrap();
    let sid = Store::open(&out).unwrap().series_ids().next().unwrap().to_string();

    let refused = |args: &[&str], want: &[&str]| {
        let o = ctstream().args(args).arg("--store").arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        for w in want {
            assert!(err.contains(w), "{args:?}: want {w:?} in {err}");
        }
        assert!(!err.contains("panicked") && !err.contains("memory allocation"), "{err}");
    };
    refused(&["batches", "--patch", "100000,100000,100000"], &["patch [100000, 100000, 100000]"]);
    refused(&["batches", "--patch", "4294967296,4294967296,1"], &["patch"]);
    // 32 x 64 x 64 voxels, 8 bytes each (image and mask): 1 MiB a patch, so 4096 a batch.
    refused(&["batches", "--batch-size", "1000000000"], &["batch_size 1000000000: give 1 to 4096"]);
    refused(&["bench", "--batch-size", "100000"], &["batch_size 100000: give 1 to 4096"]);
    refused(&["batches", "--workers", "100000"], &["workers 100000: give 1 to 256"]);
    refused(&["bench", "--workers", "0"], &["workers 0: give 1 to 256"]);
    refused(&["batches", "--jitter", "0,1000000000,0"], &["jitter [0, 1000000000, 0]"]);
    // 4096 patches (4 GiB) a batch with 2 workers: (4 + 2 + 1) x 4 GiB = 28 GiB in flight.
    refused(
        &["batches", "--batch-size", "4096"],
        &["prefetch 4 and workers 2 with batches of 4096 MiB hold 28672 MiB at once"],
    );
    // A negative number is the flag's value, refused by the flag's parser by name (clap
    // said "unexpected argument '-1' found").
    for flag in ["--seed", "--batch-size", "--workers", "--count"] {
        refused(&["batches", flag, "-1"], &[&format!("invalid value '-1' for '{flag}")]);
    }
    refused(&["batches", "--count", "1000000", "--batches-per-epoch", "3"], &["--count 1000000"]);
    refused(
        &["batches", "--first", "3", "--count", "1", "--batches-per-epoch", "3"],
        &["--first 3"],
    );

    let png = dir.path().join("r.png");
    let render = ["render", "--series", sid.as_str(), "--out", png.to_str().unwrap()];
    for (w, want) in [
        ("0", "--panel-width 0: give 16 to 4096"),
        ("100000", "--panel-width 100000: give 16 to 4096"),
        ("4294967295", "--panel-width 4294967295"),
    ] {
        refused(&[&render[..], &["--panel-width", w]].concat(), &[want]);
    }
    for t in ["nan", "-0.5", "1.5", "inf"] {
        let flag = format!("--threshold={t}");
        refused(&[&render[..], &[flag.as_str()]].concat(), &["--threshold", "a probability"]);
    }
    assert!(!dir.path().join("r.png").exists());
    // A network's input: at most 2^26 voxels a step (32 x 64 x 64 patches: 512 a step).
    if cfg!(feature = "train") {
        let run = dir.path().join("run");
        let train = ["train", "--out", run.to_str().unwrap(), "--batch-size", "100000"];
        refused(&train, &["batch-size 100000: give 1 to 512 for patch 32,64,64"]);
        assert!(!run.exists());
        let o = ctstream().args(["bench-net", "--patch", "16000,16000,16000"]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("--patch 16000,16000,16000: at most 67108864 voxels"), "{err}");
        let o = ctstream().args(["bench-net", "--predict-batch", "100000"]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("--predict-batch 100000: give 1 to 512"), "{err}");
    }
    let sw = ctstream::predict::SlidingWindow {
        patch_zyx: [256, 256, 256],
        batch_size: 4096,
        ..Default::default()
    };
    let e = sw.validate().unwrap_err().to_string();
    assert!(e.contains("batch_size 4096: give 1 to 4 for patch [256, 256, 256]"), "{e}");
    // The edges of the limits pass, with the arithmetic the messages use.
    let ok = LoaderConfig {
        patch_zyx: [512, 512, 512],
        batch_size: (MAX_BATCH_BYTES / (MAX_PATCH_VOXELS * 8)) as usize,
        prefetch: 1,
        workers: 1,
        ..LoaderConfig::default()
    };
    assert_eq!(ok.batch_size, 4, "512^3 voxels of 8 bytes: 1 GiB a patch, 4 a batch");
    assert_eq!(
        (ok.prefetch + ok.workers + 1) as u64 * 4 * (1 << 30),
        MAX_IN_FLIGHT_BYTES - (4 << 30)
    );
    ok.validate().unwrap();
    let past = |f: fn(&mut LoaderConfig)| {
        let mut c = LoaderConfig::default();
        f(&mut c);
        c.validate().unwrap_err().to_string()
    };
    assert!(past(|c| c.patch_zyx = [513, 512, 512]).contains("patch [513, 512, 512]"));
    assert!(past(|c| c.workers = MAX_WORKERS + 1).contains("workers 257"));
    assert!(past(|c| c.prefetch = MAX_PREFETCH + 1).contains("prefetch 1025"));
    assert!(past(|c| c.batch_size = 4097).contains("batch_size 4097: give 1 to 4096"));
}

/// A scan whose volume file is truncated is damage, named as such by every command that
/// asks for it (`export` said "no series ... in the store"); `--series` of a scan that was
/// never stored still says there is no such series.
#[test]
fn a_damaged_scan_is_named_as_damaged_not_as_absent() {
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 1, 7);
    let out = dir.path().join("store");
    ingest::ingest(&ingest_config(&data, &out), &()).unwrap();
    let id = Store::open(&out).unwrap().series_ids().next().unwrap().to_string();
    let ctv = out.join("volumes").join(format!("{id}.ctv"));
    let f = fs::OpenOptions::new().write(true).open(&ctv).unwrap();
    f.set_len(1000).unwrap();
    drop(f);
    let store = Store::open(&out).unwrap();
    let e = store.volume(&id).unwrap_err().to_string();
    assert!(e.contains("corrupt") && e.contains(&format!("series {id} is damaged")), "{e}");
    let e = store.scan("1.2.3").unwrap_err().to_string();
    assert!(e.contains("no series 1.2.3"), "{e}");
    let mhd = dir.path().join("x.mhd");
    let o =
        ctstream().args(["export"]).arg(&out).args(["--series", &id, "--out"]).arg(&mhd).output();
    let o = o.unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is damaged") && err.contains("verify") && !err.contains("no series"),
        "{err}"
    );
    assert!(!mhd.exists());
}

/// Without credentials, object_store's credential chain asks the cloud's instance metadata
/// service: only the address the environment gives (`GCE_METADATA_HOST`,
/// `AWS_METADATA_ENDPOINT`; tools/test.sh points them at a closed loopback port, so no test
/// reaches 169.254.169.254), and the user is told why the request failed and what to give.
#[test]
fn without_credentials_the_metadata_lookup_goes_where_the_environment_says_and_is_explained() {
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let home = tempdir();
    for (url, vars) in [
        ("gs://bucket/store", ["GCE_METADATA_HOST", "GCE_METADATA_IP"]),
        ("s3://bucket/store", ["AWS_METADATA_ENDPOINT", "AWS_REGION"]),
    ] {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(AtomicUsize::new(0));
        let counter = asked.clone();
        std::thread::spawn(move || {
            for c in listener.incoming() {
                let Ok(mut c) = c else { break };
                counter.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
                let _ = c.read(&mut buf); // then closed: no credentials here
            }
        });
        let mut c = ctstream();
        c.env_clear().env("PATH", "/usr/bin:/bin").env("HOME", home.path());
        if let Some(v) = std::env::var_os("LD_LIBRARY_PATH") {
            c.env("LD_LIBRARY_PATH", v); // LibTorch, in a build with `tch`
        }
        for v in vars {
            c.env(
                v,
                match v {
                    "AWS_METADATA_ENDPOINT" => format!("http://127.0.0.1:{port}"),
                    "AWS_REGION" => "us-east-1".into(),
                    _ => format!("127.0.0.1:{port}"),
                },
            );
        }
        let o = c.args(["inspect", url]).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{url}: {err}");
        assert!(
            err.contains("no credentials were found") && err.contains("SKIP_SIGNATURE"),
            "{url}: {err}"
        );
        assert!(
            asked.load(Ordering::SeqCst) >= 1,
            "{url}: the loopback metadata address was not asked"
        );
    }
}
