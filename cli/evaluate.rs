//! `ctstream evaluate`: the LUNA16 FROC evaluation of a submission file.

use std::path::PathBuf;

use anyhow::Context;
use ctstream::annotations;
use ctstream::evaluate::{self, FP_RATES};

use crate::ExitError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// annotations.csv (seriesuid,coordX,coordY,coordZ,diameter_mm).
    #[arg(long)]
    annotations: PathBuf,
    /// annotations_excluded.csv: hits on these are neither true nor false positives.
    #[arg(long)]
    excluded: Option<PathBuf>,
    /// The detections (seriesuid,coordX,coordY,coordZ,probability), e.g. from `ctstream predict`.
    #[arg(long)]
    predictions: PathBuf,
    /// The scans evaluated, one id per line (LUNA16's seriesuids.csv or predict's
    /// series.txt) [default: the scans named in --predictions].
    #[arg(long)]
    series_list: Option<PathBuf>,
    /// Bootstrap resamplings of the scans for the 95% intervals (0: none).
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder for froc.json, froc.csv (the curve) and froc.png (its picture).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<(), ExitError> {
    if a.bootstrap > evaluate::MAX_BOOTSTRAP {
        return Err(ExitError(
            crate::Exit::Usage,
            anyhow::anyhow!("--bootstrap {}: give 0 to {}", a.bootstrap, evaluate::MAX_BOOTSTRAP),
        ));
    }
    let nodules = annotations::read_annotations(&a.annotations)?;
    let excluded = match &a.excluded {
        Some(p) => annotations::read_excluded(p)?,
        None => Vec::new(),
    };
    let detections = annotations::read_predictions(&a.predictions)?;
    let series = match &a.series_list {
        Some(p) => annotations::read_series_list(p)?,
        None => {
            let s: std::collections::BTreeSet<&str> =
                detections.iter().map(|d| d.series_id.as_str()).collect();
            eprintln!(
                "note: no --series-list: evaluating the {} scans named in {}",
                s.len(),
                a.predictions.display()
            );
            s.into_iter().map(String::from).collect()
        }
    };
    let r = evaluate::froc(&series, &nodules, &excluded, &detections, a.bootstrap, a.seed);
    if let Some(dir) = &a.out {
        evaluate::write_report(dir, &r)?;
        let title = a
            .predictions
            .file_name()
            .map_or_else(|| "FROC".to_string(), |n| format!("FROC of {}", n.to_string_lossy()));
        ctstream::picture::froc::plot(&r, &title)?.save(&dir.join("froc.png"))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).context("JSON")?);
        return Ok(());
    }
    println!(
        "{} scans, {} nodules: {} detected; {} false-positive marks, {} on excluded findings ignored, {} extra hits on detected nodules",
        r.scans, r.nodules, r.detected, r.false_positives, r.ignored, r.double_hits
    );
    println!(
        "FP/scan   sensitivity{}",
        if r.intervals.is_empty() { "" } else { "   95% bootstrap interval" }
    );
    for (k, rate) in FP_RATES.iter().enumerate() {
        let iv = r
            .intervals
            .get(k)
            .map(|i| format!("   [{:.3}, {:.3}]", i[0], i[1]))
            .unwrap_or_default();
        println!("{rate:>7}   {:.3}{iv}", r.sensitivities[k]);
    }
    let iv =
        r.intervals.get(7).map(|i| format!("   [{:.3}, {:.3}]", i[0], i[1])).unwrap_or_default();
    println!("CPM       {:.3}{iv}", r.cpm);
    Ok(())
}
