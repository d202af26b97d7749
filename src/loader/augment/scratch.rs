//! Patch-sized f32 buffers that the augmentation stages of a worker reuse: a fresh
//! allocation of this size is a fresh mapping of the allocator's, zeroed by page faults on
//! every patch.

use std::cell::RefCell;

/// Buffers kept per thread.
const KEPT: usize = 4;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `n` zeros.
pub fn take(n: usize) -> Vec<f32> {
    let mut v = take_dirty(0);
    v.resize(n, 0.0);
    v
}

/// A buffer of `n` values for a caller that writes every one before reading it: what
/// it held before is left (no pass to zero it).
pub fn take_dirty(n: usize) -> Vec<f32> {
    let mut v = FREE.with(|f| f.borrow_mut().pop()).unwrap_or_default();
    v.resize(n, 0.0);
    v
}

/// Hands `v` back for the next [`take`] on this thread.
pub fn give(v: Vec<f32>) {
    FREE.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEPT {
            f.push(v);
        }
    });
}
