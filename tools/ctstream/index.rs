//! `ctstream index STORE [--annotations A] [--excluded E] [--candidates C]`: rewrite the
//! parquet index from the store's records, as an ingest does last; run once after the
//! shards of a sharded ingest are done.

use anyhow::Context;
use ctstream::ingest::reindex::{self, Annotations};
use ctstream::store::{Location, Store};

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
    let csv = Annotations::read(a.csv.annotations.as_deref(), a.csv.excluded.as_deref(), a.csv.candidates.as_deref()).context("reading the CSVs")?;
    // A local store is locked while its index is rewritten (as by an ingest, or a shard).
    let _lock = match &location {
        Location::Local(root) => {
            // A folder that is not a store is named as such, not made one by the lock.
            ctstream::store::read_manifest(root).with_context(|| format!("opening {}", a.store))?;
            Some(ctstream::store::lock::StoreLock::wait(root, ctstream::ingest::SHARD_LOCK_WAIT).with_context(|| format!("indexing {}", root.display()))?)
        }
        Location::Remote(_) => None,
    };
    // Opened once the lock is held: the records as they are now.
    let store = Store::open_location(location).with_context(|| format!("opening {}", a.store))?;
    if !a.no_csv {
        let forgotten = |what: &str, flags: &str, have: usize, given: bool| {
            if have > 0 && !given {
                Err(ExitError(Exit::Usage, anyhow::anyhow!("{}: its index lists {have} {what}; give {flags} again (as to ingest), or --no-csv to drop them", a.store)))
            } else {
                Ok(())
            }
        };
        // A damaged table is rewritten whatever it held.
        forgotten("nodules", "--annotations (and --excluded)", store.nodules().map_or(0, |v| v.len()), a.csv.annotations.is_some() || a.csv.excluded.is_some())?;
        forgotten("candidates", "--candidates", store.candidates().map_or(0, |v| v.len()), a.csv.candidates.is_some())?;
    }
    let s = reindex::write_index(&store, &csv).with_context(|| format!("indexing {}", a.store))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s).context("writing JSON")?);
    } else {
        println!("indexed {}: {} scans", a.store, s.scans_in_store);
        println!("  nodules     {} indexed, {} outside their scan; {} annotation rows for series not in the store", s.nodules_indexed, s.nodules_outside, s.annotations_without_scan);
        println!("  candidates  {} indexed; {} for series not in the store", s.candidates_indexed, s.candidates_without_scan);
        for w in &s.warnings {
            println!("  WARNING     {}: {}", w.source, w.reason);
        }
        for d in &s.damaged {
            println!("  DAMAGED     {}: {} (not in the index; ingest --resume with its inputs stores it again)", d.path.display(), d.reason);
        }
    }
    Ok(())
}
