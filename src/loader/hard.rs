//! Hard negatives mined from a model's own false positives: the findings of an earlier
//! prediction ([`super::LoaderConfig::hard_negatives`]) that hit no annotated nodule
//! become centres of negative patches.
//!
//! Mining is a file between two runs rather than a schedule inside one: the prediction
//! pass over the training scans is the expensive part (minutes a scan on a CPU), so the
//! user decides when it is worth it, can look at the findings first, and can reuse one
//! mining for several runs; every run stays a pure function of its configuration and
//! files, as resume needs.

use std::path::Path;

use super::{LoaderError, ScanEntry};
use crate::evaluate::EXCLUDED_DEFAULT_DIAMETER_MM;
use crate::geometry::Geometry;
use crate::store::index::NoduleRow;

/// The findings of `path` in the selected `scans` as (scan, centre (z, y, x) on the
/// stored grid): those on scans outside the selection, outside their scan, or within the
/// radius of any row of `nodules` (annotated or excluded: LUNA16's hit rule, squared
/// distance below the squared radius, in world mm) are left out.
///
/// # Errors
/// [`LoaderError::Config`] naming the file for one that cannot be read as findings.
pub fn read(
    path: &Path,
    scans: &[ScanEntry],
    nodules: &[NoduleRow],
) -> Result<Vec<(usize, [f64; 3])>, LoaderError> {
    let findings = crate::annotations::read_predictions(path)
        .map_err(|e| LoaderError::Config(format!("hard negatives: {e}")))?;
    let mut out = Vec::new();
    for f in &findings {
        let Some(si) = scans.iter().position(|s| s.id == f.series_id) else { continue };
        let hits_nodule = nodules.iter().filter(|n| n.series_id == f.series_id).any(|n| {
            let d = n.diameter_mm.unwrap_or(EXCLUDED_DEFAULT_DIAMETER_MM);
            let d2: f64 = (0..3).map(|i| (f.world_xyz[i] - n.world_xyz[i]).powi(2)).sum();
            d2 < (d / 2.0).powi(2)
        });
        if hits_nodule {
            continue;
        }
        let volume = &scans[si].volume;
        let Some(zyx) = volume.geometry().world_to_index(f.world_xyz) else { continue };
        if Geometry::contains_index(volume.shape_zyx(), zyx) {
            out.push((si, zyx));
        }
    }
    Ok(out)
}
