//! The bytes of a store, as `format/FORMAT.md` specifies them: constants, the volume
//! file header, chunk table entries, and the manifest. No I/O here.

use serde::{Deserialize, Serialize};

use super::StoreError;

/// Magic bytes at the start of every volume file.
pub const MAGIC: [u8; 8] = *b"CTVOLUME";
/// Major version this code reads and writes; newer majors are refused.
pub const VERSION_MAJOR: u16 = 1;
/// Minor version this code writes: 1.1 adds `index/checksums.json` and records'
/// `warnings`; 1.2 adds label volumes; 1.3 LIDC annotations (format/FORMAT.md, "Versions").
pub const VERSION_MINOR: u16 = 3;
/// Bytes from the start of the file to the end of the header.
pub const HEADER_SIZE: usize = 256;
/// Bytes per chunk table entry.
pub const ENTRY_SIZE: usize = 16;
/// `dtype` code: int16 little-endian.
pub const DTYPE_I16: u8 = 1;
/// `dtype` code: uint8 (label volumes, from format 1.2).
pub const DTYPE_U8: u8 = 2;

/// A voxel type a volume file can hold: int16 HU (scans) or uint8 labels. The bytes of
/// each are FORMAT.md's `dtype` codes.
pub trait Voxel: Copy + Send + Sync + std::fmt::Debug + PartialEq + 'static {
    /// The header's `dtype` code.
    const DTYPE: u8;
    /// Bytes per voxel.
    const BYTES: usize;
    /// The voxel from its little-endian bytes (`BYTES` of them).
    fn from_le(b: &[u8]) -> Self;
    /// Appends the voxel's little-endian bytes.
    fn push_le(self, out: &mut Vec<u8>);
    /// The voxel type's value of a header's `fill_value`, if it has one.
    fn from_fill(v: i16) -> Option<Self>;
    /// The header's `fill_value` for this value.
    fn to_fill(self) -> i16;
}

impl Voxel for i16 {
    const DTYPE: u8 = DTYPE_I16;
    const BYTES: usize = 2;
    fn from_le(b: &[u8]) -> Self {
        i16::from_le_bytes([b[0], b[1]])
    }
    fn push_le(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn from_fill(v: i16) -> Option<Self> {
        Some(v)
    }
    fn to_fill(self) -> i16 {
        self
    }
}

impl Voxel for u8 {
    const DTYPE: u8 = DTYPE_U8;
    const BYTES: usize = 1;
    fn from_le(b: &[u8]) -> Self {
        b[0]
    }
    fn push_le(self, out: &mut Vec<u8>) {
        out.push(self);
    }
    fn from_fill(v: i16) -> Option<Self> {
        u8::try_from(v).ok()
    }
    fn to_fill(self) -> i16 {
        self as i16
    }
}

/// Bytes per voxel of a `dtype` code, for the codes this version knows.
pub fn dtype_bytes(dtype: u8) -> Option<usize> {
    match dtype {
        DTYPE_I16 => Some(2),
        DTYPE_U8 => Some(1),
        _ => None,
    }
}
/// `codec` code: one zstd frame per chunk.
pub const CODEC_ZSTD: u8 = 1;
/// `checksum` code: CRC-32 (zlib's).
pub const CHECKSUM_CRC32: u8 = 1;

/// The fewest voxels a chunk may have (16 x 16 x 16): smaller chunks make every read
/// pay a zstd frame and a table entry for a few voxels (1 x 1 x 1 chunks made a
/// one-second `bench` run for minutes).
pub const MIN_CHUNK_VOXELS: u64 = 1 << 12;
/// The most voxels a chunk may have (256 x 256 x 256, 32 MiB of int16).
pub const MAX_CHUNK_VOXELS: u64 = 1 << 24;
/// The largest zstd level; levels are 1..=22.
pub const MAX_LEVEL: i32 = 22;

/// Checks a chunk shape (z, y, x): every side at least 1, and between
/// [`MIN_CHUNK_VOXELS`] and [`MAX_CHUNK_VOXELS`] voxels. Writers and readers use this
/// one rule, so a store is never written with chunks its reader refuses.
///
/// ```
/// use ctstream::store::format::check_chunk_shape;
/// assert!(check_chunk_shape([16, 32, 32]).is_ok());
/// assert!(check_chunk_shape([1, 1, 1]).is_err());
/// assert!(check_chunk_shape([512, 512, 512]).is_err());
/// ```
///
/// # Errors
/// A message saying which bound the shape breaks.
pub fn check_chunk_shape(c: [usize; 3]) -> Result<(), String> {
    let voxels = c.iter().map(|&n| n as u128).product::<u128>();
    if c.contains(&0) || voxels < MIN_CHUNK_VOXELS as u128 || voxels > MAX_CHUNK_VOXELS as u128 {
        return Err(format!(
            "chunk shape {c:?} has {voxels} voxels; a chunk needs every side >= 1 and {MIN_CHUNK_VOXELS}..={MAX_CHUNK_VOXELS} voxels (16x16x16 to 256x256x256)"
        ));
    }
    Ok(())
}

/// Checks a stored shape (z, y, x): no side 0, at most [`crate::volume::MAX_VOXELS`].
///
/// # Errors
/// A message with the shape.
pub fn check_shape(shape: [usize; 3]) -> Result<(), String> {
    let voxels = shape.iter().map(|&n| n as u128).product::<u128>();
    if shape.contains(&0) || voxels > crate::volume::MAX_VOXELS as u128 {
        return Err(format!(
            "shape {shape:?} is empty or more than the limit of {} voxels",
            crate::volume::MAX_VOXELS
        ));
    }
    Ok(())
}

/// The fixed 256-byte header of a volume file.
///
/// ```text
/// 0   magic "CTVOLUME"      8    168 chunk_count u32     4
/// 8   version major, minor  2+2  176 table_offset u64    8
/// 12  header_size u32       4    184 file_size u64       8
/// 16  shape_zyx 3xu32      12    252 header_crc u32      4
/// 28  chunk_shape_zyx 3xu32 12
/// 40  origin_xyz 3xf64     24
/// 64  spacing_xyz 3xf64    24
/// 88  direction 9xf64      72
/// 160 dtype, codec, checksum u8; 164 fill_value i16
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeHeader {
    /// Minor version found in the file.
    pub version_minor: u16,
    /// Stored shape (z, y, x).
    pub shape_zyx: [usize; 3],
    /// Chunk shape (z, y, x).
    pub chunk_shape_zyx: [usize; 3],
    /// Origin (x, y, z) mm.
    pub origin_xyz: [f64; 3],
    /// Spacing (x, y, z) mm.
    pub spacing_xyz: [f64; 3],
    /// Direction, row-major.
    pub direction: [f64; 9],
    /// `dtype` code: [`DTYPE_I16`] (scans) or [`DTYPE_U8`] (label volumes).
    pub dtype: u8,
    /// Value of voxels outside the volume (HU for scans, 0 for label volumes).
    pub fill_value: i16,
    /// Total file size in bytes.
    pub file_size: u64,
}

/// Offset of the first payload byte of a volume of `shape_zyx` in chunks of `chunk_zyx`
/// (header, chunk table, table CRC): what a reader fetches to check a file before its
/// chunks. Saturates instead of overflowing on absurd shapes.
///
/// ```
/// // 2 x 2 x 1 chunks: 4 table entries of 16 bytes after the header, then 4 bytes of CRC.
/// use ctstream::store::format::{payload_start_of, HEADER_SIZE};
/// assert_eq!(payload_start_of([32, 64, 32], [16, 32, 32]), HEADER_SIZE as u64 + 4 * 16 + 4);
/// ```
pub fn payload_start_of(shape_zyx: [usize; 3], chunk_zyx: [usize; 3]) -> u64 {
    let chunks = (0..3)
        .fold(1u64, |n, a| n.saturating_mul(shape_zyx[a].div_ceil(chunk_zyx[a].max(1)) as u64));
    (HEADER_SIZE as u64).saturating_add(chunks.saturating_mul(ENTRY_SIZE as u64)).saturating_add(4)
}

impl VolumeHeader {
    /// Chunks per axis (z, y, x).
    pub fn grid(&self) -> [usize; 3] {
        std::array::from_fn(|a| self.shape_zyx[a].div_ceil(self.chunk_shape_zyx[a]))
    }

    /// Number of chunks.
    pub fn chunk_count(&self) -> usize {
        self.grid().iter().product()
    }

    /// Voxels per chunk.
    pub fn chunk_voxels(&self) -> usize {
        self.chunk_shape_zyx.iter().product()
    }

    /// Bytes per voxel of the file's dtype.
    pub fn voxel_bytes(&self) -> usize {
        dtype_bytes(self.dtype).unwrap_or(2)
    }

    /// Offset of the first payload byte: header, table, table CRC.
    pub fn payload_start(&self) -> u64 {
        payload_start_of(self.shape_zyx, self.chunk_shape_zyx)
    }

    /// Checks what the writer guarantees: the shape within [`check_shape`], the chunk
    /// shape within [`check_chunk_shape`], an axis-aligned geometry that passes
    /// [`crate::geometry::Geometry::check`]. Every size computed from the header then
    /// fits in `usize`.
    ///
    /// # Errors
    /// A message naming the field.
    pub fn check(&self) -> Result<(), String> {
        check_shape(self.shape_zyx)?;
        check_chunk_shape(self.chunk_shape_zyx)?;
        let g = crate::geometry::Geometry {
            origin_xyz: self.origin_xyz,
            spacing_xyz: self.spacing_xyz,
            direction: self.direction,
        };
        g.check().map_err(|e| e.to_string())?;
        if !g.is_identity_direction() {
            return Err(format!(
                "direction {:?} is not the identity: stored grids are axis-aligned",
                self.direction
            ));
        }
        match self.dtype {
            DTYPE_I16 => {}
            DTYPE_U8 if (0..=255).contains(&self.fill_value) => {}
            DTYPE_U8 => return Err(format!("fill_value {} is not a uint8 value", self.fill_value)),
            d => return Err(format!("unknown dtype code {d}")),
        }
        Ok(())
    }

    /// The header's 256 bytes, with its CRC.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..10].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
        b[10..12].copy_from_slice(&VERSION_MINOR.to_le_bytes());
        b[12..16].copy_from_slice(&(HEADER_SIZE as u32).to_le_bytes());
        for a in 0..3 {
            b[16 + 4 * a..20 + 4 * a].copy_from_slice(&(self.shape_zyx[a] as u32).to_le_bytes());
            b[28 + 4 * a..32 + 4 * a]
                .copy_from_slice(&(self.chunk_shape_zyx[a] as u32).to_le_bytes());
            b[40 + 8 * a..48 + 8 * a].copy_from_slice(&self.origin_xyz[a].to_le_bytes());
            b[64 + 8 * a..72 + 8 * a].copy_from_slice(&self.spacing_xyz[a].to_le_bytes());
        }
        for i in 0..9 {
            b[88 + 8 * i..96 + 8 * i].copy_from_slice(&self.direction[i].to_le_bytes());
        }
        b[160] = self.dtype;
        b[161] = CODEC_ZSTD;
        b[162] = CHECKSUM_CRC32;
        b[164..166].copy_from_slice(&self.fill_value.to_le_bytes());
        b[168..172].copy_from_slice(&(self.chunk_count() as u32).to_le_bytes());
        b[176..184].copy_from_slice(&(HEADER_SIZE as u64).to_le_bytes());
        b[184..192].copy_from_slice(&self.file_size.to_le_bytes());
        let crc = crc32fast::hash(&b[0..252]);
        b[252..256].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a header (steps 1, 2 and 4 of FORMAT.md's checks, except the
    /// file-size comparison, which needs the file). `path` names the file in errors.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a bad magic, CRC or field; [`StoreError::Version`] for a
    /// newer major version.
    pub fn try_from_bytes(path: &std::path::Path, b: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            chunk: None,
            message,
        };
        if b.len() < HEADER_SIZE {
            return Err(corrupt(format!(
                "{} bytes is shorter than the 256-byte header (truncated)",
                b.len()
            )));
        }
        if b[0..8] != MAGIC {
            return Err(corrupt("not a ctstream volume file (bad magic)".into()));
        }
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let f64_at = |o: usize| f64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        let major = u16_at(8);
        if major != VERSION_MAJOR {
            return Err(StoreError::Version {
                path: path.to_path_buf(),
                found: (major, u16_at(10)),
                supported: (VERSION_MAJOR, VERSION_MINOR),
            });
        }
        let crc = crc32fast::hash(&b[0..252]);
        if crc != u32_at(252) {
            return Err(corrupt(format!(
                "header checksum mismatch (stored {:08x}, computed {crc:08x})",
                u32_at(252)
            )));
        }
        if u32_at(12) as usize != HEADER_SIZE || u64_at(176) != HEADER_SIZE as u64 {
            return Err(corrupt(format!(
                "header_size {} / table_offset {} are not 256",
                u32_at(12),
                u64_at(176)
            )));
        }
        if dtype_bytes(b[160]).is_none() || (b[161], b[162]) != (CODEC_ZSTD, CHECKSUM_CRC32) {
            return Err(corrupt(format!(
                "unknown dtype/codec/checksum codes {}/{}/{}",
                b[160], b[161], b[162]
            )));
        }
        let shape_zyx = std::array::from_fn(|a| u32_at(16 + 4 * a) as usize);
        let chunk_shape_zyx: [usize; 3] = std::array::from_fn(|a| u32_at(28 + 4 * a) as usize);
        let h = VolumeHeader {
            version_minor: u16_at(10),
            shape_zyx,
            chunk_shape_zyx,
            origin_xyz: std::array::from_fn(|a| f64_at(40 + 8 * a)),
            spacing_xyz: std::array::from_fn(|a| f64_at(64 + 8 * a)),
            direction: std::array::from_fn(|i| f64_at(88 + 8 * i)),
            dtype: b[160],
            fill_value: i16::from_le_bytes([b[164], b[165]]),
            file_size: u64_at(184),
        };
        // The writer's own rules (shape, chunks, geometry): a file whose CRCs were
        // recomputed over impossible values is refused as surely as a damaged one.
        h.check().map_err(corrupt)?;
        if u32_at(168) as usize != h.chunk_count() {
            return Err(corrupt(format!(
                "chunk_count {} does not match the grid {:?}",
                u32_at(168),
                h.grid()
            )));
        }
        Ok(h)
    }
}

/// One chunk table entry: where the chunk's zstd frame is, and its CRC-32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry {
    /// Offset from the start of the file.
    pub offset: u64,
    /// Payload bytes.
    pub length: u32,
    /// CRC-32 of the payload.
    pub crc: u32,
}

impl ChunkEntry {
    /// The entry's 16 bytes.
    pub fn to_bytes(self) -> [u8; ENTRY_SIZE] {
        let mut b = [0u8; ENTRY_SIZE];
        b[0..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..12].copy_from_slice(&self.length.to_le_bytes());
        b[12..16].copy_from_slice(&self.crc.to_le_bytes());
        b
    }

    /// Parses 16 bytes.
    pub fn from_bytes(b: &[u8; ENTRY_SIZE]) -> Self {
        ChunkEntry {
            offset: u64::from_le_bytes(b[0..8].try_into().expect("8 bytes")),
            length: u32::from_le_bytes(b[8..12].try_into().expect("4 bytes")),
            crc: u32::from_le_bytes(b[12..16].try_into().expect("4 bytes")),
        }
    }
}

/// The codec entry of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodecSpec {
    /// Always `"zstd"`.
    pub name: String,
    /// zstd level.
    pub level: i32,
}

/// A manifest value no store may have ([`Manifest::check`]): the key, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ManifestError {
    /// The manifest key (`spacing_xyz`, `chunk_shape_zyx`, `codec`, `hu_clip`, ...).
    pub key: &'static str,
    /// What is wrong, with the value.
    pub message: String,
}

/// `manifest.json`: how every volume of the store was made (FORMAT.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always `"ctstream-store"`.
    pub format: String,
    /// `[major, minor]`.
    pub format_version: [u16; 2],
    /// ctstream version that created the store.
    pub ctstream_version: String,
    /// Stored spacing (x, y, z) mm.
    pub spacing_xyz: [f64; 3],
    /// `"trilinear"`.
    pub interpolation: String,
    /// Stored HU are clamped to this range.
    pub hu_clip: [i16; 2],
    /// HU outside the volume.
    pub fill_hu: i16,
    /// Chunk shape (z, y, x).
    pub chunk_shape_zyx: [usize; 3],
    /// Codec.
    pub codec: CodecSpec,
    /// `"crc32"`.
    pub checksum: String,
}

impl Manifest {
    /// Checks every parameter: the spacing within
    /// [`crate::geometry::Geometry::check`]'s bounds, the chunk shape
    /// ([`check_chunk_shape`]), the zstd level (1..=22), the clip (lo < hi), and the
    /// interpolation and checksum names. Ingest
    /// writes no manifest that fails this, and [`crate::store::read_manifest`] refuses one.
    ///
    /// # Errors
    /// [`ManifestError`] naming the key at fault.
    pub fn check(&self) -> Result<(), ManifestError> {
        let err = |key, message: String| Err(ManifestError { key, message });
        if let Err(e) = crate::geometry::Geometry::axis_aligned([0.0; 3], self.spacing_xyz).check()
        {
            return err("spacing_xyz", e.to_string());
        }
        if let Err(e) = check_chunk_shape(self.chunk_shape_zyx) {
            return err("chunk_shape_zyx", e);
        }
        if self.codec.name != "zstd" || !(1..=MAX_LEVEL).contains(&self.codec.level) {
            return err(
                "codec",
                format!(
                    "{:?} level {} is not zstd at level 1..={MAX_LEVEL}",
                    self.codec.name, self.codec.level
                ),
            );
        }
        if self.hu_clip[0] >= self.hu_clip[1] {
            return err("hu_clip", format!("{:?} is not LO < HI", self.hu_clip));
        }
        if self.interpolation != "trilinear" || self.checksum != "crc32" {
            return err(
                "interpolation",
                format!(
                    "{:?} / checksum {:?}: expected \"trilinear\" / \"crc32\"",
                    self.interpolation, self.checksum
                ),
            );
        }
        Ok(())
    }

    /// Whether two manifests describe the same preprocessing (all but the ctstream version).
    pub fn same_parameters(&self, o: &Manifest) -> bool {
        self.spacing_xyz == o.spacing_xyz
            && self.interpolation == o.interpolation
            && self.hu_clip == o.hu_clip
            && self.fill_hu == o.fill_hu
            && self.chunk_shape_zyx == o.chunk_shape_zyx
            && self.codec == o.codec
            && self.checksum == o.checksum
    }
}

/// Whether `id` may name files in a store: `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`.
///
/// ```
/// use ctstream::store::format::valid_series_id;
/// assert!(valid_series_id("1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860"));
/// assert!(!valid_series_id("../etc/passwd"));
/// assert!(!valid_series_id("a/b"));
/// assert!(!valid_series_id(".hidden"));
/// ```
pub fn valid_series_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Whether `name` may name a label volume: `^[a-z][a-z0-9_]{0,31}$` (FORMAT.md).
///
/// ```
/// use ctstream::store::format::valid_label_name;
/// assert!(valid_label_name("lungs"));
/// assert!(valid_label_name("lung_region"));
/// assert!(!valid_label_name("Lungs"));
/// assert!(!valid_label_name("../x"));
/// assert!(!valid_label_name(""));
/// ```
pub fn valid_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}
