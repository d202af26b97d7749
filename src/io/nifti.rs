//! NIfTI-1 single-file images (`.nii`, `.nii.gz`), read the way ITK/SimpleITK reads them.
//!
//! **Geometry.** NIfTI stores positions in RAS; ctstream (like ITK and DICOM) uses LPS, so
//! the x and y rows of the transform are negated. The transform is the sform when
//! `sform_code > 0` (spacing = the norms of its columns, direction = the normalised
//! columns), else the qform when `qform_code > 0` (quaternion, `qfac` from `pixdim[0]`,
//! spacing from `pixdim`), else `pixdim` spacing with RAS axes at the origin. Where both
//! sform and qform are set and disagree, ITK has its own preference rules; no fixture
//! covers that case.
//!
//! **Values.** `scl_slope`/`scl_inter` apply when the slope is non-zero and the pair is
//! not (1, 0); then the rule of [`crate::hu`]. Data types: `uint8`, `int8`,
//! `(u)int16`, `(u)int32`, `(u)int64`, `float32`, `float64`.
//!
//! **Refused**, with an error naming the file and the field: NIfTI-2, `.hdr`/`.img` pairs,
//! more than one volume (`dim[4..] > 1`), complex and RGB data; and values nifticlib
//! would silently replace: a NaN or infinite `scl_slope` / `scl_inter`, a `pixdim` of 0
//! or NaN, a quaternion that is not a rotation, and any geometry that fails
//! [`Geometry::check`]. A `.nii.gz` is read to the end of its gzip stream, so a
//! damaged CRC-32 or length trailer is an error.
//!
//! [`write()`] writes int16 NIfTI-1 (`.nii`, or gzipped `.nii.gz`) with the geometry in the
//! sform (`sform_code` 1), which [`read`] and SimpleITK read back exactly.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use ndarray::Array3;

use crate::geometry::Geometry;
use crate::hu::{self, Converted, Scalar};
use crate::io::RawImage;
use crate::io::metaimage::MAX_VOXELS;
use crate::volume::{SourceFormat, Volume};

/// Errors from reading NIfTI; every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NiftiError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A header field is invalid.
    #[error("{path}: header field `{field}`: {message}")]
    Header {
        /// The file.
        path: PathBuf,
        /// The field, as the NIfTI-1 standard names it.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A valid NIfTI feature ctstream does not read.
    #[error("{path}: {what} is not supported")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What.
        what: String,
    },
    /// The header claims more voxels than the limit.
    #[error("{path}: dim {dims:?} is more than the limit of {limit} voxels")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// `dim[1..=3]`.
        dims: [u64; 3],
        /// The limit.
        limit: u64,
    },
    /// The data is shorter than the header says.
    #[error(
        "{path}: truncated: the header needs {need} bytes of voxels after byte {offset}, the file has {have}"
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes needed.
        need: u64,
        /// `vox_offset`.
        offset: u64,
        /// Bytes available after it.
        have: u64,
    },
    /// Float data holds NaN or infinite voxels.
    #[error("{path}: {count} voxels are NaN or infinite (no HU)")]
    NaN {
        /// The file.
        path: PathBuf,
        /// How many.
        count: u64,
    },
}

type Result<T> = std::result::Result<T, NiftiError>;

/// Whether `path` names a NIfTI file (`.nii` or `.nii.gz`, any case).
pub fn is_nifti(path: &Path) -> bool {
    let name =
        path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

/// The series id of a NIfTI file: its name without `.nii` or `.nii.gz`.
pub fn series_id(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let lower = name.to_ascii_lowercase();
    let cut = if lower.ends_with(".nii.gz") {
        7
    } else if lower.ends_with(".nii") {
        4
    } else {
        0
    };
    name[..name.len() - cut].to_string()
}

fn scalar(datatype: i16) -> Option<Scalar> {
    Some(match datatype {
        2 => Scalar::U8,
        4 => Scalar::I16,
        8 => Scalar::I32,
        16 => Scalar::F32,
        64 => Scalar::F64,
        256 => Scalar::I8,
        512 => Scalar::U16,
        768 => Scalar::U32,
        1024 => Scalar::I64,
        1280 => Scalar::U64,
        _ => return None,
    })
}

/// Reads a NIfTI-1 file as a [`Volume`] in HU, geometry in LPS as SimpleITK gives it.
///
/// # Errors
/// [`NiftiError`] naming the file and the header field.
pub fn read(path: &Path) -> Result<Volume> {
    let raw = read_raw(path)?;
    let Converted { values, clamped, nan } =
        hu::convert(&raw.bytes, raw.scalar, raw.big_endian, raw.scale);
    if nan > 0 {
        return Err(NiftiError::NaN { path: path.to_path_buf(), count: nan });
    }
    let hu = Array3::from_shape_vec(raw.shape_zyx, values).map_err(|e| NiftiError::Header {
        path: path.to_path_buf(),
        field: "dim",
        message: e.to_string(),
    })?;
    Ok(Volume {
        series_id: series_id(path),
        hu,
        geometry: raw.geometry,
        format: SourceFormat::Nifti,
        clamped,
    })
}

/// Reads a NIfTI-1 file's header and voxel bytes as they are stored, before any
/// conversion (label maps are read from these: [`crate::labels::files`]).
///
/// # Errors
/// As [`read`], less the NaN check.
pub fn read_raw(path: &Path) -> Result<RawImage> {
    let io_err = |source| NiftiError::Io { path: path.to_path_buf(), source };
    let header_err =
        |field, message: String| NiftiError::Header { path: path.to_path_buf(), field, message };
    let file = crate::fsutil::open_regular(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut magic = [0u8; 2];
    let gz;
    let mut reader: Box<dyn Read> = {
        let mut f = file;
        let n = f.read(&mut magic).map_err(io_err)?;
        let head = io::Cursor::new(magic[..n].to_vec()).chain(f);
        gz = n == 2 && magic == [0x1f, 0x8b];
        if gz { Box::new(GzDecoder::new(head)) } else { Box::new(head) }
    };
    let mut h = [0u8; 348];
    reader.read_exact(&mut h).map_err(|_| {
        header_err("sizeof_hdr", "the file is shorter than a NIfTI-1 header (348 bytes)".into())
    })?;
    let le = i32::from_le_bytes([h[0], h[1], h[2], h[3]]);
    let be = i32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let big = match (le, be) {
        (348, _) => false,
        (_, 348) => true,
        (540, _) | (_, 540) => {
            return Err(NiftiError::Unsupported {
                path: path.to_path_buf(),
                what: "NIfTI-2".into(),
            });
        }
        _ => return Err(header_err("sizeof_hdr", format!("{le} is not 348: not a NIfTI-1 file"))),
    };
    let i16_at = |o: usize| {
        if big {
            i16::from_be_bytes([h[o], h[o + 1]])
        } else {
            i16::from_le_bytes([h[o], h[o + 1]])
        }
    };
    let f32_at = |o: usize| {
        let b = [h[o], h[o + 1], h[o + 2], h[o + 3]];
        (if big { f32::from_be_bytes(b) } else { f32::from_le_bytes(b) }) as f64
    };
    match &h[344..348] {
        b"n+1\0" => {}
        b"ni1\0" => {
            return Err(NiftiError::Unsupported {
                path: path.to_path_buf(),
                what: "a .hdr/.img pair (magic ni1)".into(),
            });
        }
        m => return Err(header_err("magic", format!("{m:?} is neither n+1 nor ni1"))),
    }
    let dim: Vec<i16> = (0..8).map(|i| i16_at(40 + 2 * i)).collect();
    let ndim = dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(header_err("dim", format!("dim[0] = {ndim} is not 1..7")));
    }
    let size = |i: usize| if (i as i16) <= ndim { dim[i] } else { 1 };
    if (4..=7).any(|i| size(i) > 1) {
        return Err(NiftiError::Unsupported {
            path: path.to_path_buf(),
            what: format!(
                "an image with more than one volume (dim = {:?})",
                &dim[..=ndim as usize]
            ),
        });
    }
    let (nx, ny, nz) = (size(1), size(2), size(3));
    if nx < 1 || ny < 1 || nz < 1 {
        return Err(header_err("dim", format!("sizes {nx} x {ny} x {nz} must be positive")));
    }
    let dims = [nx as u64, ny as u64, nz as u64];
    if dims.iter().product::<u64>() > MAX_VOXELS {
        return Err(NiftiError::TooLarge { path: path.to_path_buf(), dims, limit: MAX_VOXELS });
    }
    let datatype = i16_at(70);
    let t = scalar(datatype).ok_or_else(|| NiftiError::Unsupported {
        path: path.to_path_buf(),
        what: format!("datatype {datatype}"),
    })?;
    // pixdim of axes past dim[0] do not exist (a 2D image has no slice spacing): 1 mm.
    let pixdim: Vec<f64> =
        (0..8).map(|i| if i > ndim as usize { 1.0 } else { f32_at(76 + 4 * i) }).collect();
    let vox_offset = f32_at(108);
    if !(vox_offset >= 348.0 && vox_offset.fract() == 0.0 && vox_offset < 1e9) {
        return Err(header_err(
            "vox_offset",
            format!("{vox_offset} is not a byte offset after the header"),
        ));
    }
    // scl_slope 0 means "no scaling" (the NIfTI standard); a NaN or infinite slope or
    // intercept is an error, not silently 1 or 0 (nifticlib replaces them).
    let (slope, inter) = (f32_at(112), f32_at(116));
    if !slope.is_finite() {
        return Err(header_err("scl_slope", format!("{slope} is not a finite number")));
    }
    let scale = (slope != 0.0 && (slope, inter) != (1.0, 0.0)).then_some((slope, inter));
    if scale.is_some() && !inter.is_finite() {
        return Err(header_err("scl_inter", format!("{inter} is not a finite number")));
    }

    let geometry = geometry(path, &pixdim, i16_at(252), i16_at(254), f32_at)?;

    // Skip to the data and read exactly what the header needs (no more, so a stream
    // that expands without bound is not followed).
    let need = dims.iter().product::<u64>() * t.size() as u64;
    let skip = vox_offset as u64 - 348;
    io::copy(&mut (&mut reader).take(skip), &mut io::sink()).map_err(io_err)?;
    // Reserve what the file can hold (a gzip stream at most 16 times its size up front),
    // not what the header claims: memory grows only with data that exists.
    let expand = if gz { 16 } else { 1 };
    let mut data = Vec::with_capacity(need.min(file_len.saturating_mul(expand)) as usize);
    (&mut reader).take(need).read_to_end(&mut data).map_err(|e| {
        if gz {
            NiftiError::Io {
                path: path.to_path_buf(),
                source: io::Error::new(e.kind(), format!("gzip stream is damaged: {e}")),
            }
        } else {
            header_err("vox_offset", format!("voxel data cannot be read: {e}"))
        }
    })?;
    if (data.len() as u64) < need {
        return Err(NiftiError::Truncated {
            path: path.to_path_buf(),
            need,
            offset: vox_offset as u64,
            have: data.len() as u64,
        });
    }
    if gz {
        // The gzip trailer (CRC-32 and length) is checked only when the stream is read to
        // its end: read what follows the voxels (at most 1 MiB; a valid file has nothing).
        io::copy(&mut (&mut reader).take(1 << 20), &mut io::sink()).map_err(|e| {
            NiftiError::Io {
                path: path.to_path_buf(),
                source: io::Error::new(e.kind(), format!("gzip stream is damaged: {e}")),
            }
        })?;
    }
    Ok(RawImage {
        data_path: path.to_path_buf(),
        bytes: data,
        scalar: t,
        big_endian: big,
        scale,
        shape_zyx: [nz as usize, ny as usize, nx as usize],
        geometry,
    })
}

/// The LPS geometry from the sform, the qform, or pixdim alone (see the module docs).
fn geometry(
    path: &Path,
    pixdim: &[f64],
    qform_code: i16,
    sform_code: i16,
    f32_at: impl Fn(usize) -> f64,
) -> Result<Geometry> {
    let bad =
        |field, message: String| NiftiError::Header { path: path.to_path_buf(), field, message };
    // m: 3x3 RAS matrix (columns = axis steps in mm), o: RAS origin.
    let (m, o, spacing) = if sform_code > 0 {
        let row = |r: usize| {
            [f32_at(280 + 16 * r), f32_at(284 + 16 * r), f32_at(288 + 16 * r), f32_at(292 + 16 * r)]
        };
        let rows = [row(0), row(1), row(2)];
        let m = [
            rows[0][0], rows[0][1], rows[0][2], rows[1][0], rows[1][1], rows[1][2], rows[2][0],
            rows[2][1], rows[2][2],
        ];
        let spacing: [f64; 3] = std::array::from_fn(|c| {
            (m[c] * m[c] + m[3 + c] * m[3 + c] + m[6 + c] * m[6 + c]).sqrt()
        });
        if spacing.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(bad("srow_x", format!("sform columns have lengths {spacing:?}")));
        }
        let dir: [f64; 9] = std::array::from_fn(|i| m[i] / spacing[i % 3]);
        (dir, [rows[0][3], rows[1][3], rows[2][3]], spacing)
    } else {
        // pixdim[1..=3] must be finite and non-zero; a negative one is taken by its size,
        // as ITK does. (nifticlib turns 0 or NaN into 1 mm; ctstream refuses to guess.)
        if let Some((i, p)) =
            pixdim.iter().enumerate().take(4).skip(1).find(|(_, p)| !(p.is_finite() && **p != 0.0))
        {
            return Err(bad(
                "pixdim",
                format!("pixdim[{i}] = {p} is not a spacing (finite, non-zero)"),
            ));
        }
        let spacing = [pixdim[1].abs(), pixdim[2].abs(), pixdim[3].abs()];
        if qform_code > 0 {
            let (b, c, d) = (f32_at(256), f32_at(260), f32_at(264));
            if ![b, c, d].iter().all(|v| v.is_finite()) || b * b + c * c + d * d > 1.0 + 1e-6 {
                return Err(bad(
                    "quatern_b",
                    format!(
                        "quaternion (b, c, d) = ({b}, {c}, {d}) is not a rotation (finite, b^2 + c^2 + d^2 <= 1)"
                    ),
                ));
            }
            let a = (1.0 - (b * b + c * c + d * d)).max(0.0).sqrt();
            let qfac = if pixdim[0] < 0.0 { -1.0 } else { 1.0 };
            let r = [
                a * a + b * b - c * c - d * d,
                2.0 * (b * c - a * d),
                2.0 * (b * d + a * c) * qfac,
                2.0 * (b * c + a * d),
                a * a + c * c - b * b - d * d,
                2.0 * (c * d - a * b) * qfac,
                2.0 * (b * d - a * c),
                2.0 * (c * d + a * b),
                (a * a + d * d - c * c - b * b) * qfac,
            ];
            (r, [f32_at(268), f32_at(272), f32_at(276)], spacing)
        } else {
            (crate::geometry::IDENTITY, [0.0; 3], spacing)
        }
    };
    // RAS -> LPS: negate the x and y rows.
    let mut direction = m;
    for v in direction.iter_mut().take(6) {
        *v = -*v;
    }
    for v in direction.iter_mut() {
        if *v == 0.0 {
            *v = 0.0; // no negative zeros
        }
    }
    let g = Geometry { origin_xyz: [-o[0], -o[1], o[2]], spacing_xyz: spacing, direction };
    // Every value checked where it enters, naming the header field it came from.
    g.check().map_err(|e| {
        let field = match (sform_code > 0, e.field) {
            (true, _) => "srow_x",
            (false, "spacing") => "pixdim",
            (false, "origin") => "qoffset_x",
            (false, _) => "quatern_b",
        };
        bad(field, e.to_string())
    })?;
    Ok(g)
}

/// Writes `hu` (shape (z, y, x)) with geometry `g` (LPS) as NIfTI-1 int16, gzipped when
/// `path` ends in `.gz`; atomically.
///
/// # Errors
/// [`NiftiError::Io`] naming the file; [`NiftiError::TooLarge`] for a dimension over
/// 32767 (NIfTI-1 stores sizes as int16).
pub fn write(path: &Path, hu: &Array3<i16>, g: &Geometry) -> Result<()> {
    let (nz, ny, nx) = hu.dim();
    if [nx, ny, nz].iter().any(|&n| n > i16::MAX as usize) {
        return Err(NiftiError::TooLarge {
            path: path.to_path_buf(),
            dims: [nx as u64, ny as u64, nz as u64],
            limit: MAX_VOXELS,
        });
    }
    let mut h = [0u8; 352];
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    for (i, d) in [3i16, nx as i16, ny as i16, nz as i16, 1, 1, 1, 1].iter().enumerate() {
        h[40 + 2 * i..42 + 2 * i].copy_from_slice(&d.to_le_bytes());
    }
    h[70..72].copy_from_slice(&4i16.to_le_bytes()); // int16
    h[72..74].copy_from_slice(&16i16.to_le_bytes());
    let pixdim = [
        1.0f32,
        g.spacing_xyz[0] as f32,
        g.spacing_xyz[1] as f32,
        g.spacing_xyz[2] as f32,
        1.0,
        1.0,
        1.0,
        1.0,
    ];
    for (i, p) in pixdim.iter().enumerate() {
        h[76 + 4 * i..80 + 4 * i].copy_from_slice(&p.to_le_bytes());
    }
    h[108..112].copy_from_slice(&352f32.to_le_bytes());
    h[112..116].copy_from_slice(&1f32.to_le_bytes()); // scl_slope
    h[123] = 2; // xyzt_units: mm
    h[254..256].copy_from_slice(&1i16.to_le_bytes()); // sform_code: scanner
    // sform rows in RAS: negate the LPS x and y rows of D * diag(spacing).
    for r in 0..3 {
        let sign = if r < 2 { -1.0 } else { 1.0 };
        for c in 0..3 {
            let v = sign * g.direction[3 * r + c] * g.spacing_xyz[c];
            h[280 + 16 * r + 4 * c..284 + 16 * r + 4 * c]
                .copy_from_slice(&(v as f32).to_le_bytes());
        }
        let o = sign * g.origin_xyz[r];
        h[292 + 16 * r..296 + 16 * r].copy_from_slice(&(o as f32).to_le_bytes());
    }
    h[344..348].copy_from_slice(b"n+1\0");
    let mut bytes = Vec::with_capacity(352 + hu.len() * 2);
    bytes.extend_from_slice(&h);
    for v in hu.iter() {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    let gz = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"));
    crate::fsutil::write_atomic(path, |w| {
        if gz {
            let mut e = GzEncoder::new(w, flate2::Compression::fast());
            e.write_all(&bytes)?;
            e.finish().map(|_| ())
        } else {
            w.write_all(&bytes)
        }
    })
    .map_err(|source| NiftiError::Io { path: path.to_path_buf(), source })
}
