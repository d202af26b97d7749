//! Volume files: region reads against plain array slicing (in and out of bounds), every
//! flipped byte detected with the scan and chunk named, truncation, newer versions,
//! concurrent readers.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use ctstream::geometry::Geometry;
use ctstream::store::format::{HEADER_SIZE, VolumeHeader};
use ctstream::store::writer::{ChunkOptions, write_volume};
use ctstream::store::{Region, StoreError, VolumeFile};
use ndarray::{Array3, s};

/// A volume with structure and noise, 37 x 45 x 51 (no side a multiple of the chunk).
fn volume() -> (Array3<i16>, Geometry) {
    let mut state = 12345u64;
    let hu = Array3::from_shape_fn((37, 45, 51), |(z, y, x)| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let noise = ((state >> 33) % 41) as i16 - 20;
        let r2 = (z as i32 - 18).pow(2) + (y as i32 - 22).pow(2) + (x as i32 - 25).pow(2);
        (if r2 < 200 { 40 } else { -850 }) + noise
    });
    (hu, Geometry::axis_aligned([-10.5, 20.25, -300.0], [1.0, 1.0, 1.0]))
}

fn opts() -> ChunkOptions {
    ChunkOptions { chunk_shape_zyx: [16, 16, 16], level: 3, fill_value: -1024 }
}

fn write(dir: &Path) -> (PathBuf, Array3<i16>) {
    let (hu, g) = volume();
    let p = dir.join("vol.ctv");
    let size = write_volume(&p, &hu, &g, &opts()).unwrap();
    assert_eq!(size, fs::metadata(&p).unwrap().len());
    (p, hu)
}

/// The expected content of a region: the array where it overlaps, the fill value elsewhere.
fn expected(hu: &Array3<i16>, r: Region) -> Array3<i16> {
    Array3::from_shape_fn((r.shape_zyx[0], r.shape_zyx[1], r.shape_zyx[2]), |(z, y, x)| {
        let p = [r.start_zyx[0] + z as i64, r.start_zyx[1] + y as i64, r.start_zyx[2] + x as i64];
        let sh = hu.shape();
        if (0..3).all(|a| p[a] >= 0 && p[a] < sh[a] as i64) {
            hu[[p[0] as usize, p[1] as usize, p[2] as usize]]
        } else {
            -1024
        }
    })
}

#[test]
fn regions_equal_array_slices_with_fill_outside() {
    let dir = tempdir();
    let (p, hu) = write(dir.path());
    let v = VolumeFile::open(&p).unwrap();
    assert_eq!(v.shape_zyx(), [37, 45, 51]);
    assert_eq!(v.geometry(), volume().1);
    assert_eq!(v.read_all().unwrap(), hu);
    let regions = [
        Region::new([0, 0, 0], [37, 45, 51]),
        Region::new([5, 7, 9], [21, 30, 40]),
        Region::new([-8, -3, 40], [24, 61, 67]), // sticks out on several sides
        Region::new([36, 44, 50], [37, 45, 51]), // one voxel, last chunk
        Region::new([100, 100, 100], [132, 164, 164]), // entirely outside
        Region::new([-40, 0, 0], [-8, 64, 64]),
    ];
    for r in regions {
        assert_eq!(v.read_region(r).unwrap(), expected(&hu, r), "{r:?}");
    }
    // A slice taken by ndarray agrees too (a hand-check of the expected() helper).
    assert_eq!(
        v.read_region(Region::new([5, 7, 9], [21, 30, 40])).unwrap(),
        hu.slice(s![5..21, 7..30, 9..40])
    );
}

/// A region read into a buffer that held something else (as a loader worker reuses one
/// from patch to patch) is every voxel written: the volume where its chunk is read, the
/// fill value outside the volume and in the chunks left out, whatever the buffer held and
/// however long it was.
#[test]
fn a_region_read_into_a_used_buffer_is_written_whole() {
    let dir = tempdir();
    let (p, hu) = write(dir.path());
    let v = VolumeFile::open(&p).unwrap();
    let regions = [
        Region::new([0, 0, 0], [37, 45, 51]),
        Region::new([5, 7, 9], [21, 30, 40]),
        Region::new([-8, -3, 40], [24, 61, 67]),
        Region::new([15, 15, 15], [17, 17, 17]), // across a chunk corner
        Region::new([100, 100, 100], [132, 164, 164]),
        Region::new([-40, 0, 0], [-8, 64, 64]),
    ];
    // Chunks of 16: every other one in a checkerboard, or all.
    let checkerboard = |c: [usize; 3]| (c[0] + c[1] + c[2]).is_multiple_of(2);
    for r in regions {
        for (name, wanted) in [
            ("all", &(|_: [usize; 3]| true) as &dyn Fn([usize; 3]) -> bool),
            ("checkerboard", &checkerboard),
        ] {
            let want = Array3::from_shape_fn(r.shape_zyx, |(z, y, x)| {
                let q = [
                    r.start_zyx[0] + z as i64,
                    r.start_zyx[1] + y as i64,
                    r.start_zyx[2] + x as i64,
                ];
                let inside = (0..3).all(|a| q[a] >= 0 && q[a] < hu.shape()[a] as i64);
                if inside && wanted(q.map(|v| v as usize / 16)) {
                    hu[[q[0] as usize, q[1] as usize, q[2] as usize]]
                } else {
                    -1024
                }
            });
            let n: usize = r.shape_zyx.iter().product();
            for held in [0, n / 2, n, 2 * n + 5] {
                let mut out = vec![7777i16; held];
                v.read_region_into::<i16, i16, _>(r, wanted, |c| v.decode_chunk(c), &mut out)
                    .unwrap();
                assert_eq!(out.len(), n, "{r:?}, {name}, held {held}");
                assert!(
                    out.iter().zip(want.iter()).all(|(a, b)| a == b),
                    "{r:?}, {name}, held {held}"
                );
            }
            let fresh = v.read_region_where(r, wanted, |c| v.decode_chunk(c)).unwrap();
            assert_eq!(fresh, want, "{r:?}, {name}");
        }
    }
}

/// Any single flipped byte in the header, the chunk table or a chunk is detected; a
/// flipped payload byte is reported with the file and the chunk's (z, y, x).
#[test]
fn every_flipped_byte_is_detected() {
    let dir = tempdir();
    let (p, _) = write(dir.path());
    let bytes = fs::read(&p).unwrap();
    let h = VolumeHeader::try_from_bytes(&p, &bytes).unwrap();
    let table_end = h.payload_start() as usize;
    // The payload of chunk (1, 2, 3): entry k = (1 * 3 + 2) * 4 + 3 = 23 (grid 3 x 3 x 4).
    assert_eq!(h.grid(), [3, 3, 4]);
    let e = HEADER_SIZE + 23 * 16;
    let off = u64::from_le_bytes(bytes[e..e + 8].try_into().unwrap()) as usize;
    let len = u32::from_le_bytes(bytes[e + 8..e + 12].try_into().unwrap()) as usize;
    let bad = dir.path().join("bad.ctv");
    let positions: Vec<usize> = (0..table_end).chain(off..off + len).collect();
    for &i in &positions {
        let mut b = bytes.clone();
        b[i] ^= 0x10;
        fs::write(&bad, &b).unwrap();
        let result = VolumeFile::open(&bad).and_then(|v| v.read_all());
        let err = result.expect_err(&format!("flipped byte {i} went unnoticed"));
        let msg = err.to_string();
        assert!(msg.contains("bad.ctv"), "byte {i}: {msg}");
        if i >= table_end {
            assert!(
                matches!(err, StoreError::Corrupt { chunk: Some([1, 2, 3]), .. }),
                "byte {i}: {msg}"
            );
            assert!(msg.contains("chunk (z 1, y 2, x 3)"), "byte {i}: {msg}");
        }
    }
    assert!(positions.len() > 256 + 36 * 16);
}

#[test]
fn truncated_and_newer_files_are_refused() {
    let dir = tempdir();
    let (p, _) = write(dir.path());
    let bytes = fs::read(&p).unwrap();
    for cut in [0, 10, 255, 300, bytes.len() - 1] {
        let t = dir.path().join("cut.ctv");
        fs::write(&t, &bytes[..cut]).unwrap();
        let e = VolumeFile::open(&t).unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }), "cut at {cut}: {e}");
        assert!(
            e.to_string().contains("truncated") || e.to_string().contains("magic"),
            "cut at {cut}: {e}"
        );
    }
    // Version 2.0 with a valid header checksum: refused as newer, not as corrupt.
    let mut b = bytes.clone();
    b[8..10].copy_from_slice(&2u16.to_le_bytes());
    let crc = crc32fast::hash(&b[0..252]);
    b[252..256].copy_from_slice(&crc.to_le_bytes());
    let t = dir.path().join("v2.ctv");
    fs::write(&t, &b).unwrap();
    let e = VolumeFile::open(&t).unwrap_err();
    assert!(matches!(e, StoreError::Version { found: (2, _), .. }), "{e}");
    assert!(e.to_string().contains("newer"), "{e}");
}

#[test]
fn many_threads_read_one_file() {
    let dir = tempdir();
    let (p, hu) = write(dir.path());
    let v = VolumeFile::open(&p).unwrap();
    std::thread::scope(|s| {
        for t in 0..4i64 {
            let (v, hu) = (&v, &hu);
            s.spawn(move || {
                for k in 0..50i64 {
                    let start = [(t * 7 + k) % 40 - 5, (k * 3) % 50 - 5, (k * 11 + t) % 55 - 5];
                    let r = Region::new(start, [start[0] + 8, start[1] + 16, start[2] + 16]);
                    assert_eq!(v.read_region(r).unwrap(), expected(hu, r));
                }
            });
        }
    });
}

/// Recomputes the header CRC and the chunk table CRC, so that an edited field is the only
/// thing wrong with the file and the reader must catch it by its meaning.
fn reseal(b: &mut [u8]) {
    let crc = crc32fast::hash(&b[0..252]);
    b[252..256].copy_from_slice(&crc.to_le_bytes());
    let n = u32::from_le_bytes(b[168..172].try_into().unwrap()) as usize;
    let end = HEADER_SIZE + 16 * n;
    if end + 4 <= b.len() {
        let crc = crc32fast::hash(&b[HEADER_SIZE..end]);
        b[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Claims of huge volumes or chunks, and chunk offsets far outside the file, are refused
/// when the file is opened, with checksums that pass: before anything is allocated.
#[test]
fn absurd_sizes_and_offsets_are_refused_before_allocating() {
    let dir = tempdir();
    let (p, _) = write(dir.path());
    let bytes = fs::read(&p).unwrap();
    let put_u32 =
        |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    // (what, how the header's bytes are damaged, what the error says)
    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, Damage, &str)> = vec![
        // 100000^3 voxels (the chunk grid would not even fit the chunk_count field).
        (
            "huge shape",
            Box::new(move |b| (0..3).for_each(|a| put_u32(b, 16 + 4 * a, 100_000))),
            "more than the limit",
        ),
        // u32::MAX^3 chunk voxels: the product overflows u64.
        (
            "huge chunk",
            Box::new(move |b| (0..3).for_each(|a| put_u32(b, 28 + 4 * a, u32::MAX))),
            "chunk shape",
        ),
        // One chunk of 1 x 65536 x 32768: grid 1 x 1 x 1, a volume at the limit, but 2^31
        // voxels per chunk.
        (
            "one giant chunk",
            Box::new(move |b| {
                put_u32(b, 16, 1);
                put_u32(b, 20, 65_536);
                put_u32(b, 24, 32_768);
                put_u32(b, 28, 1);
                put_u32(b, 32, 65_536);
                put_u32(b, 36, 32_768);
                put_u32(b, 168, 1)
            }),
            "chunk shape",
        ),
        (
            "offset near 2^64",
            Box::new(|b| {
                b[HEADER_SIZE..HEADER_SIZE + 8].copy_from_slice(&(u64::MAX - 3).to_le_bytes())
            }),
            "outside the file",
        ),
        (
            "offset into the header",
            Box::new(|b| b[HEADER_SIZE..HEADER_SIZE + 8].copy_from_slice(&16u64.to_le_bytes())),
            "outside the file",
        ),
        (
            "length past the end",
            Box::new(move |b| put_u32(b, HEADER_SIZE + 8, u32::MAX)),
            "outside the file",
        ),
        // Chunk 1 points at chunk 0's payload: overlapping entries.
        (
            "overlapping chunks",
            Box::new(|b| {
                let first: [u8; 8] = b[HEADER_SIZE..HEADER_SIZE + 8].try_into().unwrap();
                b[HEADER_SIZE + 16..HEADER_SIZE + 24].copy_from_slice(&first);
            }),
            "chunk 1: offset",
        ),
        // Entries 0 and 1 swapped: each payload is intact, but the table is out of order.
        (
            "swapped entries",
            Box::new(|b| {
                let (e0, e1): (Vec<u8>, Vec<u8>) = (
                    b[HEADER_SIZE..HEADER_SIZE + 16].to_vec(),
                    b[HEADER_SIZE + 16..HEADER_SIZE + 32].to_vec(),
                );
                b[HEADER_SIZE..HEADER_SIZE + 16].copy_from_slice(&e1);
                b[HEADER_SIZE + 16..HEADER_SIZE + 32].copy_from_slice(&e0);
            }),
            "reordered",
        ),
        // Geometry no writer stores.
        (
            "NaN spacing",
            Box::new(|b| b[64..72].copy_from_slice(&f64::NAN.to_le_bytes())),
            "spacing [NaN",
        ),
        (
            "negative spacing",
            Box::new(|b| b[72..80].copy_from_slice(&(-1.0f64).to_le_bytes())),
            "spacing",
        ),
        (
            "infinite origin",
            Box::new(|b| b[40..48].copy_from_slice(&f64::INFINITY.to_le_bytes())),
            "origin [inf",
        ),
        (
            "a direction that is not the identity",
            Box::new(|b| {
                b[88..96].copy_from_slice(&0.0f64.to_le_bytes());
                b[96..104].copy_from_slice(&1.0f64.to_le_bytes());
                b[112..120].copy_from_slice(&1.0f64.to_le_bytes());
                b[120..128].copy_from_slice(&0.0f64.to_le_bytes());
            }),
            "not the identity",
        ),
        (
            "chunk of 1 voxel",
            Box::new(move |b| (0..3).for_each(|a| put_u32(b, 28 + 4 * a, 1))),
            "chunk shape [1, 1, 1]",
        ),
        (
            "file_size lies",
            Box::new(|b| b[184..192].copy_from_slice(&u64::MAX.to_le_bytes())),
            "truncated or appended",
        ),
        ("chunk_count lies", Box::new(move |b| put_u32(b, 168, 7)), "does not match the grid"),
    ];
    for (what, edit, want) in cases {
        let mut b = bytes.clone();
        edit(&mut b);
        reseal(&mut b);
        let t = dir.path().join("edited.ctv");
        fs::write(&t, &b).unwrap();
        let e = VolumeFile::open(&t).err().unwrap_or_else(|| panic!("{what}: opened"));
        assert!(matches!(e, StoreError::Corrupt { .. }), "{what}: {e}");
        assert!(
            e.to_string().contains("edited.ctv") && e.to_string().contains(want),
            "{what}: {e}"
        );
    }
}
