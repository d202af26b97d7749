//! Checkpoints of a training run: the model, the optimizer's state and where the run
//! stood (step, and the loader's epoch and next batch), so that a resumed run trains on
//! the same next batches with the same moments as one that never stopped.
//!
//! ```text
//! RUN_DIR/checkpoints/step-00000200/
//!     model.mpk        weights and batch-norm statistics (Burn's named MessagePack, f32)
//!     optimizer.mpk    Adam's moments and time step
//!     state.json       {"step": 200, "epoch": 3, "next_batch": 5, ...}
//! ```
//!
//! A checkpoint is written into a temporary folder beside its final name and renamed when
//! complete, so a crash leaves either the whole checkpoint or none. Records carry no
//! backend: a checkpoint written on CUDA loads on the CPU and the other way round.

use std::path::{Path, PathBuf};

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::prelude::*;
use burn::record::{FullPrecisionSettings, NamedMpkFileRecorder, Recorder};
use burn::tensor::backend::AutodiffBackend;
use serde::{Deserialize, Serialize};

/// Where a run stands: what the next step will train on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Steps completed.
    pub step: usize,
    /// Epoch of the next batch.
    pub epoch: u64,
    /// Index of the next batch within that epoch.
    pub next_batch: usize,
}

/// `state.json` of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Where the run stood.
    #[serde(flatten)]
    pub position: Position,
    /// The run's configuration (`config.json` of the run, as it was when this was written).
    pub config: serde_json::Value,
    /// The ctstream version that wrote it.
    pub ctstream_version: String,
}

/// Errors reading or writing checkpoints; each names the path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Burn could not write or read a record (or it belongs to another network).
    #[error("{}: {message}", path.display())]
    Record {
        /// The record file.
        path: PathBuf,
        /// Burn's message.
        message: String,
    },
    /// `state.json` is not what a checkpoint holds.
    #[error("{}: {message}", path.display())]
    State {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io { path: path.to_path_buf(), source }
}

fn recorder() -> NamedMpkFileRecorder<FullPrecisionSettings> {
    NamedMpkFileRecorder::new()
}

/// The folder of all checkpoints of a run.
pub fn folder(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

/// A checkpoint on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    /// Its folder.
    pub dir: PathBuf,
    /// Its `state.json`.
    pub state: State,
}

impl Checkpoint {
    /// Reads the checkpoint in `dir` (its `state.json`; the records are read by
    /// [`Checkpoint::load_model`] and [`Checkpoint::load_optimizer`]).
    ///
    /// # Errors
    /// [`CheckpointError`] naming `state.json`.
    pub fn open(dir: &Path) -> Result<Checkpoint, CheckpointError> {
        let path = dir.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let state: State = serde_json::from_str(&text)
            .map_err(|e| CheckpointError::State { path: path.clone(), message: e.to_string() })?;
        Ok(Checkpoint { dir: dir.to_path_buf(), state })
    }

    /// Loads the weights into `model` (which must be the same network and width).
    ///
    /// # Errors
    /// [`CheckpointError::Record`] naming `model.mpk`.
    pub fn load_model<B: Backend, M: Module<B>>(
        &self,
        model: M,
        device: &B::Device,
    ) -> Result<M, CheckpointError> {
        let path = self.dir.join("model.mpk");
        model
            .load_file(path.clone(), &recorder(), device)
            .map_err(|e| CheckpointError::Record { path, message: e.to_string() })
    }

    /// Loads the optimizer's state into `optim`.
    ///
    /// # Errors
    /// [`CheckpointError::Record`] naming `optimizer.mpk`.
    pub fn load_optimizer<B, M, O>(
        &self,
        optim: O,
        device: &B::Device,
    ) -> Result<O, CheckpointError>
    where
        B: AutodiffBackend,
        M: AutodiffModule<B>,
        O: Optimizer<M, B>,
    {
        let path = self.dir.join("optimizer.mpk");
        let record = recorder()
            .load::<O::Record>(path.clone(), device)
            .map_err(|e| CheckpointError::Record { path, message: e.to_string() })?;
        Ok(optim.load_record(record))
    }
}

/// Writes a checkpoint of `model` and `optim` at `state` under `run_dir/checkpoints/`,
/// then removes all but the newest `keep` checkpoints (`keep` 0 keeps all). Returns the
/// checkpoint's folder.
///
/// # Errors
/// [`CheckpointError`] naming the file that could not be written.
pub fn save<B, M, O>(
    run_dir: &Path,
    model: &M,
    optim: &O,
    state: &State,
    keep: usize,
) -> Result<PathBuf, CheckpointError>
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let root = folder(run_dir);
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let name = format!("step-{:08}", state.position.step);
    let dir = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let rec = recorder();
    let model_path = tmp.join("model.mpk");
    model
        .clone()
        .save_file(model_path.clone(), &rec)
        .map_err(|e| CheckpointError::Record { path: model_path, message: e.to_string() })?;
    let optim_path = tmp.join("optimizer.mpk");
    rec.record(optim.to_record(), optim_path.clone())
        .map_err(|e| CheckpointError::Record { path: optim_path, message: e.to_string() })?;
    let state_path = tmp.join("state.json");
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| CheckpointError::State { path: state_path.clone(), message: e.to_string() })?;
    crate::fsutil::write_bytes_atomic(&state_path, &json).map_err(io(&state_path))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    if keep > 0 {
        let all = list(run_dir)?;
        for old in all.iter().take(all.len().saturating_sub(keep)) {
            std::fs::remove_dir_all(&old.1).map_err(io(&old.1))?;
        }
    }
    Ok(dir)
}

/// The folder of a run's best checkpoint by validation CPM.
pub fn best_folder(run_dir: &Path) -> PathBuf {
    folder(run_dir).join("best")
}

/// Writes `model` as the run's best checkpoint (`checkpoints/best/`: the weights,
/// `state.json` and the operating point chosen for it, without the optimizer: a run
/// resumes from its newest checkpoint, not from this), replacing the previous best.
///
/// # Errors
/// [`CheckpointError`] naming the file that could not be written.
pub fn save_best<B: Backend, M: Module<B>>(
    run_dir: &Path,
    model: &M,
    state: &State,
    point: &crate::predict::operating::OperatingPoint,
) -> Result<PathBuf, CheckpointError> {
    let root = folder(run_dir);
    std::fs::create_dir_all(&root).map_err(io(&root))?;
    let dir = best_folder(run_dir);
    let tmp = root.join(format!(".best.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let model_path = tmp.join("model.mpk");
    model
        .clone()
        .save_file(model_path.clone(), &recorder())
        .map_err(|e| CheckpointError::Record { path: model_path, message: e.to_string() })?;
    let state_path = tmp.join("state.json");
    let json = serde_json::to_vec_pretty(state)
        .map_err(|e| CheckpointError::State { path: state_path.clone(), message: e.to_string() })?;
    crate::fsutil::write_bytes_atomic(&state_path, &json).map_err(io(&state_path))?;
    let op_path = tmp.join(crate::predict::operating::FILE);
    point.write(&tmp).map_err(io(&op_path))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    Ok(dir)
}

/// The run's best checkpoint by validation CPM with its operating point, if it has one.
///
/// # Errors
/// [`CheckpointError`] naming the file that cannot be read.
pub fn best(
    run_dir: &Path,
) -> Result<Option<(Checkpoint, crate::predict::operating::OperatingPoint)>, CheckpointError> {
    let dir = best_folder(run_dir);
    if !dir.join("state.json").is_file() {
        return Ok(None);
    }
    let ck = Checkpoint::open(&dir)?;
    let path = dir.join(crate::predict::operating::FILE);
    match crate::predict::operating::OperatingPoint::read(&dir) {
        Ok(Some(op)) => Ok(Some((ck, op))),
        Ok(None) => Err(CheckpointError::State { path, message: "missing".to_string() }),
        Err(message) => Err(CheckpointError::State { path, message }),
    }
}

/// The complete checkpoints of a run as (step, folder), oldest first. Temporary folders
/// left by a crash are not listed.
///
/// # Errors
/// [`CheckpointError::Io`] when the folder exists but cannot be listed.
pub fn list(run_dir: &Path) -> Result<Vec<(usize, PathBuf)>, CheckpointError> {
    let root = folder(run_dir);
    let entries = match std::fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CheckpointError::Io { path: root, source: e }),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(&root))?;
        let name = entry.file_name();
        let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix("step-"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if entry.path().join("state.json").is_file() {
            out.push((step, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// The newest checkpoint of a run, if any.
///
/// # Errors
/// [`CheckpointError`] when the folder cannot be listed or the newest `state.json` read.
pub fn latest(run_dir: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    match list(run_dir)?.last() {
        Some((_, dir)) => Checkpoint::open(dir).map(Some),
        None => Ok(None),
    }
}
