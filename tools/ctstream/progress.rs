//! Progress bars: the library's `Progress` drawn with indicatif on stderr.

use std::sync::Mutex;
use std::time::Duration;

use ctstream::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// One bar at a time, replaced at each `start`; hidden under `--quiet` or when stderr is
/// not a terminal (indicatif's default).
pub struct Bars {
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        Bars { quiet, bar: Mutex::new(None) }
    }

    /// Prints a line without tearing the bar.
    pub fn println(&self, line: &str) {
        match self.bar.lock().ok().and_then(|b| b.clone()) {
            Some(b) if !b.is_finished() => b.println(line),
            _ => eprintln!("{line}"),
        }
    }
}

impl Progress for Bars {
    fn start(&self, what: &str, total: Option<u64>) {
        if self.quiet {
            return;
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{msg:24} [{bar:40}] {pos}/{len} {per_sec} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner(),
        };
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut b) = self.bar.lock() {
            if let Some(old) = b.replace(bar) {
                old.finish_and_clear();
            }
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(b) = self.bar.lock() {
            if let Some(b) = b.as_ref() {
                b.inc(n);
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock() {
            if let Some(b) = b.take() {
                b.finish_and_clear();
            }
        }
    }
}
