//! `ctstream index STORE [--annotations A] [--excluded E] [--candidates C]`: rewrite the
//! parquet index from the store's records, as an ingest does last; run once after the
//! shards of a sharded ingest are done ([`ctstream::ingest::reindex::reindex`]).

use anyhow::Context;
use ctstream::ingest::IngestError;
use ctstream::ingest::reindex::{self, Annotations};
use ctstream::store::Location;

use crate::{Exit, ExitError};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The store: a folder, or a URL on object storage (s3://bucket/prefix, ...).
    store: String,
    /// The CSVs, as given to ingest.
    #[command(flatten)]
    csv: crate::CsvArgs,
    /// Write the index without nodules or candidates even though the store's index has
    /// some (by default that is refused: the CSVs were forgotten).
    #[arg(long)]
    no_csv: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<(), ExitError> {
    let location = Location::parse(&a.store).map_err(|e| ExitError(Exit::Usage, e.into()))?;
    let csv = Annotations::read(
        a.csv.annotations.as_deref(),
        a.csv.excluded.as_deref(),
        a.csv.candidates.as_deref(),
    )
    .context("reading the CSVs")?;
    let s = match reindex::reindex(location, &csv, a.no_csv) {
        Ok(s) => s,
        Err(IngestError::CsvForgotten { path, what, count, .. }) => {
            let flags =
                if what == "nodules" { "--annotations (and --excluded)" } else { "--candidates" };
            return Err(ExitError(
                Exit::Usage,
                anyhow::anyhow!(
                    "{}: its index lists {count} {what}; give {flags} again (as to ingest), or --no-csv to drop them",
                    path.display()
                ),
            ));
        }
        Err(e) => {
            return Err(ExitError(
                Exit::Failed,
                anyhow::Error::new(e).context(format!("indexing {}", a.store)),
            ));
        }
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s).context("writing JSON")?);
    } else {
        println!("indexed {}: {} scans", a.store, s.scans_in_store);
        println!(
            "  nodules     {} indexed, {} outside their scan; {} annotation rows for series not in the store",
            s.nodules_indexed, s.nodules_outside, s.annotations_without_scan
        );
        println!(
            "  candidates  {} indexed; {} for series not in the store",
            s.candidates_indexed, s.candidates_without_scan
        );
        for w in &s.warnings {
            println!("  WARNING     {}: {}", w.source, w.reason);
        }
        for d in &s.damaged {
            println!(
                "  DAMAGED     {}: {} (not in the index; ingest --resume with its inputs stores it again)",
                d.path.display(),
                d.reason
            );
        }
    }
    Ok(())
}
