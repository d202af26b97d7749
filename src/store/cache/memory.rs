//! Tier 3 ([`super`]): chunk payloads fetched from object storage, held in memory
//! (compressed, as stored) with a byte budget, and the chunks being fetched right now.
//!
//! A coalesced request ([`crate::store::remote::Remote::get_spans`]) brings every chunk lying
//! between the ones asked for; patches near one another need those soon, so
//! [`crate::store::VolumeFile::fetch`] keeps them all here and the next reader takes them without
//! a request. And when a loader's fetcher and a worker (or two fetchers) need the same
//! chunk at once, the second waits for the first one's request ([`MemoryCache::claim`],
//! [`MemoryCache::wait`]) instead of asking the server again. Least recently used payloads
//! are evicted first. A payload taken from here is checked by its CRC-32 when it is
//! decoded, as every payload is.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// A chunk: (volume file id, chunk index in C order). Ids are given out by [`next_id`].
pub type Key = (u64, usize);

/// A new volume id, unique in this process.
pub fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[derive(Default)]
struct Inner {
    /// Payload, last use, and whether a reader has taken it yet.
    map: HashMap<Key, (Bytes, u64, bool)>,
    lru: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
    pending: HashSet<Key>,
}

/// Counters of a [`MemoryCache`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryCacheStats {
    /// Payloads taken from the cache (no request).
    pub hits: u64,
    /// Payloads another thread was fetching, waited for.
    pub waits: u64,
    /// Bytes held now.
    pub held_bytes: u64,
}

/// What [`MemoryCache::claim`] found for the keys asked for.
#[derive(Debug, Default)]
pub struct Claim {
    /// Held: taken from the cache.
    pub held: Vec<(Key, Bytes)>,
    /// Bytes of those in `held` that no reader had taken before (kept beside what was
    /// asked for): bytes a request brought that are used now.
    pub first_use_bytes: u64,
    /// Neither held nor being fetched: the caller fetches these, [`MemoryCache::insert`]s
    /// them, and then [`MemoryCache::release`]s them (others may be waiting).
    pub mine: Vec<Key>,
    /// Being fetched by another thread: [`MemoryCache::wait`] for them.
    pub theirs: Vec<Key>,
}

/// The cache. A budget of 0 holds nothing: a thread that waited for another's request
/// then finds nothing and fetches for itself.
pub struct MemoryCache {
    inner: Mutex<Inner>,
    done: Condvar,
    budget: usize,
    hits: AtomicU64,
    waits: AtomicU64,
}

impl std::fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCache")
            .field("budget_bytes", &self.budget)
            .field("stats", &self.stats())
            .finish()
    }
}

impl MemoryCache {
    /// A cache holding at most about `budget_bytes` of payloads.
    pub fn new(budget_bytes: usize) -> MemoryCache {
        MemoryCache {
            inner: Mutex::new(Inner::default()),
            done: Condvar::new(),
            budget: budget_bytes,
            hits: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The map holds plain bytes: one that a panicking thread left is still sound.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sorts `keys` into held (taken now, counted as hits), being fetched by another
    /// thread, and the caller's to fetch (marked as being fetched until it releases them).
    pub fn claim(&self, keys: &[Key]) -> Claim {
        let mut c = Claim::default();
        let mut s = self.lock();
        for &k in keys {
            if let Some((b, first)) = take(&mut s, k) {
                c.first_use_bytes += if first { b.len() as u64 } else { 0 };
                c.held.push((k, b));
            } else if s.pending.contains(&k) {
                c.theirs.push(k);
            } else {
                s.pending.insert(k);
                c.mine.push(k);
            }
        }
        self.hits.fetch_add(c.held.len() as u64, Ordering::Relaxed);
        c
    }

    /// Holds `bytes` as the payload of `key` (a copy of them, so that a slice of a larger
    /// response does not keep all of it alive), evicting the least recently used payloads
    /// beyond the budget; `used` says a reader asked for it (not merely brought along). A
    /// payload larger than the budget is not held.
    pub fn insert(&self, key: Key, bytes: &[u8], used: bool) {
        if bytes.len() > self.budget {
            return;
        }
        let b = Bytes::copy_from_slice(bytes);
        let mut s = self.lock();
        if s.map.contains_key(&key) {
            return;
        }
        s.tick += 1;
        let tick = s.tick;
        s.bytes += b.len();
        s.map.insert(key, (b, tick, used));
        s.lru.insert(tick, key);
        while s.bytes > self.budget {
            let Some((_, old)) = s.lru.pop_first() else { break };
            if let Some((d, _, _)) = s.map.remove(&old) {
                s.bytes -= d.len();
            }
        }
    }

    /// Ends the caller's claim on `keys` (fetched or failed) and wakes the threads waiting
    /// for them.
    pub fn release(&self, keys: &[Key]) {
        let mut s = self.lock();
        for k in keys {
            s.pending.remove(k);
        }
        drop(s);
        self.done.notify_all();
    }

    /// Waits, at most `timeout`, until no thread is fetching any of `keys`, then takes
    /// those held: the rest (their fetch failed, or they were evicted at once, or the
    /// wait timed out) come back as None, for the caller to fetch itself. Also returns the
    /// bytes of those no reader had taken before, as [`Claim::first_use_bytes`].
    pub fn wait(&self, keys: &[Key], timeout: Duration) -> (Vec<(Key, Option<Bytes>)>, u64) {
        let end = Instant::now() + timeout;
        let mut s = self.lock();
        while keys.iter().any(|k| s.pending.contains(k)) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = match self.done.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        let mut first_use = 0;
        let out: Vec<(Key, Option<Bytes>)> = keys
            .iter()
            .map(|&k| {
                let got = take(&mut s, k);
                first_use +=
                    got.as_ref().map_or(0, |(b, first)| if *first { b.len() as u64 } else { 0 });
                (k, got.map(|(b, _)| b))
            })
            .collect();
        self.waits
            .fetch_add(out.iter().filter(|(_, b)| b.is_some()).count() as u64, Ordering::Relaxed);
        (out, first_use)
    }

    /// Counters so far.
    pub fn stats(&self) -> MemoryCacheStats {
        MemoryCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            held_bytes: self.lock().bytes as u64,
        }
    }
}

/// The payload of `k`, marked as used now, when held, and whether this is its first use.
fn take(s: &mut Inner, k: Key) -> Option<(Bytes, bool)> {
    s.tick += 1;
    let tick = s.tick;
    let (b, old, used) = s.map.get_mut(&k)?;
    let (b, old, first) = (b.clone(), std::mem::replace(old, tick), !std::mem::replace(used, true));
    s.lru.remove(&old);
    s.lru.insert(tick, k);
    Some((b, first))
}

/// Releases a claim when dropped, so that a failed fetch (an error, a panic) does not
/// leave others waiting until their timeout.
pub struct Claimed<'a> {
    cache: &'a MemoryCache,
    keys: Vec<Key>,
}

impl<'a> Claimed<'a> {
    /// The claim on `keys` (from [`Claim::mine`]), released on drop.
    pub fn new(cache: &'a MemoryCache, keys: Vec<Key>) -> Claimed<'a> {
        Claimed { cache, keys }
    }

    /// The keys claimed.
    pub fn keys(&self) -> &[Key] {
        &self.keys
    }
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        self.cache.release(&self.keys);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn holds_within_budget_least_recent_out() {
        let c = MemoryCache::new(250);
        for i in 0..3 {
            c.insert((7, i), &[i as u8; 100], i == 1);
        }
        // 300 bytes > 250: chunk 0 (least recent) went.
        let got = c.claim(&[(7, 0), (7, 1), (7, 2)]);
        assert_eq!(
            got.held.iter().map(|(k, b)| (k.1, b.len(), b[0])).collect::<Vec<_>>(),
            vec![(1, 100, 1), (2, 100, 2)]
        );
        assert_eq!(got.mine, vec![(7, 0)]);
        assert!(got.theirs.is_empty());
        // Chunk 1 was asked for when it came; chunk 2 came along and is used only now.
        assert_eq!(got.first_use_bytes, 100);
        assert_eq!(c.claim(&[(7, 2)]).first_use_bytes, 0);
        assert_eq!(c.stats(), MemoryCacheStats { hits: 3, waits: 0, held_bytes: 200 });
        // Too large for the budget: not held.
        c.insert((7, 9), &[0; 251], true);
        assert_eq!(c.stats().held_bytes, 200);
    }

    #[test]
    fn second_claimant_waits_for_the_first_fetch() {
        let c = Arc::new(MemoryCache::new(1 << 20));
        let first = c.claim(&[(1, 5)]);
        assert_eq!(first.mine, vec![(1, 5)]);
        let second = c.claim(&[(1, 5), (1, 6)]);
        assert_eq!((second.mine, second.theirs), (vec![(1, 6)], vec![(1, 5)]));
        let c2 = c.clone();
        let fetcher = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            c2.insert((1, 5), b"payload", true);
            c2.release(&[(1, 5)]);
        });
        let t = Instant::now();
        let got = c.wait(&[(1, 5)], Duration::from_secs(10));
        assert!(t.elapsed() >= Duration::from_millis(40));
        assert_eq!(got, (vec![((1, 5), Some(Bytes::from_static(b"payload")))], 0));
        fetcher.join().unwrap();
        assert_eq!(c.stats().waits, 1);
    }

    #[test]
    fn a_failed_fetch_releases_its_claim_and_the_waiter_fetches() {
        let c = MemoryCache::new(1 << 20);
        let mine = c.claim(&[(2, 0)]).mine;
        drop(Claimed::new(&c, mine)); // the fetch failed: nothing inserted
        assert_eq!(c.wait(&[(2, 0)], Duration::from_secs(10)), (vec![((2, 0), None)], 0));
        // And nobody holds the claim any more.
        assert_eq!(c.claim(&[(2, 0)]).mine, vec![(2, 0)]);
    }

    #[test]
    fn wait_gives_up_at_its_timeout() {
        let c = MemoryCache::new(1 << 20);
        let _mine = c.claim(&[(3, 0)]);
        let t = Instant::now();
        assert_eq!(c.wait(&[(3, 0)], Duration::from_millis(30)), (vec![((3, 0), None)], 0));
        assert!(t.elapsed() >= Duration::from_millis(30));
    }
}
