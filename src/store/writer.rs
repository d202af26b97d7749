//! Writing one volume file: cut the array into chunks, compress each into a zstd frame
//! (in parallel), lay out header, table and payloads, write atomically.

use std::io::Write;
use std::path::Path;

use ndarray::{Array3, ArrayView1, ArrayView3, s};
use rayon::prelude::*;

use super::StoreError;
use super::format::{ChunkEntry, VolumeHeader, Voxel};
use crate::fsutil::write_atomic;
use crate::geometry::Geometry;

/// How to chunk and compress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkOptions<T = i16> {
    /// Chunk shape (z, y, x).
    pub chunk_shape_zyx: [usize; 3],
    /// zstd level.
    pub level: i32,
    /// The value of the padding of edge chunks (HU for scans, 0 for label volumes).
    pub fill_value: T,
}

impl ChunkOptions<i16> {
    /// The same chunking for a label volume (uint8, padding 0).
    pub fn for_labels(&self) -> ChunkOptions<u8> {
        ChunkOptions { chunk_shape_zyx: self.chunk_shape_zyx, level: self.level, fill_value: 0 }
    }
}

/// Writes `hu` (shape (z, y, x)) with geometry `g` as a volume file at `path`
/// (FORMAT.md), returning the file's size in bytes. The file appears only when complete.
/// `T` is `i16` for scans and `u8` for label volumes (FORMAT.md, "Label volumes").
///
/// # Errors
/// [`StoreError::Io`] naming the file; [`StoreError::Invalid`] for an empty volume or chunk.
pub fn write_volume<T: Voxel>(
    path: &Path,
    hu: &Array3<T>,
    g: &Geometry,
    opts: &ChunkOptions<T>,
) -> Result<u64, StoreError> {
    let shape_zyx = [hu.shape()[0], hu.shape()[1], hu.shape()[2]];
    let mut header = VolumeHeader {
        version_minor: super::format::VERSION_MINOR,
        shape_zyx,
        chunk_shape_zyx: opts.chunk_shape_zyx,
        origin_xyz: g.origin_xyz,
        spacing_xyz: g.spacing_xyz,
        direction: g.direction,
        dtype: T::DTYPE,
        fill_value: opts.fill_value.to_fill(),
        file_size: 0,
    };
    // Write only what the reader accepts (the same check it makes).
    header.check().map_err(|message| StoreError::Invalid {
        message: format!("{}: {message}", path.display()),
    })?;
    let grid = header.grid();
    let c = opts.chunk_shape_zyx;
    let n = header.chunk_count();
    // A chunk of nothing but the fill value (air outside the field of view, the empty
    // part of a label volume) compresses to the same frame every time: made once.
    let fill_frame = {
        let mut raw = Vec::with_capacity(c.iter().product::<usize>() * T::BYTES);
        for _ in 0..c.iter().product::<usize>() {
            opts.fill_value.push_le(&mut raw);
        }
        zstd::bulk::compress(&raw, opts.level)
            .map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?
    };
    let payloads: Vec<std::io::Result<Vec<u8>>> = (0..n)
        .into_par_iter()
        .map(|k| {
            let (cz, cy, cx) = (k / (grid[1] * grid[2]), (k / grid[2]) % grid[1], k % grid[2]);
            let (z0, y0, x0) = (cz * c[0], cy * c[1], cx * c[2]);
            let (z1, y1, x1) = (
                (z0 + c[0]).min(shape_zyx[0]),
                (y0 + c[1]).min(shape_zyx[1]),
                (x0 + c[2]).min(shape_zyx[2]),
            );
            let part = hu.slice(s![z0..z1, y0..y1, x0..x1]);
            if all_fill(part, opts.fill_value) {
                return Ok(fill_frame.clone());
            }
            zstd::bulk::compress(&chunk_bytes(part, c, opts.fill_value), opts.level)
        })
        .collect();
    let mut entries = Vec::with_capacity(n);
    let mut offset = header.payload_start();
    let mut frames = Vec::with_capacity(n);
    for p in payloads {
        let p = p.map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?;
        entries.push(ChunkEntry { offset, length: p.len() as u32, crc: crc32fast::hash(&p) });
        offset += p.len() as u64;
        frames.push(p);
    }
    header.file_size = offset;
    let mut table = Vec::with_capacity(n * super::format::ENTRY_SIZE);
    for e in &entries {
        table.extend_from_slice(&e.to_bytes());
    }
    write_atomic(path, |w| {
        w.write_all(&header.to_bytes())?;
        w.write_all(&table)?;
        w.write_all(&crc32fast::hash(&table).to_le_bytes())?;
        for f in &frames {
            w.write_all(f)?;
        }
        Ok(())
    })
    .map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?;
    Ok(header.file_size)
}

/// Whether every voxel of `part` is `fill`, a row at a time: a contiguous row is compared
/// without a branch per voxel (so the compiler can vectorise it), which makes the check of
/// a mostly empty label volume a memory scan rather than an indexed walk.
fn all_fill<T: Voxel>(part: ArrayView3<'_, T>, fill: T) -> bool {
    part.rows().into_iter().all(|row| row_is(row, fill))
}

/// Whether every voxel of one row is `fill`.
fn row_is<T: Voxel>(row: ArrayView1<'_, T>, fill: T) -> bool {
    match row.as_slice() {
        Some(s) => s.iter().fold(true, |all, v| all & (*v == fill)),
        None => row.iter().all(|v| *v == fill),
    }
}

/// The little-endian bytes of a whole chunk of shape `c` whose top corner holds `part`
/// (an edge chunk's `part` is smaller) and the rest `fill`, in C order.
fn chunk_bytes<T: Voxel>(part: ArrayView3<'_, T>, c: [usize; 3], fill: T) -> Vec<u8> {
    let (pz, py, px) = part.dim();
    let mut raw = Vec::with_capacity(c.iter().product::<usize>() * T::BYTES);
    let pad = |raw: &mut Vec<u8>, n: usize| {
        for _ in 0..n {
            fill.push_le(raw);
        }
    };
    for z in 0..c[0] {
        for y in 0..c[1] {
            if z < pz && y < py {
                for v in part.slice(s![z, y, ..]) {
                    v.push_le(&mut raw);
                }
                pad(&mut raw, c[2] - px);
            } else {
                pad(&mut raw, c[2]);
            }
        }
    }
    raw
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_bytes_pad_an_edge_chunk_in_c_order() {
        // A 2x2x3 corner of a 3x3x4 chunk, by hand: each row's 3 values then one 9, then
        // whole rows and a whole plane of 9s.
        let part = Array3::from_shape_fn((2, 2, 3), |(z, y, x)| (z * 6 + y * 3 + x) as u8);
        let b = chunk_bytes(part.view(), [3, 3, 4], 9u8);
        let mut want = Vec::new();
        for z in 0..3 {
            for y in 0..3 {
                for x in 0..4 {
                    want.push(if z < 2 && y < 2 && x < 3 { (z * 6 + y * 3 + x) as u8 } else { 9 });
                }
            }
        }
        assert_eq!(b, want);
        // i16 little-endian.
        let b = chunk_bytes(Array3::from_elem((1, 1, 1), -2i16).view(), [1, 1, 2], 7i16);
        assert_eq!(b, [0xfe, 0xff, 7, 0]);
    }

    #[test]
    fn all_fill_sees_one_voxel_anywhere_in_a_strided_view() {
        let mut a = Array3::<i16>::from_elem((4, 5, 6), -1000);
        let view = a.slice(s![1..3, 1..4, 2..5]);
        assert!(all_fill(view, -1000));
        // Reversed along x (not contiguous) still checked.
        assert!(all_fill(a.slice(s![.., .., ..;-1]), -1000));
        a[[2, 3, 4]] = 0;
        assert!(!all_fill(a.slice(s![1..3, 1..4, 2..5]), -1000));
        assert!(!all_fill(a.slice(s![.., .., ..;-1]), -1000));
        assert!(all_fill(a.slice(s![0..2, .., ..]), -1000));
    }
}
