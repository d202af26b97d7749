//! Reading volume files: memory-map, check (FORMAT.md steps 1-6), and read regions by
//! decoding only the chunks they touch, each verified against its CRC-32 (steps 7-8).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use memmap2::Mmap;
use ndarray::Array3;

use super::StoreError;
use super::cache::{FileChunks, Requests};
use super::format::{ChunkEntry, ENTRY_SIZE, HEADER_SIZE, VolumeHeader, Voxel};
use super::remote::Remote;
use crate::geometry::Geometry;

thread_local! {
    /// This thread's zstd decompression context, reused for every chunk it decodes.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// A box of voxels: start (z, y, x), which may be negative, and shape (z, y, x).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// First voxel (z, y, x); may lie outside the volume.
    pub start_zyx: [i64; 3],
    /// Size (z, y, x).
    pub shape_zyx: [usize; 3],
}

impl Region {
    /// The region `[z0, z1) x [y0, y1) x [x0, x1)`.
    ///
    /// ```
    /// use ctstream::store::Region;
    /// let r = Region::new([-4, 10, 10], [28, 74, 74]);
    /// assert_eq!(r.shape_zyx, [32, 64, 64]);
    /// ```
    pub fn new(start_zyx: [i64; 3], end_zyx: [i64; 3]) -> Region {
        Region {
            start_zyx,
            shape_zyx: std::array::from_fn(|a| (end_zyx[a] - start_zyx[a]).max(0) as usize),
        }
    }
}

/// An open, checked volume file. Cheap to share between threads (`&VolumeFile` is all a
/// read needs). A local file is memory-mapped; a file on object storage
/// ([`super::remote`]) keeps its header and chunk table and fetches chunks by byte range.
#[derive(Debug)]
pub struct VolumeFile {
    path: PathBuf,
    data: Data,
    header: VolumeHeader,
    table: Vec<ChunkEntry>,
}

#[derive(Debug)]
enum Data {
    Map(Mmap),
    /// `id`: the volume's name in the store's memory cache ([`super::cache::memory`]).
    Remote {
        remote: Arc<Remote>,
        rel: String,
        id: u64,
    },
}

/// Chunk payloads fetched ahead from object storage ([`VolumeFile::fetch`]), by chunk
/// index; empty for a local file, whose payloads are in its memory map.
#[derive(Debug, Default)]
pub struct Fetched(HashMap<usize, Bytes>);

impl VolumeFile {
    /// Opens and checks a volume file (FORMAT.md checks 1-6).
    ///
    /// # Errors
    /// [`StoreError::Io`], [`StoreError::Corrupt`] (truncated or damaged header or table),
    /// [`StoreError::Version`] (a newer major version).
    pub fn open(path: &Path) -> Result<VolumeFile, StoreError> {
        let file = crate::fsutil::open_regular(path)
            .map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?;
        // SAFETY: volume files are written under a temporary name and renamed into place,
        // never modified afterwards; ctstream never truncates or rewrites one in place. A
        // process outside ctstream that truncates the file while it is mapped can still
        // make reads fault, as with any memory map.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?;
        let (header, table) = check_head(path, &map, map.len() as u64)?;
        Ok(VolumeFile { path: path.to_path_buf(), data: Data::Map(map), header, table })
    }

    /// Opens and checks the volume file `rel` of a store on object storage, `file_size`
    /// bytes long (from the listing), with the same checks as [`VolumeFile::open`]. The
    /// header and chunk table are read with one range request of `head_hint` bytes (what
    /// the record's shapes say they take; a second request follows if the header says
    /// more).
    ///
    /// # Errors
    /// As [`VolumeFile::open`]; [`StoreError::Remote`] when the bytes cannot be fetched.
    pub fn open_remote(
        remote: Arc<Remote>,
        rel: &str,
        file_size: u64,
        head_hint: u64,
    ) -> Result<VolumeFile, StoreError> {
        let path = remote.name(rel);
        let corrupt =
            |message: String| StoreError::Corrupt { path: path.clone(), chunk: None, message };
        if file_size < HEADER_SIZE as u64 {
            return Err(corrupt(format!(
                "file is {file_size} bytes, shorter than the {HEADER_SIZE}-byte header"
            )));
        }
        let mut head = remote.get_range(rel, 0..head_hint.clamp(HEADER_SIZE as u64, file_size))?;
        let header = VolumeHeader::try_from_bytes(&path, &head[..HEADER_SIZE])?;
        let need = header.payload_start().min(file_size);
        if need > head.len() as u64 {
            head = remote.get_range(rel, 0..need)?;
        }
        let (header, table) = check_head(&path, &head, file_size)?;
        Ok(VolumeFile {
            path,
            data: Data::Remote {
                remote,
                rel: rel.to_string(),
                id: super::cache::memory::next_id(),
            },
            header,
            table,
        })
    }

    /// The object-storage client this volume is read through (None for a local file).
    pub fn remote(&self) -> Option<&Arc<Remote>> {
        match &self.data {
            Data::Remote { remote, .. } => Some(remote),
            Data::Map(_) => None,
        }
    }

    /// Whether the file is on object storage (its chunks are fetched by byte range).
    pub fn is_remote(&self) -> bool {
        matches!(self.data, Data::Remote { .. })
    }

    /// Fetches the payloads of the chunks region `r` touches, but those `skip` says are
    /// at hand (in a cache), from object storage ahead of decoding, in as few requests as
    /// coalescing allows; nothing (and no work) for a local file.
    ///
    /// # Errors
    /// [`StoreError::Remote`] naming the object and the byte range.
    pub fn fetch_region(
        &self,
        r: Region,
        skip: impl Fn([usize; 3]) -> bool,
    ) -> Result<Fetched, StoreError> {
        if !self.is_remote() {
            return Ok(Fetched::default());
        }
        let chunks: Vec<[usize; 3]> =
            self.chunks_touched(r).into_iter().filter(|&c| !skip(c)).collect();
        self.fetch(&chunks)
    }

    /// Fetches the payloads of `chunks` (z, y, x) from object storage ahead of decoding,
    /// through the store's cache tiers ([`super::cache`]: memory, then the disk cache where
    /// one is set, then range requests with neighbouring ones coalesced; chunks another
    /// thread is fetching are waited for, not asked again). Nothing for a local file.
    ///
    /// # Errors
    /// [`StoreError::Remote`] naming the object and the byte range.
    pub fn fetch(&self, chunks: &[[usize; 3]]) -> Result<Fetched, StoreError> {
        let Data::Remote { remote, rel, id } = &self.data else {
            return Ok(Fetched::default());
        };
        let grid = self.header.grid();
        let mut ks: Vec<usize> = chunks
            .iter()
            .filter(|c| (0..3).all(|a| c[a] < grid[a]))
            .map(|c| (c[0] * grid[1] + c[1]) * grid[2] + c[2])
            .collect();
        ks.sort_unstable();
        ks.dedup();
        let url = self.path.to_string_lossy();
        let file =
            FileChunks { id: *id, url: &url, file_size: self.header.file_size, table: &self.table };
        let requests = Requests {
            get_spans: &|ranges| remote.get_spans(rel, ranges),
            deadline: remote.options().deadline,
            note_wanted: &|n| remote.note_wanted(n),
        };
        Ok(Fetched(remote.payloads().fetch(&file, &ks, &requests)?))
    }

    /// The file's header.
    pub fn header(&self) -> &VolumeHeader {
        &self.header
    }

    /// Stored shape (z, y, x).
    pub fn shape_zyx(&self) -> [usize; 3] {
        self.header.shape_zyx
    }

    /// The stored grid's geometry.
    pub fn geometry(&self) -> Geometry {
        Geometry {
            origin_xyz: self.header.origin_xyz,
            spacing_xyz: self.header.spacing_xyz,
            direction: self.header.direction,
        }
    }

    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Decodes chunk `(cz, cy, cx)` of a scan (int16) after checking its CRC-32 and size:
    /// `Cz*Cy*Cx` values in C order.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] naming the file and the chunk, or a file of another dtype.
    pub fn decode_chunk(&self, chunk_zyx: [usize; 3]) -> Result<Vec<i16>, StoreError> {
        self.decode_chunk_as::<i16>(chunk_zyx)
    }

    /// Decodes chunk `(cz, cy, cx)` as voxels of type `T` (`i16` for scans, `u8` for
    /// label volumes), after checking its CRC-32 and size.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] naming the file and the chunk; [`StoreError::Invalid`] when
    /// the file holds another dtype.
    pub fn decode_chunk_as<T: Voxel>(&self, chunk_zyx: [usize; 3]) -> Result<Vec<T>, StoreError> {
        self.decode_chunk_fetched(chunk_zyx, &Fetched::default())
    }

    /// As [`VolumeFile::decode_chunk_as`], taking the payload from `fetched` where it was
    /// fetched ahead ([`VolumeFile::fetch`]).
    ///
    /// # Errors
    /// As [`VolumeFile::decode_chunk_as`]; [`StoreError::Remote`] when a payload that was
    /// not fetched ahead cannot be fetched.
    pub fn decode_chunk_fetched<T: Voxel>(
        &self,
        chunk_zyx: [usize; 3],
        fetched: &Fetched,
    ) -> Result<Vec<T>, StoreError> {
        let grid = self.header.grid();
        let corrupt = |message: String| StoreError::Corrupt {
            path: self.path.clone(),
            chunk: Some(chunk_zyx),
            message,
        };
        self.check_dtype::<T>()?;
        if (0..3).any(|a| chunk_zyx[a] >= grid[a]) {
            return Err(corrupt(format!("outside the chunk grid {grid:?}")));
        }
        let k = (chunk_zyx[0] * grid[1] + chunk_zyx[1]) * grid[2] + chunk_zyx[2];
        let e = self.table[k];
        let range = e.offset..e.offset + e.length as u64;
        let remote_bytes;
        let payload: &[u8] = match (&self.data, fetched.0.get(&k)) {
            (Data::Map(map), _) => &map[range.start as usize..range.end as usize],
            (Data::Remote { .. }, Some(b)) => b,
            (Data::Remote { .. }, None) => {
                remote_bytes = self.fetch(&[chunk_zyx])?.0.remove(&k).unwrap_or_default();
                &remote_bytes
            }
        };
        let crc = crc32fast::hash(payload);
        if crc != e.crc {
            return Err(corrupt(format!(
                "checksum mismatch (table {:08x}, payload {crc:08x})",
                e.crc
            )));
        }
        let want = self.header.chunk_voxels() * T::BYTES;
        let raw = DECOMPRESSOR
            .with(|cell| {
                // One decompression context per thread, made once: making one per chunk
                // cost the loader about 4 % of its time.
                let mut d = cell.borrow_mut();
                if d.is_none() {
                    *d = Some(zstd::bulk::Decompressor::new()?);
                }
                match d.as_mut() {
                    Some(dec) => dec.decompress(payload, want),
                    None => Err(std::io::Error::other("no zstd context")),
                }
            })
            .map_err(|err| corrupt(format!("zstd frame does not decode: {err}")))?;
        if raw.len() != want {
            return Err(corrupt(format!(
                "decodes to {} bytes, the chunk shape needs {want}",
                raw.len()
            )));
        }
        Ok(raw.chunks_exact(T::BYTES).map(T::from_le).collect())
    }

    /// The file's dtype code (FORMAT.md: 1 int16, 2 uint8).
    pub fn dtype(&self) -> u8 {
        self.header.dtype
    }

    fn check_dtype<T: Voxel>(&self) -> Result<(), StoreError> {
        if self.header.dtype != T::DTYPE {
            return Err(StoreError::Invalid {
                message: format!(
                    "{}: holds dtype {}, read as dtype {} (1 int16 scan, 2 uint8 label volume)",
                    self.path.display(),
                    self.header.dtype,
                    T::DTYPE
                ),
            });
        }
        Ok(())
    }

    /// Reads a region; voxels outside the volume are the fill value. Only the chunks the
    /// region touches are decoded.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a chunk whose checksum or size is wrong.
    pub fn read_region(&self, r: Region) -> Result<Array3<i16>, StoreError> {
        self.read_region_as::<i16>(r)
    }

    /// Reads a region as voxels of type `T` (`u8` for a label volume); voxels outside
    /// the volume are the fill value.
    ///
    /// # Errors
    /// As [`VolumeFile::decode_chunk_as`].
    pub fn read_region_as<T: Voxel>(&self, r: Region) -> Result<Array3<T>, StoreError> {
        self.check_dtype::<T>()?;
        // On object storage, every chunk of the region in as few requests as it takes.
        let fetched = self.fetch_region(r, |_| false)?;
        self.read_region_with(r, |c| self.decode_chunk_fetched::<T>(c, &fetched))
    }

    /// Reads a region, getting each chunk it touches (as [`VolumeFile::decode_chunk`]
    /// would return it) from `chunk`, e.g. through a cache.
    ///
    /// # Errors
    /// Whatever `chunk` returns.
    pub fn read_region_with<T: Voxel, C: AsRef<[T]>>(
        &self,
        r: Region,
        chunk: impl FnMut([usize; 3]) -> Result<C, StoreError>,
    ) -> Result<Array3<T>, StoreError> {
        self.read_region_where(r, |_| true, chunk)
    }

    /// [`VolumeFile::read_region_with`] for the chunks `wanted` keeps only: the others
    /// are neither asked of `chunk` nor copied, and their part of the region is left at
    /// the fill value (for a caller that knows it will not read there).
    ///
    /// # Errors
    /// Whatever `chunk` returns.
    pub fn read_region_where<T: Voxel, C: AsRef<[T]>>(
        &self,
        r: Region,
        wanted: impl Fn([usize; 3]) -> bool,
        chunk: impl FnMut([usize; 3]) -> Result<C, StoreError>,
    ) -> Result<Array3<T>, StoreError> {
        let mut out = Vec::new();
        self.read_region_into::<T, T, C>(r, wanted, chunk, &mut out)?;
        Array3::from_shape_vec(r.shape_zyx, out).map_err(|e| StoreError::Corrupt {
            path: self.path.clone(),
            chunk: None,
            message: format!("region {:?}: {e}", r.shape_zyx),
        })
    }

    /// [`VolumeFile::read_region_where`] into `out` (resized to the region, C order), as
    /// values of `O` (the stored `T` widened: a cache that holds every chunk as `i16`
    /// reads a `u8` label volume's region as `i16`). Every voxel is set, copied from its
    /// chunk or to the fill value, so `out` may hold anything before (resizing writes only
    /// what it grows by): a buffer reused from patch to patch is neither zeroed nor faulted
    /// in again.
    ///
    /// # Errors
    /// The volume's dtype is not `T`, or its fill value not a `T`; whatever `chunk`
    /// returns.
    pub fn read_region_into<T: Voxel, O: Copy + From<T>, C: AsRef<[O]>>(
        &self,
        r: Region,
        wanted: impl Fn([usize; 3]) -> bool,
        chunk: impl FnMut([usize; 3]) -> Result<C, StoreError>,
        out: &mut Vec<O>,
    ) -> Result<(), StoreError> {
        let fill = self.fill_as::<T, O>()?;
        out.resize(r.shape_zyx.iter().product(), fill);
        self.read_region_into_slice::<T, O, C>(r, wanted, chunk, out)
    }

    /// The fill value as a `T`, widened to `O`.
    fn fill_as<T: Voxel, O: From<T>>(&self) -> Result<O, StoreError> {
        let h = &self.header;
        self.check_dtype::<T>()?;
        Ok(O::from(T::from_fill(h.fill_value).ok_or_else(|| StoreError::Corrupt {
            path: self.path.clone(),
            chunk: None,
            message: format!("fill_value {} is not a value of dtype {}", h.fill_value, h.dtype),
        })?))
    }

    /// [`VolumeFile::read_region_into`] into `out`, which holds exactly the region's
    /// voxels (a patch's part of a batch, written in place): every one is set.
    ///
    /// # Errors
    /// As [`VolumeFile::read_region_into`]; `out` is not the region's size.
    pub fn read_region_into_slice<T: Voxel, O: Copy + From<T>, C: AsRef<[O]>>(
        &self,
        r: Region,
        wanted: impl Fn([usize; 3]) -> bool,
        mut chunk: impl FnMut([usize; 3]) -> Result<C, StoreError>,
        out: &mut [O],
    ) -> Result<(), StoreError> {
        let h = &self.header;
        let fill = self.fill_as::<T, O>()?;
        let voxels: usize = r.shape_zyx.iter().product();
        if out.len() != voxels {
            return Err(StoreError::Invalid {
                message: format!(
                    "region {:?} has {voxels} voxels; the buffer holds {}",
                    r.shape_zyx,
                    out.len()
                ),
            });
        }
        // The region cut along chunk boundaries and the volume's edges: each cell is one
        // chunk's part of the region (copied if wanted), or outside the volume (filled).
        let cells: [Vec<(i64, i64, Option<usize>)>; 3] = std::array::from_fn(|a| {
            cells_along(r.start_zyx[a], r.shape_zyx[a], h.shape_zyx[a], h.chunk_shape_zyx[a])
        });
        for &(z0, z1, cz) in &cells[0] {
            for &(y0, y1, cy) in &cells[1] {
                for &(x0, x1, cx) in &cells[2] {
                    let copied = match (cz, cy, cx) {
                        (Some(cz), Some(cy), Some(cx)) if wanted([cz, cy, cx]) => {
                            let data = chunk([cz, cy, cx])?;
                            let cell = [[z0, y0, x0], [z1, y1, x1]];
                            self.copy_chunk_into(r, cell, [cz, cy, cx], data.as_ref(), out)
                        }
                        _ => false,
                    };
                    if !copied {
                        fill_box(r, [z0, y0, x0], [z1, y1, x1], fill, out);
                    }
                }
            }
        }
        Ok(())
    }

    /// The chunks (z, y, x) a region touches inside the volume, in C order.
    pub fn chunks_touched(&self, r: Region) -> Vec<[usize; 3]> {
        let h = &self.header;
        let lo: [i64; 3] = std::array::from_fn(|a| r.start_zyx[a].max(0));
        let hi: [i64; 3] = std::array::from_fn(|a| {
            (r.start_zyx[a] + r.shape_zyx[a] as i64).min(h.shape_zyx[a] as i64)
        });
        if (0..3).any(|a| lo[a] >= hi[a]) {
            return Vec::new();
        }
        let c = h.chunk_shape_zyx;
        let first: [usize; 3] = std::array::from_fn(|a| lo[a] as usize / c[a]);
        let last: [usize; 3] = std::array::from_fn(|a| (hi[a] as usize - 1) / c[a]);
        let mut v = Vec::new();
        for cz in first[0]..=last[0] {
            for cy in first[1]..=last[1] {
                for cx in first[2]..=last[2] {
                    v.push([cz, cy, cx]);
                }
            }
        }
        v
    }

    /// Copies the voxels from `lo` to `hi` (volume coordinates, z, y, x: a cell of region
    /// `r` inside the volume and inside chunk `cz_cy_cx`) from the chunk (decoded, C order)
    /// into `out` (the region's voxels, C order). Whether it copied (false for a chunk
    /// shorter than the chunk shape).
    fn copy_chunk_into<T: Copy>(
        &self,
        r: Region,
        [lo, hi]: [[i64; 3]; 2],
        cz_cy_cx: [usize; 3],
        data: &[T],
        out: &mut [T],
    ) -> bool {
        let c = self.header.chunk_shape_zyx;
        if data.len() < c.iter().product() {
            return false;
        }
        let origin: [usize; 3] = std::array::from_fn(|a| cz_cy_cx[a] * c[a]);
        let (a0, a1) = (lo.map(|v| v as usize), hi.map(|v| v as usize));
        let d: [usize; 3] = std::array::from_fn(|a| (lo[a] - r.start_zyx[a]) as usize);
        let (cy, cx) = (c[1], c[2]);
        let len = a1[2] - a0[2];
        let [_, ry, rx] = r.shape_zyx;
        // Rows addressed in the region's C-order buffer directly (an ndarray slice per row
        // cost more than the row's copy).
        for z in a0[0]..a1[0] {
            for y in a0[1]..a1[1] {
                let src = ((z - origin[0]) * cy + (y - origin[1])) * cx + (a0[2] - origin[2]);
                let o = ((d[0] + z - a0[0]) * ry + d[1] + y - a0[1]) * rx + d[2];
                out[o..o + len].copy_from_slice(&data[src..src + len]);
            }
        }
        true
    }

    /// Reads the whole volume.
    ///
    /// # Errors
    /// As [`VolumeFile::read_region`].
    pub fn read_all(&self) -> Result<Array3<i16>, StoreError> {
        self.read_region(Region { start_zyx: [0; 3], shape_zyx: self.header.shape_zyx })
    }

    /// Reads the whole volume as voxels of type `T`.
    ///
    /// # Errors
    /// As [`VolumeFile::read_region_as`].
    pub fn read_all_as<T: Voxel>(&self) -> Result<Array3<T>, StoreError> {
        self.read_region_as(Region { start_zyx: [0; 3], shape_zyx: self.header.shape_zyx })
    }
}

/// The cells of a region along one axis (`start`, `len` voxels) over a volume of `shape`
/// voxels in chunks of `chunk`: (first, end, chunk index) in region order, the index
/// None for a cell outside the volume.
fn cells_along(
    start: i64,
    len: usize,
    shape: usize,
    chunk: usize,
) -> Vec<(i64, i64, Option<usize>)> {
    let (end, shape, step) = (start + len as i64, shape as i64, chunk.max(1) as i64);
    let mut cells = Vec::new();
    let mut at = start;
    while at < end {
        let (next, index) = if at < 0 {
            (end.min(0), None)
        } else if at >= shape {
            (end, None)
        } else {
            (((at / step + 1) * step).min(shape).min(end), Some((at / step) as usize))
        };
        cells.push((at, next, index));
        at = next;
    }
    cells
}

/// Sets the voxels of region `r` from `lo` to `hi` (volume coordinates, z, y, x) to `fill`.
fn fill_box<T: Copy>(r: Region, lo: [i64; 3], hi: [i64; 3], fill: T, out: &mut [T]) {
    let d: [usize; 3] = std::array::from_fn(|a| (lo[a] - r.start_zyx[a]) as usize);
    let n: [usize; 3] = std::array::from_fn(|a| (hi[a] - lo[a]) as usize);
    let [_, ry, rx] = r.shape_zyx;
    for z in 0..n[0] {
        for y in 0..n[1] {
            let o = ((d[0] + z) * ry + d[1] + y) * rx + d[2];
            out[o..o + n[2]].fill(fill);
        }
    }
}

/// FORMAT.md checks 1-6 on the first bytes of a volume file (`head`: at least its header
/// and chunk table, or the whole file) of `file_len` bytes: the header, the file size it
/// records, the table's CRC-32, and payloads that tile the file in chunk order.
fn check_head(
    path: &Path,
    head: &[u8],
    file_len: u64,
) -> Result<(VolumeHeader, Vec<ChunkEntry>), StoreError> {
    let corrupt =
        |message: String| StoreError::Corrupt { path: path.to_path_buf(), chunk: None, message };
    let header = VolumeHeader::try_from_bytes(path, &head[..head.len().min(HEADER_SIZE)])?;
    if header.file_size != file_len {
        return Err(corrupt(format!(
            "file is {file_len} bytes, the header says {} (truncated or appended to)",
            header.file_size
        )));
    }
    let n = header.chunk_count();
    let table_end = HEADER_SIZE + n * ENTRY_SIZE;
    if header.payload_start() > header.file_size {
        return Err(corrupt(format!(
            "a chunk table of {n} entries does not fit in {} bytes",
            header.file_size
        )));
    }
    if (head.len() as u64) < header.payload_start() {
        return Err(corrupt(format!(
            "only {} bytes of the header and chunk table ({} bytes) were read",
            head.len(),
            header.payload_start()
        )));
    }
    let table_bytes = &head[HEADER_SIZE..table_end];
    let stored = u32::from_le_bytes(head[table_end..table_end + 4].try_into().expect("4 bytes"));
    if crc32fast::hash(table_bytes) != stored {
        return Err(corrupt("chunk table checksum mismatch".into()));
    }
    let table: Vec<ChunkEntry> = table_bytes
        .chunks_exact(ENTRY_SIZE)
        .map(|b| ChunkEntry::from_bytes(b.try_into().expect("16 bytes")))
        .collect();
    // Check 6: the payloads tile the file in chunk order, so no entry overlaps,
    // swaps with or points outside another, even where the table's CRC was resealed.
    let mut next = header.payload_start();
    for (k, e) in table.iter().enumerate() {
        if e.offset != next || e.offset.saturating_add(e.length as u64) > header.file_size {
            return Err(corrupt(format!(
                "chunk {k}: offset {} + length {} is not where the payloads of chunks in order put it ({next}..{}): overlapping, reordered or outside the file",
                e.offset, e.length, header.file_size
            )));
        }
        next = e.offset + e.length as u64;
    }
    if next != header.file_size {
        return Err(corrupt(format!(
            "the chunks end at byte {next}, the file at {}: bytes between or after them",
            header.file_size
        )));
    }
    Ok((header, table))
}
