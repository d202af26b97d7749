//! Replays the fuzz targets' inputs in the normal test run: every finding saved under
//! `tests/fuzz/TARGET/` (each a crash, hang or runaway allocation that was fixed) and the
//! seeds under `fuzz/seeds/TARGET/`, through the same functions the targets call
//! (`fuzz/fuzz_targets/harness.rs`). A panic, or an attempt to allocate more than 256 MiB
//! at once, is a regression. A test binary of its own, not a module of
//! tests/integration: its global allocator refuses allocations that other tests make.

#[path = "../fuzz/fuzz_targets/harness.rs"]
mod harness;

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The largest single allocation an input may cause (the fuzzers stop at 1 GiB; no input
/// here needs more than a few MiB).
const LIMIT: usize = 256 << 20;
/// The largest allocation refused so far (0: none).
static REFUSED: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, refusing (null) and recording any allocation over [`LIMIT`]:
/// code that reserves fallibly would otherwise fail gracefully and hide the attempt.
struct Capped;

/// Whether `size` is over [`LIMIT`]; if so, it is recorded.
fn refuse(size: usize) -> bool {
    let over = size > LIMIT;
    if over {
        REFUSED.fetch_max(size, Ordering::SeqCst);
    }
    over
}

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if refuse(layout.size()) { std::ptr::null_mut() } else { unsafe { System.alloc(layout) } }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if refuse(layout.size()) {
            std::ptr::null_mut()
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if refuse(new_size) {
            std::ptr::null_mut()
        } else {
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in [root.join("tests/fuzz").join(target), root.join("fuzz/seeds").join(target)] {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str, run: impl Fn(&Path, &[u8])) {
    let dir = tempfile::tempdir().unwrap();
    let cases = inputs(target);
    assert!(!cases.is_empty(), "no inputs for {target}");
    for (name, data) in cases {
        REFUSED.store(0, Ordering::SeqCst);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(dir.path(), &data)));
        assert!(r.is_ok(), "{target}: {name} panics");
        let refused = REFUSED.load(Ordering::SeqCst);
        assert_eq!(refused, 0, "{target}: {name} tried to allocate {refused} bytes at once");
    }
}

#[test]
fn metaimage_header() {
    replay("metaimage_header", |_, d| harness::metaimage_header(d));
}

#[test]
fn metaimage_read() {
    replay("metaimage_read", harness::metaimage_read);
}

#[test]
fn csv_readers() {
    replay("csv_readers", harness::csv_readers);
}

#[test]
fn volume_file() {
    replay("volume_file", harness::volume_file);
}

#[test]
fn volume_mutated() {
    replay("volume_mutated", harness::volume_mutated);
}

#[test]
fn dicom_series() {
    replay("dicom_series", harness::dicom_series);
}

#[test]
fn ingest_metaimage() {
    replay("ingest_metaimage", harness::ingest_metaimage);
}

#[test]
fn ingest_nifti() {
    replay("ingest_nifti", harness::ingest_nifti);
}

#[test]
fn loader_config() {
    replay("loader_config", harness::loader_config);
}
