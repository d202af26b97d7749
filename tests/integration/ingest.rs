//! Ingest end to end: stored volumes against SimpleITK's linear resampling, nodule
//! coordinates against SimpleITK's transform, a broken scan among good ones, resume,
//! parameter checks, and `kill -9` at random moments followed by `--resume`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use ctstream::geometry::Geometry;
use ctstream::ingest::{self, IngestConfig, IngestError};
use ctstream::io::metaimage;
use ctstream::store::{Store, index};

/// One truncated scan among good ones: the good ones are stored, the bad one is reported
/// with its path and reason, and the CLI exits 1.
#[test]
fn broken_scan_is_reported_and_the_rest_stored() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let s = dataset(&data, 3, 5);
    let raw = s.scans[1].with_extension("raw");
    let len = fs::metadata(&raw).unwrap().len();
    fs::OpenOptions::new().write(true).open(&raw).unwrap().set_len(len / 2).unwrap();
    let out = dir.path().join("store");
    let o = Command::new(env!("CARGO_BIN_EXE_ctstream"))
        .args(["--quiet", "ingest", "--input"])
        .arg(&data)
        .arg("--annotations")
        .arg(data.join("annotations.csv"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("2 stored, 1 failed"), "{stdout}");
    let name = raw.file_name().unwrap().to_string_lossy();
    assert!(
        stdout.contains("FAILED") && stdout.contains(name.as_ref()) && stdout.contains("truncated"),
        "{stdout}"
    );
    assert_eq!(Store::open(&out).unwrap().scans().len(), 2);
}

/// `--resume` skips what is stored (and the index comes out byte-identical); without it a
/// non-empty store is refused; other parameters are refused.
#[test]
fn resume_skips_and_parameters_must_match() {
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 2, 8);
    let out = dir.path().join("store");
    let cfg = ingest_config(&data, &out);
    let first = ingest::ingest(&cfg, &()).unwrap();
    assert_eq!(first.stored.len(), 2);
    let before = snapshot(&out);
    let e = ingest::ingest(&cfg, &()).unwrap_err();
    assert!(
        matches!(e, IngestError::NotEmpty { scans: 2, .. }) && e.to_string().contains("--resume"),
        "{e}"
    );
    let again = ingest::ingest(&IngestConfig { resume: true, ..cfg.clone() }, &()).unwrap();
    assert_eq!((again.stored.len(), again.skipped.len()), (0, 2));
    assert_eq!(snapshot(&out), before);
    let e =
        ingest::ingest(&IngestConfig { resume: true, spacing_xyz: [0.7, 0.7, 1.25], ..cfg }, &())
            .unwrap_err();
    assert!(matches!(e, IngestError::Mismatch { .. }), "{e}");
}

/// A series id that could name a file outside the store is refused (the scan fails).
#[test]
fn series_ids_are_validated_before_they_name_files() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let s = dataset(&data, 1, 2);
    let v = metaimage::read(&s.scans[0]).unwrap();
    metaimage::write(
        &data.join("bad id with spaces.mhd"),
        &v.hu,
        &v.geometry,
        metaimage::WriteOptions::default(),
    )
    .unwrap();
    let out = dir.path().join("store");
    let sum = ingest::ingest(&ingest_config(&data, &out), &()).unwrap();
    assert_eq!(sum.stored.len(), 1);
    assert_eq!(sum.failed.len(), 1);
    assert!(sum.failed[0].reason.contains("cannot name a file"), "{:?}", sum.failed);
    let names: Vec<String> = fs::read_dir(out.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("bad")), "{names:?}");
}

/// Every non-temporary file of a store with its bytes.
/// The arguments of `ctstream ingest` for the dataset `data` into `out`, one job.
fn ingest_args(data: &Path, out: &Path, resume: bool) -> Vec<std::ffi::OsString> {
    let mut a: Vec<std::ffi::OsString> =
        ["--quiet", "ingest", "--jobs", "1", "--input"].map(Into::into).into();
    a.extend([
        data.into(),
        "--annotations".into(),
        data.join("annotations.csv").into(),
        "--out".into(),
        out.into(),
    ]);
    if resume {
        a.push("--resume".into());
    }
    a
}

fn ingest_cmd(data: &Path, out: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ctstream"));
    c.args(ingest_args(data, out, resume));
    c
}

/// `kill -9` at several moments: the store opens showing only complete scans, each of
/// which reads in full, and `--resume` finishes it byte-identical to a clean run.
#[test]
fn killed_ingest_resumes_to_the_same_store() {
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 6, 13);
    let clean = dir.path().join("clean");
    assert!(ingest_cmd(&data, &clean, false).output().unwrap().status.success());
    let want = snapshot(&clean);
    // Time a clean run to spread the kills over it.
    let t = std::time::Instant::now();
    assert!(
        ingest_cmd(&data, &dir.path().join("timing"), false).output().unwrap().status.success()
    );
    let full = t.elapsed().as_secs_f64();
    for (k, frac) in [0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95].iter().enumerate() {
        let out = dir.path().join(format!("killed{k}"));
        let mut child =
            ingest_cmd(&data, &out, false).stdout(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_secs_f64(full * frac));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        match Store::open(&out) {
            Ok(store) => {
                for id in store.series_ids() {
                    store
                        .volume(id)
                        .and_then(|v| v.read_all())
                        .unwrap_or_else(|e| panic!("kill {k}: {id}: {e}"));
                }
            }
            // Killed before the manifest existed: there is no store yet, and no volume.
            Err(e) => assert!(
                !out.join("volumes").exists()
                    || fs::read_dir(out.join("volumes")).unwrap().all(|f| f
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with('.')),
                "kill {k}: {e}"
            ),
        }
        assert!(
            ingest_cmd(&data, &out, true).output().unwrap().status.success(),
            "resume after kill {k}"
        );
        assert_eq!(
            snapshot(&out).keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "kill {k}"
        );
        assert!(snapshot(&out) == want, "kill {k}: the resumed store differs from a clean run");
    }
}

/// A one-scan store and its scan exported by `ctstream export` as MetaImage and NIfTI.
struct Exported {
    store: PathBuf,
    id: String,
    stored: ndarray::Array3<i16>,
    geometry: Geometry,
    mhd: PathBuf,
    nii: PathBuf,
}

fn export_both(dir: &Path) -> Exported {
    let data = dir.join("data");
    dataset(&data, 1, 4);
    let out = dir.join("store");
    ingest::ingest(&ingest_config(&data, &out), &()).unwrap();
    let store = Store::open(&out).unwrap();
    let id = store.series_ids().next().unwrap().to_string();
    let v = store.volume(&id).unwrap();
    let (stored, geometry) = (v.read_all().unwrap(), v.geometry());
    let (mhd, nii) = (dir.join("x.mhd"), dir.join("x.nii.gz"));
    for p in [&mhd, &nii] {
        let o = Command::new(env!("CARGO_BIN_EXE_ctstream"))
            .arg("export")
            .arg(&out)
            .args(["--series", &id, "--out"])
            .arg(p)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    Exported { store: out, id, stored, geometry, mhd, nii }
}

/// `ctstream export` writes the stored volume as MetaImage and NIfTI; both read back to
/// the stored voxels and geometry (the NIfTI's in float32); an unknown extension is a
/// usage error.
#[test]
fn export_round_trips_through_metaimage_and_nifti() {
    let dir = tempdir();
    let Exported { store: out, id, stored, geometry, mhd, nii } = export_both(dir.path());
    let m = metaimage::read(&mhd).unwrap();
    assert_eq!(m.hu, stored);
    assert_eq!(m.geometry, geometry);
    let n = ctstream::io::nifti::read(&nii).unwrap();
    assert_eq!(n.hu, stored);
    assert_close("NIfTI origin", &n.geometry.origin_xyz, &geometry.origin_xyz, 1e-4);
    assert_close("NIfTI spacing", &n.geometry.spacing_xyz, &geometry.spacing_xyz, 1e-6);
    assert_close("NIfTI direction", &n.geometry.direction, &geometry.direction, 1e-9);
    let o = Command::new(env!("CARGO_BIN_EXE_ctstream"))
        .arg("export")
        .arg(&out)
        .args(["--series", &id, "--out", "x.png"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// Copies the first `n` scans (their .mhd and .raw) of a synthetic dataset's `subset0`
/// into `to`, so a store can hold some of them before a resumed ingest adds the rest.
fn first_scans(data: &Path, n: usize, to: &Path) {
    fs::create_dir_all(to).unwrap();
    let mut headers: Vec<PathBuf> = fs::read_dir(data.join("subset0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mhd"))
        .collect();
    headers.sort();
    for h in headers.into_iter().take(n) {
        for p in [h.clone(), h.with_extension("raw")] {
            fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// Stores the first `n` scans of the dataset `data` (copied to `data/../part`) in `out`,
/// with the dataset's annotations.
fn store_first(data: &Path, n: usize, out: &Path) {
    let part = data.with_file_name("part");
    first_scans(data, n, &part);
    let mut c = ingest_config(&part, out);
    c.annotations = Some(data.join("annotations.csv"));
    c.candidates = None;
    let s = ingest::ingest(&c, &()).unwrap();
    assert!(s.failed.is_empty(), "{:?}", s.failed);
}

/// One ingest at a time: while the store's lock is held (as a running ingest holds it), an
/// ingest is refused before writing anything, naming the holder; a real second ingest
/// process started while the first runs is refused the same way.
#[test]
fn a_second_ingest_into_the_same_store_is_refused_by_the_lock() {
    use ctstream::store::StoreError;
    use ctstream::store::lock::StoreLock;
    let dir = tempdir();
    let data = dir.path().join("data");
    // Enough scans (ingested one at a time) that the first process still holds the lock
    // when a second has started: a build with LibTorch takes about a second to start.
    dataset(&data, 16, 21);
    let out = dir.path().join("store");
    let held = StoreLock::acquire(&out).unwrap();
    let e = ingest::ingest(&ingest_config(&data, &out), &()).unwrap_err();
    assert!(
        matches!(&e, IngestError::Store(StoreError::Locked { holder: Some(p), .. }) if *p == std::process::id()),
        "{e}"
    );
    assert!(
        !out.join("manifest.json").exists() && !out.join("volumes").exists(),
        "nothing written"
    );
    let o = ingest_cmd(&data, &out, false).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "another ingest (process {}) is writing to this store",
            std::process::id()
        )) && err.contains(".lock"),
        "{err}"
    );
    drop(held);

    // Two processes: the second starts once the first has taken the lock.
    let mut first =
        ingest_cmd(&data, &out, false).stdout(std::process::Stdio::null()).spawn().unwrap();
    let pid = first.id().to_string();
    while fs::read_to_string(out.join(".lock")).unwrap_or_default() != pid {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first ingest ended before the test saw its lock"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let o = ingest_cmd(&data, &out, true).output().unwrap();
    let still_running = first.try_wait().unwrap().is_none();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(still_running, "16 scans take longer than starting a process");
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("another ingest (process {pid})")), "{err}");
    assert!(first.wait().unwrap().success());
    assert_eq!(Store::open(&out).unwrap().scans().len(), 16);
    // The lock went with the process: the next ingest runs.
    assert!(ingest_cmd(&data, &out, true).output().unwrap().status.success());
}

/// Readers opening and reading the store while `ingest --resume` adds six scans to it see
/// only complete scans: every listed scan reads whole (CRC-checked) and the index always
/// opens, at every moment the test looks.
#[test]
fn readers_see_only_complete_scans_while_a_resumed_ingest_adds_more() {
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 8, 23);
    let out = dir.path().join("store");
    store_first(&data, 2, &out);
    let mut child =
        ingest_cmd(&data, &out, true).stdout(std::process::Stdio::null()).spawn().unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut looks = 0;
    loop {
        let done = child.try_wait().unwrap().is_some();
        let store = Store::open(&out).unwrap_or_else(|e| panic!("look {looks}: {e}"));
        for id in store.series_ids() {
            let v = store.volume(id).unwrap_or_else(|e| panic!("look {looks}: {id}: {e}"));
            v.read_all().unwrap_or_else(|e| panic!("look {looks}: {id}: {e}"));
        }
        index::read_nodules(&out.join("index/nodules.parquet"))
            .unwrap_or_else(|e| panic!("look {looks}: {e}"));
        seen.insert(store.scans().len());
        looks += 1;
        if done {
            break;
        }
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(seen.last(), Some(&8));
    assert_eq!(seen.first(), Some(&2));
    assert!(seen.len() >= 3, "the readers saw the store grow: {seen:?} in {looks} looks");
}

/// A write that fails part-way (here: the file-size limit, which fails writes with EFBIG
/// as a full disk fails them with ENOSPC) ends the scan with a message naming it, leaves
/// no partial file and the store as it was; once the space is there, `--resume` finishes.
#[test]
fn a_failed_write_leaves_the_store_as_it_was() {
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 3, 29);
    let out = dir.path().join("store");
    store_first(&data, 2, &out);
    let before = snapshot(&out);
    // sh ignores SIGXFSZ (inherited through exec) and limits files to 400 blocks (at least
    // 200 KB: the index tables fit, a ~1 MB volume does not).
    let o = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 400; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_ctstream"))
        .args(ingest_args(&data, &out, true))
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.status.code(), Some(1), "{text}");
    assert!(
        text.contains("File too large") && text.contains(".mhd"),
        "the failure names the scan and the reason: {text}"
    );
    let after = snapshot(&out);
    assert_eq!(after.keys().collect::<Vec<_>>(), before.keys().collect::<Vec<_>>(), "{text}");
    assert!(after == before, "the store changed");
    let leftovers: Vec<_> = fs::read_dir(out.join("volumes"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    assert!(ingest_cmd(&data, &out, true).output().unwrap().status.success());
    assert_eq!(Store::open(&out).unwrap().scans().len(), 3);
}

/// `--shard K/N` in N processes at once into one store, then `ctstream index`: the same
/// store, file for file, as one ingest of everything. The shares are disjoint and cover
/// every series; a shard without --resume is refused only for scans of its own share.
#[test]
fn shards_in_parallel_processes_then_index_equal_one_ingest() {
    let dir = tempdir();
    let data = dir.path().join("data");
    dataset(&data, 5, 21);
    let single = dir.path().join("single");
    let o = ingest_cmd(&data, &single, false)
        .arg("--candidates")
        .arg(data.join("candidates.csv"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sharded = dir.path().join("sharded");
    let n = 3;
    let children: Vec<_> = (0..n)
        .map(|k| {
            ingest_cmd(&data, &sharded, false)
                .args(["--candidates"])
                .arg(data.join("candidates.csv"))
                .args(["--json", "--shard", &format!("{k}/{n}")])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut stored = Vec::new();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let mine: Vec<String> = s["stored"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(s["other_shards"].as_u64().unwrap() as usize, 5 - mine.len());
        stored.extend(mine);
    }
    stored.sort();
    let all: Vec<String> = Store::open(&single).unwrap().series_ids().map(str::to_string).collect();
    assert_eq!(stored, all, "every series in exactly one shard");
    let o = Command::new(env!("CARGO_BIN_EXE_ctstream"))
        .arg("index")
        .arg(&sharded)
        .arg("--annotations")
        .arg(data.join("annotations.csv"))
        .arg("--candidates")
        .arg(data.join("candidates.csv"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (want, got) = (snapshot(&single), snapshot(&sharded));
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
    for (name, bytes) in &want {
        assert!(got[name] == *bytes, "{name} differs");
    }
    // Indexing without the CSVs would drop the nodules: refused unless asked for.
    let o =
        Command::new(env!("CARGO_BIN_EXE_ctstream")).arg("index").arg(&sharded).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("give --annotations (and --excluded) again"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A shard run again without --resume: refused for its own scans, naming the shard.
    let k = (0..n)
        .find(|k| {
            all.iter().any(|id| ctstream::ingest::shard::Shard { index: *k, count: n }.contains(id))
        })
        .unwrap();
    let o =
        ingest_cmd(&data, &sharded, false).args(["--shard", &format!("{k}/{n}")]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains(&format!("scans of shard {k}/{n}; pass --resume")),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The tests that need Python with the pinned packages (tools/goldens and tools/python requirements): ignored where it is missing (cargo test says
/// so); tools/test.sh runs them with `--ignored with_python::` where it is installed.
mod with_python {
    use super::*;

    /// SimpleITK reads the NIfTI `ctstream export` writes with the stored geometry and voxels
    /// (float32 in the header: 1e-4 mm).
    #[test]
    #[ignore = "needs Python with the pinned packages (tools/goldens and tools/python requirements): tools/test.sh runs it where they are installed"]
    fn simpleitk_reads_the_exported_nifti_as_stored() {
        let dir = tempdir();
        let e = export_both(dir.path());
        let n = ctstream::io::nifti::read(&e.nii).unwrap();
        let d = sitk_digest(&[e.nii.as_path()]);
        assert_matches_sitk("exported NIfTI", &d[e.nii.to_str().unwrap()], &n, 1e-4);
    }

    /// Stored volumes agree with SimpleITK's linear resampling of the source onto the stored
    /// grid (mean absolute difference < 1 HU), including a scan whose direction permutes and
    /// flips the axes; nodule voxel coordinates agree with SimpleITK's transform to 1e-3.
    #[test]
    #[ignore = "needs Python with the pinned packages (tools/goldens and tools/python requirements): tools/test.sh runs it where they are installed"]
    fn stored_volumes_and_nodules_agree_with_simpleitk() {
        let dir = tempdir();
        let data = dir.path().join("data");
        let s = dataset(&data, 2, 21);
        // A third scan: scan 0's voxels with a direction that swaps x/y and flips one, and
        // anisotropic spacing, so the exact reordering path runs.
        let src = metaimage::read(&s.scans[0]).unwrap();
        let g = Geometry {
            origin_xyz: [20.0, -150.0, -200.0],
            spacing_xyz: [0.9, 1.1, 2.0],
            direction: [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0],
        };
        let rotated = data.join("other").join("rotated.mhd");
        fs::create_dir_all(rotated.parent().unwrap()).unwrap();
        metaimage::write(&rotated, &src.hu, &g, metaimage::WriteOptions::default()).unwrap();

        let out = dir.path().join("store");
        let summary = ingest::ingest(&ingest_config(&data, &out), &()).unwrap();
        assert_eq!(summary.stored.len(), 3, "{summary:?}");
        assert!(summary.failed.is_empty(), "{summary:?}");
        assert_eq!(summary.nodules_indexed, s.nodules);
        assert_eq!(summary.nodules_outside, 0);

        let store = Store::open(&out).unwrap();
        let nodules = index::read_nodules(&out.join("index/nodules.parquet")).unwrap();
        let mut by_series: BTreeMap<&str, Vec<&index::NoduleRow>> = BTreeMap::new();
        for n in &nodules {
            by_series.entry(n.series_id.as_str()).or_default().push(n);
        }
        let sources: Vec<(String, PathBuf)> = s
            .scans
            .iter()
            .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p.clone()))
            .chain([("rotated".to_string(), rotated.clone())])
            .collect();
        for (id, source) in sources {
            let v = store.volume(&id).unwrap();
            let rec = store.scan(&id).unwrap();
            assert_eq!(v.shape_zyx(), rec.shape_zyx);
            let exported = dir.path().join(format!("{id}-stored.mhd"));
            metaimage::write(
                &exported,
                &v.read_all().unwrap(),
                &v.geometry(),
                metaimage::WriteOptions::default(),
            )
            .unwrap();
            let rows = by_series.get(id.as_str()).cloned().unwrap_or_default();
            let points: Vec<[f64; 3]> = rows.iter().map(|n| n.world_xyz).collect();
            let args = [
                exported.clone().into_os_string(),
                source.into_os_string(),
                serde_json::to_string(&points).unwrap().into(),
            ];
            let r = python_json("tools/goldens/check_store.py", &args);
            let mad = r["mad"].as_f64().unwrap();
            assert!(mad < 1.0, "{id}: mean |stored - SimpleITK| = {mad} HU (max {})", r["max"]);
            for (n, want) in rows.iter().zip(r["indices_zyx"].as_array().unwrap()) {
                assert_close(
                    &format!("{id}: nodule {}", n.nodule_id),
                    &n.voxel_zyx,
                    &f64s(want),
                    1e-3,
                );
            }
        }
    }
}
