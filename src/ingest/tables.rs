//! The index tables built from the store's records and the annotation CSVs
//! (`format/INDEX.md`): scans (with the lungs' volume and box), labels, components, nodules
//! (with whether each lies in its lung region) and candidates. They sit here, above the
//! store, the annotations and the label volumes they describe; `store::index` writes them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_array::types::Float64Type;
use arrow_array::{
    ArrayRef, BooleanArray, Int8Array, Int16Array, Int64Array, ListArray, RecordBatch, StringArray,
};

use crate::annotations::{Annotation, Candidate};
use crate::labels::{LUNGS, lungs};
use crate::store::index::{
    CandidateRow, NoduleRow, batch, f64s, f64s_or_null, i32s, i32s_or_null, locate, utf8,
};
use crate::store::{LabelComponent, LabelRecord, Region, ScanRecord, Store, StoreError};

/// Nodule rows for the stored scans, from annotations and excluded findings, plus the
/// number of annotation rows whose series is not stored.
pub fn nodule_rows(
    scans: &BTreeMap<String, ScanRecord>,
    annotations: &[Annotation],
    excluded: &[Annotation],
) -> (Vec<NoduleRow>, usize) {
    let mut rows = Vec::new();
    let mut missing = 0;
    for (source, list) in [("annotations", annotations), ("excluded", excluded)] {
        let mut next: HashMap<&str, i32> = HashMap::new();
        for a in list {
            let Some(rec) = scans.get(&a.series_id) else {
                missing += 1;
                continue;
            };
            let id = next.entry(a.series_id.as_str()).or_default();
            let (voxel_zyx, inside) = locate(rec, a.world_xyz);
            let s = rec.spacing_xyz;
            rows.push(NoduleRow {
                series_id: a.series_id.clone(),
                nodule_id: *id,
                world_xyz: a.world_xyz,
                voxel_zyx,
                diameter_mm: a.diameter_mm,
                radius_zyx: a.diameter_mm.map(|d| [d / 2.0 / s[2], d / 2.0 / s[1], d / 2.0 / s[0]]),
                inside,
                source,
                in_lung_region: None,
                readers: None,
                volume_ml: None,
                max_diameter_mm: None,
                characteristics: [None; 9],
            });
            *id += 1;
        }
    }
    rows.extend(lidc_nodule_rows(scans));
    (rows, missing)
}

/// Nodule rows of the scans' LIDC reader annotations: each nodule (source `lidc`, its
/// consensus centroid, equivalent diameter, readers, volume, longest axial diameter and
/// median scores), then each small nodule and non-nodule (`lidc_excluded`, no diameter),
/// numbered from 0 in each source, in record order.
fn lidc_nodule_rows(scans: &BTreeMap<String, ScanRecord>) -> Vec<NoduleRow> {
    let mut rows = Vec::new();
    for rec in scans.values() {
        let Some(l) = &rec.lidc else { continue };
        let s = rec.spacing_xyz;
        let row = |id: usize, world_xyz: [f64; 3], source: &'static str| {
            let (voxel_zyx, inside) = locate(rec, world_xyz);
            NoduleRow {
                series_id: rec.series_id.clone(),
                nodule_id: i32::try_from(id).unwrap_or(i32::MAX),
                world_xyz,
                voxel_zyx,
                diameter_mm: None,
                radius_zyx: None,
                inside,
                source,
                in_lung_region: None,
                readers: None,
                volume_ml: None,
                max_diameter_mm: None,
                characteristics: [None; 9],
            }
        };
        for n in &l.nodules {
            let d = n.equivalent_diameter_mm;
            rows.push(NoduleRow {
                diameter_mm: Some(d),
                radius_zyx: Some([d / 2.0 / s[2], d / 2.0 / s[1], d / 2.0 / s[0]]),
                readers: Some(i32::from(n.readers)),
                volume_ml: Some(n.volume_ml),
                max_diameter_mm: Some(n.max_diameter_mm),
                characteristics: n.characteristics,
                ..row(n.nodule_id as usize, n.world_xyz, "lidc")
            });
        }
        for (i, p) in l.points.iter().enumerate() {
            rows.push(row(i, p.world_xyz, "lidc_excluded"));
        }
    }
    rows
}

/// The `annotations` table (format 1.3): one row per LIDC reader annotation of a nodule
/// of 3 mm or more, then per small nodule and non-nodule, of every stored scan.
pub fn annotations_batch(scans: &BTreeMap<String, ScanRecord>) -> RecordBatch {
    use crate::store::lidc::CHARACTERISTICS;
    struct Row<'a> {
        rec: &'a ScanRecord,
        nodule_id: i32,
        kind: &'a str,
        reader: &'a str,
        reader_id: &'a str,
        xml_file: &'a str,
        world_xyz: [f64; 3],
        ann: Option<&'a crate::store::lidc::LidcAnnotation>,
    }
    let mut rows = Vec::new();
    for rec in scans.values() {
        let Some(l) = &rec.lidc else { continue };
        for a in &l.annotations {
            rows.push(Row {
                rec,
                nodule_id: i32::try_from(a.nodule_id).unwrap_or(i32::MAX),
                kind: "nodule",
                reader: &a.reader,
                reader_id: &a.reader_nodule_id,
                xml_file: &a.xml_file,
                world_xyz: a.world_xyz,
                ann: Some(a),
            });
        }
        for (i, p) in l.points.iter().enumerate() {
            rows.push(Row {
                rec,
                nodule_id: i32::try_from(i).unwrap_or(i32::MAX),
                kind: &p.kind,
                reader: &p.reader,
                reader_id: &p.reader_id,
                xml_file: &p.xml_file,
                world_xyz: p.world_xyz,
                ann: None,
            });
        }
    }
    let voxels: Vec<[f64; 3]> = rows.iter().map(|r| locate(r.rec, r.world_xyz).0).collect();
    let mut cols: Vec<(&str, ArrayRef, bool)> = vec![
        ("series_id", utf8(rows.iter().map(|r| r.rec.series_id.as_str())), false),
        ("nodule_id", i32s(rows.iter().map(|r| r.nodule_id)), false),
        ("kind", utf8(rows.iter().map(|r| r.kind)), false),
        ("reader", utf8(rows.iter().map(|r| r.reader)), false),
        ("reader_nodule_id", utf8(rows.iter().map(|r| r.reader_id)), false),
        ("xml_file", utf8(rows.iter().map(|r| r.xml_file)), false),
    ];
    for (a, n) in ["world_x", "world_y", "world_z"].iter().enumerate() {
        cols.push((n, f64s(rows.iter().map(|r| r.world_xyz[a])), false));
    }
    for (a, n) in ["voxel_z", "voxel_y", "voxel_x"].iter().enumerate() {
        cols.push((n, f64s(voxels.iter().map(|v| v[a])), false));
    }
    let f = |g: fn(&crate::store::lidc::LidcAnnotation) -> f64| -> ArrayRef {
        f64s_or_null(rows.iter().map(|r| r.ann.map(g)))
    };
    cols.push(("volume_ml", f(|a| a.volume_ml), true));
    cols.push(("diameter_mm", f(|a| a.diameter_mm), true));
    cols.push((
        "contour_slices",
        i32s_or_null(
            rows.iter().map(|r| r.ann.map(|a| i32::try_from(a.contour_slices).unwrap_or(i32::MAX))),
        ),
        true,
    ));
    for (k, n) in CHARACTERISTICS.iter().enumerate() {
        cols.push((
            n,
            Arc::new(Int8Array::from_iter(
                rows.iter().map(|r| r.ann.and_then(|a| a.characteristics[k]).map(|v| v as i8)),
            )),
            true,
        ));
    }
    batch(cols)
}

/// Candidate rows for the stored scans, plus the number of rows whose series is not stored.
pub fn candidate_rows(
    scans: &BTreeMap<String, ScanRecord>,
    candidates: &[Candidate],
) -> (Vec<CandidateRow>, usize) {
    let mut rows = Vec::new();
    let mut missing = 0;
    let mut next: HashMap<&str, i32> = HashMap::new();
    for c in candidates {
        let Some(rec) = scans.get(&c.series_id) else {
            missing += 1;
            continue;
        };
        let id = next.entry(c.series_id.as_str()).or_default();
        let (voxel_zyx, inside) = locate(rec, c.world_xyz);
        rows.push(CandidateRow {
            series_id: c.series_id.clone(),
            candidate_id: *id,
            world_xyz: c.world_xyz,
            voxel_zyx,
            inside,
            class: c.class as i8,
        });
        *id += 1;
    }
    (rows, missing)
}

/// The `scans` table.
pub fn scans_batch(scans: &BTreeMap<String, ScanRecord>) -> RecordBatch {
    let r: Vec<&ScanRecord> = scans.values().collect();
    let mut cols: Vec<(&str, ArrayRef, bool)> = vec![
        ("series_id", utf8(r.iter().map(|s| s.series_id.as_str())), false),
        ("source_path", utf8(r.iter().map(|s| s.source_path.as_str())), false),
        ("source_format", utf8(r.iter().map(|s| s.source_format.as_str())), false),
    ];
    for (a, n) in ["orig_shape_z", "orig_shape_y", "orig_shape_x"].iter().enumerate() {
        cols.push((n, i32s(r.iter().map(|s| s.orig_shape_zyx[a] as i32)), false));
    }
    for (a, n) in ["orig_spacing_x", "orig_spacing_y", "orig_spacing_z"].iter().enumerate() {
        cols.push((n, f64s(r.iter().map(|s| s.orig_spacing_xyz[a])), false));
    }
    for (a, n) in ["orig_origin_x", "orig_origin_y", "orig_origin_z"].iter().enumerate() {
        cols.push((n, f64s(r.iter().map(|s| s.orig_origin_xyz[a])), false));
    }
    let dirs = ListArray::from_iter_primitive::<Float64Type, _, _>(
        r.iter().map(|s| Some(s.orig_direction.iter().map(|v| Some(*v)).collect::<Vec<_>>())),
    );
    cols.push(("orig_direction", Arc::new(dirs), false));
    for (a, n) in ["shape_z", "shape_y", "shape_x"].iter().enumerate() {
        cols.push((n, i32s(r.iter().map(|s| s.shape_zyx[a] as i32)), false));
    }
    for (a, n) in ["spacing_x", "spacing_y", "spacing_z"].iter().enumerate() {
        cols.push((n, f64s(r.iter().map(|s| s.spacing_xyz[a])), false));
    }
    for (a, n) in ["origin_x", "origin_y", "origin_z"].iter().enumerate() {
        cols.push((n, f64s(r.iter().map(|s| s.origin_xyz[a])), false));
    }
    for (a, n) in ["chunk_z", "chunk_y", "chunk_x"].iter().enumerate() {
        cols.push((n, i32s(r.iter().map(|s| s.chunk_shape_zyx[a] as i32)), false));
    }
    cols.push((
        "bytes_raw",
        Arc::new(Int64Array::from_iter_values(r.iter().map(|s| s.bytes_raw as i64))),
        false,
    ));
    cols.push((
        "bytes_stored",
        Arc::new(Int64Array::from_iter_values(r.iter().map(|s| s.bytes_stored as i64))),
        false,
    ));
    cols.push((
        "hu_min",
        Arc::new(Int16Array::from_iter_values(r.iter().map(|s| s.hu_min))),
        false,
    ));
    cols.push((
        "hu_max",
        Arc::new(Int16Array::from_iter_values(r.iter().map(|s| s.hu_max))),
        false,
    ));
    cols.push(("hu_mean", f64s(r.iter().map(|s| s.hu_mean)), false));
    cols.push(("fingerprint", utf8(r.iter().map(|s| s.fingerprint.as_str())), false));
    cols.push(("volume_file", utf8(r.iter().map(|s| s.volume_file.as_str())), false));
    // From format 1.2: label volumes, and the lungs' volume and box.
    let mut labels =
        arrow_array::builder::ListBuilder::new(arrow_array::builder::StringBuilder::new());
    for s in &r {
        for l in &s.labels {
            labels.values().append_value(&l.name);
        }
        labels.append(true);
    }
    cols.push(("labels", Arc::new(labels.finish()), false));
    let lungs: Vec<Option<&LabelRecord>> = r.iter().map(|s| s.label(LUNGS)).collect();
    let ml = |s: &ScanRecord, v: Option<u8>| {
        let l = s.label(LUNGS)?;
        let voxels = v.map_or(l.foreground_voxels(), |v| l.voxels_of(v));
        Some(voxels as f64 * s.spacing_xyz.iter().product::<f64>() / 1000.0)
    };
    cols.push(("lung_ml", f64s_or_null(r.iter().map(|s| ml(s, None))), true));
    cols.push(("right_lung_ml", f64s_or_null(r.iter().map(|s| ml(s, Some(lungs::RIGHT)))), true));
    cols.push(("left_lung_ml", f64s_or_null(r.iter().map(|s| ml(s, Some(lungs::LEFT)))), true));
    for (k, names) in
        [(0, ["lung_z0", "lung_y0", "lung_x0"]), (1, ["lung_z1", "lung_y1", "lung_x1"])]
    {
        for (a, n) in names.iter().enumerate() {
            cols.push((
                n,
                i32s_or_null(
                    lungs.iter().map(|l| l.and_then(|l| l.bbox_zyx).map(|b| b[k][a] as i32)),
                ),
                true,
            ));
        }
    }
    batch(cols)
}

/// The `labels` table (format 1.2): one row per value present in each label volume.
pub fn labels_batch(scans: &BTreeMap<String, ScanRecord>) -> RecordBatch {
    let mut rows: Vec<(&ScanRecord, &LabelRecord, u64, u64)> = Vec::new();
    for s in scans.values() {
        for l in &s.labels {
            for &[v, n] in &l.counts {
                rows.push((s, l, v, n));
            }
        }
    }
    let cols: Vec<(&str, ArrayRef, bool)> = vec![
        ("series_id", utf8(rows.iter().map(|r| r.0.series_id.as_str())), false),
        ("label", utf8(rows.iter().map(|r| r.1.name.as_str())), false),
        ("value", i32s(rows.iter().map(|r| r.2 as i32)), false),
        (
            "class",
            Arc::new(StringArray::from_iter(
                rows.iter().map(|r| r.1.classes.get(&r.2.to_string()).map(String::as_str)),
            )),
            true,
        ),
        ("voxels", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3 as i64))), false),
        (
            "volume_ml",
            f64s(
                rows.iter().map(|r| r.3 as f64 * r.0.spacing_xyz.iter().product::<f64>() / 1000.0),
            ),
            false,
        ),
        ("source", utf8(rows.iter().map(|r| r.1.source.as_str())), false),
        ("file", utf8(rows.iter().map(|r| r.1.file.as_str())), false),
    ];
    batch(cols)
}

/// The `components` table (format 1.2): one row per connected component of each value of
/// each label volume, as the records list them.
pub fn components_batch(scans: &BTreeMap<String, ScanRecord>) -> RecordBatch {
    let mut rows: Vec<(&ScanRecord, &LabelRecord, &LabelComponent)> = Vec::new();
    for s in scans.values() {
        for l in &s.labels {
            rows.extend(l.components.iter().map(|c| (s, l, c)));
        }
    }
    let mut cols: Vec<(&str, ArrayRef, bool)> = vec![
        ("series_id", utf8(rows.iter().map(|r| r.0.series_id.as_str())), false),
        ("label", utf8(rows.iter().map(|r| r.1.name.as_str())), false),
        ("value", i32s(rows.iter().map(|r| r.2.value as i32)), false),
        ("component", i32s(rows.iter().map(|r| r.2.component as i32)), false),
        (
            "voxels",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2.voxels as i64))),
            false,
        ),
        (
            "volume_ml",
            f64s(
                rows.iter()
                    .map(|r| r.2.voxels as f64 * r.0.spacing_xyz.iter().product::<f64>() / 1000.0),
            ),
            false,
        ),
    ];
    for (a, n) in ["world_x", "world_y", "world_z"].iter().enumerate() {
        cols.push((n, f64s(rows.iter().map(|r| r.2.centroid_world_xyz[a])), false));
    }
    for (a, n) in ["voxel_z", "voxel_y", "voxel_x"].iter().enumerate() {
        cols.push((n, f64s(rows.iter().map(|r| r.2.centroid_zyx[a])), false));
    }
    for (k, names) in
        [(0, ["bbox_z0", "bbox_y0", "bbox_x0"]), (1, ["bbox_z1", "bbox_y1", "bbox_x1"])]
    {
        for (a, n) in names.iter().enumerate() {
            cols.push((n, i32s(rows.iter().map(|r| r.2.bbox_zyx[k][a] as i32)), false));
        }
    }
    cols.push((
        "equivalent_diameter_mm",
        f64s(rows.iter().map(|r| r.2.equivalent_diameter_mm)),
        false,
    ));
    batch(cols)
}

/// The `nodules` table.
pub fn nodules_batch(rows: &[NoduleRow]) -> RecordBatch {
    let mut cols: Vec<(&str, ArrayRef, bool)> = vec![
        ("series_id", utf8(rows.iter().map(|r| r.series_id.as_str())), false),
        ("nodule_id", i32s(rows.iter().map(|r| r.nodule_id)), false),
    ];
    for (a, n) in ["world_x", "world_y", "world_z"].iter().enumerate() {
        cols.push((n, f64s(rows.iter().map(|r| r.world_xyz[a])), false));
    }
    for (a, n) in ["voxel_z", "voxel_y", "voxel_x"].iter().enumerate() {
        cols.push((n, f64s(rows.iter().map(|r| r.voxel_zyx[a])), false));
    }
    cols.push(("diameter_mm", f64s_or_null(rows.iter().map(|r| r.diameter_mm)), true));
    for (a, n) in ["radius_z", "radius_y", "radius_x"].iter().enumerate() {
        cols.push((n, f64s_or_null(rows.iter().map(|r| r.radius_zyx.map(|v| v[a]))), true));
    }
    cols.push((
        "inside",
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.inside)))),
        false,
    ));
    cols.push(("source", utf8(rows.iter().map(|r| r.source)), false));
    cols.push((
        "in_lung_region",
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| r.in_lung_region))),
        true,
    ));
    // From format 1.3: what LIDC's readers say of their nodules.
    cols.push(("readers", i32s_or_null(rows.iter().map(|r| r.readers)), true));
    cols.push(("volume_ml", f64s_or_null(rows.iter().map(|r| r.volume_ml)), true));
    cols.push(("max_diameter_mm", f64s_or_null(rows.iter().map(|r| r.max_diameter_mm)), true));
    for (k, n) in crate::store::lidc::CHARACTERISTICS.iter().enumerate() {
        cols.push((n, f64s_or_null(rows.iter().map(|r| r.characteristics[k])), true));
    }
    batch(cols)
}

/// Fills each nodule row's `in_lung_region` from its scan's `lungs` label volume (rows of
/// scans without one keep `None`): the centre's nearest voxel lies within the lung
/// region's margin of a lung voxel. Reads only the chunks around each centre.
///
/// # Errors
/// A damaged label volume ([`StoreError::Corrupt`] naming it).
pub fn mark_in_lung_region(store: &Store, rows: &mut [NoduleRow]) -> Result<(), StoreError> {
    for r in rows.iter_mut() {
        let Ok(rec) = store.scan(&r.series_id) else { continue };
        if rec.label(LUNGS).is_none() || !r.inside {
            r.in_lung_region = rec.label(LUNGS).map(|_| false);
            continue;
        }
        let m = lungs::margin_voxels(rec.spacing_xyz);
        let c: [i64; 3] = std::array::from_fn(|a| (r.voxel_zyx[a] + 0.5).floor() as i64);
        let region = Region::new(
            std::array::from_fn(|a| c[a] - m[a] as i64),
            std::array::from_fn(|a| c[a] + m[a] as i64 + 1),
        );
        let lungs = store.read_label_region(&r.series_id, LUNGS, region)?;
        r.in_lung_region = Some(lungs.iter().any(|&v| v != 0));
    }
    Ok(())
}

/// The `candidates` table.
pub fn candidates_batch(rows: &[CandidateRow]) -> RecordBatch {
    let mut cols: Vec<(&str, ArrayRef, bool)> = vec![
        ("series_id", utf8(rows.iter().map(|r| r.series_id.as_str())), false),
        ("candidate_id", i32s(rows.iter().map(|r| r.candidate_id)), false),
    ];
    for (a, n) in ["world_x", "world_y", "world_z"].iter().enumerate() {
        cols.push((n, f64s(rows.iter().map(|r| r.world_xyz[a])), false));
    }
    for (a, n) in ["voxel_z", "voxel_y", "voxel_x"].iter().enumerate() {
        cols.push((n, f64s(rows.iter().map(|r| r.voxel_zyx[a])), false));
    }
    cols.push((
        "inside",
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.inside)))),
        false,
    ));
    cols.push((
        "class",
        Arc::new(Int8Array::from_iter_values(rows.iter().map(|r| r.class))),
        false,
    ));
    batch(cols)
}
