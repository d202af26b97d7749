//! Stores on object storage, against a real S3-compatible server process on the loopback
//! interface: moto's standalone server (tools/s3/server.py, the pinned packages of
//! tools/s3/requirements.txt in `$CTSTREAM_S3_PYTHON` or target/s3-venv), one per test.
//! A store ingested locally and uploaded object for object reads back exactly as the local
//! one (records, index tables, every voxel, the loader's batches byte for byte), a patch
//! costs one coalesced request, a corrupted object is caught by its CRC and named, and a
//! server that stops mid-epoch gives an error naming the object within the timeout.
//!
//! Without the server's packages the tests say so and pass, unless `CTSTREAM_REQUIRE_S3`
//! is set (CI sets it).

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ctstream::ingest::{self, IngestConfig};
use ctstream::loader::{Batch, Loader};
use ctstream::store::remote::{Remote, RemoteOptions};
use ctstream::store::{Location, Region, Store, StoreError};

const BUCKET: &str = "ctstream-test";

/// A running server, stopped when dropped.
struct Server {
    child: Child,
    endpoint: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts tools/s3/server.py with the bucket; None (the test is skipped) when its Python
/// packages are missing and CI does not require them.
fn server() -> Option<Server> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/s3-venv/bin/python");
    let python = std::env::var_os("CTSTREAM_S3_PYTHON").map(PathBuf::from).unwrap_or(if venv.exists() { venv } else { PathBuf::from("python3") });
    let required = std::env::var_os("CTSTREAM_REQUIRE_S3").is_some();
    let mut child = match Command::new(&python).arg(root.join("tools/s3/server.py")).args(["--bucket", BUCKET]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn() {
        Ok(c) => c,
        Err(e) if required => panic!("{}: {e}", python.display()),
        Err(_) => return None,
    };
    let mut line = String::new();
    let _ = std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    let endpoint = line.trim().to_string();
    if !endpoint.starts_with("http://127.0.0.1:") {
        let _ = child.kill();
        let _ = child.wait();
        assert!(!required, "CTSTREAM_REQUIRE_S3 is set but {} tools/s3/server.py did not start (pip install -r tools/s3/requirements.txt)", python.display());
        eprintln!("moto is not installed for {}: skipping the object-storage tests (CI runs them)", python.display());
        return None;
    }
    Some(Server { child, endpoint })
}

/// A client for `prefix` of the test bucket on `server`.
fn remote(server: &Server, prefix: &str, options: RemoteOptions) -> Remote {
    let config = [("aws_endpoint", server.endpoint.as_str()), ("aws_allow_http", "true"), ("aws_access_key_id", "test"), ("aws_secret_access_key", "test"), ("aws_region", "us-east-1")];
    Remote::open_with_config(&format!("s3://{BUCKET}/{prefix}"), options, &config).unwrap()
}

/// A small synthetic store, ingested locally.
fn local_store(dir: &Path, scans: usize) -> PathBuf {
    let data = dir.join("data");
    dataset(&data, scans, 41);
    let out = dir.join("store");
    let cfg: IngestConfig = ingest_config(&data, &out);
    ingest::ingest(&cfg, &()).unwrap();
    out
}

/// Uploads every file of a local store (not its lock) under the remote's prefix.
fn upload(local: &Path, r: &Remote) {
    for e in walk(local) {
        let rel = e.strip_prefix(local).unwrap().to_str().unwrap().to_string();
        if rel != ".lock" {
            r.put(&rel, std::fs::read(&e).unwrap().into()).unwrap();
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out.sort();
    out
}

/// A local store of `scans` small scans in `dir`, uploaded under `prefix`: its folder.
fn uploaded(s: &Server, dir: &Path, scans: usize, prefix: &str) -> PathBuf {
    let local = local_store(dir, scans);
    upload(&local, &remote(s, prefix, RemoteOptions::default()));
    local
}

fn open(r: Remote) -> Store {
    Store::open_location(Location::Remote(Arc::new(r))).unwrap()
}

#[test]
fn a_remote_store_reads_as_the_local_one() {
    let Some(s) = server() else { return };
    let dir = tempdir();
    let local_path = uploaded(&s, dir.path(), 3, "same");
    let local = Store::open(&local_path).unwrap();
    let remote_store = open(remote(&s, "same", RemoteOptions::default()));
    assert_eq!(remote_store.root(), Path::new(&format!("s3://{BUCKET}/same")));
    assert_eq!(serde_json::to_value(remote_store.manifest()).unwrap(), serde_json::to_value(local.manifest()).unwrap());
    assert_eq!(serde_json::to_value(remote_store.scans()).unwrap(), serde_json::to_value(local.scans()).unwrap());
    assert!(remote_store.damaged().is_empty() && remote_store.scans().len() == 3);
    assert_eq!(remote_store.table_names().unwrap(), local.table_names().unwrap());
    for t in local.table_names().unwrap() {
        assert_eq!(remote_store.table_bytes(&t).unwrap(), local.table_bytes(&t).unwrap(), "{t}");
    }
    assert_eq!(format!("{:?}", remote_store.nodules().unwrap()), format!("{:?}", local.nodules().unwrap()));
    assert_eq!(format!("{:?}", remote_store.candidates().unwrap()), format!("{:?}", local.candidates().unwrap()));
    for id in local.series_ids() {
        assert_eq!(remote_store.volume(id).unwrap().read_all().unwrap(), local.volume(id).unwrap().read_all().unwrap(), "{id}");
        let (a, b) = (remote_store.label(id, "lungs").unwrap(), local.label(id, "lungs").unwrap());
        assert_eq!(a.read_all_as::<u8>().unwrap(), b.read_all_as::<u8>().unwrap(), "{id} lungs");
        // A patch crossing chunk borders and the scan's edge.
        let r = Region::new([-5, 20, 100], [27, 84, 164]);
        assert_eq!(remote_store.read_region(id, r).unwrap(), local.read_region(id, r).unwrap());
    }
    // One 32x64x64 patch of a volume just opened: its 3x3x3 chunks lie within a few
    // hundred KB of each other in the file (C order, 4x4 chunks per slab of these
    // 128x128 scans), so they come in one coalesced request, not 27.
    let id = local.series_ids().next().unwrap();
    let fresh = open(remote(&s, "same", RemoteOptions::default()));
    let v = fresh.volume(id).unwrap();
    let r = Region::new([8, 40, 40], [40, 104, 104]);
    assert_eq!(v.chunks_touched(r).len(), 27);
    let before = fresh.location().remote().unwrap().stats();
    assert_eq!(v.read_region(r).unwrap(), local.read_region(id, r).unwrap());
    let after = fresh.location().remote().unwrap().stats();
    assert_eq!(after.requests - before.requests, 1);
    // `verify` reads every chunk and checks the index there as here.
    let (a, b) = (ctstream::store::verify::verify_store(&fresh, &()), ctstream::store::verify::verify(&local_path, &()).unwrap());
    assert!(a.is_ok() && b.is_ok(), "{:?}", a.problems);
    assert_eq!((a.chunks_checked, a.index_rows_checked, a.scans_ok.len()), (b.chunks_checked, b.index_rows_checked, 3));
}

#[test]
fn loader_batches_from_a_remote_store_equal_the_local_stores() {
    let Some(s) = server() else { return };
    let dir = tempdir();
    let local_path = uploaded(&s, dir.path(), 2, "loader");
    let local = Store::open(&local_path).unwrap();
    let remote_store = open(remote(&s, "loader", RemoteOptions::default()));
    let collect = |store: &Store| -> Vec<Batch> {
        let l = Loader::builder(store).batch_size(4).workers(2).seed(9).batches_per_epoch(Some(6)).build().unwrap();
        l.epoch(1).map(|b| b.unwrap()).collect()
    };
    let (a, b) = (collect(&local), collect(&remote_store));
    assert_eq!(a.len(), 6);
    assert_eq!(a, b, "the same batches, byte for byte");
}

#[test]
fn a_corrupted_object_is_caught_by_its_crc_and_named() {
    let Some(s) = server() else { return };
    let dir = tempdir();
    let local_path = uploaded(&s, dir.path(), 1, "corrupt");
    let r = remote(&s, "corrupt", RemoteOptions::default());
    let local = Store::open(&local_path).unwrap();
    let id = local.series_ids().next().unwrap().to_string();
    let rel = local.scan(&id).unwrap().volume_file.clone();
    // One byte of the last chunk's payload flipped: same size, header and table intact.
    let mut bytes = std::fs::read(local_path.join(&rel)).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0x10;
    r.put(&rel, bytes.into()).unwrap();
    let store = open(remote(&s, "corrupt", RemoteOptions::default()));
    let grid = store.volume(&id).unwrap().header().grid();
    let e = store.volume(&id).unwrap().read_all().unwrap_err();
    let want = format!("s3://{BUCKET}/corrupt/{rel}: corrupt chunk (z {}, y {}, x {}): checksum mismatch", grid[0] - 1, grid[1] - 1, grid[2] - 1);
    assert!(e.to_string().starts_with(&want), "{e}\nwant {want}");
    // `verify` names the scan and the chunk too.
    let report = ctstream::store::verify::verify_store(&store, &());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].scan == id && report.problems[0].message.starts_with(&want), "{:?}", report.problems);
}

#[test]
fn a_server_stopped_mid_epoch_gives_an_error_within_the_timeout() {
    let Some(mut s) = server() else { return };
    let dir = tempdir();
    uploaded(&s, dir.path(), 1, "stop");
    let quick = RemoteOptions { request_timeout: Duration::from_secs(2), connect_timeout: Duration::from_secs(1), retries: 2, deadline: Duration::from_secs(5) };
    let store = open(remote(&s, "stop", quick));
    // No chunk cache: every patch goes to the server.
    let loader = Loader::builder(&store).batch_size(2).workers(2).cache_bytes(0).batches_per_epoch(Some(10_000)).build().unwrap();
    let mut epoch = loader.epoch(0);
    assert!(epoch.next().unwrap().is_ok());
    let _ = s.child.kill();
    let _ = s.child.wait();
    let t = Instant::now();
    let err = loop {
        match epoch.next() {
            Some(Ok(_)) => assert!(t.elapsed() < Duration::from_secs(60), "batches keep coming from a stopped server"),
            Some(Err(e)) => break e,
            None => panic!("the epoch ended without an error"),
        }
    };
    // Batches built before the stop may come first; the error arrives within the deadline
    // (5 s) and a margin, not as a hang.
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    let msg = err.to_string();
    assert!(msg.contains(&format!("s3://{BUCKET}/stop/volumes/")) || msg.contains(&format!("s3://{BUCKET}/stop/labels/")), "{msg}");
    assert!(msg.contains("(bytes "), "names the byte range: {msg}");
    assert!(matches!(err, ctstream::loader::LoaderError::Store(StoreError::Remote { .. })), "{err:?}");
}
