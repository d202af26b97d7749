//! How long-running library work reports progress without knowing about terminals.
//!
//! The library calls a [`Progress`]; the `ctstream` binary implements it with an
//! `indicatif` bar (hidden under `--quiet`). `()` is the silent implementation.

/// Receives progress from long-running work. Implementations must be cheap and
/// thread-safe: work running on several threads calls [`Progress::advance`] concurrently.
pub trait Progress: Sync {
    /// A new stage starts: `what` is a short label ("decoding slices"), `total` the number
    /// of units it will advance by, when known.
    fn start(&self, what: &str, total: Option<u64>) {
        let _ = (what, total);
    }
    /// Like [`Progress::start`], for work measured in bytes (drawn as MB/s).
    fn start_bytes(&self, what: &str, total: u64) {
        self.start(what, Some(total));
    }
    /// A short status beside the bar ("3/10 scans").
    fn set_message(&self, msg: &str) {
        let _ = msg;
    }
    /// `n` more units are done.
    fn advance(&self, n: u64) {
        let _ = n;
    }
    /// The stage is over.
    fn finish(&self) {}
}

/// No progress reporting.
impl Progress for () {}
