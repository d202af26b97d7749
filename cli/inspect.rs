//! `ctstream inspect STORE [--series UID] [--json]`: what is in a store.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use ctstream::store::Store;

use crate::ExitError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store: a folder, or a URL on object storage (s3://bucket/prefix, ...).
    store: PathBuf,
    /// Show one scan only.
    #[arg(long)]
    series: Option<String>,
    /// Print JSON: {"manifest", "scans": [records], "nodules": {series: count}, totals}.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<(), ExitError> {
    print(&a)
}

/// Prints what the store at `store` holds (the whole `inspect` output).
pub fn print_store(store: &std::path::Path) -> Result<(), ExitError> {
    print(&Args { store: store.to_path_buf(), series: None, json: false })
}

fn print(a: &Args) -> Result<(), ExitError> {
    let store = Store::open(&a.store).with_context(|| format!("opening {}", a.store.display()))?;
    let nodules = store.nodules()?;
    let mut per_series: BTreeMap<&str, usize> = BTreeMap::new();
    for n in nodules.iter().filter(|n| !n.is_excluded()) {
        *per_series.entry(n.series_id.as_str()).or_default() += 1;
    }
    let scans: Vec<_> = match &a.series {
        Some(id) => vec![store.scan(id)?],
        None => store.scans().values().collect(),
    };
    let raw: u64 = scans.iter().map(|s| s.bytes_raw).sum();
    let stored: u64 = scans.iter().map(|s| s.bytes_stored).sum();
    let m = store.manifest();
    let mut out = std::io::stdout().lock();
    if a.json {
        let j = serde_json::json!({
            "manifest": m,
            "scans": scans,
            "nodules": scans.iter().map(|s| (s.series_id.clone(), per_series.get(s.series_id.as_str()).copied().unwrap_or(0))).collect::<BTreeMap<_, _>>(),
            "bytes_raw": raw,
            "bytes_stored": stored,
            "damaged": store.damaged(),
        });
        serde_json::to_writer_pretty(&mut out, &j).context("writing JSON")?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(out, "store      {}", a.store.display())?;
    writeln!(
        out,
        "format     {}.{} (ctstream {})",
        m.format_version[0], m.format_version[1], m.ctstream_version
    )?;
    writeln!(
        out,
        "grid       spacing {:?} mm (x, y, z), {} interpolation, HU clipped to {:?}",
        m.spacing_xyz, m.interpolation, m.hu_clip
    )?;
    writeln!(
        out,
        "chunks     {:?} (z, y, x), zstd level {}, {}",
        m.chunk_shape_zyx, m.codec.level, m.checksum
    )?;
    writeln!(
        out,
        "scans      {} ({} nodules)",
        scans.len(),
        scans
            .iter()
            .map(|s| per_series.get(s.series_id.as_str()).copied().unwrap_or(0))
            .sum::<usize>()
    )?;
    writeln!(
        out,
        "bytes      {:.1} MB stored, {:.1} MB as int16, ratio {:.2}",
        stored as f64 / 1e6,
        raw as f64 / 1e6,
        raw as f64 / stored.max(1) as f64
    )?;
    for d in store.damaged() {
        writeln!(
            out,
            "DAMAGED    {}: {} (left out; `ctstream ingest --resume` with its inputs stores it again)",
            d.path.display(),
            d.reason
        )?;
    }
    if !store.damaged().is_empty() {
        writeln!(
            out,
            "           (inspect reads records only; `ctstream verify {}` checks every chunk and the index)",
            a.store.display()
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<66} {:>15} {:>9} {:>7} {:>6} {:>12}  labels (ml per value)",
        "series", "shape z,y,x", "MB", "ratio", "nod.", "HU min..max"
    )?;
    for s in &scans {
        let ml = s.spacing_xyz.iter().product::<f64>() / 1000.0;
        let labels: Vec<String> = s
            .labels
            .iter()
            .map(|l| {
                let values: Vec<String> = l
                    .counts
                    .iter()
                    .map(|&[v, n]| {
                        // Whole ml, or one decimal below 10 ml (a nodule is a fraction of one).
                        let v_ml = n as f64 * ml;
                        let name =
                            l.classes.get(&v.to_string()).cloned().unwrap_or_else(|| v.to_string());
                        if v_ml < 10.0 {
                            format!("{name}={v_ml:.1}")
                        } else {
                            format!("{name}={v_ml:.0}")
                        }
                    })
                    .collect();
                if values.is_empty() {
                    format!("{} (empty)", l.name)
                } else {
                    format!("{} ({})", l.name, values.join(", "))
                }
            })
            .collect();
        writeln!(
            out,
            "{:<66} {:>15} {:>9.2} {:>7.2} {:>6} {:>12}  {}",
            s.series_id,
            format!("{},{},{}", s.shape_zyx[0], s.shape_zyx[1], s.shape_zyx[2]),
            s.bytes_stored as f64 / 1e6,
            s.bytes_raw as f64 / s.bytes_stored.max(1) as f64,
            per_series.get(s.series_id.as_str()).copied().unwrap_or(0),
            format!("{}..{}", s.hu_min, s.hu_max),
            if labels.is_empty() { "-".to_string() } else { labels.join("; ") }
        )?;
    }
    Ok(())
}
