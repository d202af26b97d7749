//! Ingest into a store on object storage (`--out s3://bucket/luna`). Object stores have no
//! rename and no lock, so each scan is written as on a local disk into a private staging
//! folder, then published: its volume files uploaded (in parts when large), then its
//! record, then the staged files removed. A scan is stored exactly when its record
//! exists, as on disk: a reader, or an ingest resuming, never takes a scan whose volume is
//! missing or short (the record names each file's size). `format/FORMAT.md`, "Several
//! writers", says what keeps concurrent writers safe.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{IngestError, shard::Shard};
use crate::store::format::Manifest;
use crate::store::remote::Remote;
use crate::store::{INDEX, LABELS, MANIFEST, ScanRecord, StoreError, VOLUMES};

/// The file that marks a folder as a staging folder (so a store's own folder is never
/// taken for one and emptied).
const MARKER: &str = ".ctstream-stage";

/// The staging folder used when none is given: under the system's temporary folder, one
/// per destination and shard (so two shards on one machine do not share one).
pub fn default_stage(url: &str, shard: Option<Shard>) -> PathBuf {
    let d = Sha256::digest(url.as_bytes());
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    let shard = shard.map(|s| format!("-shard{}of{}", s.index, s.count)).unwrap_or_default();
    std::env::temp_dir().join(format!("ctstream-stage-{hex}{shard}"))
}

/// Makes `stage` ready (called holding its lock): creates it, or empties one that an
/// earlier run left (the files of scans it did not publish). A folder that is neither
/// empty nor a staging folder is refused, naming it.
///
/// # Errors
/// [`IngestError::Config`] for a folder that is not a staging folder; [`StoreError::Io`].
pub(super) fn prepare_stage(stage: &Path) -> Result<(), IngestError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| IngestError::Store(StoreError::Io { path, source })
    };
    let marker = stage.join(MARKER);
    if !marker.exists() {
        let foreign = std::fs::read_dir(stage)
            .map_err(io(stage))?
            .flatten()
            .any(|e| e.file_name() != crate::store::lock::LOCK_FILE);
        if foreign || stage.join(MANIFEST).exists() {
            return Err(IngestError::Config(format!(
                "stage {}: not empty and not a staging folder of an earlier ingest; give an empty or new folder (it holds each scan until it is uploaded)",
                stage.display()
            )));
        }
        std::fs::write(&marker, b"ctstream staging folder: scans on their way to object storage; safe to delete when no ingest runs\n").map_err(io(&marker))?;
    }
    for dir in [VOLUMES, LABELS, INDEX] {
        let p = stage.join(dir);
        match std::fs::remove_dir_all(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
        std::fs::create_dir_all(&p).map_err(io(&p))?;
    }
    Ok(())
}

/// Checks the manifest of the store on `r` against `manifest`, or writes it when there is
/// none (a conditional write: of two writers creating one store, one manifest wins and
/// the other is checked against it).
///
/// # Errors
/// [`IngestError::Mismatch`] for a store made with other parameters; [`StoreError`] when
/// the manifest cannot be read, parsed or written.
pub(super) fn prepare(r: &Remote, manifest: &Manifest) -> Result<(), IngestError> {
    const MAX_MANIFEST: u64 = 1 << 20;
    for _ in 0..2 {
        let existing = match r.get(MANIFEST, MAX_MANIFEST)? {
            Some(b) => b,
            None => {
                let json = serde_json::to_vec_pretty(manifest)
                    .map_err(|e| IngestError::Config(e.to_string()))?;
                if r.put_new(MANIFEST, json.into())? {
                    return Ok(());
                }
                // Another writer made it first: check ours against theirs.
                continue;
            }
        };
        let text = std::str::from_utf8(&existing).map_err(|e| StoreError::NotAStore {
            path: r.name(MANIFEST),
            message: e.to_string(),
        })?;
        let existing = crate::store::parse_manifest(r.name(MANIFEST), text)?;
        if !existing.same_parameters(manifest) {
            return Err(super::mismatch(PathBuf::from(r.url()), &existing));
        }
        return Ok(());
    }
    Err(IngestError::Store(StoreError::Remote {
        object: r.name(MANIFEST).display().to_string(),
        range: None,
        message: "created by another writer and then gone; is something deleting the store?".into(),
    }))
}

/// Publishes a scan written to `stage`: its volume files, then its record, then removes
/// label volumes an earlier ingest of the scan stored that the record no longer lists,
/// and the staged files. Returns the bytes uploaded.
///
/// # Errors
/// The object or staged file that failed, as text (the scan fails alone; what was
/// uploaded before its record is not part of the store).
pub(super) fn publish(r: &Remote, stage: &Path, rec: &ScanRecord) -> Result<u64, String> {
    let record = format!("{VOLUMES}/{}.json", rec.series_id);
    let files: Vec<&str> = std::iter::once(rec.volume_file.as_str())
        .chain(rec.labels.iter().map(|l| l.file.as_str()))
        .collect();
    let mut sent = 0;
    for rel in files.iter().copied().chain([record.as_str()]) {
        let path = stage.join(rel);
        let bytes = std::fs::read(&path)
            .map_err(|e| format!("{} (staged for upload): {e}", path.display()))?;
        sent += bytes.len() as u64;
        r.put(rel, bytes.into()).map_err(|e| e.to_string())?;
    }
    let labels = r.list(&format!("{LABELS}/{}", rec.series_id)).map_err(|e| e.to_string())?;
    for (rel, _) in labels {
        if !files.contains(&rel.as_str()) {
            r.delete(&rel).map_err(|e| e.to_string())?;
        }
    }
    for rel in files.iter().copied().chain([record.as_str()]) {
        let _ = std::fs::remove_file(stage.join(rel));
    }
    let _ = std::fs::remove_dir(stage.join(LABELS).join(&rec.series_id));
    Ok(sent)
}
