//! The LUNA16 CSV readers (annotations, excluded, candidates, submissions).
//! (What it does is in harness.rs, shared with tests/fuzz_regressions.rs.)
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::csv_readers(&harness::scratch(), data));
