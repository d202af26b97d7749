//! Stores on object storage, against a real S3-compatible server process on the loopback
//! interface: moto's standalone server (tools/s3/server.py, the pinned packages of
//! tools/s3/requirements.txt in `$CTSTREAM_S3_PYTHON` or target/s3-venv), one per test.
//! A store ingested locally and uploaded object for object reads back exactly as the local
//! one (records, index tables, every voxel, the loader's batches byte for byte), a patch
//! costs one coalesced request, a corrupted object is caught by its CRC and named, and a
//! server that stops mid-epoch gives an error naming the object within the timeout.
//!
//! Every test here is ignored unless asked for (`cargo test --test remote -- --ignored`),
//! so where moto is missing cargo test reports them ignored rather than passed;
//! tools/test.sh runs them where the server's packages are installed (CI always).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
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

/// Starts tools/s3/server.py with the bucket (its packages in `$CTSTREAM_S3_PYTHON`, else
/// target/s3-venv, else python3); a server that does not start fails the test.
fn server() -> Server {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/s3-venv/bin/python");
    let python = std::env::var_os("CTSTREAM_S3_PYTHON")
        .map(PathBuf::from)
        .unwrap_or(if venv.exists() { venv } else { PathBuf::from("python3") });
    let mut child = Command::new(&python)
        .arg(root.join("tools/s3/server.py"))
        .args(["--bucket", BUCKET])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    let mut line = String::new();
    let _ = std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line);
    let endpoint = line.trim().to_string();
    if !endpoint.starts_with("http://127.0.0.1:") {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{} tools/s3/server.py did not start (python3 -m pip install -r tools/s3/requirements.txt)",
            python.display()
        );
    }
    Server { child, endpoint }
}

/// A client for `prefix` of the test bucket on `server`.
fn remote(server: &Server, prefix: &str, options: RemoteOptions) -> Remote {
    let config = [
        ("aws_endpoint", server.endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
    ];
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
#[ignore = "needs moto's S3 server (tools/s3/requirements.txt): tools/test.sh runs it where it is installed"]
fn a_remote_store_reads_as_the_local_one() {
    let s = server();
    let dir = tempdir();
    let local_path = uploaded(&s, dir.path(), 3, "same");
    let local = Store::open(&local_path).unwrap();
    let remote_store = open(remote(&s, "same", RemoteOptions::default()));
    assert_eq!(remote_store.root(), Path::new(&format!("s3://{BUCKET}/same")));
    assert_eq!(
        serde_json::to_value(remote_store.manifest()).unwrap(),
        serde_json::to_value(local.manifest()).unwrap()
    );
    assert_eq!(
        serde_json::to_value(remote_store.scans()).unwrap(),
        serde_json::to_value(local.scans()).unwrap()
    );
    assert!(remote_store.damaged().is_empty() && remote_store.scans().len() == 3);
    assert_eq!(remote_store.table_names().unwrap(), local.table_names().unwrap());
    for t in local.table_names().unwrap() {
        assert_eq!(remote_store.table_bytes(&t).unwrap(), local.table_bytes(&t).unwrap(), "{t}");
    }
    assert_eq!(
        format!("{:?}", remote_store.nodules().unwrap()),
        format!("{:?}", local.nodules().unwrap())
    );
    assert_eq!(
        format!("{:?}", remote_store.candidates().unwrap()),
        format!("{:?}", local.candidates().unwrap())
    );
    for id in local.series_ids() {
        assert_eq!(
            remote_store.volume(id).unwrap().read_all().unwrap(),
            local.volume(id).unwrap().read_all().unwrap(),
            "{id}"
        );
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
    let (a, b) = (
        ctstream::verify::verify_store(&fresh, &()),
        ctstream::verify::verify(&local_path, &()).unwrap(),
    );
    assert!(a.is_ok() && b.is_ok(), "{:?}", a.problems);
    assert_eq!(
        (a.chunks_checked, a.index_rows_checked, a.scans_ok.len()),
        (b.chunks_checked, b.index_rows_checked, 3)
    );
}

#[test]
#[ignore = "needs moto's S3 server (tools/s3/requirements.txt): tools/test.sh runs it where it is installed"]
fn loader_batches_from_a_remote_store_equal_the_local_stores() {
    let s = server();
    let dir = tempdir();
    let local_path = uploaded(&s, dir.path(), 4, "loader");
    let local = Store::open(&local_path).unwrap();
    let remote_store = open(remote(&s, "loader", RemoteOptions::default()));
    let collect = |store: &Store| -> Vec<Batch> {
        let l = Loader::builder(store)
            .batch_size(4)
            .workers(2)
            .seed(9)
            .batches_per_epoch(Some(6))
            .build()
            .unwrap();
        l.epoch(1).map(|b| b.unwrap()).collect()
    };
    let (a, b) = (collect(&local), collect(&remote_store));
    assert_eq!(a.len(), 6);
    assert_eq!(a, b, "the same batches, byte for byte");
    // Data-parallel ranks on one remote store: each rank's batches are the local store's
    // for that rank, and the ranks draw from disjoint scans that cover the store.
    let ranked = |store: &Store, rank: usize| -> Vec<Batch> {
        let l = Loader::builder(store)
            .batch_size(4)
            .workers(2)
            .seed(9)
            .shard(rank, 2)
            .batches_per_epoch(Some(4))
            .build()
            .unwrap();
        l.epoch(0).map(|b| b.unwrap()).collect()
    };
    let scans = |bs: &[Batch]| {
        bs.iter()
            .flat_map(|b| b.patches.iter().map(|p| p.series_id.clone()))
            .collect::<std::collections::BTreeSet<_>>()
    };
    let (r0, r1) = (ranked(&remote_store, 0), ranked(&remote_store, 1));
    assert_eq!((r0.clone(), r1.clone()), (ranked(&local, 0), ranked(&local, 1)));
    let (s0, s1) = (scans(&r0), scans(&r1));
    assert!(s0.is_disjoint(&s1), "{s0:?} {s1:?}");
    assert_eq!(
        s0.union(&s1).cloned().collect::<Vec<_>>(),
        local.series_ids().map(str::to_string).collect::<Vec<_>>()
    );
}

#[test]
#[ignore = "needs moto's S3 server (tools/s3/requirements.txt): tools/test.sh runs it where it is installed"]
fn a_corrupted_object_is_caught_by_its_crc_and_named() {
    let s = server();
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
    let want = format!(
        "s3://{BUCKET}/corrupt/{rel}: corrupt chunk (z {}, y {}, x {}): checksum mismatch",
        grid[0] - 1,
        grid[1] - 1,
        grid[2] - 1
    );
    assert!(e.to_string().starts_with(&want), "{e}\nwant {want}");
    // `verify` names the scan and the chunk too.
    let report = ctstream::verify::verify_store(&store, &());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].scan == id && report.problems[0].message.starts_with(&want),
        "{:?}",
        report.problems
    );
}

/// A nodules table missing from the bucket while `checksums.json` lists it (an upload or
/// sync that stopped part way) is refused, naming the object, as locally.
#[test]
#[ignore = "needs moto's S3 server (tools/s3/requirements.txt): tools/test.sh runs it where it is installed"]
fn a_missing_index_object_is_refused_not_read_as_empty() {
    let s = server();
    let dir = tempdir();
    uploaded(&s, dir.path(), 1, "partial");
    let r = remote(&s, "partial", RemoteOptions::default());
    assert!(!open(remote(&s, "partial", RemoteOptions::default())).nodules().unwrap().is_empty());
    r.delete("index/nodules.parquet").unwrap();
    let store = open(r);
    let e = store.nodules().unwrap_err().to_string();
    assert!(
        e.contains(&format!("s3://{BUCKET}/partial/index/nodules.parquet"))
            && e.contains("missing")
            && e.contains("checksums.json"),
        "{e}"
    );
}

#[test]
#[ignore = "needs moto's S3 server (tools/s3/requirements.txt): tools/test.sh runs it where it is installed"]
fn a_server_stopped_mid_epoch_gives_an_error_within_the_timeout() {
    let mut s = server();
    let dir = tempdir();
    uploaded(&s, dir.path(), 1, "stop");
    let quick = RemoteOptions {
        request_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(1),
        retries: 2,
        deadline: Duration::from_secs(5),
        ..RemoteOptions::default()
    };
    let store = open(remote(&s, "stop", quick));
    // No chunk cache: every patch goes to the server.
    let loader = Loader::builder(&store)
        .batch_size(2)
        .workers(2)
        .cache_bytes(0)
        .batches_per_epoch(Some(10_000))
        .build()
        .unwrap();
    let mut epoch = loader.epoch(0);
    assert!(epoch.next().unwrap().is_ok());
    let _ = s.child.kill();
    let _ = s.child.wait();
    let t = Instant::now();
    let err = loop {
        match epoch.next() {
            Some(Ok(_)) => assert!(
                t.elapsed() < Duration::from_secs(60),
                "batches keep coming from a stopped server"
            ),
            Some(Err(e)) => break e,
            None => panic!("the epoch ended without an error"),
        }
    };
    // Batches built before the stop may come first; the error arrives within the deadline
    // (5 s) and a margin, not as a hang.
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("s3://{BUCKET}/stop/volumes/"))
            || msg.contains(&format!("s3://{BUCKET}/stop/labels/")),
        "{msg}"
    );
    assert!(msg.contains("(bytes "), "names the byte range: {msg}");
    assert!(
        matches!(err, ctstream::loader::LoaderError::Store(StoreError::Remote { .. })),
        "{err:?}"
    );
}

/// The `object_store` settings of the environment that reach `server` (for the CLI).
fn server_env(s: &Server) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", s.endpoint.clone()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// Every object under the remote's prefix, by path relative to it.
fn objects(r: &Remote) -> std::collections::BTreeMap<String, Vec<u8>> {
    r.list("")
        .unwrap()
        .into_iter()
        .map(|(rel, _)| (rel.clone(), r.get(&rel, 1 << 30).unwrap().unwrap().to_vec()))
        .collect()
}

fn assert_same_files(
    want: &std::collections::BTreeMap<String, Vec<u8>>,
    got: &std::collections::BTreeMap<String, Vec<u8>>,
) {
    assert_eq!(want.keys().collect::<Vec<_>>(), got.keys().collect::<Vec<_>>());
    for (name, bytes) in want {
        assert!(got[name] == *bytes, "{name} differs");
    }
}

/// `ingest --out s3://...`: every object byte-identical to the file of a local ingest of
/// the same inputs; the staging folder left empty; `--resume` skips everything and uploads
/// nothing; without it the store is refused as a local one is.
#[test]
#[ignore = "needs moto's S3 server (tools/s3/requirements.txt): tools/test.sh runs it where it is installed"]
fn an_ingest_to_s3_stores_what_a_local_ingest_stores() {
    let s = server();
    let dir = tempdir();
    let local = local_store(dir.path(), 3);
    let data = dir.path().join("data");
    let stage = dir.path().join("stage");
    let mut cfg = ingest_config(&data, &stage);
    cfg.remote = Some(Arc::new(remote(&s, "ingest", RemoteOptions::default())));
    let summary = ingest::ingest(&cfg, &()).unwrap();
    assert_eq!(
        (summary.stored.len(), summary.scans_in_store, summary.failed.len()),
        (3, 3, 0),
        "{:?}",
        summary.failed
    );
    let r = remote(&s, "ingest", RemoteOptions::default());
    assert_same_files(&snapshot(&local), &objects(&r));
    // Every volume and record uploaded was counted.
    let uploaded: u64 = objects(&r)
        .iter()
        .filter(|(k, _)| !k.starts_with("index/") && k.as_str() != "manifest.json")
        .map(|(_, v)| v.len() as u64)
        .sum();
    assert_eq!(summary.bytes_uploaded, uploaded);
    assert!(
        snapshot(&stage).is_empty(),
        "staged files removed: {:?}",
        snapshot(&stage).keys().collect::<Vec<_>>()
    );
    let again = ingest::ingest(&IngestConfig { resume: true, ..cfg.clone() }, &()).unwrap();
    assert_eq!((again.skipped.len(), again.stored.len(), again.bytes_uploaded), (3, 0, 0));
    assert_same_files(&snapshot(&local), &objects(&r));
    let e = ingest::ingest(&cfg, &()).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "s3://{BUCKET}/ingest: the store already holds 3 scans; pass --resume"
        )),
        "{e}"
    );
    // Other parameters are refused, naming the store.
    let e =
        ingest::ingest(&IngestConfig { level: 5, resume: true, ..cfg.clone() }, &()).unwrap_err();
    assert!(
        matches!(e, ingest::IngestError::Mismatch { .. })
            && e.to_string().starts_with(&format!(
                "s3://{BUCKET}/ingest: the store was made with other parameters"
            )),
        "{e}"
    );
    // A folder that is not a staging folder is not emptied.
    let e = ingest::ingest(&IngestConfig { out: local.clone(), resume: true, ..cfg.clone() }, &())
        .unwrap_err();
    assert!(e.to_string().contains("not empty and not a staging folder"), "{e}");
    assert!(Store::open(&local).is_ok());
}

/// Two `ctstream ingest --shard K/2` processes at once into one bucket prefix, then
/// `ctstream index s3://...`: the objects equal the files of one local ingest of all of it.
#[test]
#[ignore = "needs moto's S3 server (tools/s3/requirements.txt): tools/test.sh runs it where it is installed"]
fn two_shards_in_two_processes_then_index_equal_one_ingest() {
    let s = server();
    let dir = tempdir();
    let local = local_store(dir.path(), 4);
    let data = dir.path().join("data");
    let url = format!("s3://{BUCKET}/shards");
    let csv = |a: &mut Command| {
        a.arg("--annotations")
            .arg(data.join("annotations.csv"))
            .arg("--candidates")
            .arg(data.join("candidates.csv"));
    };
    let children: Vec<_> = (0..2)
        .map(|k| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_ctstream"));
            c.args(["--quiet", "ingest", "--jobs", "1", "--json", "--input"])
                .arg(&data)
                .args(["--out", &url, "--shard", &format!("{k}/2"), "--stage"])
                .arg(dir.path().join(format!("stage{k}")));
            csv(&mut c);
            c.envs(server_env(&s)).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let mut stored = 0;
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        stored += j["stored"].as_array().unwrap().len();
        assert_eq!(
            j["stored"].as_array().unwrap().len() + j["other_shards"].as_u64().unwrap() as usize,
            4
        );
    }
    assert_eq!(stored, 4);
    let mut c = Command::new(env!("CARGO_BIN_EXE_ctstream"));
    c.args(["index", &url]);
    csv(&mut c);
    let o = c.envs(server_env(&s)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("4 scans"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_same_files(&snapshot(&local), &objects(&remote(&s, "shards", RemoteOptions::default())));
}

/// `--disk-cache`: a second run of the same epoch on a fresh client reads every chunk from
/// the local folder (no request after the volumes are opened) and yields the same batches;
/// a damaged cache file is not used (fetched again), and the batches stay the same.
#[test]
#[ignore = "needs moto's S3 server (tools/s3/requirements.txt): tools/test.sh runs it where it is installed"]
fn a_disk_cache_serves_a_second_run_without_requests() {
    use ctstream::store::cache::disk::DiskCache;
    let s = server();
    let dir = tempdir();
    uploaded(&s, dir.path(), 2, "disk");
    let cache_dir = dir.path().join("cache");
    let run = || -> (Vec<Batch>, u64, ctstream::store::cache::disk::DiskCacheStats) {
        let r = remote(&s, "disk", RemoteOptions::default());
        assert!(r.set_disk_cache(DiskCache::open(&cache_dir, 1 << 30).unwrap()));
        let store = open(r);
        let l = Loader::builder(&store)
            .batch_size(4)
            .workers(2)
            .seed(3)
            .batches_per_epoch(Some(5))
            .build()
            .unwrap();
        let client = store.location().remote().unwrap().clone();
        let before = client.stats().requests;
        let batches: Vec<Batch> = l.epoch(0).map(|b| b.unwrap()).collect();
        (batches, client.stats().requests - before, client.disk_cache().unwrap().stats())
    };
    let (cold, cold_requests, _) = run();
    assert!(cold_requests > 0);
    let files: Vec<PathBuf> = std::fs::read_dir(&cache_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "chunk"))
        .collect();
    assert!(!files.is_empty());
    let (warm, warm_requests, stats) = run();
    assert_eq!(warm, cold, "the same batches from the disk cache");
    assert_eq!(warm_requests, 0, "every chunk came from the disk cache");
    assert!(stats.hits > 0 && stats.misses == 0, "{stats:?}");
    // One cache file damaged (same size): refused by its CRC, fetched again.
    let mut b = std::fs::read(&files[0]).unwrap();
    b[0] ^= 0xff;
    std::fs::write(&files[0], &b).unwrap();
    let (again, _, stats) = run();
    assert_eq!(again, cold);
    assert_eq!(stats.misses, 1, "the damaged chunk was fetched again: {stats:?}");
}

#[test]
#[ignore = "needs moto's S3 server (tools/s3/requirements.txt): tools/test.sh runs it where it is installed"]
fn chunks_a_coalesced_request_brought_along_are_used_without_another() {
    let s = server();
    let dir = tempdir();
    let local_path = uploaded(&s, dir.path(), 1, "memory");
    let local = Store::open(&local_path).unwrap();
    let id = local.series_ids().next().unwrap().to_string();
    let lv = local.volume(&id).unwrap();
    let read = |memory_bytes: u64| {
        let store =
            open(remote(&s, "memory", RemoteOptions { memory_bytes, ..RemoteOptions::default() }));
        let v = store.volume(&id).unwrap();
        let client = store.location().remote().unwrap().clone();
        // Chunks 0 and 2 of the first row: one request for bytes 0..end of chunk 2 (the
        // gap, chunk 1, is far below the 1 MiB coalescing gap), which brings chunk 1.
        let before = client.stats();
        let f = v.fetch(&[[0, 0, 0], [0, 0, 2]]).unwrap();
        for c in [[0, 0, 0], [0, 0, 2]] {
            assert_eq!(v.decode_chunk_fetched::<i16>(c, &f).unwrap(), lv.decode_chunk(c).unwrap());
        }
        let mid = client.stats();
        assert_eq!(mid.requests - before.requests, 1);
        let f = v.fetch(&[[0, 0, 1]]).unwrap();
        assert_eq!(
            v.decode_chunk_fetched::<i16>([0, 0, 1], &f).unwrap(),
            lv.decode_chunk([0, 0, 1]).unwrap()
        );
        let end = client.stats();
        (
            end.requests - mid.requests,
            mid.bytes_fetched - before.bytes_fetched,
            mid.bytes_wanted - before.bytes_wanted,
            end.bytes_wanted - before.bytes_wanted,
            client.memory_cache().stats(),
        )
    };
    // The payload lengths, from the local file's chunk table (FORMAT.md: they tile the
    // file in chunk order, so chunks 0..=2 are one run of bytes).
    let head = std::fs::read(lv.path()).unwrap();
    let entry_len = |k: usize| {
        u32::from_le_bytes(head[256 + 16 * k + 8..256 + 16 * k + 12].try_into().unwrap()) as u64
    };
    let (l0, l1, l2) = (entry_len(0), entry_len(1), entry_len(2));
    let (again, fetched, wanted_first, wanted_all, stats) = read(256 << 20);
    assert_eq!(again, 0, "chunk 1 came with the first request");
    assert_eq!(fetched, l0 + l1 + l2);
    assert_eq!(wanted_first, l0 + l2, "asked for");
    assert_eq!(wanted_all, fetched, "every byte received was used");
    assert_eq!(stats.hits, 1);
    // Without a memory budget chunk 1 is asked for again.
    let (again, fetched, _, wanted_all, _) = read(0);
    assert_eq!((again, fetched, wanted_all), (1, l0 + l1 + l2, l0 + l1 + l2));
}

#[test]
#[ignore = "needs moto's S3 server (tools/s3/requirements.txt): tools/test.sh runs it where it is installed"]
fn the_viewer_serves_a_remote_store_fetching_only_the_chunks_of_a_slice() {
    use crate::view::{config, cut, get, int16s, serve};
    let s = server();
    let dir = tempdir();
    let local_path = uploaded(&s, dir.path(), 1, "view");
    let local = Store::open(&local_path).unwrap();
    let id = local.series_ids().next().unwrap().to_string();
    let hu = local.volume(&id).unwrap().read_all().unwrap();
    // No coalescing: what is fetched is what the slice's chunks are.
    let r = Arc::new(remote(&s, "view", RemoteOptions { coalesce_bytes: 0, ..Default::default() }));
    let store = Store::open_location(Location::Remote(r.clone())).unwrap();
    let cfg =
        ctstream::view::ViewConfig { store: format!("s3://{BUCKET}/view"), ..config(&local_path) };
    let running = serve(store, cfg);
    let before = r.stats();
    let z = hu.shape()[0] / 2;
    let g = get(running.addr(), &format!("/api/scans/{id}/image/axial/{z}"));
    assert_eq!(g.status, 200);
    let got = int16s(&g.body);
    assert_eq!(got, cut(&hu, 0, z).0);
    // One slice needs one row of chunks, not the volume: far fewer bytes than its file.
    let fetched = r.stats().bytes_fetched - before.bytes_fetched;
    let file = local.scan(&id).unwrap().bytes_stored;
    assert!(fetched > 0 && fetched * 2 < file, "{fetched} bytes fetched of a {file}-byte volume");
    // The same slice again comes from the decoded-chunk cache: no request.
    let requests = r.stats().requests;
    assert_eq!(get(running.addr(), &format!("/api/scans/{id}/image/axial/{z}")).body, g.body);
    assert_eq!(r.stats().requests, requests);
    running.stop().unwrap();
}
