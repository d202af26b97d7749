//! A training run as `ctstream view` shows it: the columns of its logs (`metrics.csv`, a
//! row per step; `val.csv`, a row per validation) and an evaluation's FROC (`froc.json`).
//! The logs are read as they are when asked, so a run still training shows its new rows
//! on the next request.

use std::path::Path;

use serde::Serialize;

use super::viewer::Refusal;
use crate::picture::curves::CsvLog;

/// The largest log read (bytes); a run of a million steps writes about 100 MB.
pub const MAX_LOG_BYTES: u64 = 256 << 20;

/// A CSV log as columns: each column's name and its values (None for an empty or
/// non-numeric field, e.g. a validation column of a step that did not validate).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Log {
    /// Column names, as the header has them.
    pub columns: Vec<String>,
    /// The values, one vector per column, a value per row.
    pub values: Vec<Vec<Option<f64>>>,
}

/// Reads the CSV log at `path`; None when there is none.
///
/// # Errors
/// [`Refusal::Failed`] naming the file, the line and the field for a log that cannot be
/// read (too large, not CSV, a row of another width).
pub fn read_log(path: &Path) -> Result<Option<Log>, Refusal> {
    let failed = |m: String| Refusal::Failed(format!("{}: {m}", path.display()));
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e.to_string())),
    };
    if meta.len() > MAX_LOG_BYTES {
        return Err(failed(format!("{} bytes: larger than {MAX_LOG_BYTES}", meta.len())));
    }
    let failed_read = |e: crate::picture::PictureError| Refusal::Failed(e.to_string());
    let log = CsvLog::open(path).map_err(failed_read)?;
    let columns: Vec<String> = log.headers().iter().map(str::to_string).collect();
    let mut values = vec![Vec::new(); columns.len()];
    log.each(|_, rec| {
        for (col, field) in values.iter_mut().zip(rec.iter()) {
            col.push(field.trim().parse::<f64>().ok().filter(|v| v.is_finite()));
        }
        Ok(())
    })
    .map_err(failed_read)?;
    Ok(Some(Log { columns, values }))
}

/// Reads an evaluation's `froc.json` (in `dir`) as the JSON `ctstream evaluate` wrote.
///
/// # Errors
/// [`Refusal::Failed`] naming the file for one that cannot be read as JSON.
pub fn read_froc(dir: &Path) -> Result<Option<serde_json::Value>, Refusal> {
    let path = dir.join("froc.json");
    let failed = |m: String| Refusal::Failed(format!("{}: {m}", path.display()));
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed(e.to_string())),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_reads_as_columns_with_empty_fields_as_none() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let path = dir.path().join("val.csv");
        std::fs::write(&path, "step,loss,cpm\n10,0.5,\n20,0.25,0.4\n").expect("written");
        let log = read_log(&path).expect("read").expect("there");
        assert_eq!(log.columns, ["step", "loss", "cpm"]);
        assert_eq!(
            log.values,
            vec![vec![Some(10.0), Some(20.0)], vec![Some(0.5), Some(0.25)], vec![None, Some(0.4)]]
        );
        assert_eq!(read_log(&dir.path().join("metrics.csv")), Ok(None));
        std::fs::write(&path, "step,loss\n10,0.5,7\n").expect("written");
        let Err(Refusal::Failed(m)) = read_log(&path) else { panic!("a ragged row is refused") };
        assert!(m.contains("val.csv: line 2"), "{m}");
    }
}
