//! Steps 6 to 9 of `ctstream demo`: train, predict, evaluate (through the commands
//! themselves), and the pictures.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use ctstream::picture::scan_slice::{self, SliceRequest};
use ctstream::store::Store;

use super::Args;
use crate::ExitError;
use crate::progress::Bars;

/// Step 9: the pictures. The slice through the largest nodule of the held-out scan with
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

/// Step 6: a small U-Net on 16x32x32 patches, through `ctstream train` itself. The scan
/// whose id hashes lowest is held out for validation (the `--val-fraction` just above its
/// hash), so even three scans give a validation set; it is validated once, after the last
/// step (a whole-scan validation costs about a minute on two cores), which chooses the
/// operating point `predict` then uses.
#[cfg(feature = "train")]
pub(super) fn train(
    a: &Args,
    store: &Store,
    store_path: &Path,
    run_dir: &Path,
    bars: &Bars,
) -> Result<bool, ExitError> {
    use clap::Parser;
    #[derive(Parser)]
    struct Train {
        #[command(flatten)]
        args: crate::train::Args,
    }
    if a.train_steps == 0 {
        return Ok(false);
    }
    let lowest =
        store.series_ids().map(ctstream::loader::split_fraction).fold(f64::INFINITY, f64::min);
    let val_fraction = if store.scans().len() >= 2 { lowest + 1e-9 } else { 0.0 };
    println!(
        "6. train a small 3D U-Net (width 0.25, 16x32x32 patches, batch 4, half of them negatives from the lungs and the body, Dice + BCE, cosine schedule) for {} steps on {}, one scan held out and predicted whole at the end to choose the operating point -> {}",
        a.train_steps,
        a.device,
        run_dir.display()
    );
    if run_dir.exists() {
        std::fs::remove_dir_all(run_dir)
            .with_context(|| format!("removing the previous demo run {}", run_dir.display()))?;
    }
    let (steps, vf, every) =
        (a.train_steps.to_string(), val_fraction.to_string(), a.train_steps.to_string());
    let argv = [
        "train",
        "--store",
        &store_path.to_string_lossy(),
        "--out",
        &run_dir.to_string_lossy(),
        "--model",
        "unet3d",
        "--width",
        "0.25",
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
    ];
    let t = Train::try_parse_from(argv)
        .map_err(|e| crate::ExitError(crate::Exit::Usage, anyhow!("demo training options: {e}")))?;
    crate::train::run(t.args, bars)?;
    Ok(store.scans().len() >= 2)
}

#[cfg(not(feature = "train"))]
pub(super) fn train(_: &Args, _: &Store, _: &Path, _: &Path, _: &Bars) -> Result<bool, ExitError> {
    println!("6. train: skipped (this ctstream was built without the `train` feature)");
    Ok(false)
}

/// Steps 7 and 8: predict the held-out scan whole with the trained network (tiles
/// overlapping by a quarter, to keep the demo short on two cores; `ctstream predict`
/// defaults to a half), then score the findings against the annotations.
#[cfg(feature = "train")]
pub(super) fn predict(
    a: &Args,
    store_path: &Path,
    run_dir: &Path,
    annotations: &Path,
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
        "7. predict the held-out scan whole: sliding window of 16x32x32 tiles, overlap 0.25, Gaussian blending -> {}",
        pred.display()
    );
    let (st, rd, pd) =
        (store_path.to_string_lossy(), run_dir.to_string_lossy(), pred.to_string_lossy());
    let argv = [
        "predict",
        "--store",
        &st,
        "--run",
        &rd,
        "--split",
        "val",
        "--out",
        &pd,
        "--overlap",
        "0.25",
        "--device",
        &a.device,
        "--backend",
        &a.backend,
    ];
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
pub(super) fn predict(_: &Args, _: &Path, _: &Path, _: &Path, _: &Bars) -> Result<(), ExitError> {
    Ok(())
}
