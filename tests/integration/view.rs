//! `ctstream view`'s server over real HTTP on a loopback port: every route with good
//! requests (slices checked against the whole volume read independently, the PNG against
//! the window's formula), hostile requests answered with their status and a JSON error,
//! many clients at once, a clean stop; the CLI stops on SIGINT.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;

use ctstream::store::Store;
use ctstream::view::ViewConfig;
use ctstream::view::server::{Server, Spawned};
use ndarray::{Array3, Axis};

use crate::common::{dataset, ingest_config, tempdir};

/// A reply: status, headers (lower-case names), body.
pub(crate) struct Got {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `request_line` (sent byte for byte, so `..` and escapes reach the server as
/// written) with `host`, and reads the whole reply.
fn send(addr: SocketAddr, request_line: &str, host: &str) -> Got {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    write!(s, "{request_line} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a header");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v == "chunked") {
        body = dechunk(&body);
    }
    Got { status, headers, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

/// A raw int16 slice's values (little-endian).
pub(crate) fn int16s(body: &[u8]) -> Vec<i16> {
    body.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

pub(crate) fn get(addr: SocketAddr, path: &str) -> Got {
    send(addr, &format!("GET {path}"), "127.0.0.1")
}

/// A store of 2 small synthetic scans (with lung masks, nodules and candidates).
fn store(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    dataset(&data, 2, 43);
    let out = dir.join("store");
    let sum = ctstream::ingest::ingest(&ingest_config(&data, &out), &()).unwrap();
    assert!(sum.failed.is_empty(), "{sum:?}");
    out
}

/// Serves the local store `cfg` names on a free loopback port.
fn start(cfg: ViewConfig) -> Spawned {
    serve(Store::open(Path::new(&cfg.store)).unwrap(), cfg)
}

/// Serves `store` (local or remote) as `cfg` says, on its own thread.
pub(crate) fn serve(store: Store, cfg: ViewConfig) -> Spawned {
    Server::bind(Arc::new(store), &cfg).unwrap().spawn().unwrap()
}

pub(crate) fn config(store: &Path) -> ViewConfig {
    ViewConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..ViewConfig::new(&store.display().to_string())
    }
}

/// Slice `i` on the plane of `axis` of a whole volume read independently of the viewer.
pub(crate) fn cut<T: Copy>(a: &Array3<T>, axis: usize, i: usize) -> (Vec<T>, [usize; 2]) {
    let s = a.index_axis(Axis(axis), i);
    (s.iter().copied().collect(), [s.shape()[0], s.shape()[1]])
}

#[test]
fn every_route_answers_with_what_the_store_holds() {
    let dir = tempdir();
    let out = store(dir.path());
    let st = Store::open(&out).unwrap();
    let ids: Vec<String> = st.series_ids().map(str::to_string).collect();
    let id = &ids[0];
    let running = start(config(&out));
    let addr = running.addr();

    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(String::from_utf8_lossy(&page.body).contains("<script src=\"/app.js\""));
    assert_eq!(get(addr, "/app.js").status, 200);
    assert_eq!(get(addr, "/app.css").status, 200);
    assert!(page.header("content-security-policy").unwrap().contains("default-src 'self'"));

    let info = get(addr, "/api/store").json();
    assert_eq!(info["scans"], 2);
    assert_eq!(info["prediction"], false);

    let rows = get(addr, "/api/scans").json();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let nodules = st.nodules().unwrap();
    for r in rows {
        let sid = r["series_id"].as_str().unwrap();
        let rec = st.scan(sid).unwrap();
        let annotated = nodules.iter().filter(|n| n.series_id == sid && !n.is_excluded()).count();
        assert_eq!(r["nodules"], annotated);
        // Lung volume: the label's voxels times the voxel's volume, by hand.
        let voxels = rec.label("lungs").unwrap().foreground_voxels() as f64;
        let ml = voxels * rec.spacing_xyz.iter().product::<f64>() / 1000.0;
        assert!((r["lung_ml"].as_f64().unwrap() - ml).abs() < 1e-6);
    }

    let detail = get(addr, &format!("/api/scans/{id}")).json();
    assert_eq!(detail["shape_zyx"], serde_json::json!(st.scan(id).unwrap().shape_zyx));
    assert_eq!(detail["labels"][0]["name"], "lungs");
    assert_eq!(
        detail["nodules"].as_array().unwrap().len(),
        nodules.iter().filter(|n| &n.series_id == id).count()
    );

    // Slices on the three planes equal the whole volume's, read without the viewer.
    let hu = st.volume(id).unwrap().read_all().unwrap();
    let lungs = st.label(id, "lungs").unwrap().read_all_as::<u8>().unwrap();
    for (axis, plane) in ["axial", "coronal", "sagittal"].iter().enumerate() {
        for i in [0, hu.shape()[axis] / 2, hu.shape()[axis] - 1] {
            let g = get(addr, &format!("/api/scans/{id}/image/{plane}/{i}"));
            assert_eq!(g.status, 200, "{plane} {i}");
            let (want, shape) = cut(&hu, axis, i);
            assert_eq!(g.header("x-slice-shape").unwrap(), format!("{},{}", shape[0], shape[1]));
            assert_eq!(g.header("x-slice-dtype").unwrap(), "int16");
            let got = int16s(&g.body);
            assert_eq!(got, want, "{plane} {i}");
            let l = get(addr, &format!("/api/scans/{id}/label/lungs/{plane}/{i}"));
            assert_eq!(l.header("x-slice-dtype").unwrap(), "uint8");
            assert_eq!(l.body, cut(&lungs, axis, i).0, "lungs {plane} {i}");
        }
    }

    // The PNG of a slice through a window: grey = round((HU - (L - W / 2)) / W * 255),
    // clamped; at L 40, W 400: -160 HU and below black, 240 HU and above white.
    let z = hu.shape()[0] / 2;
    let g = get(addr, &format!("/api/scans/{id}/image/axial/{z}.png?level=40&width=400"));
    assert_eq!(g.header("content-type").unwrap(), "image/png");
    let png = image::load_from_memory(&g.body).unwrap().to_rgb8();
    assert_eq!((png.height() as usize, png.width() as usize), (hu.shape()[1], hu.shape()[2]));
    for (y, x) in [(0, 0), (hu.shape()[1] / 2, hu.shape()[2] / 2), (5, 7)] {
        let v = hu[[z, y, x]] as f64;
        let want = ((v + 160.0) / 400.0 * 255.0).round().clamp(0.0, 255.0) as u8;
        assert_eq!(png.get_pixel(x as u32, y as u32).0, [want; 3], "({y}, {x}), HU {v}");
    }

    // The thumbnail: 160 pixels wide, the lung contour drawn.
    let t = get(addr, &format!("/api/scans/{id}/thumbnail.png"));
    let t = image::load_from_memory(&t.body).unwrap().to_rgb8();
    assert_eq!(t.width(), 160);
    let contour = ctstream::picture::slice::LUNG_CONTOUR;
    assert!(t.pixels().filter(|p| p.0 == contour).count() > 20);

    // HEAD: the headers without the body.
    let h = send(addr, &format!("HEAD /api/scans/{id}/image/axial/0"), "localhost:1");
    assert_eq!((h.status, h.body.len()), (200, 0));
    running.stop().unwrap();
}

#[test]
fn hostile_requests_are_answered_with_an_error_and_the_server_goes_on() {
    let dir = tempdir();
    let out = store(dir.path());
    let st = Store::open(&out).unwrap();
    let id = st.series_ids().next().unwrap().to_string();
    let nz = st.scan(&id).unwrap().shape_zyx[0];
    let running = start(config(&out));
    let addr = running.addr();
    let cases: Vec<(String, u16)> = vec![
        ("GET /../../etc/passwd".into(), 400),
        ("GET /api/scans/..%2F..%2F..%2Fetc%2Fpasswd".into(), 400),
        (format!("GET /api/scans/{id}/label/..%2F..%2Fvolumes%2F{id}/axial/0"), 400),
        ("GET /api/scans/%2e%2e/thumbnail.png".into(), 400),
        ("GET /api/scans/a%5Cb".into(), 400),
        ("GET /api/scans/%00".into(), 400),
        ("GET /api/scans/%zz".into(), 400),
        ("GET /api/scans/%ff%fe".into(), 400),
        ("GET /api//scans".into(), 400),
        ("GET /api/scans/1.2.3.4.5".into(), 404),
        ("GET /api/scans/1.2.3.4.5/image/axial/0".into(), 404),
        (format!("GET /api/scans/{id}/image/axial/{nz}"), 404),
        (format!("GET /api/scans/{id}/image/axial/999999999"), 404),
        (format!("GET /api/scans/{id}/image/axial/99999999999999999999999"), 400),
        (format!("GET /api/scans/{id}/image/axial/-1"), 400),
        (format!("GET /api/scans/{id}/image/oblique/0"), 400),
        (format!("GET /api/scans/{id}/image/axial/0.png?width=0"), 400),
        (format!("GET /api/scans/{id}/image/axial/0.png?level=nan"), 400),
        (format!("GET /api/scans/{id}/image/axial/0.png?level=1e999"), 400),
        (format!("GET /api/scans/{id}/label/airways/axial/0"), 404),
        (format!("GET /api/scans/{id}/probability/axial/0"), 404),
        ("GET /api/run".into(), 404),
        ("GET /etc/passwd".into(), 404),
        ("GET /api/nothing".into(), 404),
        ("POST /api/scans".into(), 405),
        ("DELETE /".into(), 405),
    ];
    for (line, status) in &cases {
        let g = send(addr, line, "127.0.0.1:8765");
        assert_eq!(g.status, *status, "{line}: {}", String::from_utf8_lossy(&g.body));
        let e = g.json();
        assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "{line}: {e}");
    }
    // The message says what exists.
    let e = get(addr, &format!("/api/scans/{id}/image/axial/{nz}")).json();
    assert!(e["error"].as_str().unwrap().contains(&format!("0 to {}", nz - 1)), "{e}");
    // Another host name (DNS rebinding): refused.
    assert_eq!(send(addr, "GET /api/scans", "evil.example").status, 403);
    assert_eq!(send(addr, "GET /api/scans", "localhost.evil.example:8765").status, 403);
    // A request that is not HTTP at all, then a half-written one: the server goes on.
    for junk in [&b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"[..], b"GET /"] {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(junk).unwrap();
        drop(s);
    }
    assert_eq!(get(addr, "/api/store").status, 200);
    running.stop().unwrap();
}

#[test]
fn many_clients_at_once_get_the_same_slices() {
    let dir = tempdir();
    let out = store(dir.path());
    let st = Store::open(&out).unwrap();
    let id = st.series_ids().next().unwrap().to_string();
    let hu = st.volume(&id).unwrap().read_all().unwrap();
    let running = start(ViewConfig { cache_bytes: 16 << 20, ..config(&out) });
    let addr = running.addr();
    let nz = hu.shape()[0];
    std::thread::scope(|s| {
        for t in 0..32 {
            let (id, hu) = (&id, &hu);
            s.spawn(move || {
                for k in 0..8 {
                    let z = (t * 7 + k * 3) % nz;
                    let g = get(addr, &format!("/api/scans/{id}/image/axial/{z}"));
                    assert_eq!(g.status, 200);
                    let got = int16s(&g.body);
                    assert_eq!(got, cut(hu, 0, z).0, "client {t}, slice {z}");
                }
            });
        }
    });
    running.stop().unwrap();
}

#[test]
fn a_prediction_a_run_and_its_evaluation_are_served() {
    let dir = tempdir();
    let out = store(dir.path());
    let st = Store::open(&out).unwrap();
    let id = st.series_ids().next().unwrap().to_string();
    let rec = st.scan(&id).unwrap().clone();
    // A probability map (per mille) of the scan's shape, and one finding.
    let pred = dir.path().join("pred");
    std::fs::create_dir_all(pred.join("volumes")).unwrap();
    let map = Array3::from_shape_fn(rec.shape_zyx, |(z, y, x)| ((z * 7 + y * 3 + x) % 1001) as i16);
    ctstream::store::writer::write_volume(
        &pred.join("volumes").join(format!("{id}.ctv")),
        &map,
        &rec.geometry(),
        &ctstream::store::writer::ChunkOptions {
            chunk_shape_zyx: [16, 32, 32],
            level: 3,
            fill_value: 0,
        },
    )
    .unwrap();
    let c = rec.geometry().index_to_world([10.0, 20.0, 30.0]);
    std::fs::write(
        pred.join("candidates.csv"),
        format!(
            "seriesuid,coordX,coordY,coordZ,probability\n{id},{},{},{},0.875\n",
            c[0], c[1], c[2]
        ),
    )
    .unwrap();
    // A run folder and an evaluation beside it, as `ctstream demo` lays them out.
    let run = dir.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(run.join("metrics.csv"), "step,loss,dice\n1,0.9,0.1\n2,0.7,0.3\n").unwrap();
    std::fs::write(run.join("val.csv"), "step,loss,cpm\n2,0.8,0.25\n").unwrap();
    let eval = dir.path().join("eval");
    std::fs::create_dir_all(&eval).unwrap();
    std::fs::write(
        eval.join("froc.json"),
        r#"{"scans":1,"nodules":2,"detected":1,"cpm":0.5,"curve":[{"threshold":0.5,"fps_per_scan":1.0,"sensitivity":0.5}]}"#,
    )
    .unwrap();
    let running =
        start(ViewConfig { pred: Some(pred.clone()), run: Some(run.clone()), ..config(&out) });
    let addr = running.addr();
    let g = get(addr, &format!("/api/scans/{id}/probability/sagittal/30"));
    assert_eq!(g.status, 200);
    let got = int16s(&g.body);
    assert_eq!(got, cut(&map, 2, 30).0);
    // A scan without a map, a slice past the map's end, a label name that climbs out.
    let other = st.series_ids().find(|s| *s != id).unwrap();
    for (path, status) in [
        (format!("/api/scans/{other}/probability/axial/0"), 404),
        (format!("/api/scans/{id}/probability/axial/{}", rec.shape_zyx[0]), 404),
        (format!("/api/scans/{id}/probability/axial/99999999999"), 400),
        (format!("/api/scans/{id}/label/..%2F..%2Fpred%2Fvolumes%2F{id}/axial/0"), 400),
    ] {
        let g = get(addr, &path);
        assert_eq!(g.status, status, "{path}: {}", String::from_utf8_lossy(&g.body));
    }
    assert_eq!(get(addr, &format!("/api/scans/{other}")).json()["probability"], false);
    let d = get(addr, &format!("/api/scans/{id}")).json();
    assert_eq!(d["probability"], true);
    let f = &d["findings"][0];
    assert_eq!(f["probability"], 0.875);
    let v: Vec<f64> =
        f["voxel_zyx"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    for (a, w) in v.iter().zip([10.0, 20.0, 30.0]) {
        assert!((a - w).abs() < 1e-6, "{v:?}");
    }
    let rows = get(addr, "/api/scans").json();
    assert_eq!(rows[0]["findings"], if rows[0]["series_id"] == id.as_str() { 1 } else { 0 });
    let r = get(addr, "/api/run").json();
    assert_eq!(r["metrics"]["columns"], serde_json::json!(["step", "loss", "dice"]));
    assert_eq!(r["metrics"]["values"][1], serde_json::json!([0.9, 0.7]));
    assert_eq!(r["val"]["values"][2], serde_json::json!([0.25]));
    assert_eq!(r["froc"]["cpm"], 0.5);
    running.stop().unwrap();

    // A folder that is not there is named before the server starts.
    let bad = ViewConfig { run: Some(dir.path().join("no-run")), ..config(&out) };
    let e = Server::bind(Arc::new(Store::open(&out).unwrap()), &bad).err().expect("refused");
    assert!(e.to_string().contains("no-run"), "{e}");
}

#[cfg(unix)]
#[test]
fn the_cli_serves_until_ctrl_c_and_names_a_store_that_does_not_open() {
    use std::io::BufRead;
    let dir = tempdir();
    let out = store(dir.path());
    let bin = env!("CARGO_BIN_EXE_ctstream");
    let mut child = std::process::Command::new(bin)
        .args(["view", &out.display().to_string(), "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.split_whitespace().find(|w| w.starts_with("http://")).expect(&first);
    let addr: SocketAddr = url.trim_start_matches("http://").trim_end_matches('/').parse().unwrap();
    assert_eq!(get(addr, "/api/store").status, 200);
    // A browser tab's idle keep-alive connection and a request half sent stay open: the
    // server stops anyway, after its grace for connections still open.
    let mut idle = TcpStream::connect(addr).unwrap();
    write!(idle, "GET /api/store HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let mut half = TcpStream::connect(addr).unwrap();
    write!(half, "GET /api/scans HTTP/1.1\r\nHost: localhost\r\n").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    // A hang is what is tested: the grace is 2 s, 60 s means it never stops.
    let t = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("ctstream view did not stop within 60 s of SIGINT");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    drop((idle, half));
    assert!(status.success(), "{status:?}");
    assert_eq!(lines.next().unwrap().unwrap(), "ctstream view: stopped");

    let o = std::process::Command::new(bin)
        .args(["view", &dir.path().join("nowhere").display().to_string(), "--port", "0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("nowhere"), "{err}");
}
