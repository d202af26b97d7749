//! The parquet index's files (`format/INDEX.md`): tables written with arrow-rs's parquet
//! writer, each file atomically, with their checksums; the rows the store reads back
//! (nodules, candidates, scan ids). The tables are built by the layers that know what they
//! describe: `ingest::tables` (scans, labels, components, nodules, candidates) and
//! `predict` (findings).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int8Array, Int32Array, RecordBatch, StringArray,
};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use super::{ScanRecord, StoreError};
use crate::geometry::Geometry;

/// A row of `nodules.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoduleRow {
    /// Series id.
    pub series_id: String,
    /// 0-based index among the series' rows of its source file.
    pub nodule_id: i32,
    /// Centre (x, y, z) mm.
    pub world_xyz: [f64; 3],
    /// Continuous index (z, y, x) on the stored grid.
    pub voxel_zyx: [f64; 3],
    /// Diameter mm (None: excluded finding not measured).
    pub diameter_mm: Option<f64>,
    /// Radius in voxels (z, y, x).
    pub radius_zyx: Option<[f64; 3]>,
    /// Centre inside the stored volume.
    pub inside: bool,
    /// One of [`NODULE_SOURCES`]: `annotations`, `excluded` (the CSVs), `lidc` (a nodule
    /// of the scan's reader XML), `lidc_excluded` (a small nodule or non-nodule).
    pub source: &'static str,
    /// The centre's voxel lies in the scan's lung region (`lungs` dilated,
    /// format/FORMAT.md); `None` when the scan has no lung mask (from format 1.2).
    pub in_lung_region: Option<bool>,
    /// For an LIDC nodule: the reader annotations in it, 1 to 4 (from format 1.3).
    pub readers: Option<i32>,
    /// For an LIDC nodule: the consensus volume, ml (from 1.3).
    pub volume_ml: Option<f64>,
    /// For an LIDC nodule: the longest axial diameter of the consensus, mm (from 1.3).
    pub max_diameter_mm: Option<f64>,
    /// For an LIDC nodule: the median of each reader score, in
    /// [`crate::store::lidc::CHARACTERISTICS`] order (from 1.3).
    pub characteristics: [Option<f64>; 9],
}

/// The values of `nodules.parquet`'s `source`.
pub const NODULE_SOURCES: [&str; 4] = ["annotations", "excluded", "lidc", "lidc_excluded"];

impl NoduleRow {
    /// Whether it is a finding FROC ignores (`excluded`, `lidc_excluded`), not a nodule.
    pub fn is_excluded(&self) -> bool {
        self.source.ends_with("excluded")
    }
}

/// A row of `candidates.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateRow {
    /// Series id.
    pub series_id: String,
    /// 0-based index among the series' rows.
    pub candidate_id: i32,
    /// Location (x, y, z) mm.
    pub world_xyz: [f64; 3],
    /// Continuous index (z, y, x) on the stored grid.
    pub voxel_zyx: [f64; 3],
    /// Inside the stored volume.
    pub inside: bool,
    /// 1 nodule, 0 not.
    pub class: i8,
}

/// Maps a world point (x, y, z) to the stored grid of `rec`: (continuous index (z, y, x),
/// inside).
pub fn locate(rec: &ScanRecord, world_xyz: [f64; 3]) -> ([f64; 3], bool) {
    let g: Geometry = rec.geometry();
    let zyx = g.world_to_index(world_xyz).unwrap_or([f64::NAN; 3]);
    (zyx, Geometry::contains_index(rec.shape_zyx, zyx))
}

/// A non-null UTF-8 column.
pub fn utf8<'a>(v: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v))
}
/// A non-null float64 column.
pub fn f64s(v: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(v))
}
/// A float64 column, null where the value is `None`.
pub fn f64s_or_null(v: impl Iterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from_iter(v))
}
/// An int32 column, null where the value is `None`.
pub fn i32s_or_null(v: impl Iterator<Item = Option<i32>>) -> ArrayRef {
    Arc::new(Int32Array::from_iter(v))
}
/// A non-null int32 column.
pub fn i32s(v: impl Iterator<Item = i32>) -> ArrayRef {
    Arc::new(Int32Array::from_iter_values(v))
}

/// A table from `(name, column, nullable)` triples, as the builders of the index tables
/// (`ingest::tables`) and of `findings.parquet` (`predict`) make them: columns of one length.
pub fn batch(cols: Vec<(&str, ArrayRef, bool)>) -> RecordBatch {
    RecordBatch::try_from_iter_with_nullable(cols)
        .expect("columns of equal length and declared types")
}

/// A table as the bytes of a parquet file (snappy, one row group). Index tables are small
/// (the LUNA16 candidates_V2 table is about 20 MB), so they are built in memory: the
/// bytes written are the bytes hashed into `checksums.json`.
///
/// # Errors
/// [`StoreError::Parquet`] naming `path`, the file the bytes are for.
pub fn table_bytes(path: &Path, batch: &RecordBatch) -> Result<Vec<u8>, StoreError> {
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut bytes = Vec::new();
    let result = (|| {
        let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props))?;
        writer.write(batch)?;
        writer.close().map(|_| ())
    })();
    result.map_err(|e| StoreError::Parquet { path: path.to_path_buf(), message: e.to_string() })?;
    Ok(bytes)
}

/// Writes a table to `path` as parquet (snappy, one row group), atomically.
///
/// # Errors
/// [`StoreError::Parquet`] or [`StoreError::Io`] naming the file.
pub fn write_table(path: &Path, batch: &RecordBatch) -> Result<(), StoreError> {
    let bytes = table_bytes(path, batch)?;
    crate::fsutil::write_bytes_atomic(path, &bytes)
        .map_err(|source| StoreError::Io { path: path.to_path_buf(), source })
}

/// The file beside the tables that holds their checksums (format/INDEX.md).
pub const CHECKSUMS: &str = "checksums.json";

/// `index/checksums.json`: the SHA-256, size and row count of every table, so a reader
/// detects a flipped byte (parquet's own page checksums are optional and arrow-rs writes
/// none) and a table left by an interrupted rewrite.
///
/// A rewrite goes in three steps, each one atomic rename: this file listing the new sums in
/// `tables` and the sums of the tables they replace in `replacing`; then every table; then
/// this file with `tables` alone. At every moment each table file matches a sum listed here,
/// so a reader racing an ingest never sees a table it would call damaged (format/INDEX.md).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Checksums {
    /// By file name (`scans.parquet`, ...).
    pub tables: BTreeMap<String, TableSum>,
    /// While a rewrite is under way: the sums of the tables being replaced (from 1.2).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub replacing: BTreeMap<String, TableSum>,
}

impl Checksums {
    /// Whether `bytes` are those of table `name` as listed, new or being replaced.
    fn lists(&self, name: &str, bytes: &[u8], sha256: &str) -> bool {
        let matches = |t: &TableSum| t.sha256 == sha256 && t.bytes == bytes.len() as u64;
        self.tables.get(name).is_some_and(matches) || self.replacing.get(name).is_some_and(matches)
    }
}

/// One table's entry in [`Checksums`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TableSum {
    /// SHA-256 of the file, lower-case hex.
    pub sha256: String,
    /// File size.
    pub bytes: u64,
    /// Rows.
    pub rows: u64,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the tables of an index into `dir`: `checksums.json` listing the new sums beside
/// those they replace, each table (atomically), then `checksums.json` with the new sums
/// alone (see [`Checksums`]).
///
/// # Errors
/// As [`write_table`], and [`StoreError::Io`] for the checksums.
pub fn write_tables(dir: &Path, tables: &[(&str, &RecordBatch)]) -> Result<(), StoreError> {
    let sums_path = dir.join(CHECKSUMS);
    // The sums of the tables there now, as they are (a damaged file lists nothing: its
    // tables were already refused, and stay refused until this rewrite ends).
    let old: Checksums = std::fs::read(&sums_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    write_tables_with(dir, tables, old, |name, bytes| {
        let path = dir.join(name);
        crate::fsutil::write_bytes_atomic(&path, bytes)
            .map_err(|source| StoreError::Io { path, source })
    })
}

/// As [`write_tables`], for the store at `location`: on object storage each file is one
/// object written whole (a PUT), in the same order, so a reader racing the rewrite sees
/// the same states as on a local disk.
///
/// # Errors
/// As [`write_tables`]; [`StoreError::Remote`] naming an object that cannot be written.
pub fn write_tables_at(
    location: &super::Location,
    tables: &[(&str, &RecordBatch)],
) -> Result<(), StoreError> {
    match location {
        super::Location::Local(root) => write_tables(&root.join(super::INDEX), tables),
        super::Location::Remote(r) => {
            let rel = |name: &str| format!("{}/{name}", super::INDEX);
            let old: Checksums = r
                .get(&rel(CHECKSUMS), MAX_TABLE_BYTES)
                .ok()
                .flatten()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            write_tables_with(&r.name(super::INDEX), tables, old, |name, bytes| {
                r.put(&rel(name), bytes::Bytes::copy_from_slice(bytes))
            })
        }
    }
}

/// Writes one file of the index (a table, or `checksums.json`) whole.
type WriteFile<'a> = dyn FnMut(&str, &[u8]) -> Result<(), StoreError> + 'a;

/// The rewrite of [`write_tables`] with `old`, the sums there now, and `write`, which
/// writes one file of the index (a table, or `checksums.json`) whole; `dir` names the
/// folder in messages.
fn write_tables_with(
    dir: &Path,
    tables: &[(&str, &RecordBatch)],
    old: Checksums,
    mut write: impl FnMut(&str, &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut new = Checksums::default();
    let mut files = Vec::with_capacity(tables.len());
    for (name, batch) in tables {
        let bytes = table_bytes(&dir.join(name), batch)?;
        new.tables.insert(
            name.to_string(),
            TableSum {
                sha256: sha256_hex(&bytes),
                bytes: bytes.len() as u64,
                rows: batch.num_rows() as u64,
            },
        );
        files.push((*name, bytes));
    }
    let write_sums = |sums: &Checksums, write: &mut WriteFile<'_>| {
        let json = serde_json::to_vec_pretty(sums)
            .map_err(|e| StoreError::Invalid { message: e.to_string() })?;
        write(CHECKSUMS, &json)
    };
    let mut replacing = old.tables;
    replacing.retain(|name, sum| new.tables.get(name) != Some(sum));
    if !replacing.is_empty() {
        write_sums(&Checksums { tables: new.tables.clone(), replacing }, &mut write)?;
    }
    for (name, bytes) in &files {
        write(name, bytes)?;
    }
    write_sums(&new, &mut write)
}

/// Reads `checksums.json` beside a table: `Ok(None)` for a store made before format 1.1,
/// which has none.
fn read_checksums(path: &Path) -> Result<Option<Checksums>, StoreError> {
    let corrupt =
        |message: String| StoreError::Corrupt { path: path.to_path_buf(), chunk: None, message };
    let sums_path = path.with_file_name(CHECKSUMS);
    let text = match std::fs::read_to_string(&sums_path) {
        Ok(t) => t,
        // Stores made before format 1.1 have no checksums; from 1.1 on they are required.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let root = path.parent().and_then(Path::parent);
            return checksums_missing(
                path,
                root.map(super::read_manifest).and_then(Result::ok).map(|m| m.format_version[1]),
            );
        }
        Err(e) => return Err(corrupt(format!("{}: {e}", sums_path.display()))),
    };
    parse_checksums(path, text.as_bytes())
}

/// Parses the `checksums.json` beside table `path`.
fn parse_checksums(path: &Path, bytes: &[u8]) -> Result<Option<Checksums>, StoreError> {
    let sums_path = path.with_file_name(CHECKSUMS);
    serde_json::from_slice(bytes).map(Some).map_err(|e| StoreError::Corrupt {
        path: path.to_path_buf(),
        chunk: None,
        message: format!("{} is damaged: {e}", sums_path.display()),
    })
}

/// What a missing `checksums.json` beside table `path` means in a store of format minor
/// version `minor` (None: unknown): none to check before 1.1, damage from 1.1 on.
fn checksums_missing(path: &Path, minor: Option<u16>) -> Result<Option<Checksums>, StoreError> {
    match minor {
        Some(m) if m >= 1 => Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            chunk: None,
            message: format!(
                "{} is missing (format 1.1 writes it with the tables); run `ctstream ingest --resume` to rewrite the index",
                path.with_file_name(CHECKSUMS).display()
            ),
        }),
        _ => Ok(None),
    }
}

/// Checks a table file's bytes against `checksums.json` beside it (required from format
/// 1.1; stores made before have none, and their tables are read unchecked).
///
/// # Errors
/// [`StoreError::Corrupt`] naming the table: a mismatch, a table the checksums do not
/// list, or checksums that cannot be read.
pub fn check_table(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    check_table_against(path, bytes, None, || read_checksums(path))
}

/// As [`check_table`], also accepting the sums read before the table (`before`): a table
/// read while an ingest rewrites the index is listed in the checksums read before it or in
/// those read after it (`after`, read only when `before` does not list it; see
/// [`Checksums`]). `path` names the table (a file, or an object's URL).
fn check_table_against(
    path: &Path,
    bytes: &[u8],
    before: Option<&Checksums>,
    after: impl FnOnce() -> Result<Option<Checksums>, StoreError>,
) -> Result<(), StoreError> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let have = sha256_hex(bytes);
    if before.is_some_and(|s| s.lists(&name, bytes, &have)) {
        return Ok(());
    }
    let Some(sums) = after()? else { return Ok(()) };
    if sums.lists(&name, bytes, &have) {
        return Ok(());
    }
    let sums_path = path.with_file_name(CHECKSUMS);
    let corrupt =
        |message: String| StoreError::Corrupt { path: path.to_path_buf(), chunk: None, message };
    let fix = "the index is damaged, or an interrupted ingest left it half rewritten (or two ingests rewrote it at once); run `ctstream index STORE` with the CSVs (or `ctstream ingest --resume` with the same inputs and CSVs) to rewrite it";
    let Some(want) = sums.tables.get(&name) else {
        return Err(corrupt(format!("not listed in {}; {fix}", sums_path.display())));
    };
    Err(corrupt(format!(
        "{} bytes with SHA-256 {have}, {} lists {} bytes with {}; {fix}",
        bytes.len(),
        sums_path.display(),
        want.bytes,
        want.sha256
    )))
}

/// Reads `nodules.parquet` back into rows (the loader samples from these).
///
/// # Errors
/// [`StoreError::Io`] or [`StoreError::Parquet`] naming the file; a missing or mistyped
/// column is a [`StoreError::Parquet`] naming it.
pub fn read_nodules(path: &Path) -> Result<Vec<NoduleRow>, StoreError> {
    nodules_from_bytes(path, read_table_bytes(path)?)
}

/// Parses the bytes of a nodules table (already checked: [`read_table_bytes`],
/// [`crate::store::Store::table_bytes`]) into rows; `path` names it in errors.
///
/// # Errors
/// [`StoreError::Parquet`] naming the file and the missing or mistyped column.
pub fn nodules_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Vec<NoduleRow>, StoreError> {
    use arrow_array::Array;
    let perr = |message: String| StoreError::Parquet { path: path.to_path_buf(), message };
    let mut rows = Vec::new();
    for b in batches_from_bytes(path, bytes)? {
        let series = column::<StringArray>(&b, "series_id").map_err(perr)?;
        let id = column::<Int32Array>(&b, "nodule_id").map_err(perr)?;
        let f = |n: &str| column::<Float64Array>(&b, n).map_err(perr);
        let (wx, wy, wz, vz, vy, vx, d, rz, ry, rx) = (
            f("world_x")?,
            f("world_y")?,
            f("world_z")?,
            f("voxel_z")?,
            f("voxel_y")?,
            f("voxel_x")?,
            f("diameter_mm")?,
            f("radius_z")?,
            f("radius_y")?,
            f("radius_x")?,
        );
        let inside = column::<BooleanArray>(&b, "inside").map_err(perr)?;
        let source = column::<StringArray>(&b, "source").map_err(perr)?;
        // From format 1.2; tables of older stores have no such column.
        let in_lung = if b.column_by_name("in_lung_region").is_some() {
            Some(column::<BooleanArray>(&b, "in_lung_region").map_err(perr)?)
        } else {
            None
        };
        // From format 1.3.
        let optional = |n: &str| {
            if b.column_by_name(n).is_some() { f(n).map(Some) } else { Ok(None) }
        };
        let readers = if b.column_by_name("readers").is_some() {
            Some(column::<Int32Array>(&b, "readers").map_err(perr)?)
        } else {
            None
        };
        let (volume, max_d) = (optional("volume_ml")?, optional("max_diameter_mm")?);
        let scores = crate::store::lidc::CHARACTERISTICS
            .iter()
            .map(|n| optional(n))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..b.num_rows() {
            let opt = |a: &Float64Array| if a.is_null(i) { None } else { Some(a.value(i)) };
            rows.push(NoduleRow {
                series_id: series.value(i).to_string(),
                nodule_id: id.value(i),
                world_xyz: [wx.value(i), wy.value(i), wz.value(i)],
                voxel_zyx: [vz.value(i), vy.value(i), vx.value(i)],
                diameter_mm: opt(d),
                radius_zyx: opt(rz).zip(opt(ry)).zip(opt(rx)).map(|((z, y), x)| [z, y, x]),
                inside: inside.value(i),
                source: NODULE_SOURCES.iter().find(|s| **s == source.value(i)).ok_or_else(
                    || {
                        perr(format!(
                            "source {:?} in row {i} is none of {NODULE_SOURCES:?}",
                            source.value(i)
                        ))
                    },
                )?,
                in_lung_region: in_lung
                    .and_then(|a| if a.is_null(i) { None } else { Some(a.value(i)) }),
                readers: readers.and_then(|a| if a.is_null(i) { None } else { Some(a.value(i)) }),
                volume_ml: volume.and_then(opt),
                max_diameter_mm: max_d.and_then(opt),
                characteristics: std::array::from_fn(|k| scores[k].and_then(opt)),
            });
        }
    }
    Ok(rows)
}

/// Reads the `series_id` column of `scans.parquet`.
///
/// # Errors
/// As [`read_nodules`].
pub fn read_scan_ids(path: &Path) -> Result<Vec<String>, StoreError> {
    scan_ids_from_bytes(path, read_table_bytes(path)?)
}

/// Parses the bytes of a scans table (already checked) into its series ids.
///
/// # Errors
/// As [`nodules_from_bytes`].
pub fn scan_ids_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Vec<String>, StoreError> {
    let perr = |message: String| StoreError::Parquet { path: path.to_path_buf(), message };
    let mut ids = Vec::new();
    for b in batches_from_bytes(path, bytes)? {
        let series = column::<StringArray>(&b, "series_id").map_err(perr)?;
        ids.extend((0..b.num_rows()).map(|i| series.value(i).to_string()));
    }
    Ok(ids)
}

/// Reads `candidates.parquet` back into rows.
///
/// # Errors
/// As [`read_nodules`].
pub fn read_candidates(path: &Path) -> Result<Vec<CandidateRow>, StoreError> {
    candidates_from_bytes(path, read_table_bytes(path)?)
}

/// Parses the bytes of a candidates table (already checked) into rows.
///
/// # Errors
/// As [`nodules_from_bytes`].
pub fn candidates_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Vec<CandidateRow>, StoreError> {
    let perr = |message: String| StoreError::Parquet { path: path.to_path_buf(), message };
    let mut rows = Vec::new();
    for b in batches_from_bytes(path, bytes)? {
        let series = column::<StringArray>(&b, "series_id").map_err(perr)?;
        let id = column::<Int32Array>(&b, "candidate_id").map_err(perr)?;
        let f = |n: &str| column::<Float64Array>(&b, n).map_err(perr);
        let (wx, wy, wz, vz, vy, vx) = (
            f("world_x")?,
            f("world_y")?,
            f("world_z")?,
            f("voxel_z")?,
            f("voxel_y")?,
            f("voxel_x")?,
        );
        let inside = column::<BooleanArray>(&b, "inside").map_err(perr)?;
        let class = column::<Int8Array>(&b, "class").map_err(perr)?;
        for i in 0..b.num_rows() {
            rows.push(CandidateRow {
                series_id: series.value(i).to_string(),
                candidate_id: id.value(i),
                world_xyz: [wx.value(i), wy.value(i), wz.value(i)],
                voxel_zyx: [vz.value(i), vy.value(i), vx.value(i)],
                inside: inside.value(i),
                class: class.value(i),
            });
        }
    }
    Ok(rows)
}

/// A column of a record batch by name, as its concrete array type.
fn column<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    let c = b.column_by_name(name).ok_or_else(|| format!("no column `{name}`"))?;
    c.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column `{name}` has type {:?}", c.data_type()))
}

/// The largest index table read (the LUNA16 candidates_V2 table is about 20 MB).
const MAX_TABLE_BYTES: u64 = 1 << 30;

/// All record batches of a parquet file, after checking it against `checksums.json`.
/// The bytes of the table file at `path`, checked against `checksums.json` beside it
/// ([`check_table`]; also while an ingest rewrites the index), for a reader that parses
/// parquet itself (the Python package hands them to pyarrow).
///
/// # Errors
/// [`StoreError::Io`] naming the file (missing, not a regular file, unreadable),
/// [`StoreError::Corrupt`] when the checksums do not list these bytes.
pub fn read_table_bytes(path: &Path) -> Result<Vec<u8>, StoreError> {
    use std::io::Read;
    let io_err = |source| StoreError::Io { path: path.to_path_buf(), source };
    // The checksums before the table and after it: one of them lists it, even while an
    // ingest rewrites the index (see `Checksums`).
    let before = read_checksums(path).ok().flatten();
    let mut bytes = Vec::new();
    crate::fsutil::open_regular(path)
        .and_then(|f| f.take(MAX_TABLE_BYTES).read_to_end(&mut bytes))
        .map_err(io_err)?;
    check_table_against(path, &bytes, before.as_ref(), || read_checksums(path))?;
    Ok(bytes)
}

/// Whether the checksums `sums` require table `path` to be there: they list it, and no
/// rewrite that adds it is under way (an ingest writing a new table lists it in `tables`,
/// and the tables it replaces in `replacing`, before the table itself is written).
fn required(path: &Path, sums: Option<&Checksums>) -> Option<TableSum> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let s = sums?;
    let t = s.tables.get(&name)?;
    if !s.replacing.is_empty() && !s.replacing.contains_key(&name) {
        return None;
    }
    Some(t.clone())
}

/// The error for table `path` that is not there although `checksums.json` lists it with
/// `sum` (a partial copy or sync leaves a store so): reading it as an empty table would
/// turn every nodule into a negative patch.
fn missing_table(path: &Path, sum: &TableSum) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        chunk: None,
        message: format!(
            "missing, but {} lists it ({} rows, {} bytes): the store was copied or synced in part, or the file was removed; copy it again, or run `ctstream index STORE` with the CSVs (or `ctstream ingest --resume` with the same inputs and CSVs) to rewrite the index",
            path.with_file_name(CHECKSUMS).display(),
            sum.rows,
            sum.bytes
        ),
    }
}

/// For a local table file `path` that was not there: `Ok(true)` when it is there now (an
/// ingest wrote it meanwhile: read it), `Ok(false)` when the store has no such table.
///
/// # Errors
/// [`StoreError::Corrupt`] naming the table when `checksums.json` lists it: a missing
/// table is damage, not an empty one. Checksums that cannot be read are left to the
/// tables that are there to report.
pub fn absent_table(path: &Path) -> Result<bool, StoreError> {
    if path.exists() {
        return Ok(true);
    }
    let sums = read_checksums(path).ok().flatten();
    Ok(when_absent(path, sums.as_ref(), || Ok(path.exists().then_some(())))?.is_some())
}

/// The one rule for a table that was not there when looked for: `None` (simply absent)
/// unless `sums` list it; then what a second look finds (a running ingest may just have
/// added it), else [`StoreError::Corrupt`] naming it. Local and remote stores alike.
fn when_absent<T>(
    path: &Path,
    sums: Option<&Checksums>,
    look_again: impl FnOnce() -> Result<Option<T>, StoreError>,
) -> Result<Option<T>, StoreError> {
    match required(path, sums) {
        None => Ok(None),
        Some(sum) => look_again()?.map(Some).ok_or_else(|| missing_table(path, &sum)),
    }
}

/// The bytes of index table `name` of a store on object storage, checked against its
/// `checksums.json` as [`read_table_bytes`] checks a local one (required from format 1.1,
/// which `manifest` says whether the store has); None when there is no such table.
///
/// # Errors
/// [`StoreError::Remote`] when an object cannot be fetched; [`StoreError::Corrupt`] as
/// [`check_table`].
pub fn read_remote_table_bytes(
    remote: &crate::store::remote::Remote,
    manifest: &crate::store::Manifest,
    name: &str,
) -> Result<Option<Vec<u8>>, StoreError> {
    let rel = format!("{}/{name}.parquet", super::INDEX);
    let sums_rel = format!("{}/{CHECKSUMS}", super::INDEX);
    let path = remote.name(&rel);
    let read_sums = || match remote.get(&sums_rel, MAX_TABLE_BYTES)? {
        Some(b) => parse_checksums(&path, &b),
        None => checksums_missing(&path, Some(manifest.format_version[1])),
    };
    // As locally: the checksums before the table and after it.
    let before = read_sums().ok().flatten();
    let bytes = match remote.get(&rel, MAX_TABLE_BYTES)? {
        Some(b) => b,
        // Not there: damage when the checksums (read after looking) list it, unless it
        // is there by now.
        None => {
            let sums = read_sums().ok().flatten();
            match when_absent(&path, sums.as_ref(), || remote.get(&rel, MAX_TABLE_BYTES))? {
                Some(b) => b,
                None => return Ok(None),
            }
        }
    };
    check_table_against(&path, &bytes, before.as_ref(), read_sums)?;
    Ok(Some(bytes.to_vec()))
}

#[cfg(test)]
fn read_batches(path: &Path) -> Result<Vec<RecordBatch>, StoreError> {
    batches_from_bytes(path, read_table_bytes(path)?)
}

fn batches_from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Vec<RecordBatch>, StoreError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let perr = |e: &dyn std::fmt::Display| StoreError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .map_err(|e| perr(&e))?
        .build()
        .map_err(|e| perr(&e))?;
    reader.collect::<Result<Vec<_>, _>>().map_err(|e| perr(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(values: &[i32]) -> RecordBatch {
        RecordBatch::try_from_iter([("v", Arc::new(Int32Array::from(values.to_vec())) as ArrayRef)])
            .unwrap()
    }

    /// A table that is not there: damage when `checksums.json` lists it, absent when it
    /// does not, or when a rewrite under way adds it (listed in `tables`, the rewrite's
    /// `replacing` non-empty without it: the table is written after the checksums).
    #[test]
    fn a_missing_table_is_damage_only_when_the_checksums_require_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        assert!(!absent_table(&path).unwrap(), "no checksums: absent");
        write_tables(dir.path(), &[("t.parquet", &table(&[1, 2, 3]))]).unwrap();
        assert!(absent_table(&path).unwrap(), "there");
        let sums = read_checksums(&path).unwrap().unwrap();
        std::fs::remove_file(&path).unwrap();
        let e = absent_table(&path).unwrap_err().to_string();
        assert!(e.contains("t.parquet: corrupt: missing, but") && e.contains("(3 rows"), "{e}");
        let adding = Checksums {
            tables: sums.tables.clone(),
            replacing: BTreeMap::from([(
                "other.parquet".to_string(),
                sums.tables["t.parquet"].clone(),
            )]),
        };
        std::fs::write(dir.path().join(CHECKSUMS), serde_json::to_vec(&adding).unwrap()).unwrap();
        assert!(!absent_table(&path).unwrap(), "being added by a rewrite");
        let replacing = Checksums { tables: sums.tables.clone(), replacing: sums.tables.clone() };
        std::fs::write(dir.path().join(CHECKSUMS), serde_json::to_vec(&replacing).unwrap())
            .unwrap();
        assert!(absent_table(&path).is_err(), "being replaced: it was there and stays");
        std::fs::write(dir.path().join(CHECKSUMS), b"{\"tables\": {}}").unwrap();
        assert!(!absent_table(&path).unwrap(), "not listed: absent");
    }

    /// Every state a rewrite passes through, as a reader racing it sees them: each table
    /// file is accepted against the checksums read before it or after it, and a table
    /// neither lists is refused.
    #[test]
    fn tables_read_during_a_rewrite_match_the_checksums_before_or_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let (a, b) = (table(&[1, 2, 3]), table(&[4, 5]));
        write_tables(dir.path(), &[("t.parquet", &a)]).unwrap();
        let old_bytes = std::fs::read(&path).unwrap();
        let old_sums = read_checksums(&path).unwrap().unwrap();
        assert!(old_sums.replacing.is_empty());
        write_tables(dir.path(), &[("t.parquet", &b)]).unwrap();
        let new_bytes = std::fs::read(&path).unwrap();
        let new_sums = read_checksums(&path).unwrap().unwrap();
        assert!(new_sums.replacing.is_empty(), "step 3 drops `replacing`");
        assert_ne!(old_bytes, new_bytes);

        // After step 3: the new table checks; an old table read just before the rename
        // checks against the sums read before it, and only so.
        check_table(&path, &new_bytes).unwrap();
        assert!(matches!(check_table(&path, &old_bytes), Err(StoreError::Corrupt { .. })));
        check_table_against(&path, &old_bytes, Some(&old_sums), || read_checksums(&path)).unwrap();

        // Between step 1 and step 3 the file lists both.
        let mid = Checksums { tables: new_sums.tables.clone(), replacing: old_sums.tables.clone() };
        std::fs::write(dir.path().join(CHECKSUMS), serde_json::to_vec(&mid).unwrap()).unwrap();
        check_table(&path, &old_bytes).unwrap();
        check_table(&path, &new_bytes).unwrap();
        let mut flipped = new_bytes.clone();
        flipped[10] ^= 1;
        let e = check_table_against(&path, &flipped, Some(&old_sums), || read_checksums(&path))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.parquet") && e.contains("lists"), "{e}");

        // A rewrite that changes nothing writes no `replacing` at any step.
        write_tables(dir.path(), &[("t.parquet", &b)]).unwrap();
        assert_eq!(read_checksums(&path).unwrap().unwrap(), new_sums);
    }

    /// A reader looping over a table while another thread rewrites the index 300 times
    /// never sees a table it calls damaged (with tables then checksums renamed, as before
    /// format 1.2, it did within a few rewrites).
    #[test]
    fn a_reader_racing_rewrites_never_sees_a_damaged_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let (a, b) = (table(&[1, 2, 3]), table(&[4, 5]));
        write_tables(dir.path(), &[("t.parquet", &a), ("u.parquet", &b)]).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..300 {
                    let (x, y) = if i % 2 == 0 { (&b, &a) } else { (&a, &b) };
                    write_tables(dir.path(), &[("t.parquet", x), ("u.parquet", y)]).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::SeqCst);
            });
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let rows: usize = read_batches(&path)
                    .unwrap_or_else(|e| panic!("read {reads}: {e}"))
                    .iter()
                    .map(RecordBatch::num_rows)
                    .sum();
                assert!(rows == 2 || rows == 3);
                reads += 1;
            }
        });
    }
}
