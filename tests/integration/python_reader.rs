//! The store read by others: the Python reference reader (written from format/FORMAT.md
//! alone) reads the same regions of scans and label volumes as the Rust reader, and
//! pyarrow, pandas, polars and DuckDB open the index tables unchanged with the schema
//! format/INDEX.md documents.

use std::path::Path;

use crate::common::*;
use ctstream::ingest::{self, IngestConfig};
use ctstream::store::{Region, Store};
use ctstream::synth::{self, SynthConfig};

fn store(dir: &Path) -> std::path::PathBuf {
    let data = dir.join("data");
    synth::generate(&data, &SynthConfig { small: true, ..SynthConfig::new(2, 31) }, &()).unwrap();
    let out = dir.join("store");
    let mut cfg = IngestConfig::new(vec![data.clone()], out.clone());
    cfg.annotations = Some(data.join("annotations.csv"));
    cfg.candidates = Some(data.join("candidates.csv"));
    cfg.chunk_shape_zyx = [16, 32, 32];
    ingest::ingest(&cfg, &()).unwrap();
    out
}

/// The tests that need Python with the pinned packages (tools/goldens and tools/python requirements): ignored where it is missing (cargo test says
/// so); tools/test.sh runs them with `--ignored with_python::` where it is installed.
mod with_python {
    use super::*;

    #[test]
    #[ignore = "needs Python with the pinned packages (tools/goldens and tools/python requirements): tools/test.sh runs it where they are installed"]
    fn python_reference_reader_reads_the_same_regions() {
        let dir = tempdir();
        let out = store(dir.path());
        let store = Store::open(&out).unwrap();
        let id = store.series_ids().next().unwrap().to_string();
        let [nz, ny, nx] = store.scan(&id).unwrap().shape_zyx.map(|v| v as i64);
        let regions: Vec<[i64; 6]> = vec![
            [0, 0, 0, nz, ny, nx],
            [3, 17, 40, 35, 81, 104],
            [-10, -20, nx - 30, 22, 44, nx + 34],
            [nz - 1, ny - 1, nx - 1, nz + 5, ny + 5, nx + 5],
        ];
        let args = [
            out.clone().into_os_string(),
            id.clone().into(),
            serde_json::to_string(&regions).unwrap().into(),
        ];
        let py = python_json("tools/python/ctstream_reader.py", &args);
        for (r, p) in regions.iter().zip(py.as_array().unwrap()) {
            let a = store
                .read_region(&id, Region::new([r[0], r[1], r[2]], [r[3], r[4], r[5]]))
                .unwrap();
            assert_eq!(p["shape"], serde_json::json!(a.shape()), "{r:?}");
            assert_eq!(
                p["sha256"].as_str().unwrap(),
                sha256_volume(&a),
                "region {r:?}: Python and Rust readers differ"
            );
        }
        // The same regions of the scan's lung mask (uint8, format 1.2).
        let args = [args[0].clone(), args[1].clone(), args[2].clone(), "lungs".into()];
        let py = python_json("tools/python/ctstream_reader.py", &args);
        for (r, p) in regions.iter().zip(py.as_array().unwrap()) {
            let a = store
                .read_label_region(
                    &id,
                    "lungs",
                    Region::new([r[0], r[1], r[2]], [r[3], r[4], r[5]]),
                )
                .unwrap();
            assert_eq!(p["shape"], serde_json::json!(a.shape()), "{r:?}");
            use sha2::Digest;
            let want: String = sha2::Sha256::digest(a.as_standard_layout().as_slice().unwrap())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                p["sha256"].as_str().unwrap(),
                want,
                "lungs region {r:?}: Python and Rust readers differ"
            );
        }
        assert!(
            store
                .read_label_region(&id, "lungs", Region::new([0, 0, 0], [nz, ny, nx]))
                .unwrap()
                .iter()
                .any(|&v| v == 1),
            "the synthetic scan has a right lung"
        );
    }

    #[test]
    #[ignore = "needs Python with the pinned packages (tools/goldens and tools/python requirements): tools/test.sh runs it where they are installed"]
    fn pyarrow_pandas_and_duckdb_open_the_index_as_documented() {
        let dir = tempdir();
        let out = store(dir.path());
        let j = python_json("tools/python/check_index.py", &[out.clone().into_os_string()]);
        // The columns of format/INDEX.md, in order, with their arrow types and nullability.
        let f = |n: &str| (n.to_string(), "double".to_string(), false);
        let i = |n: &str| (n.to_string(), "int32".to_string(), false);
        let u = |n: &str| (n.to_string(), "string".to_string(), false);
        let mut scans = vec![
            u("series_id"),
            u("source_path"),
            u("source_format"),
            i("orig_shape_z"),
            i("orig_shape_y"),
            i("orig_shape_x"),
        ];
        scans.extend(
            [
                "orig_spacing_x",
                "orig_spacing_y",
                "orig_spacing_z",
                "orig_origin_x",
                "orig_origin_y",
                "orig_origin_z",
            ]
            .map(f),
        );
        scans.push(("orig_direction".into(), "list<item: double>".into(), false));
        scans.extend(["shape_z", "shape_y", "shape_x"].map(i));
        scans.extend(
            ["spacing_x", "spacing_y", "spacing_z", "origin_x", "origin_y", "origin_z"].map(f),
        );
        scans.extend(["chunk_z", "chunk_y", "chunk_x"].map(i));
        scans.extend([
            ("bytes_raw".into(), "int64".into(), false),
            ("bytes_stored".into(), "int64".into(), false),
        ]);
        scans.extend([
            ("hu_min".into(), "int16".into(), false),
            ("hu_max".into(), "int16".into(), false),
            f("hu_mean"),
            u("fingerprint"),
            u("volume_file"),
        ]);
        let fnull = |n: &str| (n.to_string(), "double".to_string(), true);
        let inull = |n: &str| (n.to_string(), "int32".to_string(), true);
        scans.push(("labels".into(), "list<item: string>".into(), false));
        scans.extend(["lung_ml", "right_lung_ml", "left_lung_ml"].map(fnull));
        scans.extend(["lung_z0", "lung_y0", "lung_x0", "lung_z1", "lung_y1", "lung_x1"].map(inull));
        let mut nodules = vec![u("series_id"), i("nodule_id")];
        nodules.extend(["world_x", "world_y", "world_z", "voxel_z", "voxel_y", "voxel_x"].map(f));
        nodules.extend(
            ["diameter_mm", "radius_z", "radius_y", "radius_x"]
                .map(|n| (n.to_string(), "double".to_string(), true)),
        );
        nodules.extend([
            ("inside".into(), "bool".into(), false),
            u("source"),
            ("in_lung_region".into(), "bool".into(), true),
        ]);
        // Format 1.3: what LIDC's readers say (null for the CSVs' rows).
        let scores = ctstream::store::lidc::CHARACTERISTICS;
        nodules.push(inull("readers"));
        nodules.extend(["volume_ml", "max_diameter_mm"].map(fnull));
        nodules.extend(scores.map(fnull));
        let mut annotations = vec![
            u("series_id"),
            i("nodule_id"),
            u("kind"),
            u("reader"),
            u("reader_nodule_id"),
            u("xml_file"),
        ];
        annotations
            .extend(["world_x", "world_y", "world_z", "voxel_z", "voxel_y", "voxel_x"].map(f));
        annotations.extend(["volume_ml", "diameter_mm"].map(fnull));
        annotations.push(inull("contour_slices"));
        annotations.extend(scores.map(|n| (n.to_string(), "int8".to_string(), true)));
        let i64 = |n: &str| (n.to_string(), "int64".to_string(), false);
        let labels = vec![
            u("series_id"),
            u("label"),
            i("value"),
            ("class".into(), "string".into(), true),
            i64("voxels"),
            f("volume_ml"),
            u("source"),
            u("file"),
        ];
        let mut components = vec![
            u("series_id"),
            u("label"),
            i("value"),
            i("component"),
            i64("voxels"),
            f("volume_ml"),
        ];
        components
            .extend(["world_x", "world_y", "world_z", "voxel_z", "voxel_y", "voxel_x"].map(f));
        components
            .extend(["bbox_z0", "bbox_y0", "bbox_x0", "bbox_z1", "bbox_y1", "bbox_x1"].map(i));
        components.push(f("equivalent_diameter_mm"));
        let mut candidates = vec![u("series_id"), i("candidate_id")];
        candidates
            .extend(["world_x", "world_y", "world_z", "voxel_z", "voxel_y", "voxel_x"].map(f));
        candidates.extend([
            ("inside".into(), "bool".into(), false),
            ("class".into(), "int8".into(), false),
        ]);
        let store = Store::open(&out).unwrap();
        let n_nodules =
            ctstream::store::index::read_nodules(&out.join("index/nodules.parquet")).unwrap().len();
        // Every synthetic scan has two lungs: a labels row each, and at least a component each.
        let n_scans = store.scans().len();
        for (name, want, rows) in [
            ("scans", scans, n_scans),
            ("nodules", nodules, n_nodules),
            ("candidates", candidates, 0),
            ("labels", labels, 2 * n_scans),
            ("components", components, 0),
            ("annotations", annotations, 0),
        ] {
            let t = &j[name];
            let got: Vec<(String, String, bool)> = t["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c[0].as_str().unwrap().to_string(),
                        c[1].as_str().unwrap().to_string(),
                        c[2].as_bool().unwrap(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{name}: schema as pyarrow reads it");
            assert_eq!(t["rows"], t["duckdb_rows"], "{name}");
            assert_eq!(t["rows"], t["pandas_rows"], "{name}");
            assert_eq!(t["rows"], t["polars_rows"], "{name}");
            if name == "components" {
                assert!(
                    t["rows"].as_u64().unwrap() as usize >= 2 * n_scans,
                    "{name}: {}",
                    t["rows"]
                );
            } else if name != "candidates" {
                assert_eq!(t["rows"].as_u64().unwrap() as usize, rows, "{name}");
            } else {
                assert!(t["rows"].as_u64().unwrap() > 0);
            }
        }
        assert_eq!(
            j["nodules"]["duckdb_inside"], j["nodules"]["rows"],
            "all synthetic nodules lie inside"
        );
        // The generator puts every nodule inside a lung, so inside the lung region.
        assert_eq!(
            j["nodules"]["duckdb_in_lung_region"], j["nodules"]["rows"],
            "synthetic nodules lie in the lung region"
        );
        // lung_ml is the records' count of lung voxels times the voxel volume.
        let want_ml: Vec<f64> = store
            .scans()
            .values()
            .map(|r| {
                r.label("lungs").unwrap().foreground_voxels() as f64
                    * r.spacing_xyz.iter().product::<f64>()
                    / 1000.0
            })
            .collect();
        let got_ml: Vec<f64> = j["scans"]["duckdb_lung_ml"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(got_ml, want_ml);
    }

    /// The Python reader, written from format/FORMAT.md alone, refuses the corpus's damaged
    /// volume files (CRCs resealed over an overlapping chunk table and over a NaN spacing)
    /// as the Rust reader does: the spec's checks 2 and 6 say enough to catch them.
    #[test]
    #[ignore = "needs Python with the pinned packages (tools/goldens and tools/python requirements): tools/test.sh runs it where they are installed"]
    fn python_reference_reader_refuses_resealed_damage() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/python/ctstream_reader.py");
        let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken/store");
        for (case, says) in
            [("overlapping_chunks", "chunk 1 is not where"), ("nan_spacing", "spacing (nan")]
        {
            let o = std::process::Command::new("python3")
                .arg(&script)
                .arg(corpus.join(case))
                .args(["scan", "[[0, 0, 0, 1, 1, 1]]"])
                .output()
                .expect("python3");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{case}: the Python reader read it");
            assert!(err.contains("CorruptError") && err.contains(says), "{case}: {err}");
        }
    }
}
