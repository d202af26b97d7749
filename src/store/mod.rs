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

pub mod cache;
pub mod format;
pub mod index;
pub mod lidc;
pub mod lock;
pub mod reader;
pub mod remote;
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
    /// The scan has no label volume of that name.
    #[error("{store}: series {id} has no label volume {name:?} (it has: {})", if have.is_empty() { "none".to_string() } else { have.join(", ") })]
    LabelNotFound {
        /// The store.
        store: PathBuf,
        /// The series id.
        id: String,
        /// The name asked for.
        name: String,
        /// The names it has.
        have: Vec<String>,
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
    /// A request to object storage failed (after its retries) or found no answer in time.
    #[error("{object}{}: {message}", range.map(|(a, b)| format!(" (bytes {a}..{b})")).unwrap_or_default())]
    Remote {
        /// The object's URL.
        object: String,
        /// The byte range asked for, where one was.
        range: Option<(u64, u64)>,
        /// What went wrong.
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
    /// The scan's label volumes, ordered by name (format 1.2; absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<LabelRecord>,
    /// The scan's LIDC-IDRI reader annotations (format 1.3; absent when it has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lidc: Option<lidc::LidcRecord>,
}

/// One label volume of a scan, as its record lists it (FORMAT.md, "Label volumes").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelRecord {
    /// The name (`lungs`, `lung_region`, a user's name): `^[a-z][a-z0-9_]{0,31}$`.
    pub name: String,
    /// `labels/<series_id>/<name>.ctv`, relative to the store.
    pub file: String,
    /// Bytes of the file.
    pub bytes_stored: u64,
    /// `computed` (ingest's own), or the label map's path.
    pub source: String,
    /// `[value, voxels]` of every value other than 0 present, ascending by value.
    pub counts: Vec<[u64; 2]>,
    /// A name per value, where known (`"1": "right_lung"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub classes: BTreeMap<String, String>,
    /// First voxel and one past the last (z, y, x) of the values other than 0; `None` when
    /// the volume is all 0.
    pub bbox_zyx: Option<[[usize; 3]; 2]>,
    /// The 6-connected components of each value, by value and then largest first: at most
    /// [`MAX_LISTED`] per value (the rows of
    /// `components.parquet`).
    #[serde(default)]
    pub components: Vec<LabelComponent>,
    /// Components of each value left out of `components` beyond that limit.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub components_not_listed: u64,
}

/// One connected component of the voxels of one value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelComponent {
    /// The label value (1..=255).
    pub value: u8,
    /// 1-based number among the components of that value, largest first (ties: first
    /// voxel in C order first).
    pub component: u32,
    /// Voxels in it.
    pub voxels: u64,
    /// Mean voxel index (z, y, x).
    pub centroid_zyx: [f64; 3],
    /// The centroid in world mm (x, y, z).
    pub centroid_world_xyz: [f64; 3],
    /// First voxel and one past the last (z, y, x).
    pub bbox_zyx: [[usize; 3]; 2],
    /// Diameter of the sphere of the same volume, mm: `(6 V / pi)^(1/3)`.
    pub equivalent_diameter_mm: f64,
}

/// The most components of one value a record lists (the largest); the record says how
/// many there were.
pub const MAX_LISTED: usize = 1000;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl LabelRecord {
    /// The file a label volume of scan `series_id` named `name` is stored in.
    pub fn file_for(series_id: &str, name: &str) -> String {
        format!("{LABELS}/{series_id}/{name}.ctv")
    }

    /// Voxels with a value other than 0.
    pub fn foreground_voxels(&self) -> u64 {
        self.counts.iter().map(|c| c[1]).sum()
    }

    /// Voxels with value `v` (0 for a value not present; `v` = 0 is not counted).
    pub fn voxels_of(&self, v: u8) -> u64 {
        self.counts.iter().find(|c| c[0] == v as u64).map_or(0, |c| c[1])
    }

    /// Checks the entry against FORMAT.md's rules for scan `rec` (name, file, counts,
    /// box inside the shape).
    ///
    /// # Errors
    /// A message naming the field.
    pub fn check(&self, rec_id: &str, shape_zyx: [usize; 3]) -> Result<(), String> {
        if !format::valid_label_name(&self.name) {
            return Err(format!(
                "labels: name {:?} is not a label name (^[a-z][a-z0-9_]{{0,31}}$)",
                self.name
            ));
        }
        let want = Self::file_for(rec_id, &self.name);
        if self.file != want {
            return Err(format!("labels {}: file {:?} is not {want:?}", self.name, self.file));
        }
        let voxels: u64 = shape_zyx.iter().map(|&n| n as u64).product();
        let mut last = 0u64;
        let mut total = 0u64;
        for &[v, n] in &self.counts {
            if v == 0 || v > 255 || v <= last || n == 0 {
                return Err(format!(
                    "labels {}: counts entry [{v}, {n}] is not a value 1..=255 in ascending order with a positive count",
                    self.name
                ));
            }
            last = v;
            total = total.saturating_add(n);
        }
        if total > voxels {
            return Err(format!(
                "labels {}: counts add up to {total} voxels, more than the scan's {voxels}",
                self.name
            ));
        }
        match self.bbox_zyx {
            None if total > 0 => {
                return Err(format!(
                    "labels {}: bbox_zyx is null but {total} voxels are labelled",
                    self.name
                ));
            }
            Some(_) if total == 0 => {
                return Err(format!(
                    "labels {}: bbox_zyx is given but no voxel is labelled",
                    self.name
                ));
            }
            Some([lo, hi]) if (0..3).any(|a| lo[a] >= hi[a] || hi[a] > shape_zyx[a]) => {
                return Err(format!(
                    "labels {}: bbox_zyx {lo:?}..{hi:?} is not a box inside the shape {shape_zyx:?}",
                    self.name
                ));
            }
            _ => {}
        }
        for c in &self.components {
            if self.voxels_of(c.value) < c.voxels
                || c.voxels == 0
                || (0..3).any(|a| {
                    c.bbox_zyx[0][a] >= c.bbox_zyx[1][a] || c.bbox_zyx[1][a] > shape_zyx[a]
                })
            {
                return Err(format!(
                    "labels {}: component {} of value {} ({} voxels, box {:?}) does not fit the counts and the shape",
                    self.name, c.component, c.value, c.voxels, c.bbox_zyx
                ));
            }
        }
        Ok(())
    }
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
        format::check_chunk_shape(self.chunk_shape_zyx)
            .map_err(|e| format!("chunk_shape_zyx: {e}"))?;
        self.geometry().check().map_err(|e| format!("stored {e}"))?;
        let orig = crate::geometry::Geometry {
            origin_xyz: self.orig_origin_xyz,
            spacing_xyz: self.orig_spacing_xyz,
            direction: self.orig_direction,
        };
        orig.check().map_err(|e| format!("orig_{e}"))?;
        let voxels: u64 = self.shape_zyx.iter().map(|&n| n as u64).product();
        if self.bytes_raw != 2 * voxels {
            return Err(format!(
                "bytes_raw {} is not 2 x the {voxels} voxels of shape_zyx",
                self.bytes_raw
            ));
        }
        if self.hu_min > self.hu_max
            || !self.hu_mean.is_finite()
            || self.hu_mean < self.hu_min as f64
            || self.hu_mean > self.hu_max as f64
        {
            return Err(format!(
                "hu_min {} / hu_max {} / hu_mean {} are not an HU range",
                self.hu_min, self.hu_max, self.hu_mean
            ));
        }
        for (i, l) in self.labels.iter().enumerate() {
            l.check(&self.series_id, self.shape_zyx)?;
            if i > 0 && self.labels[i - 1].name >= l.name {
                return Err(format!(
                    "labels: {:?} after {:?} (names must be unique and in order)",
                    l.name,
                    self.labels[i - 1].name
                ));
            }
        }
        if let Some(l) = &self.lidc {
            l.check()?;
        }
        Ok(())
    }

    /// The label volume named `name`, if the scan has one.
    pub fn label(&self, name: &str) -> Option<&LabelRecord> {
        self.labels.iter().find(|l| l.name == name)
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
/// The folder of label volumes (one sub-folder per scan; format 1.2).
pub const LABELS: &str = "labels";

/// An open store: its manifest and the scans that are completely stored. Thread-safe;
/// volume files are opened (and memory-mapped) on first use and shared. Scans whose
/// record is damaged are left out and listed by [`Store::damaged`].
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    location: Location,
    manifest: Manifest,
    scans: BTreeMap<String, ScanRecord>,
    damaged: Vec<DamagedRecord>,
    open: Mutex<BTreeMap<String, Arc<VolumeFile>>>,
    open_labels: Mutex<BTreeMap<(String, String), Arc<VolumeFile>>>,
}

/// Where a store lives: a local folder, or a prefix on object storage ([`remote`]).
#[derive(Debug, Clone)]
pub enum Location {
    /// A folder on a local (or mounted) file system; volume files are memory-mapped.
    Local(PathBuf),
    /// A prefix on object storage; files are fetched, volume chunks by byte range.
    Remote(Arc<remote::Remote>),
}

impl Location {
    /// The store at `location`: `s3://`, `gs://`, `az://`, `http(s)://` URLs are on object
    /// storage ([`remote::Remote::open`]); `file://` URLs and anything else are local paths.
    ///
    /// ```
    /// use ctstream::store::Location;
    /// assert!(matches!(Location::parse("luna-store").unwrap(), Location::Local(_)));
    /// let Location::Local(p) = Location::parse("file:///data/luna").unwrap() else { panic!() };
    /// assert_eq!(p, std::path::Path::new("/data/luna"));
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for a URL the client cannot use.
    pub fn parse(location: &str) -> Result<Location, StoreError> {
        if remote::is_remote(location) {
            return Ok(Location::Remote(Arc::new(remote::Remote::open(location)?)));
        }
        if let Some(rest) = location.strip_prefix("file://") {
            let u = url::Url::parse(location).ok().and_then(|u| u.to_file_path().ok());
            return u.map(Location::Local).ok_or_else(|| StoreError::Invalid { message: format!("{location}: not a file URL (file:///absolute/path); {rest:?} is not an absolute path") });
        }
        Ok(Location::Local(PathBuf::from(location)))
    }

    /// The location as a path, for messages and joins: the folder, or the URL.
    pub fn name(&self) -> PathBuf {
        match self {
            Location::Local(p) => p.clone(),
            Location::Remote(r) => PathBuf::from(r.url()),
        }
    }

    /// The object-storage client, for a remote store.
    pub fn remote(&self) -> Option<&Arc<remote::Remote>> {
        match self {
            Location::Remote(r) => Some(r),
            Location::Local(_) => None,
        }
    }
}

/// Reads and checks `manifest.json` of the store at `root`.
///
/// # Errors
/// [`StoreError::NotAStore`] when it is missing or not a manifest; [`StoreError::Version`]
/// for a newer major version.
pub fn read_manifest(root: &Path) -> Result<Manifest, StoreError> {
    let p = root.join(MANIFEST);
    let text = std::fs::read_to_string(&p)
        .map_err(|e| StoreError::NotAStore { path: p.clone(), message: e.to_string() })?;
    parse_manifest(p, &text)
}

/// The largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Reads and checks `manifest.json` of a store at `location`.
///
/// # Errors
/// As [`read_manifest`]; [`StoreError::Remote`] when a remote store cannot be reached.
pub fn read_manifest_at(location: &Location) -> Result<Manifest, StoreError> {
    match location {
        Location::Local(root) => read_manifest(root),
        Location::Remote(r) => {
            let p = r.name(MANIFEST);
            let Some(bytes) = r.get(MANIFEST, MAX_MANIFEST_BYTES)? else {
                return Err(StoreError::NotAStore { path: p, message: "no such object".into() });
            };
            let text = std::str::from_utf8(&bytes)
                .map_err(|e| StoreError::NotAStore { path: p.clone(), message: e.to_string() })?;
            parse_manifest(p, text)
        }
    }
}

pub(crate) fn parse_manifest(p: PathBuf, text: &str) -> Result<Manifest, StoreError> {
    let m: Manifest = serde_json::from_str(text)
        .map_err(|e| StoreError::NotAStore { path: p.clone(), message: e.to_string() })?;
    if m.format != "ctstream-store" {
        return Err(StoreError::NotAStore {
            path: p,
            message: format!("format is {:?}", m.format),
        });
    }
    if m.format_version[0] != format::VERSION_MAJOR {
        return Err(StoreError::Version {
            path: p,
            found: (m.format_version[0], m.format_version[1]),
            supported: (format::VERSION_MAJOR, format::VERSION_MINOR),
        });
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
            Err(reason) => {
                out.damaged.push(DamagedRecord { series_id: id.to_string(), path: p, reason })
            }
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
    check_record(&text, id, |file| {
        let vol = root.join(file);
        match std::fs::metadata(&vol) {
            Ok(m) if m.is_file() => Ok((vol, m.len())),
            Ok(_) => Err(format!("{} is not a file", vol.display())),
            Err(e) => Err(format!("{}: {e}", vol.display())),
        }
    })
}

/// Parses and checks a record's text: its fields, its id against the file name, and the
/// size of each file it names (`size(file)`: the file's name for messages and its size,
/// or why it has none).
fn check_record(
    text: &str,
    id: &str,
    size: impl Fn(&str) -> Result<(PathBuf, u64), String>,
) -> Result<ScanRecord, String> {
    let r: ScanRecord =
        serde_json::from_str(text).map_err(|e| format!("not a scan record: {e}"))?;
    r.check()?;
    if r.series_id != id {
        return Err(format!("series_id {:?} does not match the file name", r.series_id));
    }
    let files = std::iter::once(("volume file", &r.volume_file, r.bytes_stored))
        .chain(r.labels.iter().map(|l| ("label volume", &l.file, l.bytes_stored)));
    for (what, file, bytes) in files {
        match size(file) {
            Ok((_, n)) if n == bytes => {}
            Ok((name, n)) => {
                return Err(format!(
                    "{what} {} is {n} bytes, the record says {bytes} (truncated or replaced)",
                    name.display()
                ));
            }
            Err(e) => return Err(format!("{what} {e}")),
        }
    }
    Ok(r)
}

/// As [`read_records`], for a store at `location`: on object storage the records are
/// fetched concurrently and the sizes of the files they name come from one listing.
///
/// # Errors
/// [`StoreError::Io`] when a local folder cannot be listed; [`StoreError::Remote`] when
/// the listing or a record cannot be fetched.
pub fn read_records_at(location: &Location) -> Result<Records, StoreError> {
    let r = match location {
        Location::Local(root) => return read_records(root),
        Location::Remote(r) => r,
    };
    let mut sizes: BTreeMap<String, u64> = r.list(VOLUMES)?.into_iter().collect();
    sizes.extend(r.list(LABELS)?);
    let records: Vec<String> = sizes
        .keys()
        .filter(|k| {
            k.strip_prefix(&format!("{VOLUMES}/"))
                .is_some_and(|n| n.ends_with(".json") && !n.starts_with('.') && !n.contains('/'))
        })
        .cloned()
        .collect();
    let texts = r.get_many(&records, MAX_RECORD_BYTES)?;
    let mut out = Records::default();
    for (rel, text) in records.iter().zip(texts) {
        let p = r.name(rel);
        let id = rel[VOLUMES.len() + 1..rel.len() - ".json".len()].to_string();
        let checked = match text {
            None => Err("vanished while the store was opened".to_string()),
            Some(b) => match std::str::from_utf8(&b) {
                Err(e) => Err(format!("not a scan record: {e}")),
                Ok(text) => check_record(text, &id, |file| match sizes.get(file) {
                    Some(&n) => Ok((r.name(file), n)),
                    None => Err(format!("{}: no such object", r.name(file).display())),
                }),
            },
        };
        match checked {
            Ok(rec) => {
                out.scans.insert(rec.series_id.clone(), rec);
            }
            Err(reason) => out.damaged.push(DamagedRecord { series_id: id, path: p, reason }),
        }
    }
    out.damaged.sort_by(|a, b| a.series_id.cmp(&b.series_id));
    Ok(out)
}

impl Store {
    /// Opens the store at `root`: checks the manifest and lists the stored scans. `root`
    /// may be a URL of object storage (`s3://bucket/luna`; see [`Location::parse`]).
    ///
    /// # Errors
    /// As [`read_manifest`] and [`read_records`]; [`StoreError::Remote`] when a remote
    /// store cannot be reached.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        match root.to_str() {
            Some(s) => Store::open_location(Location::parse(s)?),
            None => Store::open_location(Location::Local(root.to_path_buf())),
        }
    }

    /// Opens the store at `root` as [`Store::open`] does, with the disk cache `cache` in front
    /// of a store on object storage. Returns the store and whether the cache is used: a
    /// local store reads its own files and uses none.
    ///
    /// # Errors
    /// As [`cache::disk::DiskCacheConfig::open`] (checked before the store is opened) and
    /// [`Store::open`].
    pub fn open_with_disk_cache(
        root: &Path,
        cache: Option<&cache::disk::DiskCacheConfig>,
    ) -> Result<(Store, bool), StoreError> {
        if let Some(c) = cache {
            c.validate()?;
        }
        let store = Store::open(root)?;
        let used = match (cache, store.location().remote()) {
            (Some(c), Some(remote)) => {
                remote.set_disk_cache(c.open()?);
                true
            }
            _ => false,
        };
        Ok((store, used))
    }

    /// Opens the store at `location`.
    ///
    /// # Errors
    /// As [`Store::open`].
    pub fn open_location(location: Location) -> Result<Store, StoreError> {
        let manifest = read_manifest_at(&location)?;
        let Records { scans, damaged } = read_records_at(&location)?;
        Ok(Store {
            root: location.name(),
            location,
            manifest,
            scans,
            damaged,
            open: Mutex::new(BTreeMap::new()),
            open_labels: Mutex::new(BTreeMap::new()),
        })
    }

    /// Where the store lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Opens the volume file `rel` of `bytes` bytes (as its record says), `shape_zyx` in
    /// chunks of `chunk_zyx`.
    fn open_file(
        &self,
        rel: &str,
        bytes: u64,
        shape_zyx: [usize; 3],
        chunk_zyx: [usize; 3],
    ) -> Result<VolumeFile, StoreError> {
        match &self.location {
            Location::Local(root) => VolumeFile::open(&root.join(rel)),
            Location::Remote(r) => VolumeFile::open_remote(
                r.clone(),
                rel,
                bytes,
                format::payload_start_of(shape_zyx, chunk_zyx),
            ),
        }
    }

    /// The bytes of index table `name` (`index/<name>.parquet`), checked against
    /// `index/checksums.json`; None when the store has no such table (and the checksums
    /// do not list it).
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the checksums do not list these bytes, or list a table
    /// that is not there; the read's errors.
    pub fn table_bytes(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.location {
            Location::Local(root) => {
                let path = root.join(INDEX).join(format!("{name}.parquet"));
                if !path.exists() && !index::absent_table(&path)? {
                    return Ok(None);
                }
                index::read_table_bytes(&path).map(Some)
            }
            Location::Remote(r) => index::read_remote_table_bytes(r, &self.manifest, name),
        }
    }

    /// The rows of `index/nodules.parquet` (none when the store has no such table; an
    /// error when `checksums.json` lists one that is not there).
    ///
    /// # Errors
    /// As [`Store::table_bytes`], and [`StoreError::Parquet`] for a table that is not the
    /// nodules table.
    pub fn nodules(&self) -> Result<Vec<index::NoduleRow>, StoreError> {
        let path = self.root.join(INDEX).join("nodules.parquet");
        match self.table_bytes("nodules")? {
            Some(b) => index::nodules_from_bytes(&path, b),
            None => Ok(Vec::new()),
        }
    }

    /// The rows of `index/candidates.parquet` (none when the store has no such table).
    ///
    /// # Errors
    /// As [`Store::nodules`].
    pub fn candidates(&self) -> Result<Vec<index::CandidateRow>, StoreError> {
        let path = self.root.join(INDEX).join("candidates.parquet");
        match self.table_bytes("candidates")? {
            Some(b) => index::candidates_from_bytes(&path, b),
            None => Ok(Vec::new()),
        }
    }

    /// The index's tables (`index/*.parquet`), by name, sorted.
    ///
    /// # Errors
    /// [`StoreError::Io`] or [`StoreError::Remote`] when the folder cannot be listed.
    pub fn table_names(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = match &self.location {
            Location::Local(root) => {
                let dir = root.join(INDEX);
                match std::fs::read_dir(&dir) {
                    Ok(rd) => {
                        rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect()
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                    Err(source) => return Err(StoreError::Io { path: dir, source }),
                }
            }
            Location::Remote(r) => r
                .list(INDEX)?
                .into_iter()
                .map(|(rel, _)| rel.rsplit('/').next().unwrap_or_default().to_string())
                .collect(),
        };
        names.retain(|n| n.ends_with(".parquet") && !n.starts_with('.'));
        let mut names: Vec<String> =
            names.into_iter().map(|n| n.trim_end_matches(".parquet").to_string()).collect();
        names.sort();
        Ok(names)
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
    /// [`StoreError::SeriesNotFound`]; [`StoreError::Corrupt`] for a scan whose record or
    /// volume file is damaged ([`Store::damaged`]).
    pub fn scan(&self, id: &str) -> Result<&ScanRecord, StoreError> {
        if let Some(rec) = self.scans.get(id) {
            return Ok(rec);
        }
        // A scan whose record or volume file is damaged is in the store, but unusable:
        // say so, naming the file and the damage, not that there is no such series.
        if let Some(d) = self.damaged.iter().find(|d| d.series_id == id) {
            return Err(StoreError::Corrupt {
                path: d.path.clone(),
                chunk: None,
                message: format!(
                    "series {id} is damaged: {}; `ctstream verify` lists the damage, `ctstream ingest --resume` stores the scan again",
                    d.reason
                ),
            });
        }
        Err(StoreError::SeriesNotFound { store: self.root.clone(), id: id.to_string() })
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
        let v = Arc::new(self.open_file(
            &rec.volume_file,
            rec.bytes_stored,
            rec.shape_zyx,
            rec.chunk_shape_zyx,
        )?);
        if let Ok(mut m) = self.open.lock() {
            m.insert(id.to_string(), v.clone());
        }
        Ok(v)
    }

    /// Lets go of scan `id`'s open volume and label files (their memory maps end when the
    /// last handle given out is dropped; the next use opens them again). For a long-lived
    /// reader that walks through many scans (`ctstream view`), so that the pages of the
    /// files it has left do not stay mapped into the process.
    pub fn close(&self, id: &str) {
        if let Ok(mut m) = self.open.lock() {
            m.remove(id);
        }
        if let Ok(mut m) = self.open_labels.lock() {
            m.retain(|(sid, _), _| sid != id);
        }
    }

    /// Reads a region of a scan (see [`VolumeFile::read_region`]).
    ///
    /// # Errors
    /// [`StoreError::SeriesNotFound`], [`StoreError::Corrupt`] naming the chunk.
    pub fn read_region(&self, id: &str, r: Region) -> Result<ndarray::Array3<i16>, StoreError> {
        self.volume(id)?.read_region(r)
    }

    /// The open label volume `name` of a scan (opened on first use, checked to be uint8
    /// on exactly the scan's grid, then shared).
    ///
    /// # Errors
    /// [`StoreError::SeriesNotFound`]; [`StoreError::LabelNotFound`] when the scan has no
    /// such label volume; [`StoreError::Corrupt`] for a file that is damaged or not on the
    /// scan's grid.
    pub fn label(&self, id: &str, name: &str) -> Result<Arc<VolumeFile>, StoreError> {
        let rec = self.scan(id)?;
        let Some(l) = rec.label(name) else {
            return Err(StoreError::LabelNotFound {
                store: self.root.clone(),
                id: id.to_string(),
                name: name.to_string(),
                have: rec.labels.iter().map(|l| l.name.clone()).collect(),
            });
        };
        let key = (id.to_string(), name.to_string());
        if let Some(v) = self.open_labels.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(v);
        }
        let path = self.root.join(&l.file);
        let v = self.open_file(&l.file, l.bytes_stored, rec.shape_zyx, rec.chunk_shape_zyx)?;
        let h = v.header();
        let g = rec.geometry();
        let bad = |field: &str, found: String, want: String| StoreError::Corrupt {
            path: path.clone(),
            chunk: None,
            message: format!(
                "{field} {found} is not the scan's {want}: a label volume lies on its scan's grid"
            ),
        };
        if h.dtype != format::DTYPE_U8 {
            return Err(bad("dtype", h.dtype.to_string(), "label dtype 2 (uint8)".into()));
        }
        if h.shape_zyx != rec.shape_zyx {
            return Err(bad(
                "shape_zyx",
                format!("{:?}", h.shape_zyx),
                format!("{:?}", rec.shape_zyx),
            ));
        }
        if h.chunk_shape_zyx != rec.chunk_shape_zyx {
            return Err(bad(
                "chunk_shape_zyx",
                format!("{:?}", h.chunk_shape_zyx),
                format!("{:?}", rec.chunk_shape_zyx),
            ));
        }
        if h.origin_xyz != g.origin_xyz || h.spacing_xyz != g.spacing_xyz {
            return Err(bad(
                "origin_xyz/spacing_xyz",
                format!("{:?}/{:?}", h.origin_xyz, h.spacing_xyz),
                format!("{:?}/{:?}", g.origin_xyz, g.spacing_xyz),
            ));
        }
        if h.fill_value != 0 {
            return Err(bad("fill_value", h.fill_value.to_string(), "0".into()));
        }
        let v = Arc::new(v);
        if let Ok(mut m) = self.open_labels.lock() {
            m.insert(key, v.clone());
        }
        Ok(v)
    }

    /// Reads a region of a scan's label volume `name`; voxels outside the scan read as 0.
    ///
    /// # Errors
    /// As [`Store::label`], and [`StoreError::Corrupt`] naming the chunk.
    pub fn read_label_region(
        &self,
        id: &str,
        name: &str,
        r: Region,
    ) -> Result<ndarray::Array3<u8>, StoreError> {
        self.label(id, name)?.read_region_as::<u8>(r)
    }
}
