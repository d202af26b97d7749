//! MetaImage (ITK's `.mhd` + data file, or single-file `.mha`): reader and writer.
//!
//! What is read: `NDims` 2 or 3 (a 2D image reads as one slice), `DimSize`,
//! `ElementSpacing`, `Offset`/`Origin`/`Position`, `TransformMatrix`/`Orientation`/
//! `Rotation`, `ElementType` (`MET_UCHAR`, `MET_CHAR`, `MET_USHORT`, `MET_SHORT`,
//! `MET_UINT`, `MET_INT`, `MET_LONG_LONG`, `MET_ULONG_LONG`, `MET_FLOAT`, `MET_DOUBLE`),
//! `ElementByteOrderMSB`/`BinaryDataByteOrderMSB`, `CompressedData` (zlib) with or
//! without `CompressedDataSize`, `HeaderSize` (including `-1`: data at the end of the
//! file), `ElementDataFile` as a file name (`.raw`, `.zraw`, ...) or `LOCAL`.
//!
//! What is refused, with an error naming the file and the key: `ElementNumberOfChannels`
//! other than 1, `ElementDataFile = LIST` or a file pattern, ASCII data
//! (`BinaryData = False`), `NDims` other than 2 or 3, and unknown element types.
//!
//! Values become HU by the rule in [`crate::hu`] (round half away from zero, clamp to
//! `i16`, count what was clamped); NaN and infinite voxels are an error.
//!
//! **Direction.** ITK stores the direction matrix in `TransformMatrix` transposed: the
//! nine numbers are the x, y and z axis vectors one after another. [`Geometry::direction`]
//! is SimpleITK's row-major `GetDirection()`; the reader and writer transpose.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use ndarray::Array3;

use crate::fsutil::write_atomic;
use crate::geometry::{Geometry, IDENTITY};
use crate::hu::{self, Converted, Scalar};
use crate::volume::{SourceFormat, Volume};

pub use crate::volume::MAX_VOXELS;

/// The longest header ctstream reads before giving up on finding `ElementDataFile`.
const MAX_HEADER_BYTES: usize = 1 << 20;

/// Errors from reading or writing MetaImage files. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaImageError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A required key is missing from the header.
    #[error("{path}: header has no `{key}`")]
    MissingKey {
        /// The header file.
        path: PathBuf,
        /// The key.
        key: &'static str,
    },
    /// A key's value could not be understood (a bad number, the wrong count of numbers).
    #[error("{path}: line {line}: `{key} = {value}`: {message}")]
    BadValue {
        /// The header file.
        path: PathBuf,
        /// 1-based line in the header.
        line: usize,
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        message: String,
    },
    /// A header line is not `Key = Value`, or the header is not text.
    #[error("{path}: line {line}: {message}")]
    Syntax {
        /// The header file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// A valid MetaImage feature that ctstream does not read.
    #[error("{path}: `{key} = {value}` is not supported: {why}")]
    Unsupported {
        /// The header file.
        path: PathBuf,
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// Why, and what would work instead.
        why: String,
    },
    /// The header claims more voxels than [`MAX_VOXELS`].
    #[error("{path}: DimSize {dims:?} is {voxels} voxels, more than the limit of {limit}")]
    TooLarge {
        /// The header file.
        path: PathBuf,
        /// DimSize as written (x, y, z).
        dims: Vec<u64>,
        /// Their product.
        voxels: u64,
        /// [`MAX_VOXELS`].
        limit: u64,
    },
    /// The data file is shorter than the header says, or its compressed stream is broken.
    #[error("{path}: {message}")]
    Data {
        /// The data file (the `.mha` itself for `LOCAL`).
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Float data holds NaN or infinite voxels, which have no HU.
    #[error("{path}: {count} voxels are NaN or infinite (no HU)")]
    NaN {
        /// The data file.
        path: PathBuf,
        /// How many.
        count: u64,
    },
}

type Result<T> = std::result::Result<T, MetaImageError>;

/// The `MET_*` name of a scalar type, and back.
pub fn met_name(t: Scalar) -> &'static str {
    match t {
        Scalar::U8 => "MET_UCHAR",
        Scalar::I8 => "MET_CHAR",
        Scalar::U16 => "MET_USHORT",
        Scalar::I16 => "MET_SHORT",
        Scalar::U32 => "MET_UINT",
        Scalar::I32 => "MET_INT",
        Scalar::U64 => "MET_ULONG_LONG",
        Scalar::I64 => "MET_LONG_LONG",
        Scalar::F32 => "MET_FLOAT",
        Scalar::F64 => "MET_DOUBLE",
    }
}

/// The scalar type of a `MET_*` name.
pub fn met_type(name: &str) -> Option<Scalar> {
    [
        Scalar::U8,
        Scalar::I8,
        Scalar::U16,
        Scalar::I16,
        Scalar::U32,
        Scalar::I32,
        Scalar::U64,
        Scalar::I64,
        Scalar::F32,
        Scalar::F64,
    ]
    .into_iter()
    .find(|&t| met_name(t) == name)
}

/// Where the voxel bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFile {
    /// In the header file itself, right after the `ElementDataFile = LOCAL` line, which
    /// starts at this byte offset.
    Local {
        /// Offset of the first data byte in the header file.
        offset: u64,
    },
    /// In another file, relative to the header's folder.
    External(PathBuf),
}

/// A parsed MetaImage header, with 2D images already embedded in 3D.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Shape (z, y, x); a 2D image has z = 1.
    pub shape_zyx: [usize; 3],
    /// Origin, spacing, direction (direction already transposed from `TransformMatrix`).
    pub geometry: Geometry,
    /// `NDims` as written (2 or 3).
    pub ndims: usize,
    /// Voxel type.
    pub element_type: Scalar,
    /// Big-endian data.
    pub msb: bool,
    /// zlib-compressed data.
    pub compressed: bool,
    /// `CompressedDataSize`, when given.
    pub compressed_size: Option<u64>,
    /// `HeaderSize`: bytes to skip at the start of the data file; -1 = data is at the end.
    pub header_size: i64,
    /// Where the data is.
    pub data_file: DataFile,
}

impl Header {
    /// Number of voxels.
    pub fn voxels(&self) -> usize {
        self.shape_zyx.iter().product()
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Parses the header of `path` (`.mhd` or `.mha`).
///
/// # Errors
/// [`MetaImageError`] naming `path` and the key for I/O failures, syntax errors, bad or
/// missing values, unsupported features and sizes over [`MAX_VOXELS`].
pub fn read_header(path: &Path) -> Result<Header> {
    let io_err = |source| MetaImageError::Io { path: path.to_path_buf(), source };
    let mut f = crate::fsutil::open_regular(path).map_err(io_err)?;
    // Read up to MAX_HEADER_BYTES; the header ends at the ElementDataFile line.
    let mut head = Vec::new();
    (&mut f).take(MAX_HEADER_BYTES as u64).read_to_end(&mut head).map_err(io_err)?;
    parse_header(path, &head)
}

/// Parses header bytes (the start of an `.mhd`/`.mha` file); `path` is used for errors
/// and to locate an external data file.
///
/// # Errors
/// As [`read_header`].
pub fn parse_header(path: &Path, bytes: &[u8]) -> Result<Header> {
    let syntax = |line: usize, message: String| MetaImageError::Syntax {
        path: path.to_path_buf(),
        line,
        message,
    };
    let mut fields: Vec<(usize, String, String)> = Vec::new();
    let mut pos = 0usize;
    let mut line_no = 0usize;
    let mut data_offset = None;
    while pos < bytes.len() {
        line_no += 1;
        let end = bytes[pos..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |e| pos + e);
        let raw = &bytes[pos..end];
        pos = (end + 1).min(bytes.len());
        let line = std::str::from_utf8(raw)
            .map_err(|_| syntax(line_no, "header line is not text".into()))?
            .trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(syntax(line_no, format!("expected `Key = Value`, found `{line}`")));
        };
        let (key, value) = (key.trim().to_string(), value.trim().to_string());
        let is_data = key.eq_ignore_ascii_case("ElementDataFile");
        fields.push((line_no, key, value));
        if is_data {
            data_offset = Some(pos as u64);
            break;
        }
    }
    let Some(data_offset) = data_offset else {
        if bytes.len() >= MAX_HEADER_BYTES {
            return Err(syntax(line_no, "no `ElementDataFile` within the first 1 MiB".into()));
        }
        return Err(MetaImageError::MissingKey {
            path: path.to_path_buf(),
            key: "ElementDataFile",
        });
    };

    let find = |names: &[&str]| {
        fields.iter().find(|(_, k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
    };
    let bad =
        |(line, key, value): &(usize, String, String), message: String| MetaImageError::BadValue {
            path: path.to_path_buf(),
            line: *line,
            key: key.clone(),
            value: value.clone(),
            message,
        };
    let unsupported =
        |(_, key, value): &(usize, String, String), why: &str| MetaImageError::Unsupported {
            path: path.to_path_buf(),
            key: key.clone(),
            value: value.clone(),
            why: why.to_string(),
        };
    let numbers = |field: &(usize, String, String), n: usize| -> Result<Vec<f64>> {
        let v: std::result::Result<Vec<f64>, _> =
            field.2.split_whitespace().map(str::parse::<f64>).collect();
        let v = v.map_err(|_| bad(field, "not a list of numbers".into()))?;
        if v.len() != n {
            return Err(bad(field, format!("expected {n} numbers, found {}", v.len())));
        }
        if v.iter().any(|x| !x.is_finite()) {
            return Err(bad(field, "numbers must be finite".into()));
        }
        Ok(v)
    };

    if let Some(f) = find(&["ObjectType"])
        && !f.2.eq_ignore_ascii_case("Image")
    {
        return Err(unsupported(f, "only ObjectType = Image holds a volume"));
    }
    let ndims_field = find(&["NDims"])
        .ok_or(MetaImageError::MissingKey { path: path.to_path_buf(), key: "NDims" })?;
    let ndims: usize =
        ndims_field.2.parse().map_err(|_| bad(ndims_field, "not an integer".into()))?;
    if ndims != 2 && ndims != 3 {
        return Err(unsupported(ndims_field, "ctstream reads 2D and 3D images"));
    }
    if let Some(f) = find(&["ElementNumberOfChannels"])
        && f.2 != "1"
    {
        return Err(unsupported(f, "multi-channel images are not CT volumes"));
    }
    if let Some(f) = find(&["BinaryData"]) {
        match parse_bool(&f.2) {
            Some(true) => {}
            Some(false) => return Err(unsupported(f, "ASCII voxel data is not read")),
            None => return Err(bad(f, "expected True or False".into())),
        }
    }
    let dims_field = find(&["DimSize"])
        .ok_or(MetaImageError::MissingKey { path: path.to_path_buf(), key: "DimSize" })?;
    let dims: std::result::Result<Vec<u64>, _> =
        dims_field.2.split_whitespace().map(str::parse::<u64>).collect();
    let dims = dims.map_err(|_| bad(dims_field, "not a list of non-negative integers".into()))?;
    if dims.len() != ndims {
        return Err(bad(dims_field, format!("expected {ndims} sizes, found {}", dims.len())));
    }
    if dims.contains(&0) {
        return Err(bad(dims_field, "a size of 0 makes an empty image".into()));
    }
    let voxels = dims.iter().try_fold(1u64, |a, &d| a.checked_mul(d)).unwrap_or(u64::MAX);
    if voxels > MAX_VOXELS {
        return Err(MetaImageError::TooLarge {
            path: path.to_path_buf(),
            dims,
            voxels,
            limit: MAX_VOXELS,
        });
    }

    let mut spacing = vec![1.0; ndims];
    if let Some(f) = find(&["ElementSpacing"]) {
        spacing = numbers(f, ndims)?;
        if spacing.iter().any(|&s| s <= 0.0) {
            return Err(bad(f, "spacing must be positive".into()));
        }
    }
    let mut origin = vec![0.0; ndims];
    if let Some(f) = find(&["Offset", "Origin", "Position"]) {
        origin = numbers(f, ndims)?;
    }
    let mut matrix: Vec<f64> =
        (0..ndims * ndims).map(|i| if i % (ndims + 1) == 0 { 1.0 } else { 0.0 }).collect();
    if let Some(f) = find(&["TransformMatrix", "Orientation", "Rotation"]) {
        matrix = numbers(f, ndims * ndims)?;
    }
    let et_field = find(&["ElementType"])
        .ok_or(MetaImageError::MissingKey { path: path.to_path_buf(), key: "ElementType" })?;
    let element_type = met_type(&et_field.2)
        .ok_or_else(|| unsupported(et_field, "known types: MET_UCHAR, MET_CHAR, MET_USHORT, MET_SHORT, MET_UINT, MET_INT, MET_LONG_LONG, MET_ULONG_LONG, MET_FLOAT, MET_DOUBLE"))?;
    let mut msb = false;
    if let Some(f) = find(&["BinaryDataByteOrderMSB", "ElementByteOrderMSB", "ByteOrderMSB"]) {
        msb = parse_bool(&f.2).ok_or_else(|| bad(f, "expected True or False".into()))?;
    }
    let mut compressed = false;
    if let Some(f) = find(&["CompressedData"]) {
        compressed = parse_bool(&f.2).ok_or_else(|| bad(f, "expected True or False".into()))?;
    }
    let mut compressed_size = None;
    if let Some(f) = find(&["CompressedDataSize"]) {
        compressed_size =
            Some(f.2.parse::<u64>().map_err(|_| bad(f, "not a non-negative integer".into()))?);
    }
    let mut header_size = 0i64;
    if let Some(f) = find(&["HeaderSize"]) {
        header_size = f.2.parse::<i64>().map_err(|_| bad(f, "not an integer".into()))?;
        if header_size < -1 {
            return Err(bad(f, "must be -1 or a byte count".into()));
        }
    }
    let data_field = find(&["ElementDataFile"])
        .ok_or(MetaImageError::MissingKey { path: path.to_path_buf(), key: "ElementDataFile" })?;
    let data_file = match data_field.2.as_str() {
        v if v.eq_ignore_ascii_case("LOCAL") => DataFile::Local { offset: data_offset },
        v if v.eq_ignore_ascii_case("LIST") || v.starts_with("LIST ") => {
            return Err(unsupported(
                data_field,
                "one file per slice (LIST) is not read; convert to a single .mha",
            ));
        }
        v if v.contains('%') && v.split_whitespace().count() > 1 => {
            return Err(unsupported(
                data_field,
                "file-name patterns are not read; convert to a single .mha",
            ));
        }
        "" => return Err(bad(data_field, "empty file name".into())),
        v => {
            let dir = path.parent().unwrap_or(Path::new("."));
            DataFile::External(dir.join(v))
        }
    };

    // Embed 2D in 3D: z spacing 1, origin 0, identity in z.
    let (shape_zyx, geometry) = if ndims == 3 {
        // TransformMatrix lists the axis vectors one after another: transpose.
        let mut direction = [0.0; 9];
        for r in 0..3 {
            for c in 0..3 {
                direction[3 * r + c] = matrix[3 * c + r];
            }
        }
        (
            [dims[2] as usize, dims[1] as usize, dims[0] as usize],
            Geometry {
                origin_xyz: [origin[0], origin[1], origin[2]],
                spacing_xyz: [spacing[0], spacing[1], spacing[2]],
                direction,
            },
        )
    } else {
        let mut direction = IDENTITY;
        direction[0] = matrix[0];
        direction[1] = matrix[2];
        direction[3] = matrix[1];
        direction[4] = matrix[3];
        (
            [1, dims[1] as usize, dims[0] as usize],
            Geometry {
                origin_xyz: [origin[0], origin[1], 0.0],
                spacing_xyz: [spacing[0], spacing[1], 1.0],
                direction,
            },
        )
    };
    // Every geometry value checked where it enters, naming the key it came from.
    if let Err(e) = geometry.check() {
        let names: &[&str] = match e.field {
            "spacing" => &["ElementSpacing"],
            "origin" => &["Offset", "Origin", "Position"],
            _ => &["TransformMatrix", "Orientation", "Rotation"],
        };
        if let Some(f) = find(names) {
            return Err(bad(f, e.to_string()));
        }
        return Err(MetaImageError::Syntax {
            path: path.to_path_buf(),
            line: 0,
            message: e.to_string(),
        });
    }
    Ok(Header {
        shape_zyx,
        geometry,
        ndims,
        element_type,
        msb,
        compressed,
        compressed_size,
        header_size,
        data_file,
    })
}

/// Reads the raw voxel bytes the header describes (decompressed, not yet converted).
fn read_data_bytes(path: &Path, h: &Header) -> Result<(PathBuf, Vec<u8>)> {
    let (data_path, start) = match &h.data_file {
        DataFile::Local { offset } => (path.to_path_buf(), *offset),
        DataFile::External(p) => (p.clone(), 0),
    };
    let io_err = |source| MetaImageError::Io { path: data_path.clone(), source };
    let external = matches!(h.data_file, DataFile::External(_));
    let data_err = |message: String| MetaImageError::Data {
        path: data_path.clone(),
        message: if external {
            format!("{message} (data file of {})", path.display())
        } else {
            message
        },
    };
    let mut f = crate::fsutil::open_regular(&data_path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            MetaImageError::Data {
                path: data_path.clone(),
                message: format!("data file named by {} does not exist", path.display()),
            }
        } else if external {
            // `ElementDataFile` named a folder, a FIFO or a device: name the header too.
            data_err(e.to_string())
        } else {
            io_err(e)
        }
    })?;
    let file_len = f.metadata().map_err(io_err)?.len();
    let need = (h.voxels() * h.element_type.size()) as u64;
    let start = if h.header_size == -1 {
        if h.compressed {
            let size = h.compressed_size.ok_or_else(|| {
                data_err("HeaderSize = -1 with compressed data needs CompressedDataSize".into())
            })?;
            file_len.checked_sub(size).ok_or_else(|| {
                data_err(format!("file has {file_len} bytes, fewer than CompressedDataSize {size}"))
            })?
        } else {
            file_len.checked_sub(need).ok_or_else(|| {
                data_err(format!(
                    "truncated: the header needs {need} bytes of voxels, the file has {file_len}"
                ))
            })?
        }
    } else {
        start + h.header_size as u64
    };
    if start > file_len {
        return Err(data_err(format!(
            "truncated: data should start at byte {start}, the file has {file_len}"
        )));
    }
    f.seek(SeekFrom::Start(start)).map_err(io_err)?;
    let available = file_len - start;
    if !h.compressed {
        if available < need {
            return Err(data_err(format!(
                "truncated: DimSize {} of {} needs {need} bytes, the file has {available} after byte {start}",
                h.shape_zyx.iter().rev().map(|d| d.to_string()).collect::<Vec<_>>().join(" "),
                met_name(h.element_type),
            )));
        }
        let mut buf = vec![0u8; need as usize];
        f.read_exact(&mut buf).map_err(io_err)?;
        return Ok((data_path, buf));
    }
    let csize = match h.compressed_size {
        Some(s) if s > available => {
            return Err(data_err(format!(
                "truncated: CompressedDataSize is {s} bytes, the file has {available} after byte {start}"
            )));
        }
        Some(s) => s,
        None => available,
    };
    // Inflate at most `need + 1` bytes, so a stream that expands without bound is caught.
    // Memory grows with what the stream really holds: a tiny file claiming 16 GiB of
    // voxels reserves no more than a few times its own size before it is found short.
    let mut out = Vec::with_capacity(need.min(csize.saturating_mul(8)).min(1 << 30) as usize);
    ZlibDecoder::new(f.take(csize))
        .take(need + 1)
        .read_to_end(&mut out)
        .map_err(|e| data_err(format!("zlib stream is corrupt: {e}")))?;
    if out.len() as u64 > need {
        return Err(data_err(format!(
            "compressed data expands to more than the {need} bytes the header needs"
        )));
    }
    if (out.len() as u64) < need {
        return Err(data_err(format!(
            "truncated: compressed data expands to {} bytes, the header needs {need}",
            out.len()
        )));
    }
    Ok((data_path, out))
}

/// Reads a MetaImage (`.mhd` with its data file, or `.mha`) as a [`Volume`] in HU.
///
/// The series id is the file stem (`1.3.6...mhd` gives `1.3.6...`).
///
/// # Errors
/// [`MetaImageError`], naming the header or data file: missing or truncated data,
/// corrupt zlib streams, bad header values, unsupported features, NaN voxels.
///
/// ```no_run
/// let vol = ctstream::io::metaimage::read("subset0/1.3.6.1.4.1.14519.5.2.1.6279.mhd".as_ref())?;
/// println!("{:?} voxels (z, y, x), spacing {:?} mm (x, y, z)", vol.shape_zyx(), vol.geometry.spacing_xyz);
/// # Ok::<(), ctstream::io::metaimage::MetaImageError>(())
/// ```
pub fn read(path: &Path) -> Result<Volume> {
    let raw = read_raw(path)?;
    let data_path = raw.data_path;
    let Converted { values, clamped, nan } =
        hu::convert(&raw.bytes, raw.scalar, raw.big_endian, None);
    if nan > 0 {
        return Err(MetaImageError::NaN { path: data_path, count: nan });
    }
    let hu = Array3::from_shape_vec(raw.shape_zyx, values).map_err(|e| MetaImageError::Data {
        path: data_path.clone(),
        message: format!("voxel count does not match DimSize: {e}"),
    })?;
    let series_id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(Volume { series_id, hu, geometry: raw.geometry, format: SourceFormat::MetaImage, clamped })
}

/// Reads a MetaImage's header and voxel bytes as they are stored, before any conversion
/// (label maps are read from these: [`crate::labels::files`]).
///
/// # Errors
/// As [`read`], less the NaN check.
pub fn read_raw(path: &Path) -> Result<crate::io::RawImage> {
    let h = read_header(path)?;
    let (data_path, bytes) = read_data_bytes(path, &h)?;
    Ok(crate::io::RawImage {
        data_path,
        bytes,
        scalar: h.element_type,
        big_endian: h.msb,
        scale: None,
        shape_zyx: h.shape_zyx,
        geometry: h.geometry,
    })
}

/// How [`write()`] lays the file out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// zlib-compress the voxels (`CompressedData = True`; the data file is `.zraw` for `.mhd`).
    pub compress: bool,
}

/// Formats numbers the way they are read back exactly (shortest round-trip form).
fn join<T: std::fmt::Display>(v: &[T]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(" ")
}

/// Writes `hu` (shape **(z, y, x)**) with geometry `g` (origin and spacing **(x, y, z)**
/// mm) as MetaImage, `MET_SHORT`, little-endian: `path` ending
/// in `.mha` gives one file (`ElementDataFile = LOCAL`); any other (`.mhd`) gives the
/// header plus a `.raw` (or `.zraw` when compressed) beside it. Both files are written to
/// temporary names and renamed when complete, data first, so a reader never sees a header
/// without its data.
///
/// What it writes reads back exactly with [`read`] and with SimpleITK.
///
/// # Errors
/// [`MetaImageError::Io`] naming the file that could not be written.
pub fn write(path: &Path, hu: &Array3<i16>, g: &Geometry, opts: WriteOptions) -> Result<()> {
    let mut data = Vec::with_capacity(hu.len() * 2);
    for v in hu.iter() {
        data.extend_from_slice(&v.to_le_bytes());
    }
    write_elements(path, data, "MET_SHORT", hu.shape(), g, opts)
}

/// Writes `values` (shape **(z, y, x)**) as MetaImage `MET_FLOAT` (e.g. a probability
/// map), laid out as [`write()`] does. ctstream's own reader turns voxels into HU
/// integers; SimpleITK, Slicer and ITK-SNAP read the floats.
///
/// # Errors
/// [`MetaImageError::Io`] naming the file that could not be written.
pub fn write_f32(
    path: &Path,
    values: &Array3<f32>,
    g: &Geometry,
    opts: WriteOptions,
) -> Result<()> {
    let mut data = Vec::with_capacity(values.len() * 4);
    for v in values.iter() {
        data.extend_from_slice(&v.to_le_bytes());
    }
    write_elements(path, data, "MET_FLOAT", values.shape(), g, opts)
}

fn write_elements(
    path: &Path,
    data: Vec<u8>,
    element_type: &str,
    s: &[usize],
    g: &Geometry,
    opts: WriteOptions,
) -> Result<()> {
    let io_err = |p: &Path| {
        let p = p.to_path_buf();
        move |source| MetaImageError::Io { path: p, source }
    };
    let payload = if opts.compress {
        let mut enc = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&data).map_err(io_err(path))?;
        enc.finish().map_err(io_err(path))?
    } else {
        data
    };
    // TransformMatrix = direction transposed (the axis vectors one after another).
    let d = &g.direction;
    let matrix = [d[0], d[3], d[6], d[1], d[4], d[7], d[2], d[5], d[8]];
    let local = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("mha"));
    let data_name = if local {
        "LOCAL".to_string()
    } else {
        let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{stem}.{}", if opts.compress { "zraw" } else { "raw" })
    };
    let mut header = String::new();
    header += "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n";
    header += &format!("CompressedData = {}\n", if opts.compress { "True" } else { "False" });
    if opts.compress {
        header += &format!("CompressedDataSize = {}\n", payload.len());
    }
    header += &format!("TransformMatrix = {}\n", join(&matrix));
    header += &format!("Offset = {}\n", join(&g.origin_xyz));
    header += "CenterOfRotation = 0 0 0\n";
    header += &format!("ElementSpacing = {}\n", join(&g.spacing_xyz));
    header += &format!("DimSize = {} {} {}\n", s[2], s[1], s[0]);
    header += &format!("ElementType = {element_type}\n");
    header += &format!("ElementDataFile = {data_name}\n");
    if local {
        write_atomic(path, |w| {
            w.write_all(header.as_bytes())?;
            w.write_all(&payload)
        })
        .map_err(io_err(path))?;
    } else {
        let data_path = path.with_file_name(&data_name);
        write_atomic(&data_path, |w| w.write_all(&payload)).map_err(io_err(&data_path))?;
        write_atomic(path, |w| w.write_all(header.as_bytes())).map_err(io_err(path))?;
    }
    Ok(())
}

/// Writes `vol` as MetaImage (see [`write()`]).
///
/// # Errors
/// As [`write()`].
pub fn write_volume(path: &Path, vol: &Volume, opts: WriteOptions) -> Result<()> {
    write(path, &vol.hu, &vol.geometry, opts)
}

/// Whether `path` names a MetaImage header (`.mhd` or `.mha`, any case).
pub fn is_metaimage(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("mhd") || e.eq_ignore_ascii_case("mha"))
}
