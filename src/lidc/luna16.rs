//! LUNA16's annotation files drawn from a store's LIDC reader annotations, by LUNA16's
//! rule: a nodule that at least [`MIN_READERS`] of the 4 readers annotated (3 mm or more)
//! is a row of `annotations.csv`, at its consensus centroid with its equivalent diameter
//! (LUNA16's diameters agree with the consensus' equivalent diameter: docs/LIDC.md);
//! nodules of fewer readers (with their diameter), small nodules and non-nodules (diameter
//! -1) are rows of `annotations_excluded.csv`.

use std::path::Path;

use crate::annotations::{self, Annotation, AnnotationError};
use crate::store::ScanRecord;

/// LUNA16's rule: nodules annotated by at least 3 of the 4 readers.
pub const MIN_READERS: u8 = 3;

/// The two files' rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Luna16 {
    /// `annotations.csv`.
    pub annotations: Vec<Annotation>,
    /// `annotations_excluded.csv`.
    pub excluded: Vec<Annotation>,
}

/// The rows of the scans' LIDC annotations, scan by scan in the order given, each scan's
/// nodules in their order, then its points.
pub fn from_records<'a>(records: impl IntoIterator<Item = &'a ScanRecord>) -> Luna16 {
    let mut out = Luna16::default();
    for rec in records {
        let Some(l) = &rec.lidc else { continue };
        for n in &l.nodules {
            let a = Annotation {
                series_id: rec.series_id.clone(),
                world_xyz: n.world_xyz,
                diameter_mm: Some(n.equivalent_diameter_mm),
            };
            if n.readers >= MIN_READERS { out.annotations.push(a) } else { out.excluded.push(a) }
        }
        out.excluded.extend(l.points.iter().map(|p| Annotation {
            series_id: rec.series_id.clone(),
            world_xyz: p.world_xyz,
            diameter_mm: None,
        }));
    }
    out
}

impl Luna16 {
    /// Writes `dir/annotations.csv` and `dir/annotations_excluded.csv` (each atomically).
    ///
    /// # Errors
    /// [`AnnotationError::Io`] naming the file.
    pub fn write(&self, dir: &Path) -> Result<(), AnnotationError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| AnnotationError::Io { path: dir.to_path_buf(), source })?;
        annotations::write_annotations(&dir.join("annotations.csv"), &self.annotations)?;
        annotations::write_annotations(&dir.join("annotations_excluded.csv"), &self.excluded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::lidc::{LidcNodule, LidcPoint, LidcRecord};

    #[test]
    fn three_readers_make_a_luna16_nodule_and_the_rest_are_excluded() {
        let nodule = |id: u32, readers: u8, d: f64| LidcNodule {
            nodule_id: id,
            readers,
            world_xyz: [f64::from(id), 0.0, 0.0],
            voxels: 1,
            volume_ml: 0.0,
            equivalent_diameter_mm: d,
            max_diameter_mm: d,
            characteristics: [None; 9],
        };
        let point = LidcPoint {
            kind: "non_nodule".into(),
            reader: "r".into(),
            reader_id: "n".into(),
            xml_file: "x.xml".into(),
            world_xyz: [9.0, 9.0, 9.0],
        };
        let rec = ScanRecord {
            series_id: "1.2.3".into(),
            source_path: "x".into(),
            source_format: "dicom".into(),
            orig_shape_zyx: [1, 1, 1],
            orig_spacing_xyz: [1.0; 3],
            orig_origin_xyz: [0.0; 3],
            orig_direction: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
            shape_zyx: [1, 1, 1],
            spacing_xyz: [1.0; 3],
            origin_xyz: [0.0; 3],
            chunk_shape_zyx: [16, 32, 32],
            bytes_raw: 2,
            bytes_stored: 1,
            hu_min: 0,
            hu_max: 0,
            hu_mean: 0.0,
            fingerprint: String::new(),
            volume_file: "volumes/1.2.3.ctv".into(),
            warnings: vec![],
            labels: vec![],
            lidc: None,
        };
        let rec = ScanRecord {
            lidc: Some(LidcRecord {
                nodules: vec![nodule(0, 4, 10.0), nodule(1, 2, 5.0), nodule(2, 3, 7.5)],
                points: vec![point],
                ..Default::default()
            }),
            ..rec
        };
        let l = from_records([&rec]);
        let d = |v: &[Annotation]| {
            v.iter().map(|a| (a.world_xyz[0], a.diameter_mm)).collect::<Vec<_>>()
        };
        assert_eq!(d(&l.annotations), [(0.0, Some(10.0)), (2.0, Some(7.5))]);
        assert_eq!(d(&l.excluded), [(1.0, Some(5.0)), (9.0, None)]);
    }
}
