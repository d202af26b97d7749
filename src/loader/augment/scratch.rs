//! Patch-sized buffers that a worker reuses from patch to patch (the augmentation stages'
//! f32 buffers, a moved patch's i16 region and u8 mask): a fresh allocation of this size
//! is a fresh mapping of the allocator's, zeroed by page faults on every patch.

use std::cell::RefCell;
use std::thread::LocalKey;

/// Buffers kept per thread and type.
const KEPT: usize = 4;

thread_local! {
    static F32: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
    static I16: RefCell<Vec<Vec<i16>>> = const { RefCell::new(Vec::new()) };
    static U8: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A value type with buffers kept per thread.
pub trait Pooled: Copy + Default + 'static {
    /// This thread's free buffers of the type.
    fn free() -> &'static LocalKey<RefCell<Vec<Vec<Self>>>>;
}

impl Pooled for f32 {
    fn free() -> &'static LocalKey<RefCell<Vec<Vec<f32>>>> {
        &F32
    }
}

impl Pooled for i16 {
    fn free() -> &'static LocalKey<RefCell<Vec<Vec<i16>>>> {
        &I16
    }
}

impl Pooled for u8 {
    fn free() -> &'static LocalKey<RefCell<Vec<Vec<u8>>>> {
        &U8
    }
}

/// A buffer of `n` zeros.
pub fn take<T: Pooled>(n: usize) -> Vec<T> {
    let mut v = take_dirty(0);
    v.resize(n, T::default());
    v
}

/// A buffer of `n` values for a caller that writes every one before reading it: what
/// it held before is left (no pass to zero it).
pub fn take_dirty<T: Pooled>(n: usize) -> Vec<T> {
    let mut v = T::free().with(|f| f.borrow_mut().pop()).unwrap_or_default();
    v.resize(n, T::default());
    v
}

/// Hands `v` back for the next [`take`] on this thread.
pub fn give<T: Pooled>(v: Vec<T>) {
    T::free().with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < KEPT {
            f.push(v);
        }
    });
}
