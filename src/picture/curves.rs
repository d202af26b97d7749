//! A training run's curves: loss and Dice against step, for training (each step, and
//! its running mean) and validation, and the held-out scans' CPM where validation
//! predicted them, read from the run's `metrics.csv` and `val.csv`.

use std::path::Path;

use plotters::prelude::*;

use super::{Picture, PictureError, draw_err};

/// The curves of one run: (step, value) pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Curves {
    /// Training loss of each step.
    pub train_loss: Vec<(f64, f64)>,
    /// Training Dice of each step.
    pub train_dice: Vec<(f64, f64)>,
    /// Validation loss at each validation.
    pub val_loss: Vec<(f64, f64)>,
    /// Validation Dice at each validation.
    pub val_dice: Vec<(f64, f64)>,
    /// The held-out scans' CPM at each validation that predicted them (`val.csv`'s `cpm`
    /// column; empty where it has none or never filled it).
    pub val_cpm: Vec<(f64, f64)>,
}

/// A CSV log opened for one pass: its header, then its rows as they are read (a long
/// run's `metrics.csv` is never held whole). The one reader of a run's logs, for the
/// pictures and for `ctstream view` (`view::run`).
pub struct CsvLog<'a> {
    path: &'a Path,
    headers: csv::StringRecord,
    reader: csv::Reader<std::fs::File>,
}

impl<'a> CsvLog<'a> {
    /// Opens the log at `path` (a regular file) and reads its header.
    ///
    /// # Errors
    /// [`PictureError::Io`] for a file that cannot be opened, [`PictureError::Input`] for
    /// a header that is not CSV.
    pub fn open(path: &'a Path) -> Result<CsvLog<'a>, PictureError> {
        let file = crate::fsutil::open_regular(path)
            .map_err(|source| PictureError::Io { path: path.to_path_buf(), source })?;
        let mut reader = csv::Reader::from_reader(file);
        let headers = reader.headers().map_err(|e| bad(path, e.to_string()))?.clone();
        Ok(CsvLog { path, headers, reader })
    }

    /// The column names, as the header has them.
    pub fn headers(&self) -> &csv::StringRecord {
        &self.headers
    }

    /// Where column `name` is.
    fn column(&self, name: &str) -> Option<usize> {
        self.headers.iter().position(|h| h == name)
    }

    /// Calls `row(k, record)` on each row in order (row k is line k + 2).
    ///
    /// # Errors
    /// [`PictureError::Input`] naming the line of a row that is not CSV or of another
    /// width than the header; whatever `row` returns.
    pub fn each(
        mut self,
        mut row: impl FnMut(usize, &csv::StringRecord) -> Result<(), PictureError>,
    ) -> Result<(), PictureError> {
        let mut rec = csv::StringRecord::new();
        let mut k = 0;
        let path = self.path;
        let unreadable = |k: usize, e: csv::Error| bad(path, format!("line {}: {e}", k + 2));
        while self.reader.read_record(&mut rec).map_err(|e| unreadable(k, e))? {
            row(k, &rec)?;
            k += 1;
        }
        Ok(())
    }
}

/// The input error for the log at `path`.
fn bad(path: &Path, message: String) -> PictureError {
    PictureError::Input { path: path.to_path_buf(), message }
}

/// Where a log's `step`, `loss` and `dice` columns are.
struct StepLossDice([usize; 3]);

impl StepLossDice {
    /// The columns of `log`; an error naming a missing one and the header.
    fn find(log: &CsvLog) -> Result<StepLossDice, PictureError> {
        let col = |name: &str| {
            log.column(name).ok_or_else(|| {
                bad(
                    log.path,
                    format!(
                        "no `{name}` column (header: {})",
                        log.headers.iter().collect::<Vec<_>>().join(",")
                    ),
                )
            })
        };
        Ok(StepLossDice([col("step")?, col("loss")?, col("dice")?]))
    }

    /// Row `k`'s values; an error naming the line for one that is not a number.
    fn parse(
        &self,
        path: &Path,
        k: usize,
        rec: &csv::StringRecord,
    ) -> Result<(f64, f64, f64), PictureError> {
        let num = |c: usize, name: &str| -> Result<f64, PictureError> {
            let v = rec.get(c).unwrap_or("");
            v.trim()
                .parse::<f64>()
                .map_err(|_| bad(path, format!("line {}: {name} `{v}` is not a number", k + 2)))
        };
        let [s, l, d] = self.0;
        Ok((num(s, "step")?, num(l, "loss")?, num(d, "dice")?))
    }
}

/// Where a log's `step` column and an optional column are.
struct Filled<'n> {
    step: usize,
    col: usize,
    name: &'n str,
}

impl<'n> Filled<'n> {
    /// The columns of `log`; None where it has no `name` (or no `step`).
    fn find(log: &CsvLog, name: &'n str) -> Option<Filled<'n>> {
        Some(Filled { step: log.column("step")?, col: log.column(name)?, name })
    }

    /// Row `k`'s step and value where the value is filled; an error naming the line for
    /// one that is not a finite number.
    fn parse(
        &self,
        path: &Path,
        k: usize,
        rec: &csv::StringRecord,
    ) -> Result<Option<(f64, f64)>, PictureError> {
        let field = |c: usize| rec.get(c).unwrap_or("").trim();
        let (step, v) = (field(self.step), field(self.col));
        if v.is_empty() {
            return Ok(None);
        }
        let num = |v: &str, col: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| bad(path, format!("line {}: {col} `{v}` is not a number", k + 2)))
        };
        Ok(Some((num(step, "step")?, num(v, self.name)?)))
    }
}

/// Reads the `step`, `loss` and `dice` columns of a CSV log (other columns ignored).
///
/// # Errors
/// [`PictureError::Io`] when it cannot be read; [`PictureError::Input`] naming the line
/// for a missing column or a value that is not a number.
pub fn read_log(path: &Path) -> Result<Vec<(f64, f64, f64)>, PictureError> {
    let log = CsvLog::open(path)?;
    let cols = StepLossDice::find(&log)?;
    let mut rows = Vec::new();
    log.each(|k, rec| {
        rows.push(cols.parse(path, k, rec)?);
        Ok(())
    })?;
    Ok(rows)
}

/// Reads the `step` column and the column `name` of a CSV log where it has one: the rows
/// whose `name` cell is filled (empty where the log has no such column).
///
/// # Errors
/// As [`read_log`].
pub fn read_optional(path: &Path, name: &str) -> Result<Vec<(f64, f64)>, PictureError> {
    let log = CsvLog::open(path)?;
    let Some(cols) = Filled::find(&log, name) else { return Ok(Vec::new()) };
    let mut rows = Vec::new();
    log.each(|k, rec| {
        rows.extend(cols.parse(path, k, rec)?);
        Ok(())
    })?;
    Ok(rows)
}

/// Reads a run folder's `metrics.csv` (required) and `val.csv` (if present).
///
/// # Errors
/// As [`read_log`]; [`PictureError::Input`] when `metrics.csv` has no rows.
pub fn read_run(run_dir: &Path) -> Result<Curves, PictureError> {
    let metrics = run_dir.join("metrics.csv");
    let train = read_log(&metrics)?;
    if train.is_empty() {
        return Err(PictureError::Input {
            path: metrics,
            message: "no training steps logged yet".into(),
        });
    }
    let val_path = run_dir.join("val.csv");
    let (val, val_cpm) = if val_path.exists() {
        // One pass over val.csv for both.
        let log = CsvLog::open(&val_path)?;
        let (losses, cpm) = (StepLossDice::find(&log)?, Filled::find(&log, "cpm"));
        let (mut val, mut val_cpm) = (Vec::new(), Vec::new());
        log.each(|k, rec| {
            val.push(losses.parse(&val_path, k, rec)?);
            if let Some(c) = &cpm {
                val_cpm.extend(c.parse(&val_path, k, rec)?);
            }
            Ok(())
        })?;
        (val, val_cpm)
    } else {
        (Vec::new(), Vec::new())
    };
    let loss = |rows: &[(f64, f64, f64)]| rows.iter().map(|r| (r.0, r.1)).collect();
    let dice = |rows: &[(f64, f64, f64)]| rows.iter().map(|r| (r.0, r.2)).collect();
    Ok(Curves {
        train_loss: loss(&train),
        train_dice: dice(&train),
        val_loss: loss(&val),
        val_dice: dice(&val),
        val_cpm,
    })
}

/// The running mean of `points` over a centred window of `k` points (shorter at the ends).
pub fn running_mean(points: &[(f64, f64)], k: usize) -> Vec<(f64, f64)> {
    let half = k / 2;
    (0..points.len())
        .map(|i| {
            let (lo, hi) = (i.saturating_sub(half), (i + half + 1).min(points.len()));
            let w = &points[lo..hi];
            (points[i].0, w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64)
        })
        .collect()
}

/// Plots loss (left) and Dice (middle) against step: each training step faint, their
/// running mean bold, validation as dots joined by lines; and, where validation scored
/// the held-out scans, their CPM (right).
///
/// # Errors
/// [`PictureError::Draw`] if drawing fails.
pub fn plot(c: &Curves, title: &str) -> Result<Picture, PictureError> {
    let with_cpm = !c.val_cpm.is_empty();
    let n_panels = if with_cpm { 3 } else { 2 };
    let mut pic = Picture::new(600 * n_panels as u32, 480);
    let steps = c.train_loss.len();
    let k = (steps / 20).max(1) | 1;
    pic.draw(|root| {
        let root = root.titled(title, ("sans-serif", 20)).map_err(draw_err)?;
        let areas = root.split_evenly((1, n_panels));
        let max_step = c.train_loss.iter().chain(&c.val_loss).map(|p| p.0).fold(1.0f64, f64::max);
        let none = Vec::new();
        let panels = [
            ("loss", &c.train_loss, &c.val_loss),
            ("Dice", &c.train_dice, &c.val_dice),
            ("held-out CPM", &none, &c.val_cpm),
        ];
        for (area, (name, train, val)) in areas.iter().zip(panels) {
            let finite = train.iter().chain(val.iter()).map(|p| p.1).filter(|v| v.is_finite());
            let (lo, hi) =
                finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
            let (y0, y1) = if name != "loss" {
                (0.0, 1.0)
            } else if lo.is_finite() {
                (lo.min(0.0), hi * 1.05 + 1e-9)
            } else {
                (0.0, 1.0)
            };
            let mut chart = ChartBuilder::on(area)
                .margin(12)
                .caption(format!("{name} against step"), ("sans-serif", 16))
                .x_label_area_size(36)
                .y_label_area_size(52)
                .build_cartesian_2d(0.0..max_step, y0..y1)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .x_desc("step")
                .x_label_formatter(&|x| format!("{x}"))
                .y_desc(name)
                .light_line_style(RGBColor(242, 242, 242))
                .draw()
                .map_err(draw_err)?;
            let blue = RGBColor(40, 90, 200);
            let faint =
                if k > 1 { RGBColor(160, 185, 235).stroke_width(1) } else { blue.stroke_width(2) };
            if !train.is_empty() {
                chart
                    .draw_series(LineSeries::new(train.iter().copied(), faint))
                    .map_err(draw_err)?
                    .label("training, each step")
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], faint));
            }
            if k > 1 && !train.is_empty() {
                chart
                    .draw_series(LineSeries::new(running_mean(train, k), blue.stroke_width(2)))
                    .map_err(draw_err)?
                    .label(format!("training, mean of {k} steps"))
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], blue.stroke_width(2))
                    });
            }
            if !val.is_empty() {
                let orange = RGBColor(230, 120, 20);
                chart
                    .draw_series(LineSeries::new(val.iter().copied(), orange.stroke_width(2)))
                    .map_err(draw_err)?
                    .label("validation")
                    .legend(move |(x, y)| {
                        PathElement::new([(x, y), (x + 18, y)], orange.stroke_width(2))
                    });
                chart
                    .draw_series(val.iter().map(|&p| Circle::new(p, 4, orange.filled())))
                    .map_err(draw_err)?;
            }
            let corner = if name != "loss" {
                SeriesLabelPosition::UpperLeft
            } else {
                SeriesLabelPosition::UpperRight
            };
            chart
                .configure_series_labels()
                .position(corner)
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(180, 180, 180))
                .draw()
                .map_err(draw_err)?;
        }
        Ok(())
    })?;
    Ok(pic)
}
