//! Whole-scan ingest of a mutated NIfTI file: read, resample, chunk, write, index, then
//! the store must verify. (What it does is in harness.rs, shared with tests/fuzz_regressions.rs.)
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::ingest_nifti(&harness::scratch(), data));
