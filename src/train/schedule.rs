//! Learning-rate schedules, as pure functions of the step, so a resumed run gets the
//! same rate at every step as an uninterrupted one without saving scheduler state.

use serde::{Deserialize, Serialize};

/// How the learning rate changes over a run.
///
/// ```
/// use ctstream::train::LrSchedule;
/// let s = LrSchedule::Cosine { warmup: 10, min_factor: 0.0 };
/// assert_eq!(s.lr(1e-3, 0, 110), 1e-4);            // warm-up: 1/10 of the rate at step 0
/// assert_eq!(s.lr(1e-3, 10, 110), 1e-3);           // the full rate when warm-up ends
/// assert!((s.lr(1e-3, 60, 110) - 5e-4).abs() < 1e-12); // half-way down the cosine
/// assert_eq!(LrSchedule::Constant.lr(1e-3, 77, 110), 1e-3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// Linear warm-up over `warmup` steps (from `base / warmup` to `base`), then a cosine
    /// from `base` down to `base * min_factor` at the last step.
    Cosine {
        /// Warm-up steps (0: none).
        warmup: usize,
        /// The final rate as a fraction of the base rate.
        min_factor: f64,
    },
}

impl LrSchedule {
    /// The rate for 0-based step `step` of a run of `total` steps with base rate `base`.
    pub fn lr(&self, base: f64, step: usize, total: usize) -> f64 {
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Cosine { warmup, min_factor } => {
                if step < warmup {
                    return base * (step + 1) as f64 / warmup as f64;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let t = ((step - warmup) as f64 / span).min(1.0);
                let floor = base * min_factor;
                floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand values: base 1e-2, warm-up 4, 14 steps, floor 0.1 (1e-3). Warm-up steps 0..3
    /// get 1/4, 2/4, 3/4, 4/4 of the base; then t = (step - 4) / 10, so step 9 (t = 0.5)
    /// sits half-way: 1e-3 + 9e-3 * 0.5 = 5.5e-3; the last step (13, t = 0.9) gets
    /// 1e-3 + 9e-3 * 0.5 * (1 + cos(0.9 pi)) = 1e-3 + 4.5e-3 * 0.0489435 = 1.2202e-3.
    #[test]
    fn cosine_matches_hand_values() {
        let s = LrSchedule::Cosine { warmup: 4, min_factor: 0.1 };
        let lr = |k| s.lr(1e-2, k, 14);
        assert_eq!([lr(0), lr(1), lr(2), lr(3)], [2.5e-3, 5e-3, 7.5e-3, 1e-2]);
        assert!((lr(4) - 1e-2).abs() < 1e-15);
        assert!((lr(9) - 5.5e-3).abs() < 1e-12);
        assert!((lr(13) - 1.220_246e-3).abs() < 1e-8, "{}", lr(13));
        // Never below the floor, even past the end (a run extended on resume).
        assert!((s.lr(1e-2, 100, 14) - 1e-3).abs() < 1e-15);
    }
}
