//! Workers and ordered delivery. The consumer hands out batch indices (at most
//! `prefetch` ahead of what it has taken), `workers` named threads
//! (`ctstream.loader.{n}`) build them and send them back through a bounded channel, and
//! the consumer delivers them in order. A worker's error (or panic) arrives as an `Err`
//! in place of its batch, and the epoch ends there. Dropping the [`Epoch`] disconnects
//! both channels, so the workers stop after the batch in hand, and joins them.
//!
//! For a store on object storage, `fetchers` more threads (`ctstream.fetch.{n}`) take the
//! patches of the coming batches one by one, in order, and bring their chunks into the
//! shared cache ([`patch::warm`]), so that many requests are in flight while the workers
//! decode and copy: the workers then find the chunks decoded. They stay at most
//! [`fetch_depth`] batches ahead of the consumer: far enough that a request's latency is
//! over before the workers reach its patch, near enough that the cache holds what they
//! fetched until it is used. They ignore errors (the worker building the batch meets and
//! reports them) and stop at the next patch once the epoch is dropped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, unbounded};

use super::batch::Batch;
use super::{LoaderError, Shared, patch};

type Item = (usize, Result<Batch, LoaderError>);

/// The batches of one epoch, in order (an iterator of `Result<Batch, LoaderError>`).
pub struct Epoch {
    // Declared first so it is dropped first: workers blocked on send see the disconnect.
    results: Receiver<Item>,
    jobs: Option<Sender<usize>>,
    workers: Vec<JoinHandle<()>>,
    pending: BTreeMap<usize, Result<Batch, LoaderError>>,
    next: usize,
    issued: usize,
    end: usize,
    prefetch: usize,
    failed: bool,
    ahead: Option<Arc<Ahead>>,
    /// The loader's spare batch buffers ([`super::Loader::recycle`]).
    spare: Arc<super::spare::Spare>,
}

/// What the fetchers share with the consumer: the batch it takes next, and whether the
/// epoch is over.
#[derive(Debug)]
struct Ahead {
    next: Mutex<usize>,
    moved: Condvar,
    stop: AtomicBool,
}

impl Ahead {
    /// Waits until batch `k` is fewer than `depth` batches ahead of the consumer; false
    /// when the epoch is over.
    fn wait_for(&self, k: usize, depth: usize) -> bool {
        let Ok(mut next) = self.next.lock() else { return false };
        while !self.stop.load(Ordering::Relaxed) && k >= *next + depth {
            next = match self.moved.wait_timeout(next, Duration::from_millis(100)) {
                Ok((n, _)) => n,
                Err(_) => return false,
            };
        }
        !self.stop.load(Ordering::Relaxed)
    }

    fn set(&self, next: usize) {
        if let Ok(mut n) = self.next.lock() {
            *n = next;
        }
        self.moved.notify_all();
    }
}

/// How many batches ahead of the consumer the fetchers may run: as many as half the
/// decoded-chunk cache holds (a patch's chunks are about twice its voxels, 2 bytes each),
/// so what they bring in stays until the workers use it; at least `prefetch + fetchers /
/// batch_size + 1`. The workers take a batch of 32x64x64 patches in about half a
/// millisecond, so a lookahead of that last size alone (9 batches at the defaults) ran out
/// long before a request 20 ms away came back: `tools/bench/remote.py`'s 20 ms proxy gave
/// 0.28 x the local rate with it and 0.77 x with this rule's 37 batches (a 256 MB cache).
pub fn fetch_depth(cfg: &super::LoaderConfig) -> usize {
    let batch = cfg.batch_size.max(1);
    let patch_bytes: usize = cfg.patch_zyx.iter().product::<usize>().saturating_mul(4).max(1);
    let held = cfg.cache_bytes / 2 / patch_bytes / batch;
    cfg.prefetch + 1 + held.max(cfg.fetchers / batch)
}

/// (epoch, batch) of position `g` of a stream that starts at epoch `epoch`.
fn at(epoch: u64, g: usize, per_epoch: usize) -> (u64, usize) {
    (epoch.saturating_add((g / per_epoch) as u64), g % per_epoch)
}

/// Starts the fetchers of an epoch of batches `first..end` (none for a local store).
fn start_fetchers(
    shared: &Arc<Shared>,
    epoch: u64,
    first: usize,
    end: usize,
    per_epoch: usize,
) -> Option<Arc<Ahead>> {
    let cfg = &shared.cfg;
    if cfg.fetchers == 0 || !shared.scans.iter().any(|s| s.volume.is_remote()) {
        return None;
    }
    let ahead = Arc::new(Ahead {
        next: Mutex::new(first),
        moved: Condvar::new(),
        stop: AtomicBool::new(false),
    });
    let item = Arc::new(AtomicUsize::new(0));
    let depth = fetch_depth(cfg);
    for f in 0..cfg.fetchers {
        let (shared, ahead, item) = (shared.clone(), ahead.clone(), item.clone());
        let fetch = move || {
            loop {
                let j = item.fetch_add(1, Ordering::Relaxed);
                let (g, i) = (first + j / shared.cfg.batch_size, j % shared.cfg.batch_size);
                if g >= end || !ahead.wait_for(g, depth) {
                    break;
                }
                let (e, k) = at(epoch, g, per_epoch);
                // Errors (and panics) come to the worker that builds the batch.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    patch::warm(&shared, e, k, i)
                }));
            }
        };
        // Not joined: one may be waiting on a request when the epoch ends; it stops after it.
        if std::thread::Builder::new().name(format!("ctstream.fetch.{f}")).spawn(fetch).is_err() {
            break;
        }
    }
    Some(ahead)
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("next", &self.next)
            .field("end", &self.end)
            .field("workers", &self.workers.len())
            .finish()
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

impl Epoch {
    pub(super) fn start(shared: Arc<Shared>, epoch: u64, batches: usize) -> Epoch {
        Self::start_range(shared, epoch, 0, batches, batches)
    }

    /// Positions `first..first + count` from the start of epoch `epoch`, position `g`
    /// being batch `g % per_epoch` of epoch `epoch + g / per_epoch`: one range of an
    /// epoch, or a stream on through the epochs after it with the same threads.
    pub(super) fn start_range(
        shared: Arc<Shared>,
        epoch: u64,
        first: usize,
        count: usize,
        per_epoch: usize,
    ) -> Epoch {
        let per_epoch = per_epoch.max(1);
        let prefetch = shared.cfg.prefetch;
        let (job_tx, job_rx) = unbounded::<usize>();
        let (res_tx, res_rx) = bounded::<Item>(prefetch);
        let mut workers = Vec::new();
        for w in 0..shared.cfg.workers {
            let (shared, job_rx, tx) = (shared.clone(), job_rx.clone(), res_tx.clone());
            let spawned =
                std::thread::Builder::new().name(format!("ctstream.loader.{w}")).spawn(move || {
                    while let Ok(g) = job_rx.recv() {
                        let (e, k) = at(epoch, g, per_epoch);
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            patch::build_batch(&shared, e, k)
                        }))
                        .unwrap_or_else(|p| {
                            Err(LoaderError::WorkerPanic {
                                batch: k,
                                message: panic_message(p.as_ref()),
                            })
                        });
                        if tx.send((g, r)).is_err() {
                            break;
                        }
                    }
                });
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) if workers.is_empty() => {
                    // No thread at all: deliver the failure as the first batch.
                    let _ = res_tx.send((
                        first,
                        Err(LoaderError::Config(format!("cannot start a loader thread: {e}"))),
                    ));
                }
                Err(_) => break,
            }
        }
        let ahead = start_fetchers(&shared, epoch, first, first.saturating_add(count), per_epoch);
        let mut e = Epoch {
            results: res_rx,
            jobs: Some(job_tx),
            workers,
            pending: BTreeMap::new(),
            next: first,
            issued: first,
            end: first.saturating_add(count),
            prefetch,
            failed: false,
            ahead,
            spare: shared.spare.clone(),
        };
        e.issue();
        e
    }

    /// Hands out indices until `prefetch` batches are outstanding.
    fn issue(&mut self) {
        while self.issued < self.end && self.issued < self.next + self.prefetch {
            match &self.jobs {
                Some(tx) if tx.send(self.issued).is_ok() => self.issued += 1,
                _ => break,
            }
        }
    }
}

/// [`Epoch::next_timeout`] found the next batch not ready yet; nothing is lost, call again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotYet;

impl Epoch {
    /// As [`Iterator::next`], waiting at most about `timeout` for the batch, so that a
    /// caller can do something else while it waits (the Python binding checks for Ctrl-C).
    ///
    /// # Errors
    /// [`NotYet`] when the batch did not arrive in time.
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Result<Batch, LoaderError>>, NotYet> {
        self.take(Some(timeout))
    }

    /// The loader's spare batch buffers, which its workers build later batches in: for a
    /// consumer that lends a batch's buffers on (to NumPy, say) and hands each back when
    /// it is let go of ([`super::Loader::recycle`] hands back a whole batch).
    pub fn spare(&self) -> Arc<super::spare::Spare> {
        self.spare.clone()
    }

    /// The index of the batch the next call delivers (the end of the range once done);
    /// in a stream of epochs ([`super::Loader::epochs`]) its position from the start of
    /// the first epoch (batch `i % n` of epoch `first + i / n`).
    pub fn next_index(&self) -> usize {
        self.next
    }

    fn take(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<Result<Batch, LoaderError>>, NotYet> {
        if self.failed || self.next >= self.end {
            return Ok(None);
        }
        let item = loop {
            if let Some(r) = self.pending.remove(&self.next) {
                break r;
            }
            let got = match timeout {
                None => self.results.recv().map_err(|_| RecvTimeoutError::Disconnected),
                Some(t) => self.results.recv_timeout(t),
            };
            match got {
                Ok((k, r)) => {
                    self.pending.insert(k, r);
                }
                Err(RecvTimeoutError::Timeout) => return Err(NotYet),
                Err(RecvTimeoutError::Disconnected) => {
                    break Err(LoaderError::Config("all loader workers stopped".into()));
                }
            }
        };
        self.next += 1;
        if let Some(a) = &self.ahead {
            a.set(self.next);
        }
        if item.is_err() {
            self.failed = true;
        } else {
            self.issue();
        }
        Ok(Some(item))
    }
}

impl Iterator for Epoch {
    type Item = Result<Batch, LoaderError>;

    fn next(&mut self) -> Option<Self::Item> {
        // Without a timeout `take` waits until the batch or the end arrives.
        self.take(None).unwrap_or(None)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = if self.failed { 0 } else { self.end - self.next };
        (0, Some(n))
    }
}

impl Drop for Epoch {
    fn drop(&mut self) {
        if let Some(a) = &self.ahead {
            a.stop.store(true, Ordering::Relaxed);
            a.moved.notify_all();
        }
        self.jobs.take();
        // Disconnect the results so a worker blocked on a full channel wakes up.
        let (_, dead) = unbounded::<Item>();
        drop(std::mem::replace(&mut self.results, dead));
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::LoaderConfig;

    /// The lookahead by hand: a 256 MB cache's half, 128 MiB, holds 32 batches of 8
    /// patches of 32x64x64 at 4 bytes a voxel (4 MiB a batch): 4 + 1 + 32. A small cache
    /// falls back to the old rule, prefetch + fetchers / batch + 1.
    #[test]
    fn fetchers_look_ahead_as_far_as_half_the_cache_holds() {
        let cfg = LoaderConfig {
            patch_zyx: [32, 64, 64],
            batch_size: 8,
            prefetch: 4,
            fetchers: 32,
            cache_bytes: 256 << 20,
            ..LoaderConfig::default()
        };
        assert_eq!(fetch_depth(&cfg), 37);
        assert_eq!(fetch_depth(&LoaderConfig { cache_bytes: 16 << 20, ..cfg.clone() }), 9);
        assert_eq!(fetch_depth(&LoaderConfig { batch_size: 0, cache_bytes: 0, ..cfg }), 37);
    }
}
