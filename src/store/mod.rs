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
}

impl ScanRecord {
    /// The stored grid's geometry (axis-aligned).
    pub fn geometry(&self) -> crate::geometry::Geometry {
        crate::geometry::Geometry::axis_aligned(self.origin_xyz, self.spacing_xyz)
    }
}

/// The manifest's file name.
pub const MANIFEST: &str = "manifest.json";
/// The folder of volume files and records.
pub const VOLUMES: &str = "volumes";
/// The folder of parquet tables.
pub const INDEX: &str = "index";

/// An open store: its manifest and the scans that are completely stored. Thread-safe;
/// volume files are opened (and memory-mapped) on first use and shared.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    manifest: Manifest,
    scans: BTreeMap<String, ScanRecord>,
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
    Ok(m)
}

/// Reads the scan records under `root/volumes` whose volume file exists: the scans that
/// are completely stored. Temporary files (names starting with `.`) are ignored.
///
/// # Errors
/// [`StoreError::Io`] when the folder cannot be listed; [`StoreError::Corrupt`] for a
/// record that is not valid JSON.
pub fn read_records(root: &Path) -> Result<BTreeMap<String, ScanRecord>, StoreError> {
    let dir = root.join(VOLUMES);
    let mut out = BTreeMap::new();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(source) => return Err(StoreError::Io { path: dir, source }),
    };
    for entry in rd {
        let p = entry.map_err(|source| StoreError::Io { path: dir.clone(), source })?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        let text = std::fs::read_to_string(&p).map_err(|source| StoreError::Io { path: p.clone(), source })?;
        let r: ScanRecord = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt { path: p.clone(), chunk: None, message: e.to_string() })?;
        if root.join(&r.volume_file).is_file() {
            out.insert(r.series_id.clone(), r);
        }
    }
    Ok(out)
}

impl Store {
    /// Opens the store at `root`: checks the manifest and lists the stored scans.
    ///
    /// # Errors
    /// As [`read_manifest`] and [`read_records`].
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let manifest = read_manifest(root)?;
        let scans = read_records(root)?;
        Ok(Store { root: root.to_path_buf(), manifest, scans, open: Mutex::new(BTreeMap::new()) })
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
