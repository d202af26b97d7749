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
//!
//! **Cases** ([`cases`]): every file of `imagesTr` ending in `file_ending` is a case's
//! channel, `<case>_<XXXX><file_ending>`; since a store holds one CT volume per scan, a
//! channel other than `_0000` is refused (naming the file), as is a file of `imagesTr` or
//! `labelsTr` that does not end in `file_ending` (nnU-Net would not read it either) and a
//! `file_ending` ctstream cannot read. Each case must have `labelsTr/<case><file_ending>`,
//! a regular file: a case without it (missing, a FIFO, a broken or looping link) fails
//! alone in the ingest summary, naming the file it needs, and the other cases are stored.

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
    LabelFileError::Nnunet { path: path.to_path_buf(), message }
}

/// The file endings of nnU-Net datasets ctstream reads (NIfTI and MetaImage).
pub const READABLE_ENDINGS: [&str; 4] = [".nii.gz", ".nii", ".mha", ".mhd"];

/// One case of an nnU-Net raw dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The case identifier (the file name less `_0000` and `file_ending`).
    pub case: String,
    /// Its scan, `imagesTr/<case>_0000<file_ending>`.
    pub image: PathBuf,
    /// The series id ingest gives the scan (`<case>_0000`).
    pub series_id: String,
    /// Its label map, `labelsTr/<case><file_ending>`.
    pub label: PathBuf,
    /// Why the label map cannot be used (missing, not a regular file), when it cannot.
    pub label_missing: Option<String>,
}

/// An nnU-Net raw dataset, case by case ([`cases`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cases {
    /// The dataset folder (as given to `--nnunet`).
    pub dir: PathBuf,
    /// Its `imagesTr`.
    pub images: PathBuf,
    /// Its `labelsTr`.
    pub labels: PathBuf,
    /// Its `dataset.json`.
    pub dataset: Dataset,
    /// The cases, by name.
    pub cases: Vec<Case>,
}

impl Cases {
    /// The case whose scan ingest stores as `series_id` from the file `image`, if any.
    pub fn case_of(&self, series_id: &str, image: &Path) -> Option<&Case> {
        self.cases.iter().find(|c| c.series_id == series_id && c.image == image)
    }
}

/// The names of the regular entries of `dir` (not dot files), sorted; a subfolder is
/// refused, since nnU-Net's folders are flat.
fn flat_files(root: &Path, dir: &Path) -> Result<Vec<String>, LabelFileError> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| bad(root, format!("{}: cannot be listed: {e}", dir.display())))?;
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(|e| bad(root, format!("{}: cannot be listed: {e}", dir.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Why `path` cannot be read as a label map, if it cannot: missing, or not a regular
/// file (a FIFO, a folder, a broken or looping symbolic link).
fn unusable(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => None,
        Ok(m) if m.is_dir() => Some(format!("{} is a folder, not a label map", path.display())),
        Ok(_) => Some(format!("{} is not a regular file (a FIFO or a device)", path.display())),
        Err(e) if std::fs::symlink_metadata(path).is_ok() => {
            Some(format!("{} is a symbolic link that leads nowhere: {e}", path.display()))
        }
        Err(_) => Some(format!("{} is missing", path.display())),
    }
}

/// Reads an nnU-Net raw dataset's layout case by case (see the module docs).
///
/// # Errors
/// [`LabelFileError::Nnunet`] naming the dataset folder and the file: not such a dataset,
/// a `file_ending` ctstream cannot read, a file without it, a channel other than `_0000`.
pub fn cases(dir: &Path) -> Result<Cases, LabelFileError> {
    let (images, labels, dataset) = layout(dir)?;
    let ending = dataset.file_ending.as_str();
    if !READABLE_ENDINGS.contains(&ending.to_ascii_lowercase().as_str()) {
        return Err(bad(
            dir,
            format!(
                "{}: file_ending `{ending}`: ctstream reads {} datasets",
                dataset.path.display(),
                READABLE_ENDINGS.join(", ")
            ),
        ));
    }
    let cut = |name: &str| -> Option<String> {
        (name.len() > ending.len()
            && name.to_ascii_lowercase().ends_with(&ending.to_ascii_lowercase()))
        .then(|| name[..name.len() - ending.len()].to_string())
    };
    // A `.mhd` header's data file (`.raw`, `.zraw`) sits beside it and is no case.
    let data_file = |name: &str| {
        ending.eq_ignore_ascii_case(".mhd")
            && [".raw", ".zraw"].iter().any(|r| name.to_ascii_lowercase().ends_with(r))
    };
    let mut out = Vec::new();
    for name in flat_files(dir, &images)? {
        let path = images.join(&name);
        if data_file(&name) {
            continue; // a MetaImage header's data file
        }
        let Some(stem) = cut(&name) else {
            return Err(bad(
                dir,
                format!(
                    "{} does not end in file_ending `{ending}` of {}: nnU-Net would not read it; move it out of imagesTr",
                    path.display(),
                    dataset.path.display()
                ),
            ));
        };
        let channel = stem
            .rsplit_once('_')
            .filter(|(_, c)| c.len() == 4 && c.bytes().all(|b| b.is_ascii_digit()));
        let Some((case, channel)) = channel else {
            return Err(bad(
                dir,
                format!(
                    "{} is not named <case>_<channel>{ending} (say {stem}_0000{ending}), as nnU-Net names its images",
                    path.display()
                ),
            ));
        };
        if channel != "0000" {
            return Err(bad(
                dir,
                format!(
                    "{} is channel {channel} of case {case}; a store holds one CT volume per scan, so only single-channel datasets (_0000) are read: remove the other channels' files",
                    path.display()
                ),
            ));
        }
        let label = labels.join(format!("{case}{ending}"));
        let series_id = if crate::io::nifti::is_nifti(&path) {
            crate::io::nifti::series_id(&path)
        } else {
            stem.clone()
        };
        out.push(Case {
            case: case.to_string(),
            image: path,
            series_id,
            label_missing: unusable(&label),
            label,
        });
    }
    for name in flat_files(dir, &labels)? {
        if cut(&name).is_none() && !data_file(&name) {
            return Err(bad(
                dir,
                format!(
                    "{} does not end in file_ending `{ending}` of {}: nnU-Net would not read it; move it out of labelsTr",
                    labels.join(&name).display(),
                    dataset.path.display()
                ),
            ));
        }
    }
    if out.is_empty() {
        return Err(bad(dir, format!("{} holds no case ending in `{ending}`", images.display())));
    }
    Ok(Cases { dir: dir.to_path_buf(), images, labels, dataset, cases: out })
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
/// [`LabelFileError::Nnunet`] naming the file and the key.
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
/// [`LabelFileError::Nnunet`] for a missing folder or a bad `dataset.json`.
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
