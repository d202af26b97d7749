//! DICOM discovery and series assembly (dicom-rs) over files cut from the input.
//! (What it does is in harness.rs, shared with tests/fuzz_regressions.rs.)
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "harness.rs"]
mod harness;

fuzz_target!(|data: &[u8]| harness::dicom_series(&harness::scratch(), data));
