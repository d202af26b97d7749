//! `ctstream train`: train a U-Net or V-Net on a store (cargo feature `train`), with
//! validation, checkpoints, `--resume` and Ctrl-C.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, anyhow};
use burn::tensor::backend::AutodiffBackend;
use ctstream::progress::Progress;
use ctstream::store::Store;
use ctstream::train::device::OnBackend;
use ctstream::train::execute::{Executed, execute};
use ctstream::train::run::{self, Prepared, ResumeChanges, RunError};
use ctstream::train::{self, Checkpoint, Observer, Position, StepRecord, ValRecord};

use crate::progress::Bars;
use crate::{Exit, ExitError};

mod args;

pub use args::Args;
use args::{fixed_on_resume, settings};

pub(super) fn usage(msg: String) -> ExitError {
    ExitError(Exit::Usage, anyhow!(msg))
}

/// A library error as the CLI's: settings are usage errors (exit 2), the rest failures.
fn run_err(e: RunError) -> ExitError {
    match e {
        RunError::Config(_) => ExitError(Exit::Usage, e.into()),
        RunError::Loader(l) => crate::loader_exit(l),
        other => other.into(),
    }
}

/// Set by the first Ctrl-C; the loop checks it after each step.
static STOP: AtomicBool = AtomicBool::new(false);

fn install_ctrl_c(bars: &Bars) {
    let bars = bars.clone();
    let r = ctrlc::set_handler(move || {
        if STOP.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: quitting without a checkpoint");
            std::process::exit(130);
        }
        bars.println("Ctrl-C: stopping after this step and writing a checkpoint (Ctrl-C again to quit at once)");
    });
    if let Err(e) = r {
        eprintln!("warning: Ctrl-C will not write a checkpoint ({e})");
    }
}

pub fn run(a: Args, bars: &Bars) -> Result<(), ExitError> {
    // On resume, the run folder and its configuration (read once).
    let resumed = match &a.resume {
        Some(dir) => Some((dir.clone(), run::read_config(dir).map_err(run_err)?)),
        None => None,
    };
    let backend = run::backend_for(a.backend, resumed.as_ref().map(|(_, c)| c));
    let engine = train::device::resolve(a.device, backend)
        .map_err(|e| usage(format!("--backend {backend} --device {}: {e}", a.device)))?;
    let opened = train::device::open(engine).map_err(|e| anyhow!("--device: {e}"))?;
    let (run_dir, cfg, resume) = match resumed {
        None => {
            let out = a
                .out
                .clone()
                .ok_or_else(|| usage("--out RUN_DIR or --resume RUN_DIR is required".into()))?;
            let store_path = a
                .store
                .clone()
                .ok_or_else(|| usage("--store STORE is required for a new run".into()))?;
            let store = Store::open(&store_path)
                .with_context(|| format!("opening {}", store_path.display()))?;
            let cfg = settings(&a)?
                .into_config(&store_path, &store, &a.device.to_string())
                .map_err(run_err)?;
            (out, cfg, None)
        }
        Some((dir, previous)) => {
            let fixed = fixed_on_resume(&a);
            if !fixed.is_empty() {
                return Err(usage(format!(
                    "--resume continues the run as configured in {}; {} cannot change (start a new run instead)",
                    dir.join("config.json").display(),
                    fixed.join(", ")
                )));
            }
            let changes = ResumeChanges {
                store: a.store.clone(),
                steps: a.steps,
                epochs: a.epochs,
                device: Some(a.device.to_string()),
                workers: a.workers,
                cache_bytes: a.cache.map(|c| c.saturating_mul(1 << 20)),
                val_every: a.val_every,
                checkpoint_every: a.checkpoint_every,
                keep_checkpoints: a.keep_checkpoints,
            };
            let before = previous.last_engine();
            let (cfg, ck) = run::resume_config(&dir, previous, &changes).map_err(run_err)?;
            if before != engine.to_string() {
                bars.println(&format!("note: the run last trained on {before}, now on {engine}: the steps from here are not bit for bit those an uninterrupted run on {before} would take"));
            }
            (dir, cfg, Some(ck))
        }
    };
    let store = crate::open_store(&cfg.store, &a.disk_cache)?;
    let prepared = run::prepare(&run_dir, cfg, resume.as_ref(), &store, &engine.to_string())
        .map_err(|e| match (&e, &a.out) {
            (RunError::Run { .. }, Some(out)) if resume.is_none() => {
                usage(format!("--out {}: {e}; continue it with --resume {0}", out.display()))
            }
            _ => run_err(e),
        })?;
    for n in &prepared.notes {
        bars.println(&format!("note: {n}"));
    }
    let mut prepared = prepared;
    let (steps, batch_size) = (prepared.config.steps, prepared.config.loader.batch_size);
    let through = resume.as_ref().map_or(0, |c| c.state.position.step);
    let mut reporter = Reporter { bars, last_val: None, steps };
    install_ctrl_c(bars);
    if let Some(ck) = &resume {
        let p = ck.state.position;
        bars.println(&format!(
            "resuming {} at step {} (epoch {}, batch {}) of {}",
            run_dir.display(),
            p.step,
            p.epoch,
            p.next_batch,
            steps
        ));
    }
    bars.start("training", Some(steps as u64));
    bars.advance(through as u64);
    bars.println(&format!("training on {engine}"));
    let done = opened
        .run(RunOn {
            store: &store,
            run_dir: &run_dir,
            prepared: &mut prepared,
            resume: resume.as_ref(),
            reporter: &mut reporter,
        })
        .map_err(run_err)?;
    bars.finish();
    println!("{}", done.summary(batch_size, &run_dir));
    if done.stopped {
        return Err(ExitError(
            Exit::Interrupted,
            anyhow!(
                "interrupted at step {} of {steps}; continue with: ctstream train --resume {}",
                done.position.step,
                run_dir.display()
            ),
        ));
    }
    Ok(())
}

/// The prepared run, trained on the opened backend (`train::execute`).
struct RunOn<'a, 'b> {
    store: &'a ctstream::store::Store,
    run_dir: &'a Path,
    prepared: &'a mut Prepared,
    resume: Option<&'a Checkpoint>,
    reporter: &'a mut Reporter<'b>,
}

impl OnBackend for RunOn<'_, '_> {
    type Output = Result<Executed, RunError>;
    fn run<B: AutodiffBackend>(self, device: B::Device) -> Self::Output {
        execute::<B>(
            &device,
            self.store,
            self.run_dir,
            self.prepared,
            self.resume,
            Some(&STOP),
            self.reporter,
        )
    }
}

/// Drives the progress bar (the library writes the logs).
struct Reporter<'a> {
    bars: &'a Bars,
    last_val: Option<ValRecord>,
    steps: usize,
}

impl Observer for Reporter<'_> {
    fn step(&mut self, r: &StepRecord) {
        self.bars.advance(1);
        let val = self.last_val.map(|v| format!(", val Dice {:.3}", v.dice)).unwrap_or_default();
        self.bars.set_message(&format!(
            "loss {:.3} Dice {:.3}{val}, wait {:.0}%",
            r.loss,
            r.dice,
            100.0 * r.loader_wait_s / r.step_s.max(1e-9)
        ));
    }

    fn validated(&mut self, r: &ValRecord) {
        self.last_val = Some(*r);
        self.bars.println(&format!(
            "step {:>6}/{}: validation loss {:.4}, Dice {:.3} on {} positive patches, {:.1} false-positive voxels per negative patch ({} negatives)",
            r.step, self.steps, r.loss, r.dice, r.positives, r.fp_voxels_per_negative, r.negatives
        ));
        if let Some(o) = &r.scans {
            self.bars.println(&format!(
                "             held-out scans: CPM {:.3} ({} nodules), sensitivity {:.3} at {:.2} false positives per scan ({}; {:.1} s)",
                o.cpm,
                o.nodules,
                o.sensitivity,
                o.fps_per_scan,
                o.post,
                r.scan_seconds
            ));
        }
    }

    fn checkpointed(&mut self, dir: &Path, _p: &Position) {
        self.bars.set_message(&format!("checkpoint {}", dir.display()));
    }
}
