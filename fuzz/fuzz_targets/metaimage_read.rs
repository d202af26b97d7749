//! A whole MetaImage read: header, size limits, zlib, HU conversion.
//! (What it does is in harness.rs, shared with tests/fuzz_regressions.rs.)
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::metaimage_read(&harness::scratch(), data));
