//! The nnU-Net raw dataset layout (`ingest --nnunet DIR`, `synth --nnunet`):
//! `imagesTr/<case>_0000.nii.gz` scans, `labelsTr/<case>.nii.gz` label maps, and
//! `dataset.json` naming the channel and the labels.
//!
//! `dataset.json` is read in nnU-Net v2's form (`"labels": {"background": 0, "lung": 1}`)
//! or v1's (`"labels": {"0": "background", "1": "lung"}`); `channel_names` (v2) or
//! `modality` (v1) must name exactly one channel, since a store holds one CT volume per
//! scan. Region-based labels (a list of values under one name) and values over 255 are
//! refused, naming the file and the key. The label maps become each case's label volume
//! [`LABEL_NAME`], with `dataset.json`'s names as its classes; a value it does not name is
//! refused ([`super::files`]).

use std::path::{Path, PathBuf};

use super::error::LabelFileError;

/// The label-volume name nnU-Net label maps are stored under.
pub const LABEL_NAME: &str = "labels";

/// What `dataset.json` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// The file.
    pub path: PathBuf,
    /// `name`, when present.
    pub name: Option<String>,
    /// The one channel's name (`CT`).
    pub channel: String,
    /// Label value and name, ascending, background (0) included.
    pub labels: Vec<(u8, String)>,
    /// `file_ending` (`.nii.gz` when absent).
    pub file_ending: String,
}

impl Dataset {
    /// The names of the values other than 0.
    pub fn classes(&self) -> Vec<(u8, String)> {
        self.labels.iter().filter(|(v, _)| *v != 0).cloned().collect()
    }
}

fn bad(path: &Path, message: String) -> LabelFileError {
    LabelFileError::Dir { path: path.to_path_buf(), message }
}

/// Reads and checks a `dataset.json`.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("dataset.json");
/// std::fs::write(&p, r#"{"channel_names": {"0": "CT"}, "labels": {"background": 0, "tumour": 1}, "numTraining": 1, "file_ending": ".nii.gz"}"#).unwrap();
/// let d = ctstream::labels::nnunet::read_dataset(&p).unwrap();
/// assert_eq!(d.classes(), vec![(1, "tumour".to_string())]);
/// std::fs::write(&p, r#"{"channel_names": {"0": "CT", "1": "PET"}, "labels": {"background": 0}}"#).unwrap();
/// assert!(ctstream::labels::nnunet::read_dataset(&p).unwrap_err().to_string().contains("2 channels"));
/// ```
///
/// # Errors
/// [`LabelFileError::Dir`] naming the file and the key.
pub fn read_dataset(path: &Path) -> Result<Dataset, LabelFileError> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(path, format!("is not JSON: {e}")))?;
    let channels = v
        .get("channel_names")
        .or_else(|| v.get("modality"))
        .and_then(|c| c.as_object())
        .ok_or_else(|| bad(path, "has no `channel_names` (or v1's `modality`) object".into()))?;
    if channels.len() != 1 {
        return Err(bad(
            path,
            format!(
                "`channel_names` lists {} channels; a store holds one CT volume per scan, so only single-channel datasets are read",
                channels.len()
            ),
        ));
    }
    let channel = channels.values().next().and_then(|c| c.as_str()).unwrap_or_default().to_string();
    let labels = v
        .get("labels")
        .and_then(|l| l.as_object())
        .ok_or_else(|| bad(path, "has no `labels` object".into()))?;
    let mut out = Vec::new();
    for (k, val) in labels {
        // v2: name -> value; v1: "value" -> name.
        let (value, name) = match (val, k.parse::<i64>()) {
            (serde_json::Value::Number(n), _) => (n.as_i64(), k.clone()),
            (serde_json::Value::String(s), Ok(n)) => (Some(n), s.clone()),
            (serde_json::Value::Array(_), _) => {
                return Err(bad(
                    path,
                    format!(
                        "`labels.{k}` is a region (a list of values); region-based labels are not read"
                    ),
                ));
            }
            _ => (None, k.clone()),
        };
        match value {
            Some(n) if (0..=255).contains(&n) => out.push((n as u8, name)),
            _ => {
                return Err(bad(path, format!("`labels.{k}`: {val} is not a label value 0..=255")));
            }
        }
    }
    out.sort();
    if let Some(w) = out.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(bad(
            path,
            format!("`labels`: {} and {} both have value {}", w[0].1, w[1].1, w[0].0),
        ));
    }
    let file_ending =
        v.get("file_ending").and_then(|f| f.as_str()).unwrap_or(".nii.gz").to_string();
    Ok(Dataset {
        path: path.to_path_buf(),
        name: v.get("name").and_then(|n| n.as_str()).map(str::to_string),
        channel,
        labels: out,
        file_ending,
    })
}

/// The parts of an nnU-Net raw dataset folder: `imagesTr`, `labelsTr` and its dataset.
///
/// # Errors
/// [`LabelFileError::Dir`] for a missing folder or a bad `dataset.json`.
pub fn layout(dir: &Path) -> Result<(PathBuf, PathBuf, Dataset), LabelFileError> {
    let (images, labels, json) =
        (dir.join("imagesTr"), dir.join("labelsTr"), dir.join("dataset.json"));
    for p in [&images, &labels] {
        if !p.is_dir() {
            return Err(bad(
                dir,
                format!("is not an nnU-Net raw dataset: {} is not a folder", p.display()),
            ));
        }
    }
    if !json.is_file() {
        return Err(bad(
            dir,
            format!("is not an nnU-Net raw dataset: {} is missing", json.display()),
        ));
    }
    let d = read_dataset(&json)?;
    Ok((images, labels, d))
}
