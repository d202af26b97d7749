//! The index, rebuilt from the records: what every ingest does last, and what `ctstream
//! index STORE` does once the shards of a sharded ingest are done. The scan, label and
//! component tables follow from the records alone; the nodule and candidate tables join
//! the annotation CSVs to them, so the CSVs are given again.

use std::path::Path;

use super::tables;
use crate::annotations::{self, Annotation, AnnotationError, Candidate};
use crate::store::{DamagedRecord, Location, Store, index};

use super::{Failure, IngestError};

/// The annotation CSVs an index joins to the stored scans (LUNA16's `annotations.csv`,
/// `annotations_excluded.csv`, `candidates.csv`), read and checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    /// Nodules (`annotations.csv`).
    pub nodules: Vec<Annotation>,
    /// Findings excluded from LUNA16's evaluation (`annotations_excluded.csv`).
    pub excluded: Vec<Annotation>,
    /// Candidates (`candidates.csv`, `candidates_V2.csv`).
    pub candidates: Vec<Candidate>,
    /// Whether a nodule CSV (annotations or excluded) was given, even one without rows.
    pub given_nodules: bool,
    /// Whether a candidates CSV was given, even one without rows.
    pub given_candidates: bool,
}

impl Annotations {
    /// Reads the CSVs that are given.
    ///
    /// # Errors
    /// [`AnnotationError`] naming the file, the row and the field.
    pub fn read(
        nodules: Option<&Path>,
        excluded: Option<&Path>,
        candidates: Option<&Path>,
    ) -> Result<Annotations, AnnotationError> {
        Ok(Annotations {
            nodules: nodules.map_or(Ok(Vec::new()), annotations::read_annotations)?,
            excluded: excluded.map_or(Ok(Vec::new()), annotations::read_excluded)?,
            candidates: candidates.map_or(Ok(Vec::new()), annotations::read_candidates)?,
            given_nodules: nodules.is_some() || excluded.is_some(),
            given_candidates: candidates.is_some(),
        })
    }
}

/// What an index rebuild found.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct IndexSummary {
    /// Scans in the store (completely stored: a valid record and its files).
    pub scans_in_store: usize,
    /// Records that are damaged; their scans are not in the index.
    pub damaged: Vec<DamagedRecord>,
    /// Nodule rows indexed (annotations + excluded) for stored scans.
    pub nodules_indexed: usize,
    /// Of those, how many lie outside their scan.
    pub nodules_outside: usize,
    /// Annotation rows (annotations + excluded) whose series is not in the store.
    pub annotations_without_scan: usize,
    /// Candidate rows indexed.
    pub candidates_indexed: usize,
    /// Candidate rows whose series is not in the store.
    pub candidates_without_scan: usize,
    /// What could not be worked out (a damaged lung mask: `in_lung_region` left out).
    pub warnings: Vec<Failure>,
}

/// Rebuilds the index of the store at `location` from its records and the CSVs: what
/// `ctstream index STORE` does once the shards of a sharded ingest are done. A local store
/// is locked meanwhile (waiting up to [`super::SHARD_LOCK_WAIT`] for an ingest or a shard
/// that holds it); the records are read once the lock is held. Unless `drop_csv`, a CSV
/// whose rows the store's index holds must be given again: rebuilding without it would
/// drop them (a damaged table counts as empty).
///
/// ```no_run
/// use ctstream::ingest::reindex::{Annotations, reindex};
/// use ctstream::store::Location;
/// let csv = Annotations::read(Some("annotations.csv".as_ref()), None, Some("candidates.csv".as_ref()))?;
/// let summary = reindex(Location::parse("s3://scans/luna")?, &csv, false)?;
/// println!("{} scans indexed", summary.scans_in_store);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`IngestError::Store`] for a folder that is not a store, a lock not released in time,
/// or an index that cannot be written; [`IngestError::CsvForgotten`].
pub fn reindex(
    location: Location,
    csv: &Annotations,
    drop_csv: bool,
) -> Result<IndexSummary, IngestError> {
    let _lock = match &location {
        Location::Local(root) => {
            // A folder that is not a store is named as such, not made one by the lock.
            crate::store::read_manifest(root)?;
            Some(crate::store::lock::StoreLock::wait(root, super::SHARD_LOCK_WAIT)?)
        }
        Location::Remote(_) => None,
    };
    let store = Store::open_location(location)?;
    if !drop_csv {
        let path = store.location().name();
        let forgotten = |what: &'static str, csv_name: &'static str, count: usize, given: bool| {
            if count > 0 && !given {
                Err(IngestError::CsvForgotten { path: path.clone(), what, count, csv: csv_name })
            } else {
                Ok(())
            }
        };
        forgotten(
            "nodules",
            "annotations.csv (and annotations_excluded.csv)",
            store.nodules().map_or(0, |v| v.len()),
            csv.given_nodules,
        )?;
        forgotten(
            "candidates",
            "candidates.csv",
            store.candidates().map_or(0, |v| v.len()),
            csv.given_candidates,
        )?;
    }
    write_index(&store, csv)
}

/// Rewrites the parquet index of `store` (opened after the last scan was stored) from
/// every completely stored scan and the CSVs (see [`index::write_tables_at`] for how
/// readers racing it fare). On
/// a local disk the caller holds the store's lock; on object storage no two should run at
/// once (`format/FORMAT.md`, "Several writers").
///
/// # Errors
/// [`IngestError::Store`] when the index cannot be written.
pub fn write_index(store: &Store, csv: &Annotations) -> Result<IndexSummary, IngestError> {
    let location = store.location();
    let scans = store.scans();
    let mut summary = IndexSummary {
        scans_in_store: scans.len(),
        damaged: store.damaged().to_vec(),
        ..Default::default()
    };
    let (mut nodule_rows, missing_n) = tables::nodule_rows(scans, &csv.nodules, &csv.excluded);
    // Whether each nodule lies in its scan's lung region: a damaged label volume is the
    // scan's problem (`ctstream verify` names it), not a reason to write no index.
    if let Err(e) = tables::mark_in_lung_region(store, &mut nodule_rows) {
        summary.warnings.push(Failure {
            source: location.name().display().to_string(),
            reason: format!("in_lung_region left out of nodules.parquet: {e}"),
        });
        nodule_rows.iter_mut().for_each(|r| r.in_lung_region = None);
    }
    let (cand_rows, missing_c) = tables::candidate_rows(scans, &csv.candidates);
    let (t_scans, t_nodules, t_candidates) = (
        tables::scans_batch(scans),
        tables::nodules_batch(&nodule_rows),
        tables::candidates_batch(&cand_rows),
    );
    let (t_labels, t_components) = (tables::labels_batch(scans), tables::components_batch(scans));
    let t_annotations = tables::annotations_batch(scans);
    index::write_tables_at(
        location,
        &[
            ("scans.parquet", &t_scans),
            ("nodules.parquet", &t_nodules),
            ("candidates.parquet", &t_candidates),
            ("labels.parquet", &t_labels),
            ("components.parquet", &t_components),
            ("annotations.parquet", &t_annotations),
        ],
    )?;
    summary.nodules_indexed = nodule_rows.len();
    summary.nodules_outside = nodule_rows.iter().filter(|r| !r.inside).count();
    summary.annotations_without_scan = missing_n;
    summary.candidates_indexed = cand_rows.len();
    summary.candidates_without_scan = missing_c;
    Ok(summary)
}
