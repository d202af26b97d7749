//! The `ctstream` binary: `info` (text and the stable JSON), series choice, exit codes,
//! errors that name the file; `synth` then `info`.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::*;

fn ctstream(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ctstream")).args(args).output().expect("run ctstream")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn info_json_is_the_stable_interface() {
    let p = data("elastix/3DCT_lung_baseline_small.mha");
    let o = ctstream(&["info", p.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys: Vec<&String> = j.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["direction", "format", "hu", "origin", "series_id", "shape", "spacing"]);
    let hu_keys: Vec<&String> = j["hu"].as_object().unwrap().keys().collect();
    assert_eq!(hu_keys, ["max", "mean", "min"]);
    let g = golden("elastix_lung_small");
    assert_eq!(j["series_id"], "3DCT_lung_baseline_small");
    assert_eq!(j["format"], "metaimage");
    assert_eq!(j["shape"], g["shape_zyx"]);
    assert_eq!(j["spacing"], g["spacing_xyz"]);
    assert_eq!(j["origin"], g["origin_xyz"]);
    assert_eq!(j["direction"], g["direction"]);
    assert_eq!(j["hu"]["min"], g["values"]["min"]);
    assert_eq!(j["hu"]["max"], g["values"]["max"]);
    // mean = sum / voxels, from the golden.
    let n: u64 = g["shape_zyx"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).product();
    let mean = g["values"]["sum"].as_i64().unwrap() as f64 / n as f64;
    assert!((j["hu"]["mean"].as_f64().unwrap() - mean).abs() < 1e-9);
}

#[test]
fn info_on_a_dicom_folder_prints_geometry() {
    let p = data("dicom-test-files/dcmqi/ct-3slice");
    let o = ctstream(&["info", p.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("3 x 512 x 512 voxels (z, y, x)"), "{out}");
    assert!(out.contains("format     dicom"), "{out}");
    assert!(out.contains("HU         min -3024, max 1381"), "{out}");
}

#[test]
fn several_series_are_listed_and_one_can_be_chosen() {
    let p = data("dicom-test-files/WG04");
    let o = ctstream(&["info", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3), "needs --series");
    let err = text(&o.stderr);
    assert!(
        err.contains("--series") && err.contains("1.3.6.1.4.1.5962.1.3.2.1.20040826185059.5457"),
        "{err}"
    );
    let o = ctstream(&[
        "info",
        p.to_str().unwrap(),
        "--series",
        "1.3.6.1.4.1.5962.1.3.2.1.20040826185059.5457",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["shape"], serde_json::json!([1, 512, 512]));
}

#[test]
fn bad_input_fails_with_the_file_named_and_no_panic() {
    let dir = tempdir();
    // A missing .raw, a truncated .raw, a bad number, an empty folder.
    std::fs::write(
        dir.path().join("a.mhd"),
        "NDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\nElementDataFile = a.raw\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.mhd"),
        "NDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\nElementDataFile = b.raw\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("b.raw"), [0u8; 5]).unwrap();
    std::fs::write(
        dir.path().join("c.mhd"),
        "NDims = 3\nDimSize = 2 2 x\nElementType = MET_SHORT\nElementDataFile = c.raw\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    for (name, expect) in [
        ("a.mhd", "a.raw"),
        ("b.mhd", "truncated"),
        ("c.mhd", "DimSize"),
        ("empty", "no DICOM images"),
    ] {
        let p = dir.path().join(name);
        let o = ctstream(&["info", p.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = text(&o.stderr);
        assert!(
            err.contains(name) && err.contains(expect) && !err.contains("panicked"),
            "{name}: {err}"
        );
    }
}

#[test]
fn a_disk_cache_size_out_of_range_is_a_usage_error_before_anything_is_opened() {
    let dir = tempdir();
    let cache = dir.path().join("cache");
    let store = dir.path().join("no-store-here");
    for gb in ["0", "nan", "inf", "1000001"] {
        let o = ctstream(&[
            "export",
            store.to_str().unwrap(),
            "--series",
            "x",
            "--out",
            "x.mha",
            "--disk-cache",
            cache.to_str().unwrap(),
            "--disk-cache-gb",
            gb,
        ]);
        assert_eq!(o.status.code(), Some(2), "{gb}");
        let err = text(&o.stderr);
        assert!(err.contains("--disk-cache-gb") && err.contains("at most 1000000"), "{gb}: {err}");
        assert!(!cache.exists(), "{gb}: the cache folder was made");
    }
}

#[test]
fn synth_then_info() {
    let dir = tempdir();
    let out = dir.path().join("ds");
    let o = ctstream(&[
        "--quiet",
        "synth",
        "--out",
        out.to_str().unwrap(),
        "--scans",
        "2",
        "--seed",
        "4",
        "--small",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rows = ctstream::annotations::read_annotations(&out.join("annotations.csv")).unwrap();
    let id = &rows[0].series_id;
    let o = ctstream(&["info", out.join("subset0").to_str().unwrap(), "--series", id, "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["series_id"].as_str(), Some(id.as_str()));
    assert_eq!(j["shape"][1], 128);
    assert!(Path::new(&out.join("candidates.csv")).is_file());
}

/// `ctstream demo` end to end at a reduced size (small scans, a few training steps):
/// every stage reports, and the store and (with training built) the run exist.
#[test]
fn demo_runs_end_to_end() {
    let dir = tempdir();
    let out = dir.path().join("demo");
    let o = ctstream(&[
        "--quiet",
        "demo",
        "--out",
        out.to_str().unwrap(),
        "--small",
        "--scans",
        "3",
        "--train-steps",
        "4",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let stdout = text(&o.stdout);
    let stages: &[&str] = if cfg!(feature = "train") {
        &[
            "1. synth",
            "2. read",
            "3. ingest",
            "4. inspect",
            "5. stream",
            "6. train",
            "7. predict",
            "8. evaluate",
            "CPM",
            "9. draw",
        ]
    } else {
        &["1. synth", "5. stream", "9. draw"]
    };
    for stage in stages {
        assert!(stdout.contains(stage), "no `{stage}` in:\n{stdout}");
    }
    assert!(out.join("store/index/nodules.parquet").is_file());
    if cfg!(feature = "train") {
        let metrics = std::fs::read_to_string(out.join("run/metrics.csv")).unwrap();
        assert_eq!(metrics.lines().count(), 5, "{metrics}");
        let val = std::fs::read_to_string(out.join("run/val.csv")).unwrap();
        assert!(val.lines().count() >= 2, "the demo holds one scan out and validates: {val}");
        assert!(out.join("run/checkpoints/step-00000004/model.mpk").is_file());
        assert!(out.join("pred/candidates.csv").is_file());
        let froc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("eval/froc.json")).unwrap())
                .unwrap();
        assert_eq!(froc["scans"], 1, "the test scan");
        // The test scan is neither trained nor validated on; one scan is validated on.
        let run: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("run/config.json")).unwrap())
                .unwrap();
        let tested = std::fs::read_to_string(out.join("pred/series.txt")).unwrap();
        let tested = tested.lines().next().unwrap();
        let (trained, validated) =
            (run["train_series"].as_array().unwrap(), run["val_series"].as_array().unwrap());
        assert_eq!((trained.len(), validated.len()), (1, 1), "{run}");
        assert!(trained.iter().chain(validated).all(|s| s.as_str() != Some(tested)), "{run}");
        assert!(froc["cpm"].as_f64().is_some_and(|c| (0.0..=1.0).contains(&c)));
        // The pictures exist and show something: many colours, and the masks' outlines.
        for png in
            ["pictures/slice.png", "pictures/nodule.png", "pictures/curves.png", "eval/froc.png"]
        {
            let img = image::open(out.join(png)).unwrap_or_else(|e| panic!("{png}: {e}")).to_rgb8();
            let colours: std::collections::HashSet<[u8; 3]> = img.pixels().map(|p| p.0).collect();
            assert!(colours.len() >= 64, "{png}: only {} colours", colours.len());
            assert!(stdout.contains(png), "the demo prints where {png} is");
        }
        let nodule = image::open(out.join("pictures/nodule.png")).unwrap().to_rgb8();
        let outline =
            nodule.pixels().filter(|p| p.0 == ctstream::picture::slice::ANNOTATED).count();
        assert!(outline >= 20, "the annotated nodule's outline: {outline} pixels");
        // render and plot name what is wrong.
        let store = out.join("store");
        let id = std::fs::read_to_string(out.join("pred/series.txt"))
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string();
        let png = out.join("x.png");
        let o = ctstream(&[
            "render",
            "--store",
            store.to_str().unwrap(),
            "--series",
            &id,
            "--slice",
            "100000",
            "--out",
            png.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2));
        assert!(
            text(&o.stderr).contains("--slice 100000")
                && text(&o.stderr).contains("has slices 0.."),
            "{}",
            text(&o.stderr)
        );
        let o = ctstream(&[
            "render",
            "--store",
            store.to_str().unwrap(),
            "--series",
            &id,
            "--nodule",
            "99",
            "--out",
            png.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2));
        assert!(text(&o.stderr).contains("has annotated nodules ["), "{}", text(&o.stderr));
        let o = ctstream(&[
            "render",
            "--store",
            store.to_str().unwrap(),
            "--series",
            &id,
            "--pred",
            dir.path().to_str().unwrap(),
            "--out",
            png.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o.stderr).contains(".ctv: no probability map"), "{}", text(&o.stderr));
        assert!(!png.exists());
        let o = ctstream(&["plot", store.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        assert!(text(&o.stderr).contains("metrics.csv"), "{}", text(&o.stderr));
        // Running it again into the same folder works (the old run is replaced).
        let o = ctstream(&[
            "--quiet",
            "demo",
            "--out",
            out.to_str().unwrap(),
            "--small",
            "--scans",
            "3",
            "--train-steps",
            "2",
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert_eq!(
            std::fs::read_to_string(out.join("run/metrics.csv")).unwrap().lines().count(),
            3
        );
    }
}
