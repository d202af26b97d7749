//! Loader configurations (JSON, as `train` records them): sizes, shares, windows.
//! (What it does is in harness.rs, shared with tests/fuzz_regressions.rs.)
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::loader_config(&harness::scratch(), data));
