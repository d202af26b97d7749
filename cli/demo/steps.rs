//! Steps 6 to 9 of `ctstream demo`: train, predict, evaluate (through the commands
//! themselves), and the pictures.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use ctstream::picture::scan_slice::{self, SliceRequest};
use ctstream::store::Store;

use super::Args;
use crate::ExitError;
use crate::progress::Bars;

/// Step 9: the pictures. The slice through the largest nodule of the test scan with
/// the predicted (at the operating point's threshold) and annotated masks, whole and as a 64 mm close-up (without a
/// prediction: of the first scan, annotated only), the training curves, and the FROC
/// curve `evaluate` drew.
pub(super) fn pictures(
    a: &Args,
    store: &Store,
    run_dir: &Path,
    predicted: bool,
) -> Result<Vec<(&'static str, PathBuf)>, ExitError> {
    let dir = a.out.join("pictures");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    println!("9. draw the pictures -> {}", dir.display());
    let pred = a.out.join("pred");
    let series = if predicted {
        let list = pred.join("series.txt");
        let ids = ctstream::annotations::read_series_list(&list)?;
        ids.into_iter().next().ok_or_else(|| anyhow!("{}: no scan listed", list.display()))?
    } else {
        store
            .series_ids()
            .next()
            .map(String::from)
            .ok_or_else(|| anyhow!("the store holds no scan"))?
    };
    // The predicted mask at the operating point chosen on validation, as `predict` used it.
    let operating = if predicted {
        ctstream::predict::operating::OperatingPoint::read(&run_dir.join("checkpoints/best"))
            .map_err(|e| anyhow!(e))?
    } else {
        None
    };
    let mut out = Vec::new();
    for (name, what, crop_mm) in
        [("slice.png", "slice", None), ("nodule.png", "nodule close up", Some(64.0))]
    {
        let path = dir.join(name);
        let req = SliceRequest {
            pred: predicted.then(|| pred.clone()),
            crop_mm,
            threshold: operating.map_or(0.5, |o| o.post.threshold),
            ..SliceRequest::new(&series)
        };
        let drawn = scan_slice::draw(store, &req)?;
        drawn.picture.save(&path)?;
        println!("   {} (slice {}{})", path.display(), drawn.z, drawn.why);
        out.push((what, path));
    }
    if run_dir.join("metrics.csv").exists() {
        let curves = dir.join("curves.png");
        print!("   ");
        crate::plot::run(crate::plot::Args {
            run: run_dir.to_path_buf(),
            out: Some(curves.clone()),
        })?;
        out.push(("training curves", curves));
    }
    let froc = a.out.join("eval/froc.png");
    if predicted && froc.exists() {
        out.push(("FROC curve", froc));
    }
    Ok(out)
}

/// The demo's split of the store's scans by the hash `train --val-fraction` uses: the
/// lowest is validated on (its whole-scan CPM chooses the checkpoint and the operating
/// point), the highest is the test scan that step 7 predicts and step 8 scores, the rest
/// are trained on. With two scans the one held out is both (and the demo says so).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(not(feature = "train"), allow(dead_code))]
pub(super) struct DemoSplit {
    /// The scans `train` sees (training and validation).
    pub train_and_val: Vec<String>,
    /// The `--val-fraction` that holds out exactly the validation scan.
    pub val_fraction: f64,
    /// The test scans.
    pub test: Vec<String>,
    /// Whether the test scan is also the validation scan.
    pub test_is_val: bool,
}

#[cfg_attr(not(feature = "train"), allow(dead_code))]
impl DemoSplit {
    /// The split of `ids`; None for fewer than two scans.
    pub fn of(ids: &[&str]) -> Option<DemoSplit> {
        let mut by_hash: Vec<(f64, &str)> =
            ids.iter().map(|id| (ctstream::loader::split_fraction(id), *id)).collect();
        by_hash.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(b.1)));
        let (lowest, val) = *by_hash.first()?;
        if by_hash.len() < 2 {
            return None;
        }
        let val_fraction = lowest + 1e-9;
        if by_hash.len() == 2 {
            let all = by_hash.iter().map(|(_, id)| id.to_string()).collect();
            return Some(DemoSplit {
                train_and_val: all,
                val_fraction,
                test: vec![val.to_string()],
                test_is_val: true,
            });
        }
        let (_, test) = by_hash.pop()?;
        Some(DemoSplit {
            train_and_val: by_hash.iter().map(|(_, id)| id.to_string()).collect(),
            val_fraction,
            test: vec![test.to_string()],
            test_is_val: false,
        })
    }
}

/// Step 6: a small U-Net on 16x32x32 patches, through `ctstream train` itself, on the
/// demo's split ([`DemoSplit`]); validated once, after the last step (a whole-scan
/// validation costs a minute and a half on two cores), which chooses the operating point
/// `predict` then uses. Returns the test scans (None: nothing trained).
#[cfg(feature = "train")]
pub(super) fn train(
    a: &Args,
    store: &Store,
    store_path: &Path,
    run_dir: &Path,
    bars: &Bars,
) -> Result<Option<DemoSplit>, ExitError> {
    use clap::Parser;
    #[derive(Parser)]
    struct Train {
        #[command(flatten)]
        args: crate::train::Args,
    }
    if a.train_steps == 0 {
        return Ok(None);
    }
    let ids: Vec<&str> = store.series_ids().collect();
    let Some(split) = DemoSplit::of(&ids) else {
        println!("6. train: skipped (one scan: nothing to hold out; give --scans 3 or more)");
        return Ok(None);
    };
    println!(
        "6. train a small 3D U-Net (width {DEMO_WIDTH}, 16x32x32 patches, batch 4, half of them negatives (train's default: from the lungs, the tissue in and near them, the body), Dice + BCE, cosine schedule) for {} steps on {}, on {} scans; one of them held out and predicted whole at the end to choose the operating point -> {}",
        a.train_steps,
        a.device,
        split.train_and_val.len(),
        run_dir.display()
    );
    if run_dir.exists() {
        std::fs::remove_dir_all(run_dir)
            .with_context(|| format!("removing the previous demo run {}", run_dir.display()))?;
    }
    let (steps, vf, every) =
        (a.train_steps.to_string(), split.val_fraction.to_string(), a.train_steps.to_string());
    let mut argv: Vec<String> = [
        "train",
        "--store",
        &store_path.to_string_lossy(),
        "--out",
        &run_dir.to_string_lossy(),
        "--model",
        "unet3d",
        "--width",
        DEMO_WIDTH,
        "--patch",
        "16,32,32",
        "--batch-size",
        "4",
        "--steps",
        &steps,
        "--lr",
        "3e-3",
        "--loss",
        "dice-bce",
        "--positive-share",
        "0.5",
        "--lr-schedule",
        "cosine",
        "--jitter",
        "3,3,3",
        "--val-fraction",
        &vf,
        "--val-every",
        &every,
        "--val-batches",
        "4",
        "--seed",
        &a.seed.to_string(),
        "--device",
        &a.device,
        "--backend",
        &a.backend,
        "--series",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(split.train_and_val.iter().cloned());
    let t = Train::try_parse_from(argv)
        .map_err(|e| crate::ExitError(crate::Exit::Usage, anyhow!("demo training options: {e}")))?;
    crate::train::run(t.args, bars)?;
    Ok(Some(split))
}

/// The demo network's channel width multiplier.
#[cfg(feature = "train")]
const DEMO_WIDTH: &str = "0.125";

#[cfg(not(feature = "train"))]
pub(super) fn train(
    _: &Args,
    _: &Store,
    _: &Path,
    _: &Path,
    _: &Bars,
) -> Result<Option<DemoSplit>, ExitError> {
    println!("6. train: skipped (this ctstream was built without the `train` feature)");
    Ok(None)
}

/// Steps 7 and 8: predict the test scans of `split` whole with the trained network (tiles
/// overlapping as on validation, where the operating point was chosen: `predict` takes
/// the operating point's overlap), then score the findings against the annotations.
#[cfg(feature = "train")]
pub(super) fn predict(
    a: &Args,
    store_path: &Path,
    run_dir: &Path,
    annotations: &Path,
    split: &DemoSplit,
    bars: &Bars,
) -> Result<(), ExitError> {
    use clap::Parser;
    #[derive(Parser)]
    struct Predict {
        #[command(flatten)]
        args: crate::predict::Args,
    }
    #[derive(Parser)]
    struct Evaluate {
        #[command(flatten)]
        args: crate::evaluate::Args,
    }
    let usage = |e: clap::Error| crate::ExitError(crate::Exit::Usage, anyhow!("demo options: {e}"));
    let pred = a.out.join("pred");
    println!(
        "7. predict the test scan{} whole ({}): sliding window of 16x32x32 tiles, overlap {} as on validation, Gaussian blending -> {}",
        if split.test.len() == 1 { "" } else { "s" },
        if split.test_is_val {
            "the validation scan: with two scans there is no other, so its CPM is optimistic"
        } else {
            "neither trained nor validated on"
        },
        ctstream::train::config::VAL_OVERLAP,
        pred.display()
    );
    let (st, rd, pd) =
        (store_path.to_string_lossy(), run_dir.to_string_lossy(), pred.to_string_lossy());
    let mut argv: Vec<String> = [
        "predict",
        "--store",
        &st,
        "--run",
        &rd,
        "--out",
        &pd,
        "--device",
        &a.device,
        "--backend",
        &a.backend,
        "--series",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(split.test.iter().cloned());
    crate::predict::run(Predict::try_parse_from(argv).map_err(usage)?.args, bars)?;
    let eval = a.out.join("eval");
    println!(
        "8. evaluate the findings against the annotations (LUNA16 FROC, 200 bootstrap samples) -> {}",
        eval.display()
    );
    let (an, cands, list, ev) = (
        annotations.to_string_lossy(),
        pred.join("candidates.csv"),
        pred.join("series.txt"),
        eval.to_string_lossy(),
    );
    let (cands, list) = (cands.to_string_lossy(), list.to_string_lossy());
    let argv = [
        "evaluate",
        "--annotations",
        &an,
        "--predictions",
        &cands,
        "--series-list",
        &list,
        "--bootstrap",
        "200",
        "--out",
        &ev,
    ];
    crate::evaluate::run(Evaluate::try_parse_from(argv).map_err(usage)?.args)
}

#[cfg(not(feature = "train"))]
pub(super) fn predict(
    _: &Args,
    _: &Path,
    _: &Path,
    _: &Path,
    _: &DemoSplit,
    _: &Bars,
) -> Result<(), ExitError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::DemoSplit;
    use ctstream::loader::split_fraction;

    /// Validation on the lowest hash, test on the highest, the rest trained on; with two
    /// scans the held-out one is both; one scan gives no split. The hashes are
    /// `split_fraction`'s, ordered here by hand.
    #[test]
    fn the_lowest_hash_validates_and_the_highest_tests() {
        let ids = ["a.1", "b.2", "c.3", "d.4"];
        let mut by: Vec<&str> = ids.to_vec();
        by.sort_by(|a, b| split_fraction(a).total_cmp(&split_fraction(b)));
        let s = DemoSplit::of(&ids).unwrap();
        assert_eq!(s.test, vec![by[3].to_string()]);
        assert!(!s.test_is_val);
        let mut kept = s.train_and_val.clone();
        kept.sort();
        let mut want: Vec<String> = by[..3].iter().map(|v| v.to_string()).collect();
        want.sort();
        assert_eq!(kept, want);
        // Exactly the lowest falls below the fraction.
        let below: Vec<&&str> =
            ids.iter().filter(|id| split_fraction(id) < s.val_fraction).collect();
        assert_eq!(below, vec![&by[0]]);
        let two = DemoSplit::of(&ids[..2]).unwrap();
        assert!(two.test_is_val && two.train_and_val.len() == 2);
        assert_eq!(two.test.len(), 1);
        assert!(split_fraction(&two.test[0]) < two.val_fraction);
        assert_eq!(DemoSplit::of(&ids[..1]), None);
    }
}
