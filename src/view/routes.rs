//! Every answer of `ctstream view`, as a function of the request's method, path and query
//! ([`answer`]); the server ([`super::server`]) only carries requests here and replies back.
//!
//! | route | answer |
//! |---|---|
//! | `/` | the page ([`super::page`]), `/app.js`, `/app.css` its script and style |
//! | `/api/store` | the store's location, scan count, damaged records, what else was given |
//! | `/api/scans` | the scans table ([`super::cohort::ScanRow`] per scan) |
//! | `/api/scans/ID` | one scan: geometry, label volumes, nodules, candidates, findings |
//! | `/api/scans/ID/thumbnail.png` | its thumbnail ([`super::viewer::Viewer::thumbnail`]) |
//! | `/api/scans/ID/image/PLANE/N` | slice N of its HU, int16 little-endian |
//! | `/api/scans/ID/image/PLANE/N.png?level=L&width=W` | the same through a window, PNG |
//! | `/api/scans/ID/label/NAME/PLANE/N` | slice N of a label volume, uint8 |
//! | `/api/scans/ID/probability/PLANE/N` | slice N of `--pred`'s map, int16 per mille |
//! | `/api/run` | `--run`'s `metrics.csv` and `val.csv` as columns, and the FROC |
//!
//! PLANE is `axial`, `coronal` or `sagittal`; a raw slice's rows and columns are in the
//! `x-slice-shape` header (`rows,cols`), its type in `x-slice-dtype`. Path segments are
//! percent-decoded strictly: one that decodes to a slash, a backslash, a NUL, `.` or `..`
//! is refused (400), as is a malformed escape; nothing is ever read from a path the URL
//! names, only from the store's own records.

use serde_json::{Value, json};

use super::page;
use super::run;
use super::viewer::{Layer, Plane, Refusal, Viewer};
use crate::picture::slice::Window;

/// What the server sends back.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `content-type`.
    pub content_type: &'static str,
    /// Other headers.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

const JSON: &str = "application/json";

impl Reply {
    fn ok(content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply { status: 200, content_type, headers: Vec::new(), body }
    }

    fn json(v: &impl serde::Serialize) -> Reply {
        match serde_json::to_vec(v) {
            Ok(body) => Reply::ok(JSON, body),
            Err(e) => Reply::refused(&Refusal::Failed(format!("JSON: {e}"))),
        }
    }

    /// The JSON error `{"error": message}` with the status of `r`.
    pub fn refused(r: &Refusal) -> Reply {
        let status = match r {
            Refusal::BadRequest(_) => 400,
            Refusal::NotFound(_) => 404,
            Refusal::Failed(_) => 500,
        };
        let body = serde_json::to_vec(&json!({ "error": r.to_string() })).unwrap_or_default();
        Reply { status, content_type: JSON, headers: Vec::new(), body }
    }
}

/// The answer to `method` on `path` with `query` (the part after `?`, if any).
pub fn answer(v: &Viewer, method: &str, path: &str, query: Option<&str>) -> Reply {
    if method != "GET" && method != "HEAD" {
        let mut r = Reply::refused(&Refusal::BadRequest(format!(
            "method {method}: the viewer is read-only (GET, HEAD)"
        )));
        r.status = 405;
        r.headers.push(("allow", "GET, HEAD".into()));
        return r;
    }
    match route(v, path, query) {
        Ok(r) => r,
        Err(e) => Reply::refused(&e),
    }
}

fn route(v: &Viewer, path: &str, query: Option<&str>) -> Result<Reply, Refusal> {
    let segments = segments(path)?;
    let s: Vec<&str> = segments.iter().map(String::as_str).collect();
    match s.as_slice() {
        [] | ["index.html"] => Ok(Reply::ok("text/html; charset=utf-8", page::HTML.into())),
        ["app.js"] => Ok(Reply::ok("text/javascript; charset=utf-8", page::JS.into())),
        ["app.css"] => Ok(Reply::ok("text/css; charset=utf-8", page::CSS.into())),
        ["api", "store"] => Ok(Reply::json(&json!({
            "location": v.location(),
            "scans": v.rows().len(),
            "prediction": v.has_prediction(),
            "run": v.run().is_some(),
            "evaluation": v.eval().is_some(),
        }))),
        ["api", "scans"] => Ok(Reply::json(&v.rows())),
        ["api", "scans", id] => scan(v, id),
        ["api", "scans", id, "thumbnail.png"] => {
            Ok(Reply::ok("image/png", v.thumbnail(id)?.as_ref().clone()))
        }
        ["api", "scans", id, "image", plane, n] => match n.strip_suffix(".png") {
            Some(n) => {
                let window = window(query)?;
                let png = v.slice_png(id, Plane::parse(plane)?, index(n)?, window)?;
                Ok(Reply::ok("image/png", png))
            }
            None => raw(v, id, &Layer::Image, plane, n),
        },
        ["api", "scans", id, "label", name, plane, n] => {
            raw(v, id, &Layer::Label(name.to_string()), plane, n)
        }
        ["api", "scans", id, "probability", plane, n] => raw(v, id, &Layer::Probability, plane, n),
        ["api", "run"] => run_json(v),
        _ => Err(Refusal::NotFound(format!("{path}: no such page or route"))),
    }
}

/// The path's segments, percent-decoded; the empty path and `/` have none.
fn segments(path: &str) -> Result<Vec<String>, Refusal> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(Refusal::BadRequest(format!("path {path:?}: not absolute")));
    };
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    rest.split('/')
        .map(|seg| {
            let d = decode(seg)?;
            if d.is_empty()
                || d == "."
                || d == ".."
                || d.contains(['/', '\\', '\0'])
                || d.chars().any(char::is_control)
            {
                return Err(Refusal::BadRequest(format!(
                    "path segment {seg:?}: not a name (empty, a dot, a slash or a control character)"
                )));
            }
            Ok(d)
        })
        .collect()
}

/// `s` with its `%XX` escapes decoded (UTF-8).
fn decode(s: &str) -> Result<String, Refusal> {
    let bad = || Refusal::BadRequest(format!("path segment {s:?}: a malformed escape"));
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or_else(bad)?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// A slice number: decimal digits, at most 9 of them (no scan has a billion slices).
fn index(s: &str) -> Result<usize, Refusal> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::BadRequest(format!(
            "slice index {s:?}: a whole number of at most 9 digits"
        )));
    }
    s.parse().map_err(|_| Refusal::BadRequest(format!("slice index {s:?}")))
}

/// The display window of `?level=L&width=W` (the lung window where absent).
fn window(query: Option<&str>) -> Result<Window, Refusal> {
    let mut w = Window::LUNG;
    for (k, val) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let number = || -> Result<f64, Refusal> {
            val.parse::<f64>().ok().filter(|x| x.is_finite() && x.abs() <= 100_000.0).ok_or_else(
                || Refusal::BadRequest(format!("{k} {val:?}: HU, a number within +-100000")),
            )
        };
        match k.as_ref() {
            "level" => w.level = number()?,
            "width" => w.width = number()?,
            _ => return Err(Refusal::BadRequest(format!("query {k:?}: give level and width"))),
        }
    }
    if w.width <= 0.0 {
        return Err(Refusal::BadRequest(format!("width {}: HU, above 0", w.width)));
    }
    Ok(w)
}

fn raw(v: &Viewer, id: &str, layer: &Layer, plane: &str, n: &str) -> Result<Reply, Refusal> {
    let s = v.slice(id, layer, Plane::parse(plane)?, index(n)?)?;
    let mut r = Reply::ok("application/octet-stream", s.bytes);
    r.headers.push(("x-slice-shape", format!("{},{}", s.shape[0], s.shape[1])));
    r.headers.push(("x-slice-dtype", s.dtype.to_string()));
    Ok(r)
}

fn scan(v: &Viewer, id: &str) -> Result<Reply, Refusal> {
    let rec = v.record(id)?;
    let g = rec.geometry();
    let labels: Vec<Value> = rec
        .labels
        .iter()
        .map(|l| {
            json!({
                "name": l.name, "source": l.source, "classes": l.classes,
                "counts": l.counts, "bbox_zyx": l.bbox_zyx,
            })
        })
        .collect();
    let findings: Vec<Value> = v
        .findings(id)
        .iter()
        .map(|f| {
            let zyx = g.world_to_index(f.world_xyz);
            json!({ "world_xyz": f.world_xyz, "voxel_zyx": zyx, "probability": f.probability })
        })
        .collect();
    let row = v.rows().iter().find(|r| r.series_id == id);
    Ok(Reply::json(&json!({
        "series_id": rec.series_id,
        "source_path": rec.source_path,
        "source_format": rec.source_format,
        "shape_zyx": rec.shape_zyx,
        "spacing_xyz": rec.spacing_xyz,
        "origin_xyz": rec.origin_xyz,
        "hu_min": rec.hu_min,
        "hu_max": rec.hu_max,
        "hu_mean": rec.hu_mean,
        "warnings": rec.warnings,
        "flags": row.map(|r| r.flags.clone()).unwrap_or_default(),
        "lung_ml": row.and_then(|r| r.lung_ml),
        "labels": labels,
        "readers": rec.lidc.as_ref().map(|l| l.readers.clone()),
        "nodules": v.nodules(id),
        "candidates": v.candidates(id),
        "findings": findings,
        "probability": v.has_map(id),
    })))
}

fn run_json(v: &Viewer) -> Result<Reply, Refusal> {
    let Some(dir) = v.run() else {
        if let Some(e) = v.eval() {
            return Ok(Reply::json(&json!({ "froc": run::read_froc(e)? })));
        }
        return Err(Refusal::NotFound("no training run: start with --run RUN".into()));
    };
    let froc = match v.eval() {
        Some(e) => run::read_froc(e)?,
        None => None,
    };
    Ok(Reply::json(&json!({
        "folder": dir.display().to_string(),
        "metrics": run::read_log(&dir.join("metrics.csv"))?,
        "val": run::read_log(&dir.join("val.csv"))?,
        "froc": froc,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_segments_are_refused_and_escapes_decoded() {
        assert_eq!(segments("/").map(|s| s.len()), Ok(0));
        assert_eq!(
            segments("/api/scans/1.2%2E3"),
            Ok(vec!["api".into(), "scans".into(), "1.2.3".into()])
        );
        for bad in [
            "/api/..",
            "/api/%2e%2E",
            "/a/%2Fetc",
            "/a/b%5Cc",
            "/a/%00",
            "/a//b",
            "/a/%zz",
            "/a/%4",
            "/a/%ff",
            "relative",
        ] {
            assert!(matches!(segments(bad), Err(Refusal::BadRequest(_))), "{bad}");
        }
        assert_eq!(index("42"), Ok(42));
        for bad in ["", "-1", "1e3", "9999999999", "18446744073709551616", "+1", " 1"] {
            assert!(matches!(index(bad), Err(Refusal::BadRequest(_))), "{bad}");
        }
        assert_eq!(window(Some("level=40&width=400")), Ok(Window { level: 40.0, width: 400.0 }));
        for bad in ["width=0", "width=-5", "level=nan", "level=1e300", "gamma=2"] {
            assert!(matches!(window(Some(bad)), Err(Refusal::BadRequest(_))), "{bad}");
        }
    }
}
