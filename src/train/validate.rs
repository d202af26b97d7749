//! Validation: the model, without gradients, on a fixed set of held-out patches.
//!
//! The validation loader selects the held-out series (`Split::Val`) and always delivers
//! epoch 0, so every validation of a run sees the same patches. Positive patches give the
//! Dice of the thresholded prediction, pooled over all of them (twice the summed overlap
//! over the summed sizes, so small nodules weigh by their voxels); negative patches give
//! the number of voxels predicted as nodule where the mask is empty.

use std::time::Instant;

use burn::prelude::*;
use serde::Serialize;

use super::{LossKind, Segmenter, batch_tensors, loss};
use crate::annotations::Annotation;
use crate::loader::{Loader, LoaderError};
use crate::predict::PredictError;
use crate::predict::operating::{self, OperatingPoint};
use crate::predict::run::PredictConfig;
use crate::store::Store;
use burn::tensor::TensorData;

/// One validation (a row of `val.csv`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ValRecord {
    /// Training steps completed when it ran.
    pub step: usize,
    /// Mean loss over the validation batches.
    pub loss: f64,
    /// Dice of the prediction thresholded at 0.5 on positive patches, pooled.
    pub dice: f64,
    /// Mean number of false-positive voxels per negative patch.
    pub fp_voxels_per_negative: f64,
    /// Positive patches seen.
    pub positives: usize,
    /// Negative patches seen.
    pub negatives: usize,
    /// Seconds it took.
    pub seconds: f64,
    /// On whole held-out scans ([`validate_scans`]): the operating point chosen, with its
    /// CPM, sensitivity and false positives per scan; None without scan validation.
    pub scans: Option<OperatingPoint>,
    /// Seconds the scan validation took.
    pub scan_seconds: f64,
}

impl ValRecord {
    /// Header of `val.csv`.
    pub const HEADER: &'static str = "step,loss,dice,fp_voxels_per_negative,positives,negatives,seconds,cpm,sensitivity,fps_per_scan,threshold,min_voxels,merge_mm,nodules,scan_seconds,score";

    /// The record as a `val.csv` row (the scan columns empty without scan validation).
    pub fn csv_row(&self) -> String {
        let scans = match &self.scans {
            Some(o) => format!(
                "{},{},{},{},{},{},{},{},{}",
                o.cpm,
                o.sensitivity,
                o.fps_per_scan,
                o.post.threshold,
                o.post.min_voxels,
                o.post.merge_mm,
                o.nodules,
                self.scan_seconds,
                o.post.score
            ),
            None => ",,,,,,,,".to_string(),
        };
        format!(
            "{},{},{},{},{},{},{},{scans}",
            self.step,
            self.loss,
            self.dice,
            self.fp_voxels_per_negative,
            self.positives,
            self.negatives,
            self.seconds
        )
    }
}

/// Voxel counts pooled over patches.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    overlap: u64,
    predicted: u64,
    truth: u64,
    fp_negative: u64,
    positives: usize,
    negatives: usize,
}

impl Counts {
    /// Adds one patch: probabilities `p`, mask `t`.
    fn add(&mut self, p: &[f32], t: &[f32], positive: bool, threshold: f32) {
        let (mut o, mut sp, mut st, mut fp) = (0u64, 0u64, 0u64, 0u64);
        for (&a, &b) in p.iter().zip(t) {
            let (a, b) = (a >= threshold, b >= 0.5);
            o += (a && b) as u64;
            sp += a as u64;
            st += b as u64;
            fp += (a && !b) as u64;
        }
        if positive {
            self.overlap += o;
            self.predicted += sp;
            self.truth += st;
            self.positives += 1;
        } else {
            self.fp_negative += fp;
            self.negatives += 1;
        }
    }

    fn dice(&self) -> f64 {
        let denom = self.predicted + self.truth;
        if denom == 0 { 1.0 } else { 2.0 * self.overlap as f64 / denom as f64 }
    }
}

/// Runs `model` over every batch of epoch 0 of `loader` and pools the counts.
///
/// # Errors
/// [`LoaderError`] when a batch cannot be built.
pub fn validate<B: Backend, M: Segmenter<B>>(
    model: &M,
    loader: &Loader,
    loss_kind: LossKind,
    step: usize,
    device: &B::Device,
) -> Result<ValRecord, LoaderError> {
    let t0 = Instant::now();
    let mut counts = Counts::default();
    let (mut loss_sum, mut batches) = (0.0, 0usize);
    for batch in loader.epoch(0) {
        let batch = batch?;
        let (x, y) = batch_tensors::<B>(&batch, device);
        let p = model.predict(x);
        let l: f64 = loss::loss(loss_kind, p.clone(), y).into_scalar().elem();
        loss_sum += l;
        batches += 1;
        let probs: Vec<f32> = p.into_data().convert::<f32>().to_vec().unwrap_or_default();
        let n = batch.shape[2] * batch.shape[3] * batch.shape[4];
        let masks = batch.masks_f32();
        for (i, meta) in batch.patches.iter().enumerate() {
            let r = i * n..(i + 1) * n;
            if let (Some(pp), Some(m)) = (probs.get(r.clone()), masks.get(r)) {
                counts.add(pp, m, meta.positive, 0.5);
            }
        }
        drop(masks);
        loader.recycle(batch);
    }
    Ok(ValRecord {
        step,
        loss: loss_sum / batches.max(1) as f64,
        dice: counts.dice(),
        fp_voxels_per_negative: counts.fp_negative as f64 / counts.negatives.max(1) as f64,
        positives: counts.positives,
        negatives: counts.negatives,
        seconds: t0.elapsed().as_secs_f64(),
        scans: None,
        scan_seconds: 0.0,
    })
}

/// Validation on whole held-out scans, as users judge a model: each scan predicted with
/// the sliding window in its lung region, the findings of every post-processing
/// ([`operating::grid`]) scored by the LUNA16 FROC, the operating point chosen
/// ([`operating::choose`]).
#[derive(Debug, Clone)]
pub struct ScanValidation<'a> {
    /// The store holding the scans.
    pub store: &'a Store,
    /// The held-out scans.
    pub series: Vec<String>,
    /// The sliding window (its `post` is not used: every combination is tried).
    pub predict: PredictConfig,
    /// Annotated nodules of the store (the truth; those of other scans are ignored).
    pub annotations: Vec<Annotation>,
    /// Excluded findings of the store.
    pub excluded: Vec<Annotation>,
}

/// What [`validate_scans`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct ScanValResult {
    /// The operating point chosen, with the CPM, sensitivity and false positives of its
    /// findings.
    pub point: OperatingPoint,
    /// Seconds it took.
    pub seconds: f64,
}

/// Predicts the held-out scans of `v` with `model` and chooses the operating point.
///
/// # Errors
/// [`PredictError`] when a scan cannot be read or the model fails.
pub fn validate_scans<B: Backend, M: Segmenter<B> + Sync>(
    model: &M,
    v: &ScanValidation<'_>,
    step: usize,
    device: &B::Device,
) -> Result<ScanValResult, PredictError>
where
    B::Device: Sync,
{
    let t0 = Instant::now();
    let net = |x: &[f32], shape: [usize; 5]| -> Result<Vec<f32>, String> {
        let t = Tensor::<B, 5>::from_data(TensorData::new(x.to_vec(), shape), device);
        model
            .predict(t)
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|e| format!("reading the prediction back: {e:?}"))
    };
    let mut per_scan = Vec::with_capacity(v.series.len());
    for id in &v.series {
        let p = crate::predict::run::predict_scan(v.store, id, &v.predict, net, &())?;
        let c_order = p.probabilities.as_standard_layout();
        let flat = c_order.as_slice().unwrap_or(&[]);
        let d = p.probabilities.dim();
        per_scan.push(operating::detections_per_combination(
            id,
            flat,
            [d.0, d.1, d.2],
            &p.geometry,
            p.roi.as_ref(),
        ));
    }
    let overlap = v.predict.window.overlap;
    let (point, _) =
        operating::choose(&v.series, &per_scan, &v.annotations, &v.excluded, step, overlap);
    Ok(ScanValResult { point, seconds: t0.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two positive patches of 4 voxels and one negative, counted by hand:
    /// patch 1: predicted {0,1}, truth {1,2} -> overlap 1, sizes 2 + 2;
    /// patch 2: predicted {}, truth {3} -> overlap 0, sizes 0 + 1;
    /// pooled Dice = 2 * 1 / (2 + 3) = 0.4. Negative: predicted {0, 2, 3}, truth {3}
    /// (a nodule's edge) -> 2 false-positive voxels.
    #[test]
    fn pooled_counts_match_hand_values() {
        let mut c = Counts::default();
        c.add(&[0.9, 0.6, 0.1, 0.0], &[0.0, 1.0, 1.0, 0.0], true, 0.5);
        c.add(&[0.2, 0.2, 0.2, 0.49], &[0.0, 0.0, 0.0, 1.0], true, 0.5);
        c.add(&[0.5, 0.0, 0.7, 0.8], &[0.0, 0.0, 0.0, 1.0], false, 0.5);
        assert_eq!(
            (c.overlap, c.predicted, c.truth, c.fp_negative, c.positives, c.negatives),
            (1, 2, 3, 2, 2, 1)
        );
        assert!((c.dice() - 0.4).abs() < 1e-15);
        assert_eq!(Counts::default().dice(), 1.0);
    }
}
