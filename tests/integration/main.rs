//! The integration tests, one binary: each module is one subject (its doc says what it
//! checks). One binary instead of one per file: the crate and its dependencies link once,
//! and the modules' tests share the test threads (`cargo test --release --test integration
//! -- labels::` runs one module). Tests that need packages this machine may lack are
//! `#[ignore = "needs ..."]` (tools/test.sh runs them where they are installed).

mod common;

mod annotations;
mod augment;
mod broken;
mod cli;
mod compact;
mod dicom;
mod goldens;
mod ingest;
mod labels;
mod layers;
mod lidc;
mod loader;
mod metaimage;
mod nifti;
mod pictures;
mod predict;
mod python_reader;
mod remote;
mod robustness;
mod store;
mod synth;
mod train;
mod view;
