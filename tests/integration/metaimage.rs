//! MetaImage: every header variant the reader promises, the writer's round trip (and
//! SimpleITK reading what it writes), the value conversion rule, and clear errors.

use std::fs;
use std::path::{Path, PathBuf};

use crate::common::*;
use ctstream::geometry::Geometry;
use ctstream::io::metaimage::{self, MetaImageError, WriteOptions};
use ndarray::Array3;

/// A volume that uses the whole int16 range and an oblique, non-symmetric direction.
fn sample() -> (Array3<i16>, Geometry) {
    let hu = Array3::from_shape_fn((5, 7, 9), |(z, y, x)| {
        let v = (z * 7919 + y * 104_729 + x * 31) as i64 % 65536 - 32768;
        v as i16
    });
    let (s, c) = (0.3f64.sin(), 0.3f64.cos());
    let g = Geometry {
        origin_xyz: [-198.100006, -195.0, -335.209991],
        spacing_xyz: [0.703125, 0.7031249999, 2.5],
        direction: [c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0],
    };
    (hu, g)
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, bytes).unwrap();
    p
}

fn header(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[test]
fn round_trip_is_exact_in_all_layouts() {
    let dir = tempdir();
    let (hu, g) = sample();
    for (name, compress) in [("a.mhd", false), ("b.mhd", true), ("c.mha", false), ("d.mha", true)] {
        let p = dir.path().join(name);
        metaimage::write(&p, &hu, &g, WriteOptions { compress }).unwrap();
        let v = metaimage::read(&p).unwrap();
        assert_eq!(v.hu, hu, "{name}");
        assert_eq!(v.geometry, g, "{name}: geometry must round-trip bit for bit");
        assert_eq!(v.clamped, 0);
        assert_eq!(v.series_id, name.split('.').next().unwrap());
    }
    // The data files are where the header says: .raw, .zraw, or inside the .mha.
    assert!(dir.path().join("a.raw").is_file());
    assert!(dir.path().join("b.zraw").is_file());
    assert!(!dir.path().join("c.raw").exists());
    // No temporary files are left behind.
    let names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains(".tmp-")), "{names:?}");
}

/// ITK writes the direction's columns one after another in TransformMatrix. SimpleITK,
/// given `TransformMatrix = 0 1 0 -1 0 0 0 0 1`, reports GetDirection() =
/// (0, -1, 0, 1, 0, 0, 0, 0, 1) and maps index (1, 0, 0) with spacing 0.5 from origin
/// (1, 2, 3) to (1, 2.5, 3): the x axis points along +y. (Checked with SimpleITK 2.5.7.)
#[test]
fn transform_matrix_is_the_transposed_direction() {
    let dir = tempdir();
    fs::write(dir.path().join("t.raw"), vec![0u8; 4 * 3 * 2 * 2]).unwrap();
    let p = write_file(
        dir.path(),
        "t.mhd",
        header(&[
            "ObjectType = Image",
            "NDims = 3",
            "TransformMatrix = 0 1 0 -1 0 0 0 0 1",
            "Offset = 1 2 3",
            "ElementSpacing = 0.5 0.7 2",
            "DimSize = 4 3 2",
            "ElementType = MET_SHORT",
            "ElementDataFile = t.raw",
        ])
        .as_bytes(),
    );
    let v = metaimage::read(&p).unwrap();
    assert_eq!(v.geometry.direction, [0.0, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    assert_eq!(v.geometry.index_to_world([0.0, 0.0, 1.0]), [1.0, 2.5, 3.0]);
    // And the writer writes it back the same way.
    let out = dir.path().join("u.mhd");
    metaimage::write_volume(&out, &v, WriteOptions::default()).unwrap();
    let text = fs::read_to_string(&out).unwrap();
    assert!(text.contains("TransformMatrix = 0 1 0 -1 0 0 0 0 1\n"), "{text}");
}

#[test]
fn header_variants() {
    let dir = tempdir();
    let d = dir.path();
    // 2 x 2 x 1 voxels of big-endian shorts: 1, -2, 300, -32768.
    let be: Vec<u8> = [1i16, -2, 300, -32768].iter().flat_map(|v| v.to_be_bytes()).collect();
    write_file(d, "be.raw", &be);
    let p = write_file(
        d,
        "be.mhd",
        header(&[
            "NDims = 3",
            "DimSize = 2 2 1",
            "ElementType = MET_SHORT",
            "ElementByteOrderMSB = True",
            "Position = 1 2 3",
            "Orientation = 1 0 0 0 1 0 0 0 1",
            "ElementDataFile = be.raw",
        ])
        .as_bytes(),
    );
    let v = metaimage::read(&p).unwrap();
    assert_eq!(v.hu.iter().copied().collect::<Vec<_>>(), vec![1, -2, 300, -32768]);
    assert_eq!(v.geometry.origin_xyz, [1.0, 2.0, 3.0]);
    assert_eq!(v.geometry.spacing_xyz, [1.0, 1.0, 1.0], "spacing defaults to 1");

    // HeaderSize: skip 10 bytes of junk at the start of the data file; Origin alias.
    let mut skipped = vec![0xAAu8; 10];
    skipped.extend([5i16, 6].iter().flat_map(|v| v.to_le_bytes()));
    write_file(d, "hs.raw", &skipped);
    let p = write_file(
        d,
        "hs.mhd",
        header(&[
            "NDims = 3",
            "DimSize = 2 1 1",
            "ElementType = MET_SHORT",
            "HeaderSize = 10",
            "Origin = -1 -2 -3",
            "ElementDataFile = hs.raw",
        ])
        .as_bytes(),
    );
    let v = metaimage::read(&p).unwrap();
    assert_eq!(v.hu.iter().copied().collect::<Vec<_>>(), vec![5, 6]);
    assert_eq!(v.geometry.origin_xyz, [-1.0, -2.0, -3.0]);

    // HeaderSize = -1: the voxels are the last bytes of the file.
    let p = write_file(
        d,
        "hsm.mhd",
        header(&[
            "NDims = 3",
            "DimSize = 2 1 1",
            "ElementType = MET_SHORT",
            "HeaderSize = -1",
            "ElementDataFile = hs.raw",
        ])
        .as_bytes(),
    );
    assert_eq!(metaimage::read(&p).unwrap().hu.iter().copied().collect::<Vec<_>>(), vec![5, 6]);

    // Compressed without CompressedDataSize, in a LOCAL .mha, with Rotation alias.
    let raw: Vec<u8> = [7i16, -8, 9].iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut z, &raw).unwrap();
    let mut mha = header(&[
        "NDims = 3",
        "DimSize = 3 1 1",
        "ElementType = MET_SHORT",
        "CompressedData = True",
        "Rotation = 1 0 0 0 1 0 0 0 1",
        "ElementDataFile = LOCAL",
    ])
    .into_bytes();
    mha.extend(z.finish().unwrap());
    let p = write_file(d, "z.mha", &mha);
    assert_eq!(metaimage::read(&p).unwrap().hu.iter().copied().collect::<Vec<_>>(), vec![7, -8, 9]);

    // A 2D image reads as one slice: z spacing 1, z origin 0, identity in z.
    let p = write_file(
        d,
        "flat.mhd",
        header(&[
            "NDims = 2",
            "DimSize = 2 1",
            "ElementSpacing = 0.5 0.25",
            "Offset = 10 20",
            "TransformMatrix = 0 1 1 0",
            "ElementType = MET_UCHAR",
            "ElementDataFile = flat.raw",
        ])
        .as_bytes(),
    );
    write_file(d, "flat.raw", &[3, 250]);
    let v = metaimage::read(&p).unwrap();
    assert_eq!(v.shape_zyx(), [1, 1, 2]);
    assert_eq!(v.geometry.origin_xyz, [10.0, 20.0, 0.0]);
    assert_eq!(v.geometry.spacing_xyz, [0.5, 0.25, 1.0]);
    assert_eq!(v.geometry.direction, [0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    assert_eq!(v.hu.iter().copied().collect::<Vec<_>>(), vec![3, 250]);
}

/// The conversion rule: round half away from zero, clamp to int16, count the clamped.
#[test]
fn element_types_convert_by_the_documented_rule() {
    let dir = tempdir();
    let d = dir.path();
    let read = |name: &str, et: &str, bytes: Vec<u8>, n: usize| {
        write_file(d, &format!("{name}.raw"), &bytes);
        let p = write_file(
            d,
            &format!("{name}.mhd"),
            header(&[
                "NDims = 3",
                &format!("DimSize = {n} 1 1"),
                &format!("ElementType = {et}"),
                &format!("ElementDataFile = {name}.raw"),
            ])
            .as_bytes(),
        );
        let v = metaimage::read(&p).unwrap();
        (v.hu.iter().copied().collect::<Vec<i16>>(), v.clamped)
    };
    let f32s = [1.5f32, -1.5, 2.5, -0.4, 40000.0, -1e9];
    assert_eq!(
        read("f", "MET_FLOAT", f32s.iter().flat_map(|v| v.to_le_bytes()).collect(), 6),
        (vec![2, -2, 3, 0, 32767, -32768], 2)
    );
    let f64s = [-1024.5f64, 3071.49999];
    assert_eq!(
        read("d", "MET_DOUBLE", f64s.iter().flat_map(|v| v.to_le_bytes()).collect(), 2),
        (vec![-1025, 3071], 0)
    );
    assert_eq!(
        read(
            "us",
            "MET_USHORT",
            [0u16, 32767, 32768, 65535].iter().flat_map(|v| v.to_le_bytes()).collect(),
            4
        ),
        (vec![0, 32767, 32767, 32767], 2)
    );
    assert_eq!(
        read(
            "i",
            "MET_INT",
            [-40000i32, -1024, 70000].iter().flat_map(|v| v.to_le_bytes()).collect(),
            3
        ),
        (vec![-32768, -1024, 32767], 2)
    );
    assert_eq!(
        read(
            "ui",
            "MET_UINT",
            [5u32, 4_000_000_000].iter().flat_map(|v| v.to_le_bytes()).collect(),
            2
        ),
        (vec![5, 32767], 1)
    );
    assert_eq!(read("c", "MET_CHAR", vec![0x80, 0x7f, 0xff], 3), (vec![-128, 127, -1], 0));
    assert_eq!(read("uc", "MET_UCHAR", vec![0x80, 0x7f, 0xff], 3), (vec![128, 127, 255], 0));
}

fn lines(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn err(dir: &Path, name: &str, lines: &[&str], data: Option<&[u8]>) -> (MetaImageError, String) {
    if let Some(b) = data {
        write_file(dir, &format!("{name}.raw"), b);
    }
    let p = write_file(dir, &format!("{name}.mhd"), header(lines).as_bytes());
    let e = metaimage::read(&p).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&format!("{name}.")), "the error must name the file: {msg}");
    (e, msg)
}

#[test]
fn clear_errors_name_the_file_and_key() {
    let dir = tempdir();
    let d = dir.path();
    let base = |name: &str| {
        vec![
            "NDims = 3".to_string(),
            "DimSize = 4 4 2".into(),
            "ElementType = MET_SHORT".into(),
            format!("ElementDataFile = {name}.raw"),
        ]
    };

    // Missing .raw: names the data file and the header that wants it.
    let (e, msg) = err(d, "missing", &lines(&base("missing")), None);
    assert!(
        matches!(e, MetaImageError::Data { .. })
            && msg.contains("missing.raw")
            && msg.contains("does not exist"),
        "{msg}"
    );

    // Truncated .raw: says how many bytes were wanted and found.
    let (e, msg) = err(d, "short", &lines(&base("short")), Some(&[0u8; 40]));
    assert!(
        matches!(e, MetaImageError::Data { .. })
            && msg.contains("truncated")
            && msg.contains("64")
            && msg.contains("40"),
        "{msg}"
    );

    // A bad number: names the line and the key.
    let mut l = base("badnum");
    l.insert(2, "ElementSpacing = 0.7 zero 1.25".into());
    let (e, msg) = err(d, "badnum", &lines(&l), Some(&[0u8; 64]));
    assert!(
        matches!(e, MetaImageError::BadValue { line: 3, .. }) && msg.contains("ElementSpacing"),
        "{msg}"
    );

    // Non-numeric DimSize.
    let l = vec![
        "NDims = 3".to_string(),
        "DimSize = 4 four 2".into(),
        "ElementType = MET_SHORT".into(),
        "ElementDataFile = x.raw".into(),
    ];
    let (e, msg) = err(d, "baddim", &lines(&l), None);
    assert!(matches!(e, MetaImageError::BadValue { .. }) && msg.contains("DimSize"), "{msg}");

    // Unsupported: LIST data files, several channels, unknown types, ASCII data.
    let mut l = base("list");
    l[3] = "ElementDataFile = LIST".into();
    let (e, msg) = err(d, "list", &lines(&l), None);
    assert!(
        matches!(e, MetaImageError::Unsupported { .. }) && msg.contains("ElementDataFile = LIST"),
        "{msg}"
    );
    let mut l = base("rgb");
    l.insert(2, "ElementNumberOfChannels = 3".into());
    let (e, msg) = err(d, "rgb", &lines(&l), Some(&[0u8; 192]));
    assert!(
        matches!(e, MetaImageError::Unsupported { .. }) && msg.contains("ElementNumberOfChannels"),
        "{msg}"
    );
    let mut l = base("half");
    l[2] = "ElementType = MET_HALF".into();
    let (e, msg) = err(d, "half", &lines(&l), None);
    assert!(matches!(e, MetaImageError::Unsupported { .. }) && msg.contains("MET_HALF"), "{msg}");
    let mut l = base("ascii");
    l.insert(0, "BinaryData = False".into());
    let (e, _) = err(d, "ascii", &lines(&l), None);
    assert!(matches!(e, MetaImageError::Unsupported { .. }));

    // A huge claimed size is refused before anything is allocated.
    let mut l = base("huge");
    l[1] = "DimSize = 100000 100000 100000".into();
    let (e, msg) = err(d, "huge", &lines(&l), Some(&[0u8; 8]));
    assert!(matches!(e, MetaImageError::TooLarge { .. }) && msg.contains("100000"), "{msg}");

    // No ElementDataFile, no DimSize.
    let (e, _) =
        err(d, "nodata", &["NDims = 3", "DimSize = 1 1 1", "ElementType = MET_SHORT"], None);
    assert!(matches!(e, MetaImageError::MissingKey { key: "ElementDataFile", .. }));
    let (e, _) =
        err(d, "nodim", &["NDims = 3", "ElementType = MET_SHORT", "ElementDataFile = x.raw"], None);
    assert!(matches!(e, MetaImageError::MissingKey { key: "DimSize", .. }));

    // NaN voxels have no HU.
    let nan: Vec<u8> = [1.0f32, f32::NAN, f32::NAN].iter().flat_map(|v| v.to_le_bytes()).collect();
    let (e, msg) = err(
        d,
        "nan",
        &["NDims = 3", "DimSize = 3 1 1", "ElementType = MET_FLOAT", "ElementDataFile = nan.raw"],
        Some(&nan),
    );
    assert!(matches!(e, MetaImageError::NaN { count: 2, .. }), "{msg}");
    // So do infinities (clamped, they would pass for bone).
    let inf: Vec<u8> =
        [f32::INFINITY, 0.0, f32::NEG_INFINITY].iter().flat_map(|v| v.to_le_bytes()).collect();
    let (e, msg) = err(
        d,
        "inf",
        &["NDims = 3", "DimSize = 3 1 1", "ElementType = MET_FLOAT", "ElementDataFile = inf.raw"],
        Some(&inf),
    );
    assert!(matches!(e, MetaImageError::NaN { count: 2, .. }) && msg.contains("infinite"), "{msg}");

    // A corrupt zlib stream, and one that is cut short.
    let (e, msg) = err(
        d,
        "badz",
        &[
            "NDims = 3",
            "DimSize = 4 4 2",
            "ElementType = MET_SHORT",
            "CompressedData = True",
            "ElementDataFile = badz.raw",
        ],
        Some(b"this is not zlib"),
    );
    assert!(matches!(e, MetaImageError::Data { .. }) && msg.contains("zlib"), "{msg}");
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut z, &[1u8; 40]).unwrap();
    let (e, msg) = err(
        d,
        "shortz",
        &[
            "NDims = 3",
            "DimSize = 4 4 2",
            "ElementType = MET_SHORT",
            "CompressedData = True",
            "ElementDataFile = shortz.raw",
        ],
        Some(&z.finish().unwrap()),
    );
    assert!(matches!(e, MetaImageError::Data { .. }) && msg.contains("truncated"), "{msg}");

    // A zlib stream that expands far beyond the header's size is stopped at the size.
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut z, &vec![0u8; 50_000_000]).unwrap();
    let (e, msg) = err(
        d,
        "bomb",
        &[
            "NDims = 3",
            "DimSize = 4 4 2",
            "ElementType = MET_SHORT",
            "CompressedData = True",
            "ElementDataFile = bomb.raw",
        ],
        Some(&z.finish().unwrap()),
    );
    assert!(matches!(e, MetaImageError::Data { .. }) && msg.contains("more than"), "{msg}");

    // A line that is not Key = Value.
    let (e, msg) = err(
        d,
        "syntax",
        &["NDims = 3", "this line has no equals sign", "ElementDataFile = x.raw"],
        None,
    );
    assert!(matches!(e, MetaImageError::Syntax { line: 2, .. }), "{msg}");
}

/// The real fixtures' headers parse as the goldens describe.
#[test]
fn fixture_headers() {
    let h = metaimage::read_header(&data("elastix/3DCT_lung_baseline_small.mha")).unwrap();
    assert!(h.compressed);
    assert!(matches!(h.data_file, metaimage::DataFile::Local { .. }));
    assert_eq!(h.element_type, ctstream::hu::Scalar::I16);
    let h = metaimage::read_header(&data("elastix/fixed.mhd")).unwrap();
    assert_eq!(h.ndims, 2);
    assert_eq!(h.shape_zyx, [1, 256, 256]);
    assert!(
        matches!(h.data_file, metaimage::DataFile::External(ref p) if p.ends_with("fixed.raw"))
    );
}

/// The tests that need Python with the pinned packages (tools/goldens and tools/python requirements): ignored where it is missing (cargo test says
/// so); tools/test.sh runs them with `--ignored with_python::` where it is installed.
mod with_python {
    use super::*;

    /// SimpleITK reads the files ctstream writes with the same geometry and voxels.
    #[test]
    #[ignore = "needs Python with the pinned packages (tools/goldens and tools/python requirements): tools/test.sh runs it where they are installed"]
    fn simpleitk_reads_what_the_writer_writes() {
        let dir = tempdir();
        let (hu, g) = sample();
        let paths: Vec<PathBuf> =
            [("a.mhd", false), ("b.mhd", true), ("c.mha", false), ("d.mha", true)]
                .iter()
                .map(|(n, c)| {
                    let p = dir.path().join(n);
                    metaimage::write(&p, &hu, &g, WriteOptions { compress: *c }).unwrap();
                    p
                })
                .collect();
        let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let d = sitk_digest(&refs);
        for p in &paths {
            let v = metaimage::read(p).unwrap();
            assert_matches_sitk(&p.display().to_string(), &d[p.to_str().unwrap()], &v, 0.0);
        }
    }
}
