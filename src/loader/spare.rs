//! Batch buffers the consumer has handed back ([`super::Loader::recycle`]), for the
//! workers' next batches: a fresh batch-sized allocation is a fresh mapping of the
//! allocator's, zeroed by the kernel one page fault at a time (about a sixth of the
//! unaugmented loader's time here), and freed back to the kernel when dropped.

use std::sync::Mutex;

use super::batch::Batch;

/// Vectors of one element type, kept for reuse.
#[derive(Debug)]
struct Shelf<T> {
    kept: Mutex<Vec<Vec<T>>>,
}

impl<T> Shelf<T> {
    fn new() -> Shelf<T> {
        Shelf { kept: Mutex::new(Vec::new()) }
    }

    /// A kept vector with room for `capacity` values, if there is one.
    fn kept(&self, capacity: usize) -> Option<Vec<T>> {
        self.kept.lock().ok().and_then(|mut k| {
            let i = k.iter().position(|v| v.capacity() >= capacity)?;
            Some(k.swap_remove(i))
        })
    }

    /// An empty vector with room for `capacity` values: a kept one if one is as large.
    fn take(&self, capacity: usize) -> Vec<T> {
        match self.kept(capacity) {
            Some(mut v) => {
                v.clear();
                v
            }
            None => Vec::with_capacity(capacity),
        }
    }

    /// A vector of `len` values: a kept one with the values it held (and zeros where it
    /// held fewer), else a fresh one of zeros. For a builder that writes every value, so
    /// that a kept buffer is neither cleared nor zeroed again.
    fn take_whole(&self, len: usize) -> Vec<T>
    where
        T: Copy + Default,
    {
        let mut v = self.kept(len).unwrap_or_default();
        v.resize(len, T::default());
        v
    }

    /// Keeps `v` unless `most` are kept already (or it holds nothing, or another thread
    /// holds the shelf just now: then `v` is freed, which is always correct, and no
    /// thread ever waits here, not even in a forked child whose parent held the lock).
    fn give(&self, v: Vec<T>, most: usize) {
        if v.capacity() == 0 {
            return;
        }
        if let Ok(mut k) = self.kept.try_lock()
            && k.len() < most
        {
            k.push(v);
        }
    }
}

/// The spare batch buffers of a loader, at most `most` of each kind.
#[derive(Debug)]
pub struct Spare {
    f32s: Shelf<f32>,
    i16s: Shelf<i16>,
    u8s: Shelf<u8>,
    most: usize,
}

impl Spare {
    /// Room for `most` buffers of each kind (f32 images and masks count as two).
    pub fn new(most: usize) -> Spare {
        Spare { f32s: Shelf::new(), i16s: Shelf::new(), u8s: Shelf::new(), most }
    }

    /// An empty f32 buffer with room for `capacity` values.
    pub fn f32s(&self, capacity: usize) -> Vec<f32> {
        self.f32s.take(capacity)
    }

    /// An empty i16 buffer with room for `capacity` values.
    pub fn i16s(&self, capacity: usize) -> Vec<i16> {
        self.i16s.take(capacity)
    }

    /// An empty u8 buffer with room for `capacity` values.
    pub fn u8s(&self, capacity: usize) -> Vec<u8> {
        self.u8s.take(capacity)
    }

    /// An i16 buffer of `len` values, what a kept one held still in it: every value is
    /// to be written.
    pub fn i16s_whole(&self, len: usize) -> Vec<i16> {
        self.i16s.take_whole(len)
    }

    /// A u8 buffer of `len` values, what a kept one held still in it: every value is to
    /// be written.
    pub fn u8s_whole(&self, len: usize) -> Vec<u8> {
        self.u8s.take_whole(len)
    }

    /// Keeps an f32 buffer (a batch's images or masks) for later batches.
    pub fn give_f32(&self, v: Vec<f32>) {
        self.f32s.give(v, self.most);
    }

    /// Keeps an i16 buffer (a compact batch's images) for later batches.
    pub fn give_i16(&self, v: Vec<i16>) {
        self.i16s.give(v, self.most);
    }

    /// Keeps a u8 buffer (a compact batch's masks) for later batches.
    pub fn give_u8(&self, v: Vec<u8>) {
        self.u8s.give(v, self.most);
    }

    /// Keeps the buffers of `batch` for later batches.
    pub fn give(&self, batch: Batch) {
        self.give_f32(batch.images);
        self.give_f32(batch.masks);
        if let Some(c) = batch.compact {
            self.give_i16(c.images);
            self.give_u8(c.masks);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_buffer_comes_back_empty_with_its_room() {
        let s = Spare::new(2);
        let mut v = s.f32s(100);
        v.extend([1.0; 100]);
        let ptr = v.as_ptr();
        s.f32s.give(v, 2);
        let again = s.f32s(50);
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr, "the kept buffer, not a fresh one");
        // Too small for what is asked: a fresh one.
        s.f32s.give(again, 2);
        assert!(s.f32s(1000).capacity() >= 1000);
        // At most `most` kept.
        for _ in 0..5 {
            s.f32s.give(Vec::with_capacity(10), 2);
        }
        assert_eq!(s.f32s.kept.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_whole_buffer_is_the_kept_one_at_its_length_or_fresh_zeros() {
        let s = Spare::new(2);
        assert_eq!(s.i16s_whole(4), vec![0; 4]);
        let v: Vec<i16> = (1..=6).collect();
        let ptr = v.as_ptr();
        s.give_i16(v);
        let again = s.i16s_whole(4);
        assert_eq!(again, vec![1, 2, 3, 4], "cut to the length asked, values kept");
        assert_eq!(again.as_ptr(), ptr);
        s.give_i16(again);
        // Longer than it held (its room allowing): zeros after its values.
        let mut w = Vec::with_capacity(8);
        w.extend([5i16, 6]);
        s.i16s.kept.lock().unwrap().clear();
        s.give_i16(w);
        assert_eq!(s.i16s_whole(5), vec![5, 6, 0, 0, 0]);
    }
}
