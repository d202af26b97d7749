//! The thresholds and sizes of the lung mask's method ([`super::lungs`]) and of its airway
//! step ([`super::airway`]), apart from both so that each reads them without importing
//! the other.

use serde::Serialize;

/// The thresholds and sizes of the method (module doc), as ingest uses them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LungParams {
    /// Voxels below this are air (and lung): -400 HU.
    pub air_below_hu: i16,
    /// Voxels above this are parenchyma, not gas: -950 HU.
    pub parenchyma_above_hu: i16,
    /// Voxels at or below this are gas: -1000 HU.
    pub gas_at_most_hu: i16,
    /// A lung component's least share of parenchyma among its interior voxels: 0.6.
    pub min_parenchyma_share: f64,
    /// A component touching the in-plane border with more gas than this share is outside
    /// air: 0.2.
    pub max_border_gas_share: f64,
    /// A lung component's least volume: 5 ml.
    pub min_component_ml: f64,
    /// The largest cross-section of an airway island ([`super::airway`]): 800 mm² (an
    /// adult trachea is up to about 25 mm across, 500 mm², and a partial-volume rim).
    pub airway_max_area_mm2: f64,
    /// The least share of gas (at or below [`LungParams::parenchyma_above_hu`]) of the
    /// trachea's seed island: 0.5.
    pub airway_min_gas_share: f64,
    /// The largest distance of the trachea's seed from the body's midline: 30 mm.
    pub airway_max_offset_mm: f64,
    /// How far below the mask's highest slice the trachea's seed is looked for: 40 mm.
    pub airway_seed_depth_mm: f64,
    /// How far below the carina the main bronchi are followed: 40 mm.
    pub airway_below_carina_mm: f64,
}

impl Default for LungParams {
    fn default() -> Self {
        LungParams {
            air_below_hu: -400,
            parenchyma_above_hu: -950,
            gas_at_most_hu: -1000,
            min_parenchyma_share: 0.6,
            max_border_gas_share: 0.2,
            min_component_ml: 5.0,
            airway_max_area_mm2: 800.0,
            airway_min_gas_share: 0.5,
            airway_max_offset_mm: 30.0,
            airway_seed_depth_mm: 40.0,
            airway_below_carina_mm: 40.0,
        }
    }
}
