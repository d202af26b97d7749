//! `ctstream verify STORE [--json]`: read every byte of a store and report per scan.

use std::path::PathBuf;

use anyhow::Context;
use ctstream::verify;

use crate::ExitError;
use crate::progress::Bars;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store folder.
    store: PathBuf,
    /// Print the report as JSON: {"scans_ok", "problems": [{"scan", "path", "message"}],
    /// "chunks_checked", "index_rows_checked"}.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args, bars: &Bars) -> Result<(), ExitError> {
    let r = verify::verify(&a.store, bars)
        .with_context(|| format!("verifying {}", a.store.display()))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).context("writing JSON")?);
    } else {
        println!(
            "verified {}: {} scans sound, {} chunks and {} index rows checked",
            a.store.display(),
            r.scans_ok.len(),
            r.chunks_checked,
            r.index_rows_checked
        );
        for p in &r.problems {
            let path = p.path.display().to_string();
            // Messages from the readers name their file already.
            if p.message.contains(&path) {
                println!("  DAMAGED  {}  {}", p.scan, p.message);
            } else {
                println!("  DAMAGED  {}  {path}: {}", p.scan, p.message);
            }
        }
    }
    if !r.is_ok() {
        return Err(anyhow::anyhow!(
            "{} problems in {} (listed above)",
            r.problems.len(),
            a.store.display()
        )
        .into());
    }
    Ok(())
}
