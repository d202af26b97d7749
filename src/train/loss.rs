//! Losses and the Dice metric on probabilities `p` and binary targets `t`, both
//! `[B, 1, D, H, W]`, summed over the whole batch.

use burn::prelude::*;

/// Smoothing added to numerator and denominator (keeps empty masks finite).
pub const EPS: f64 = 1.0;

/// Which loss to train with.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LossKind {
    /// `1 - (2 sum(p t) + eps) / (sum(p) + sum(t) + eps)`.
    Dice,
    /// Soft Dice plus mean binary cross-entropy.
    DiceBce,
    /// Tversky with alpha 0.3 (false positives) and beta 0.7 (false negatives).
    Tversky,
}

/// Soft Dice loss.
pub fn soft_dice<B: Backend>(p: Tensor<B, 5>, t: Tensor<B, 5>) -> Tensor<B, 1> {
    let inter = (p.clone() * t.clone()).sum();
    let denom = p.sum() + t.sum();
    (inter.mul_scalar(2.0).add_scalar(EPS) / denom.add_scalar(EPS)).neg().add_scalar(1.0)
}

/// Mean binary cross-entropy of probabilities (clamped to [1e-6, 1 - 1e-6]).
pub fn bce<B: Backend>(p: Tensor<B, 5>, t: Tensor<B, 5>) -> Tensor<B, 1> {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    let pos = t.clone() * p.clone().log();
    let neg = t.neg().add_scalar(1.0) * p.neg().add_scalar(1.0).log();
    (pos + neg).mean().neg()
}

/// Tversky loss: `1 - (TP + eps) / (TP + alpha FP + beta FN + eps)`.
pub fn tversky<B: Backend>(
    p: Tensor<B, 5>,
    t: Tensor<B, 5>,
    alpha: f64,
    beta: f64,
) -> Tensor<B, 1> {
    let tp = (p.clone() * t.clone()).sum();
    let fp = (p.clone() * t.clone().neg().add_scalar(1.0)).sum();
    let fneg = (p.neg().add_scalar(1.0) * t).sum();
    let denom = tp.clone() + fp.mul_scalar(alpha) + fneg.mul_scalar(beta);
    (tp.add_scalar(EPS) / denom.add_scalar(EPS)).neg().add_scalar(1.0)
}

/// The chosen loss.
pub fn loss<B: Backend>(kind: LossKind, p: Tensor<B, 5>, t: Tensor<B, 5>) -> Tensor<B, 1> {
    match kind {
        LossKind::Dice => soft_dice(p, t),
        LossKind::DiceBce => soft_dice(p.clone(), t.clone()) + bce(p, t),
        LossKind::Tversky => tversky(p, t, 0.3, 0.7),
    }
}

/// Dice of the prediction thresholded at `threshold` against the target; 1 when both are
/// empty.
pub fn dice_metric(p: &[f32], t: &[f32], threshold: f32) -> f64 {
    let (mut inter, mut sp, mut st) = (0u64, 0u64, 0u64);
    for (&a, &b) in p.iter().zip(t) {
        let (a, b) = (a >= threshold, b >= 0.5);
        inter += (a && b) as u64;
        sp += a as u64;
        st += b as u64;
    }
    if sp + st == 0 { 1.0 } else { 2.0 * inter as f64 / (sp + st) as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn t(v: Vec<f32>) -> Tensor<Flex, 5> {
        let n = v.len();
        Tensor::from_data(burn::tensor::TensorData::new(v, [1, 1, 1, 1, n]), &Default::default())
    }

    fn scalar(x: Tensor<Flex, 1>) -> f64 {
        x.into_scalar().elem()
    }

    /// Hand computations on 4 voxels (EPS = 1).
    #[test]
    fn losses_match_hand_computation() {
        // p = t = 1 everywhere: Dice loss 1 - (2*4 + 1)/(4 + 4 + 1) = 0.
        assert!(scalar(soft_dice(t(vec![1.0; 4]), t(vec![1.0; 4]))).abs() < 1e-6);
        // p = 0, t = 1: 1 - 1/(0 + 4 + 1) = 0.8.
        assert!((scalar(soft_dice(t(vec![0.0; 4]), t(vec![1.0; 4]))) - 0.8).abs() < 1e-6);
        // p = (0.5, 0.5, 0, 0), t = (1, 0, 1, 0): sum pt = 0.5, sum p = 1, sum t = 2:
        // 1 - (1 + 1)/(3 + 1) = 0.5.
        assert!(
            (scalar(soft_dice(t(vec![0.5, 0.5, 0.0, 0.0]), t(vec![1.0, 0.0, 1.0, 0.0]))) - 0.5)
                .abs()
                < 1e-6
        );
        // Tversky, same p and t: TP 0.5, FP 0.5, FN 1.5: 1 - 1.5/(0.5 + 0.15 + 1.05 + 1) = 0.444...
        let tv =
            scalar(tversky(t(vec![0.5, 0.5, 0.0, 0.0]), t(vec![1.0, 0.0, 1.0, 0.0]), 0.3, 0.7));
        assert!((tv - (1.0 - 1.5 / 2.7)).abs() < 1e-6, "{tv}");
        // BCE of p = 0.5 is ln 2 whatever t is.
        assert!(
            (scalar(bce(t(vec![0.5; 4]), t(vec![1.0, 0.0, 1.0, 0.0]))) - std::f64::consts::LN_2)
                .abs()
                < 1e-6
        );
    }

    #[test]
    fn dice_metric_thresholds() {
        // Prediction (0.9, 0.6, 0.4, 0.1) -> (1, 1, 0, 0); target (1, 0, 1, 0): 2*1/(2+2) = 0.5.
        assert_eq!(dice_metric(&[0.9, 0.6, 0.4, 0.1], &[1.0, 0.0, 1.0, 0.0], 0.5), 0.5);
        assert_eq!(dice_metric(&[0.1; 3], &[0.0; 3], 0.5), 1.0);
        assert_eq!(dice_metric(&[0.9; 3], &[0.0; 3], 0.5), 0.0);
    }
}
