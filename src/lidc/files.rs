//! Reader XML files found and paired with series: the `.xml` files beside a series'
//! slices (TCIA's layout: `LIDC-IDRI-0078/<study>/<series>/069.xml`) and every `.xml`
//! under the folders given (`--lidc-xml DIR`, TCIA's "XML only" archive), each paired with
//! the series its `ResponseHeader/SeriesInstanceUid` names. Only that header is read
//! here; ingest reads a paired file whole.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::read::series_uid_of;

/// The reader XML files found, by the series they are of.
#[derive(Debug, Clone, Default)]
pub struct XmlFiles {
    by_series: BTreeMap<String, Vec<PathBuf>>,
    /// Files that cannot be paired, with why (not well-formed, not LIDC, no series UID).
    pub unreadable: Vec<(PathBuf, String)>,
}

/// Whether `p` names an XML file (`.xml`, any case).
fn is_xml(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml"))
        && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

impl XmlFiles {
    /// Finds the XML files directly in each of `beside` (the folders of the series' slices)
    /// and anywhere under each of `dirs`, and reads the series each is of.
    ///
    /// # Errors
    /// A folder of `dirs` that does not exist or cannot be listed, named with the flag
    /// (`lidc_xml`) that gave it.
    pub fn discover(dirs: &[PathBuf], beside: &[PathBuf]) -> Result<XmlFiles, String> {
        let mut paths = BTreeSet::new();
        for d in dirs {
            let files = crate::io::dicom::list_files(d)
                .map_err(|e| format!("lidc_xml {}: {e}", d.display()))?;
            paths.extend(files.into_iter().filter(|p| is_xml(p)));
        }
        for d in beside {
            let Ok(rd) = std::fs::read_dir(d) else { continue };
            paths.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| is_xml(p) && std::fs::metadata(p).is_ok_and(|m| m.is_file())),
            );
        }
        let mut out = XmlFiles::default();
        for p in paths {
            match series_uid_of(&p) {
                Ok(Some(uid)) if !uid.is_empty() => out.by_series.entry(uid).or_default().push(p),
                Ok(_) => out
                    .unreadable
                    .push((p, "names no series (no ResponseHeader/SeriesInstanceUid)".into())),
                Err(e) => {
                    let text = e.to_string();
                    let p2 = p.display().to_string();
                    let why = text.strip_prefix(&format!("{p2}: ")).unwrap_or(&text).to_string();
                    out.unreadable.push((p, why));
                }
            }
        }
        Ok(out)
    }

    /// The files of series `uid`, in path order.
    pub fn for_series(&self, uid: &str) -> &[PathBuf] {
        self.by_series.get(uid).map_or(&[], Vec::as_slice)
    }

    /// Files whose series is none of `ids`, with the series they name.
    pub fn unpaired<'a>(
        &'a self,
        ids: &'a BTreeSet<&str>,
    ) -> impl Iterator<Item = (&'a str, &'a PathBuf)> + 'a {
        self.by_series
            .iter()
            .filter(|(uid, _)| !ids.contains(uid.as_str()))
            .flat_map(|(uid, v)| v.iter().map(move |p| (uid.as_str(), p)))
    }

    /// Files found that name a series.
    pub fn len(&self) -> usize {
        self.by_series.values().map(Vec::len).sum()
    }

    /// Whether none do.
    pub fn is_empty(&self) -> bool {
        self.by_series.is_empty()
    }
}
