//! Files that appear only when complete: write to a temporary name in the same folder,
//! flush and fsync, then rename over the final name. And input files opened only when
//! they are regular files ([`open_regular`]).

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The temporary name used while `path` is being written: `.<name>.tmp-<pid>` beside it.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Whether a file name is one [`temp_path`] makes (`.<name>.tmp-<pid>`).
///
/// ```
/// use ctstream::fsutil::{is_temp_name, temp_path};
/// let t = temp_path("store/volumes/a.ctv".as_ref());
/// assert!(is_temp_name(&t.file_name().unwrap().to_string_lossy()));
/// assert!(!is_temp_name("a.ctv"));
/// ```
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
        && name
            .rsplit_once(".tmp-")
            .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// Writes `path` atomically: `fill` writes into a buffered temporary file, which is
/// synced and renamed to `path` only if `fill` succeeds. On any error the temporary
/// file is removed and `path` is left as it was.
///
/// # Errors
/// Any I/O error from creating, writing, syncing or renaming the file, or from `fill`.
pub fn write_atomic<F>(path: &Path, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let tmp = temp_path(path);
    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        fill(&mut w)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically (see [`write_atomic`]).
///
/// # Errors
/// Any I/O error; `path` is then left as it was.
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic(path, |w| w.write_all(bytes))
}

/// Opens `path` for reading only if it is a regular file (after following symlinks).
///
/// A FIFO would block the open until some writer appears, and a device such as
/// `/dev/zero` never ends, so every input file (scans, data files, CSVs) is opened here:
/// anything but a regular file is refused with [`io::ErrorKind::InvalidInput`] and a
/// message that says what it is.
///
/// # Errors
/// The metadata or open error, or `InvalidInput` for a FIFO, device, socket or folder.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a folder"
        } else {
            "not a regular file (a FIFO, device or socket)"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{what}; ctstream reads regular files only"),
        ));
    }
    File::open(path)
}
