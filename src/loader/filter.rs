//! Which of the index's nodules positive patches are centred on: every one that is not an
//! excluded finding, or only those LIDC's readers agree on (`--min-readers`) or score as
//! suspicious (`--min-malignancy`).

use serde::{Deserialize, Serialize};

use crate::store::index::NoduleRow;

/// Filters on a nodule row; every filter set must hold. A row without the value a filter
/// asks about (a nodule of annotations.csv has no readers and no scores) fails that filter.
///
/// ```
/// use ctstream::loader::NoduleFilter;
/// let f: NoduleFilter = NoduleFilter { min_readers: Some(3), min_malignancy: Some(4.0) };
/// assert!(f.validate().is_ok());
/// assert!(NoduleFilter { min_readers: Some(5), ..Default::default() }.validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NoduleFilter {
    /// Only nodules that at least this many readers annotated (1 to 4; LIDC nodules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_readers: Option<u8>,
    /// Only nodules whose readers' median malignancy is at least this (1 to 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_malignancy: Option<f64>,
}

/// The place of malignancy among the scores ([`crate::store::lidc::CHARACTERISTICS`]).
const MALIGNANCY: usize = 8;

impl NoduleFilter {
    /// Whether no filter is set.
    pub fn is_none(&self) -> bool {
        *self == NoduleFilter::default()
    }

    /// Checks the values, naming the option.
    ///
    /// # Errors
    /// The option and its value, when out of range.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(n) = self.min_readers
            && !(1..=4).contains(&n)
        {
            return Err(format!("min_readers {n}: LIDC has 1 to 4 readers per nodule"));
        }
        if let Some(m) = self.min_malignancy
            && !(1.0..=5.0).contains(&m)
        {
            return Err(format!("min_malignancy {m}: malignancy scores run from 1 to 5"));
        }
        Ok(())
    }

    /// Whether nodule row `n` passes.
    pub fn keeps(&self, n: &NoduleRow) -> bool {
        self.min_readers.is_none_or(|m| n.readers.is_some_and(|r| r >= i32::from(m)))
            && self
                .min_malignancy
                .is_none_or(|m| n.characteristics[MALIGNANCY].is_some_and(|v| v >= m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_without_the_value_asked_about_fail() {
        let row = |readers: Option<i32>, malignancy: Option<f64>| NoduleRow {
            series_id: "s".into(),
            nodule_id: 0,
            world_xyz: [0.0; 3],
            voxel_zyx: [0.0; 3],
            diameter_mm: Some(5.0),
            radius_zyx: None,
            inside: true,
            source: "lidc",
            in_lung_region: None,
            readers,
            volume_ml: None,
            max_diameter_mm: None,
            characteristics: [None, None, None, None, None, None, None, None, malignancy],
        };
        let f = NoduleFilter { min_readers: Some(3), min_malignancy: Some(4.0) };
        assert!(f.keeps(&row(Some(3), Some(4.0))));
        assert!(f.keeps(&row(Some(4), Some(4.5))));
        assert!(!f.keeps(&row(Some(2), Some(5.0))));
        assert!(!f.keeps(&row(Some(4), Some(3.5))));
        assert!(!f.keeps(&row(None, None)), "a CSV nodule has neither");
        assert!(NoduleFilter::default().keeps(&row(None, None)));
        assert_eq!(CHARACTERISTICS_CHECK, "malignancy");
    }

    const CHARACTERISTICS_CHECK: &str = crate::store::lidc::CHARACTERISTICS[MALIGNANCY];
}
