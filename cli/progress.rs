//! Progress bars: the library's `Progress` drawn with indicatif on stderr.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ctstream::progress::Progress;
use indicatif::{ProgressBar, ProgressStyle};

/// One bar at a time, replaced at each `start`; hidden under `--quiet` or when stderr is
/// not a terminal (indicatif's default). Clones draw the same bar.
#[derive(Clone)]
pub struct Bars {
    quiet: bool,
    bar: Arc<Mutex<Option<ProgressBar>>>,
}

impl Bars {
    pub fn new(quiet: bool) -> Self {
        Bars { quiet, bar: Arc::new(Mutex::new(None)) }
    }

    /// Prints a line to stderr without tearing the bar (also when the bar is hidden).
    pub fn println(&self, line: &str) {
        match self.bar.lock().ok().and_then(|b| b.clone()) {
            Some(b) if !b.is_finished() && !b.is_hidden() => b.println(line),
            _ => eprintln!("{line}"),
        }
    }
}

impl Bars {
    fn show(&self, bar: ProgressBar, what: &str) {
        bar.set_prefix(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        if let Ok(mut b) = self.bar.lock()
            && let Some(old) = b.replace(bar)
        {
            old.finish_and_clear();
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress for Bars {
    fn start(&self, what: &str, total: Option<u64>) {
        if self.quiet {
            return;
        }
        let bar = match total {
            Some(n) => ProgressBar::new(n)
                .with_style(style("{prefix:24} [{bar:40}] {pos}/{len} {per_sec} ETA {eta} {msg}")),
            None => ProgressBar::new_spinner().with_style(style("{prefix:24} {spinner} {msg}")),
        };
        self.show(bar, what);
    }

    fn start_bytes(&self, what: &str, total: u64) {
        if self.quiet {
            return;
        }
        let bar = ProgressBar::new(total).with_style(style(
            "{prefix:16} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        ));
        self.show(bar, what);
    }

    fn set_message(&self, msg: &str) {
        if let Ok(b) = self.bar.lock()
            && let Some(b) = b.as_ref()
        {
            b.set_message(msg.to_string());
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(b) = self.bar.lock()
            && let Some(b) = b.as_ref()
        {
            b.inc(n);
        }
    }

    fn finish(&self) {
        if let Ok(mut b) = self.bar.lock()
            && let Some(b) = b.take()
        {
            b.finish_and_clear();
        }
    }
}
