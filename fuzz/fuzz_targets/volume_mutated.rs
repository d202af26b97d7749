//! Region reads on a valid store volume file with bytes changed by the input.
//! (What it does is in harness.rs, shared with tests/fuzz_regressions.rs.)
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::volume_mutated(&harness::scratch(), data));
