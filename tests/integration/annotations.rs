//! LUNA16 CSVs: the real files parse completely (counts and column sums agree with
//! Python's csv module, tests/goldens/luna16_annotations.json); bad rows give errors with
//! the file and the line.

use std::fs;

use crate::common::*;
use ctstream::annotations::{self, Annotation, AnnotationError, Candidate};

fn sums(rows: &[Annotation]) -> [f64; 4] {
    let mut s = [0.0; 4];
    for r in rows {
        s[0] += r.world_xyz[0];
        s[1] += r.world_xyz[1];
        s[2] += r.world_xyz[2];
        s[3] += r.diameter_mm.unwrap_or(-1.0);
    }
    s
}

fn check(rows: &[Annotation], g: &serde_json::Value) {
    assert_eq!(rows.len() as u64, g["rows"].as_u64().unwrap());
    assert_eq!(annotations::series_ids(rows).len() as u64, g["series"].as_u64().unwrap());
    let s = sums(rows);
    for (i, k) in ["sum_x", "sum_y", "sum_z", "sum_diameter"].iter().enumerate() {
        // Summation order differs from math.fsum: allow a few ulps of the total.
        let want = g[k].as_f64().unwrap();
        assert!((s[i] - want).abs() < 1e-6 * want.abs().max(1.0), "{k}: {} vs {want}", s[i]);
    }
    let unmeasured = rows.iter().filter(|r| r.diameter_mm.is_none()).count();
    assert_eq!(unmeasured as u64, g["unmeasured"].as_u64().unwrap());
    let max_z = rows.iter().map(|r| r.world_xyz[2]).fold(f64::MIN, f64::max);
    assert_eq!(max_z, g["max_z"].as_f64().unwrap());
}

#[test]
fn real_annotations_parse_completely() {
    let g = golden("luna16_annotations");
    let rows = annotations::read_annotations(&data("luna16/annotations.csv")).unwrap();
    // 1186 nodules over 601 series, some with coordZ > 1000.
    assert_eq!(rows.len(), 1186);
    assert_eq!(annotations::series_ids(&rows).len(), 601);
    check(&rows, &g["annotations.csv"]);
    let first = &rows[0];
    assert_eq!(first.series_id, "1.3.6.1.4.1.14519.5.2.1.6279.6001.100225287222365663678666836860");
    assert_eq!(first.world_xyz, [-128.6994211, -175.3192718, -298.3875064]);
    assert_eq!(first.diameter_mm, Some(5.651470635));
}

#[test]
fn real_excluded_findings_parse_with_unmeasured_diameters() {
    let g = golden("luna16_annotations");
    let rows = annotations::read_excluded(&data("luna16/annotations_excluded.csv")).unwrap();
    check(&rows, &g["annotations_excluded.csv"]);
    // Excluded findings with -1 are not nodules: annotations.csv refuses them.
    let dir = tempdir();
    let p = dir.path().join("annotations.csv");
    fs::write(&p, "seriesuid,coordX,coordY,coordZ,diameter_mm\n1.2.3,1,2,3,-1\n").unwrap();
    let e = annotations::read_annotations(&p).unwrap_err();
    assert!(e.to_string().contains(":2:") && e.to_string().contains("diameter_mm"), "{e}");
}

#[test]
fn malformed_rows_give_line_numbered_errors() {
    let dir = tempdir();
    let header = "seriesuid,coordX,coordY,coordZ,diameter_mm\n";
    let cases: &[(&str, u64, &str)] = &[
        ("1.2.3,1,2,3,4\n1.2.3,abc,2,3,4\n", 3, "coordX"),
        ("1.2.3,1,2,3,4\n1.2.3,1,2,3,4\n1.2.3,1,2\n", 4, "coordZ"),
        (",1,2,3,4\n", 2, "seriesuid"),
        ("1.2.3,1,2,3,0\n", 2, "diameter_mm"),
        ("1.2.3,1,2,,4\n", 2, "coordZ"),
        ("1.2.3,1,2,3,NaN\n", 2, "diameter_mm"),
        ("1.2.3,1,2,inf,4\n", 2, "coordZ"),
        ("../../etc/passwd,1,2,3,4\n", 2, "not a series id"),
        ("1.2.3,1,2,3,4\na/b,1,2,3,4\n", 3, "not a series id"),
    ];
    for (i, (body, line, column)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.csv"));
        fs::write(&p, format!("{header}{body}")).unwrap();
        let e = annotations::read_annotations(&p).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, AnnotationError::Row { line: l, .. } if l == *line), "case {i}: {msg}");
        assert!(
            msg.contains(&format!("bad{i}.csv:{line}:")) && msg.contains(column),
            "case {i}: {msg}"
        );
    }
    // A missing column in the header.
    let p = dir.path().join("nocol.csv");
    fs::write(&p, "seriesuid,coordX,coordY,diameter_mm\n1.2.3,1,2,4\n").unwrap();
    let e = annotations::read_annotations(&p).unwrap_err();
    assert!(matches!(e, AnnotationError::MissingColumn { column: "coordZ", .. }), "{e}");
    assert!(e.to_string().contains("nocol.csv"), "{e}");
    // Candidates: class must be 0 or 1.
    let p = dir.path().join("cand.csv");
    fs::write(&p, "seriesuid,coordX,coordY,coordZ,class\n1.2.3,1,2,3,1\n1.2.3,1,2,3,2\n").unwrap();
    let e = annotations::read_candidates(&p).unwrap_err();
    assert!(e.to_string().contains("cand.csv:3:") && e.to_string().contains("class"), "{e}");
    // A missing file names itself.
    let e = annotations::read_annotations(&dir.path().join("nope.csv")).unwrap_err();
    assert!(matches!(e, AnnotationError::Io { .. }) && e.to_string().contains("nope.csv"), "{e}");
}

#[test]
fn written_csvs_read_back_exactly() {
    let dir = tempdir();
    let rows = vec![
        Annotation {
            series_id: "1.2.3".into(),
            world_xyz: [-128.6994211, 0.1, 1790.494057],
            diameter_mm: Some(5.651470635),
        },
        Annotation { series_id: "4.5.6".into(), world_xyz: [1.0, 2.0, 3.0], diameter_mm: None },
    ];
    let p = dir.path().join("excluded.csv");
    annotations::write_annotations(&p, &rows).unwrap();
    assert_eq!(annotations::read_excluded(&p).unwrap(), rows);
    let cands =
        vec![Candidate { series_id: "1.2.3".into(), world_xyz: [1.5, -2.25, 3.0], class: 1 }];
    let p = dir.path().join("candidates.csv");
    annotations::write_candidates(&p, &cands).unwrap();
    assert_eq!(annotations::read_candidates(&p).unwrap(), cands);
}
