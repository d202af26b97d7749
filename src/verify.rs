//! `ctstream verify`: check everything a store holds, and report per scan.
//!
//! Opening a store checks only the manifest and the records (cheap, every time); this
//! reads every byte: each volume file's header and chunk table (FORMAT.md checks 1-6),
//! every chunk's CRC and decoded size (7-8), the header against the record (shape,
//! geometry, chunk shape, size) and the decoded voxels' HU range and mean against the
//! record; each label volume's chunks, grid and counts; then the index: each table against `index/checksums.json`, the scans table
//! against the records, and every nodule and candidate row's voxel position and
//! `inside` flag recomputed from its world position and its scan's record.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::hu::HuStats;
use crate::progress::Progress;
use crate::store::{self, INDEX, Region, StoreError, index};

/// One thing wrong in a store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    /// The series id, or `index` for the index tables.
    pub scan: String,
    /// The file at fault.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

/// What [`verify`] found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Scans whose record, volume file and every chunk are sound.
    pub scans_ok: Vec<String>,
    /// Everything wrong: damaged records, volumes, chunks, index tables and rows.
    pub problems: Vec<Problem>,
    /// Chunks decoded and checked.
    pub chunks_checked: u64,
    /// Index rows checked against the records.
    pub index_rows_checked: u64,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Position tolerance between an index row and the position recomputed from its record.
const VOXEL_TOLERANCE: f64 = 1e-6;

/// Checks one scan's volume file against its record; returns the chunks checked.
fn verify_scan(store: &store::Store, rec: &store::ScanRecord) -> Result<u64, String> {
    let path = store.root().join(&rec.volume_file);
    let v = store.volume(&rec.series_id).map_err(|e| e.to_string())?;
    let h = v.header();
    let mismatch = |field: &str, file: String, record: String| {
        Err(format!("{}: header {field} {file} but the record says {record}", path.display()))
    };
    if h.shape_zyx != rec.shape_zyx {
        return mismatch("shape", format!("{:?}", h.shape_zyx), format!("{:?}", rec.shape_zyx));
    }
    if h.chunk_shape_zyx != rec.chunk_shape_zyx
        || h.chunk_shape_zyx != store.manifest().chunk_shape_zyx
    {
        return mismatch(
            "chunk shape",
            format!("{:?}", h.chunk_shape_zyx),
            format!("{:?} (manifest {:?})", rec.chunk_shape_zyx, store.manifest().chunk_shape_zyx),
        );
    }
    if h.spacing_xyz != rec.spacing_xyz || h.origin_xyz != rec.origin_xyz {
        return mismatch(
            "spacing/origin",
            format!("{:?}/{:?}", h.spacing_xyz, h.origin_xyz),
            format!("{:?}/{:?}", rec.spacing_xyz, rec.origin_xyz),
        );
    }
    if h.file_size != rec.bytes_stored {
        return mismatch("file_size", h.file_size.to_string(), rec.bytes_stored.to_string());
    }
    // Every chunk: CRC and decoded size (read_region decodes each chunk the volume has).
    let shape = rec.shape_zyx.map(|n| n as i64);
    let hu = v.read_region(Region::new([0, 0, 0], shape)).map_err(|e| e.to_string())?;
    let stats = HuStats::of(&hu).ok_or("the volume is empty")?;
    if (stats.min, stats.max) != (rec.hu_min, rec.hu_max)
        || (stats.mean - rec.hu_mean).abs() > 1e-9 * rec.hu_mean.abs().max(1.0)
    {
        return Err(format!(
            "{}: voxels have HU {}..{} (mean {}) but the record says {}..{} (mean {})",
            path.display(),
            stats.min,
            stats.max,
            stats.mean,
            rec.hu_min,
            rec.hu_max,
            rec.hu_mean
        ));
    }
    let mut chunks = h.chunk_count() as u64;
    // Label volumes (format 1.2): on the scan's grid (Store::label checks), every chunk's
    // CRC and size, and the counts and box the record gives.
    for l in &rec.labels {
        let lv = store.label(&rec.series_id, &l.name).map_err(|e| e.to_string())?;
        let m = lv.read_all_as::<u8>().map_err(|e| e.to_string())?;
        let s = crate::labels::summary(&m);
        if s.counts != l.counts || s.bbox_zyx != l.bbox_zyx {
            return Err(format!(
                "{}: holds counts {:?} in {:?}, but the record says {:?} in {:?}",
                lv.path().display(),
                s.counts,
                s.bbox_zyx,
                l.counts,
                l.bbox_zyx
            ));
        }
        chunks += lv.header().chunk_count() as u64;
    }
    Ok(chunks)
}

/// Reads every byte of the store at `root` and reports what is wrong, per scan and for
/// the index (see the module docs). Damaged records are problems too.
///
/// # Errors
/// [`StoreError`] only when the store cannot be opened at all (no or a bad manifest).
pub fn verify(root: &Path, progress: &dyn Progress) -> Result<VerifyReport, StoreError> {
    Ok(verify_store(&store::Store::open(root)?, progress))
}

/// As [`verify`], for a store already open (local or on object storage).
pub fn verify_store(store: &store::Store, progress: &dyn Progress) -> VerifyReport {
    let root = store.root();
    let mut report = VerifyReport::default();
    for d in store.damaged() {
        report.problems.push(Problem {
            scan: d.series_id.clone(),
            path: d.path.clone(),
            message: d.reason.clone(),
        });
    }
    progress.start("verifying volumes", Some(store.scans().len() as u64));
    for (id, rec) in store.scans() {
        match verify_scan(store, rec) {
            Ok(n) => {
                report.chunks_checked += n;
                report.scans_ok.push(id.clone());
            }
            Err(message) => report.problems.push(Problem {
                scan: id.clone(),
                path: root.join(&rec.volume_file),
                message,
            }),
        }
        progress.advance(1);
    }
    progress.finish();
    verify_index(store, &mut report);
    report
}

/// The index checks of [`verify`].
fn verify_index(store: &store::Store, report: &mut VerifyReport) {
    let dir = store.root().join(INDEX);
    let mut problem = |path: &Path, message: String| {
        report.problems.push(Problem { scan: "index".into(), path: path.to_path_buf(), message })
    };
    let scans = store.scans();
    // Each table through the store (a local file or an object), checked against the
    // index's checksums; a missing one is a problem.
    let table = |name: &str, path: &Path| -> Result<Vec<u8>, StoreError> {
        store.table_bytes(name)?.ok_or_else(|| StoreError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    };
    let p = dir.join("scans.parquet");
    match table("scans", &p).and_then(|b| index::scan_ids_from_bytes(&p, b)) {
        Ok(ids) => {
            let listed: BTreeSet<&str> = ids.iter().map(String::as_str).collect();
            let stored: BTreeSet<&str> = scans.keys().map(String::as_str).collect();
            if listed != stored || ids.len() != listed.len() {
                let missing: Vec<_> = stored.difference(&listed).collect();
                let extra: Vec<_> = listed.difference(&stored).collect();
                problem(
                    &p,
                    format!(
                        "lists {} scans, the records {}: missing {missing:?}, not stored {extra:?}; run `ctstream ingest --resume` to rewrite the index",
                        ids.len(),
                        stored.len()
                    ),
                );
            }
        }
        Err(e) => problem(&p, e.to_string()),
    }
    let mut rows = 0u64;
    let mut check_row = |what: &str,
                         id: i32,
                         series: &str,
                         world: [f64; 3],
                         voxel: [f64; 3],
                         inside: bool,
                         path: &Path|
     -> Option<String> {
        rows += 1;
        let Some(rec) = scans.get(series) else {
            return Some(format!("{what} {id}: series {series} is not in the store"));
        };
        let (zyx, ins) = index::locate(rec, world);
        if ins != inside
            || (0..3).any(|a| {
                let d = (zyx[a] - voxel[a]).abs();
                d.is_nan() || d > VOXEL_TOLERANCE
            })
        {
            return Some(format!(
                "{what} {id} of {series}: voxel {voxel:?} inside {inside} but its world position {world:?} gives {zyx:?} inside {ins} ({})",
                path.display()
            ));
        }
        None
    };
    let mut row_problems = Vec::new();
    let p = dir.join("nodules.parquet");
    match table("nodules", &p).and_then(|b| index::nodules_from_bytes(&p, b)) {
        Ok(v) => row_problems.extend(
            v.iter()
                .filter_map(|n| {
                    check_row(
                        "nodule",
                        n.nodule_id,
                        &n.series_id,
                        n.world_xyz,
                        n.voxel_zyx,
                        n.inside,
                        &p,
                    )
                })
                .map(|m| (p.clone(), m)),
        ),
        Err(e) => row_problems.push((p.clone(), e.to_string())),
    }
    let p = dir.join("candidates.parquet");
    match table("candidates", &p).and_then(|b| index::candidates_from_bytes(&p, b)) {
        Ok(v) => row_problems.extend(
            v.iter()
                .filter_map(|c| {
                    check_row(
                        "candidate",
                        c.candidate_id,
                        &c.series_id,
                        c.world_xyz,
                        c.voxel_zyx,
                        c.inside,
                        &p,
                    )
                })
                .map(|m| (p.clone(), m)),
        ),
        Err(e) => row_problems.push((p.clone(), e.to_string())),
    }
    report.index_rows_checked = rows;
    for (p, m) in row_problems {
        problem(&p, m);
    }
}
