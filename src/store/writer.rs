//! Writing one volume file: cut the array into chunks, compress each into a zstd frame
//! (in parallel), lay out header, table and payloads, write atomically.

use std::io::Write;
use std::path::Path;

use ndarray::{Array3, s};
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
            if part.iter().all(|v| *v == opts.fill_value) {
                return Ok(fill_frame.clone());
            }
            let mut chunk = Array3::from_elem((c[0], c[1], c[2]), opts.fill_value);
            chunk.slice_mut(s![..z1 - z0, ..y1 - y0, ..x1 - x0]).assign(&part);
            let mut raw = Vec::with_capacity(chunk.len() * T::BYTES);
            for v in chunk.iter() {
                v.push_le(&mut raw);
            }
            zstd::bulk::compress(&raw, opts.level)
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
