//! A store volume file from arbitrary bytes: header, chunk table, chunks, regions.
//! (What it does is in harness.rs, shared with tests/fuzz_regressions.rs.)
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::volume_file(&harness::scratch(), data));
