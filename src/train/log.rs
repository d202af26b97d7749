//! The CSV logs of a run (`metrics.csv`, `val.csv`): one row per step or validation,
//! flushed as it is written, so a killed run keeps every row it reported.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// An append-only CSV file whose first column is the step.
#[derive(Debug)]
pub struct CsvLog {
    path: PathBuf,
    file: BufWriter<File>,
}

impl CsvLog {
    /// Creates (or truncates) `path` and writes `header`.
    ///
    /// # Errors
    /// The I/O error.
    pub fn create(path: &Path, header: &str) -> io::Result<Self> {
        let mut file = BufWriter::new(File::create(path)?);
        writeln!(file, "{header}")?;
        file.flush()?;
        Ok(CsvLog { path: path.to_path_buf(), file })
    }

    /// Opens the log of a run being resumed from step `through_step`: rows of later steps
    /// (written after that checkpoint, and to be run again) are dropped, the rest kept.
    /// A missing file is created. A log written by an older version, whose header is the
    /// start of `header` (columns were added at the end since), is given the new header
    /// and its rows empty values in the new columns.
    ///
    /// # Errors
    /// The I/O error; [`io::ErrorKind::InvalidData`] when the file has another header.
    pub fn resume(path: &Path, header: &str, through_step: usize) -> io::Result<Self> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Self::create(path, header),
            Err(e) => return Err(e),
        };
        let mut lines = text.lines();
        let first = lines.next().unwrap_or("");
        let added = match header.strip_prefix(first) {
            Some("") => 0,
            Some(rest) if !first.is_empty() && rest.starts_with(',') => rest.matches(',').count(),
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: header is not `{header}`", path.display()),
                ));
            }
        };
        let mut kept = format!("{header}\n");
        for line in lines {
            let step = line.split(',').next().and_then(|s| s.parse::<usize>().ok());
            if step.is_some_and(|s| s <= through_step) {
                kept.push_str(line);
                kept.push_str(&",".repeat(added));
                kept.push('\n');
            }
        }
        crate::fsutil::write_bytes_atomic(path, kept.as_bytes())?;
        let file = BufWriter::new(OpenOptions::new().append(true).open(path)?);
        Ok(CsvLog { path: path.to_path_buf(), file })
    }

    /// Appends one row (without its newline) and flushes.
    ///
    /// # Errors
    /// The I/O error.
    pub fn row(&mut self, line: &str) -> io::Result<()> {
        writeln!(self.file, "{line}")?;
        self.file.flush()
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_drops_rows_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.csv");
        let mut log = CsvLog::create(&p, "step,x").unwrap();
        for s in 1..=5 {
            log.row(&format!("{s},{}", s * 10)).unwrap();
        }
        drop(log);
        let mut log = CsvLog::resume(&p, "step,x", 3).unwrap();
        log.row("4,41").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "step,x\n1,10\n2,20\n3,30\n4,41\n");
        let err = CsvLog::resume(&p, "step,y", 3).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("m.csv"));
        // "step,xx" is not "step,x" with a column added: refused.
        assert!(CsvLog::resume(&p, "step,xx", 3).is_err());
    }

    /// A log of an older version (fewer columns at the end) takes the new header; its rows
    /// get empty values in the new columns.
    #[test]
    fn resume_widens_a_log_with_fewer_columns() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.csv");
        std::fs::write(&p, "step,loss\n1,0.5\n2,0.4\n3,0.3\n").unwrap();
        let mut log = CsvLog::resume(&p, "step,loss,cpm,fps", 2).unwrap();
        log.row("3,0.2,0.9,1").unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "step,loss,cpm,fps\n1,0.5,,\n2,0.4,,\n3,0.2,0.9,1\n"
        );
    }
}
