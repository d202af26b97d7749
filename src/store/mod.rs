//! The store: a folder of chunked, zstd-compressed volumes on a common grid, their scan
//! records, and the parquet index. The byte layout is specified in `format/FORMAT.md`
//! and `format/INDEX.md`; [`format`](mod@format) mirrors it in types.
//!
//! ```no_run
//! use ctstream::store::{Store, Region};
//! let store = Store::open("luna-store".as_ref())?;
//! for id in store.series_ids().take(1) {
//!     // A 32x64x64 patch (z, y, x); voxels outside the scan read as air (-1024).
//!     let patch = store.read_region(id, Region::new([-8, 100, 100], [24, 164, 164]))?;
//!     assert_eq!(patch.shape(), &[32, 64, 64]);
//! }
//! # Ok::<(), ctstream::store::StoreError>(())
//! ```

pub mod format;
pub mod index;
pub mod lock;
pub mod reader;
pub mod verify;
pub mod writer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use format::Manifest;
pub use reader::{Region, VolumeFile};

/// Errors from the store; each names the file (and chunk, where one is at fault).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A volume file or record is damaged or truncated.
    #[error("{path}: corrupt{}: {message}", chunk.map(|c| format!(" chunk (z {}, y {}, x {})", c[0], c[1], c[2])).unwrap_or_default())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The chunk (z, y, x) at fault, where one is.
        chunk: Option<[usize; 3]>,
        /// What is wrong.
        message: String,
    },
    /// A file of a newer major format version.
    #[error("{path}: format version {}.{} is newer than this ctstream reads ({}.{}); upgrade ctstream", found.0, found.1, supported.0, supported.1)]
    Version {
        /// The file.
        path: PathBuf,
        /// Version in the file.
        found: (u16, u16),
        /// Newest version this code reads.
        supported: (u16, u16),
    },
    /// The folder is not a store (no manifest) or its manifest is unreadable.
    #[error("{path}: not a ctstream store: {message}")]
    NotAStore {
        /// The folder or manifest.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Another writer holds the store's lock ([`lock::StoreLock`]).
    #[error("{store}: another ingest{} is writing to this store; wait for it to finish (lock: {store}/.lock)", holder.map(|p| format!(" (process {p})")).unwrap_or_default())]
    Locked {
        /// The store.
        store: PathBuf,
        /// The process id recorded by the holder, if readable.
        holder: Option<u32>,
    },
    /// The series is not in the store.
    #[error("{store}: no series {id} in the store")]
    SeriesNotFound {
        /// The store.
        store: PathBuf,
        /// The id.
        id: String,
    },
    /// Bad arguments (an empty volume, a zero chunk shape).
    #[error("{message}")]
    Invalid {
        /// What.
        message: String,
    },
    /// Writing or reading the parquet index failed.
    #[error("{path}: parquet: {message}")]
    Parquet {
        /// The table file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

/// Everything the store records about one scan: the row of `index/scans.parquet`, kept as
/// `volumes/<series_id>.json` beside the volume (INDEX.md gives each field's meaning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRecord {
    /// Series id.
    pub series_id: String,
    /// The file or folder it was read from.
    pub source_path: String,
    /// `metaimage`, `dicom` or `nifti`.
    pub source_format: String,
    /// Shape as read (z, y, x).
    pub orig_shape_zyx: [usize; 3],
    /// Spacing as read (x, y, z) mm.
    pub orig_spacing_xyz: [f64; 3],
    /// Origin as read (x, y, z) mm.
    pub orig_origin_xyz: [f64; 3],
    /// Direction as read, row-major.
    pub orig_direction: [f64; 9],
    /// Stored shape (z, y, x).
    pub shape_zyx: [usize; 3],
    /// Stored spacing (x, y, z) mm.
    pub spacing_xyz: [f64; 3],
    /// Stored origin (x, y, z) mm.
    pub origin_xyz: [f64; 3],
    /// Chunk shape (z, y, x).
    pub chunk_shape_zyx: [usize; 3],
    /// Bytes of the stored voxels uncompressed (2 per voxel).
    pub bytes_raw: u64,
    /// Bytes of the volume file.
    pub bytes_stored: u64,
    /// Smallest stored HU.
    pub hu_min: i16,
    /// Largest stored HU.
    pub hu_max: i16,
    /// Mean stored HU.
    pub hu_mean: f64,
    /// Input fingerprint (see INDEX.md).
    pub fingerprint: String,
    /// The volume file, relative to the store.
    pub volume_file: String,
    /// What the reader noticed and the user accepted (skipped files, slices missing under
    /// `--allow-missing-slices`, clamped voxels); absent when there is nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl ScanRecord {
    /// The stored grid's geometry (axis-aligned).
    pub fn geometry(&self) -> crate::geometry::Geometry {
        crate::geometry::Geometry::axis_aligned(self.origin_xyz, self.spacing_xyz)
    }

    /// Checks every field against what ingest writes: a valid series id, the volume file
    /// `volumes/<id>.ctv`, shapes within the limits, both geometries passing
    /// [`crate::geometry::Geometry::check`], sizes that agree with the shape, an HU range
    /// with min <= max and a finite mean. Ingest never writes a record that fails this,
    /// and [`read_records`] reports one that does as damaged.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn check(&self) -> Result<(), String> {
        if !format::valid_series_id(&self.series_id) {
            return Err(format!("series_id {:?} is not a series id", self.series_id));
        }
        let want = format!("{VOLUMES}/{}.ctv", self.series_id);
        if self.volume_file != want {
            return Err(format!("volume_file {:?} is not {want:?}", self.volume_file));
        }
        format::check_shape(self.shape_zyx).map_err(|e| format!("shape_zyx: {e}"))?;
        format::check_shape(self.orig_shape_zyx).map_err(|e| format!("orig_shape_zyx: {e}"))?;
        format::check_chunk_shape(self.chunk_shape_zyx).map_err(|e| format!("chunk_shape_zyx: {e}"))?;
        self.geometry().check().map_err(|e| format!("stored {e}"))?;
        let orig = crate::geometry::Geometry { origin_xyz: self.orig_origin_xyz, spacing_xyz: self.orig_spacing_xyz, direction: self.orig_direction };
        orig.check().map_err(|e| format!("orig_{e}"))?;
        let voxels: u64 = self.shape_zyx.iter().map(|&n| n as u64).product();
        if self.bytes_raw != 2 * voxels {
            return Err(format!("bytes_raw {} is not 2 x the {voxels} voxels of shape_zyx", self.bytes_raw));
        }
        if self.hu_min > self.hu_max || !self.hu_mean.is_finite() || self.hu_mean < self.hu_min as f64 || self.hu_mean > self.hu_max as f64 {
            return Err(format!("hu_min {} / hu_max {} / hu_mean {} are not an HU range", self.hu_min, self.hu_max, self.hu_mean));
        }
        Ok(())
    }
}

/// A scan record that cannot be used: the scan is reported as damaged, the others open.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DamagedRecord {
    /// The series id, from the record's file name.
    pub series_id: String,
    /// The record file.
    pub path: PathBuf,
    /// Why it cannot be used.
    pub reason: String,
}

/// The scan records of a store: the completely stored scans, and the damaged ones.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// Scans whose record is valid and whose volume file exists with the recorded size.
    pub scans: BTreeMap<String, ScanRecord>,
    /// Records that do not parse or check, or whose volume file is missing or has
    /// another size.
    pub damaged: Vec<DamagedRecord>,
}

/// The largest record file read (a real one is about 1.5 KB).
const MAX_RECORD_BYTES: u64 = 1 << 20;

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The folder of volume files and records.
pub const VOLUMES: &str = "volumes";
/// The folder of parquet tables.
pub const INDEX: &str = "index";

/// An open store: its manifest and the scans that are completely stored. Thread-safe;
/// volume files are opened (and memory-mapped) on first use and shared. Scans whose
/// record is damaged are left out and listed by [`Store::damaged`].
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    manifest: Manifest,
    scans: BTreeMap<String, ScanRecord>,
    damaged: Vec<DamagedRecord>,
    open: Mutex<BTreeMap<String, Arc<VolumeFile>>>,
}

/// Reads and checks `manifest.json` of the store at `root`.
///
/// # Errors
/// [`StoreError::NotAStore`] when it is missing or not a manifest; [`StoreError::Version`]
/// for a newer major version.
pub fn read_manifest(root: &Path) -> Result<Manifest, StoreError> {
    let p = root.join(MANIFEST);
    let text = std::fs::read_to_string(&p).map_err(|e| StoreError::NotAStore { path: p.clone(), message: e.to_string() })?;
    let m: Manifest = serde_json::from_str(&text).map_err(|e| StoreError::NotAStore { path: p.clone(), message: e.to_string() })?;
    if m.format != "ctstream-store" {
        return Err(StoreError::NotAStore { path: p, message: format!("format is {:?}", m.format) });
    }
    if m.format_version[0] != format::VERSION_MAJOR {
        return Err(StoreError::Version { path: p, found: (m.format_version[0], m.format_version[1]), supported: (format::VERSION_MAJOR, format::VERSION_MINOR) });
    }
    m.check().map_err(|e| StoreError::Corrupt { path: p, chunk: None, message: e.to_string() })?;
    Ok(m)
}

/// Reads the scan records under `root/volumes`: the scans that are completely stored
/// (a valid record, and its volume file present with the recorded size), and the records
/// that are damaged, each named with why. Temporary files (names starting with `.`) are
/// ignored. One damaged record never hides the others.
///
/// # Errors
/// [`StoreError::Io`] only when the folder itself cannot be listed.
pub fn read_records(root: &Path) -> Result<Records, StoreError> {
    let dir = root.join(VOLUMES);
    let mut out = Records::default();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(StoreError::Io { path: dir, source }),
    };
    for entry in rd {
        let p = entry.map_err(|source| StoreError::Io { path: dir.clone(), source })?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(id) = name.strip_suffix(".json") else { continue };
        if name.starts_with('.') {
            continue;
        }
        match read_record(root, &p, id) {
            Ok(r) => {
                out.scans.insert(r.series_id.clone(), r);
            }
            Err(reason) => out.damaged.push(DamagedRecord { series_id: id.to_string(), path: p, reason }),
        }
    }
    out.damaged.sort_by(|a, b| a.series_id.cmp(&b.series_id));
    Ok(out)
}

/// Reads and checks one record (see [`read_records`]); `Err` says why it is damaged.
fn read_record(root: &Path, p: &Path, id: &str) -> Result<ScanRecord, String> {
    use std::io::Read;
    let mut text = String::new();
    crate::fsutil::open_regular(p)
        .and_then(|f| f.take(MAX_RECORD_BYTES).read_to_string(&mut text))
        .map_err(|e| format!("cannot be read: {e}"))?;
    let r: ScanRecord = serde_json::from_str(&text).map_err(|e| format!("not a scan record: {e}"))?;
    r.check()?;
    if r.series_id != id {
        return Err(format!("series_id {:?} does not match the file name", r.series_id));
    }
    let vol = root.join(&r.volume_file);
    match std::fs::metadata(&vol) {
        Ok(m) if m.is_file() && m.len() == r.bytes_stored => Ok(r),
        Ok(m) => Err(format!("volume file {} is {} bytes, the record says {} (truncated or replaced)", vol.display(), m.len(), r.bytes_stored)),
        Err(e) => Err(format!("volume file {}: {e}", vol.display())),
    }
}

impl Store {
    /// Opens the store at `root`: checks the manifest and lists the stored scans.
    ///
    /// # Errors
    /// As [`read_manifest`] and [`read_records`].
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let manifest = read_manifest(root)?;
        let Records { scans, damaged } = read_records(root)?;
        Ok(Store { root: root.to_path_buf(), manifest, scans, damaged, open: Mutex::new(BTreeMap::new()) })
    }

    /// Scans whose record is damaged (left out of [`Store::scans`]); `ingest --resume`
    /// stores them again from their inputs.
    pub fn damaged(&self) -> &[DamagedRecord] {
        &self.damaged
    }

    /// The store's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How the volumes were made.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Ids of the stored scans, sorted.
    pub fn series_ids(&self) -> impl Iterator<Item = &str> {
        self.scans.keys().map(String::as_str)
    }

    /// All scan records, by id.
    pub fn scans(&self) -> &BTreeMap<String, ScanRecord> {
        &self.scans
    }

    /// The record of one scan.
    ///
    /// # Errors
    /// [`StoreError::SeriesNotFound`].
    pub fn scan(&self, id: &str) -> Result<&ScanRecord, StoreError> {
        self.scans.get(id).ok_or_else(|| StoreError::SeriesNotFound { store: self.root.clone(), id: id.to_string() })
    }

    /// The open volume file of a scan (opened and checked on first use, then shared).
    ///
    /// # Errors
    /// [`StoreError::SeriesNotFound`], or the volume file's errors.
    pub fn volume(&self, id: &str) -> Result<Arc<VolumeFile>, StoreError> {
        let rec = self.scan(id)?;
        if let Some(v) = self.open.lock().ok().and_then(|m| m.get(id).cloned()) {
            return Ok(v);
        }
        let v = Arc::new(VolumeFile::open(&self.root.join(&rec.volume_file))?);
        if let Ok(mut m) = self.open.lock() {
            m.insert(id.to_string(), v.clone());
        }
        Ok(v)
    }

    /// Reads a region of a scan (see [`VolumeFile::read_region`]).
    ///
    /// # Errors
    /// [`StoreError::SeriesNotFound`], [`StoreError::Corrupt`] naming the chunk.
    pub fn read_region(&self, id: &str, r: Region) -> Result<ndarray::Array3<i16>, StoreError> {
        self.volume(id)?.read_region(r)
    }
}
