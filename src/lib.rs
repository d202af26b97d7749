/*!
ctstream: fast, correct 3D CT deep learning.

This crate reads CT scans (DICOM series, MetaImage, NIfTI) with exactly the geometry and
Hounsfield units that SimpleITK and pydicom give, reads LUNA16 annotation CSVs and
LIDC-IDRI's reader XML ([`lidc`]: nodules and masks as pylidc makes them), ingests
them into a chunked store ([`store`]; on a local disk or on object storage,
[`store::remote`]; by one process or by shards, [`ingest`]) with lung masks, label maps
(NIfTI, MetaImage, DICOM SEG) and LIDC's consensus and readers' masks as label volumes
([`labels`]),
streams patches from it ([`loader`]: f32 batches, or compact int16/uint8 batches that the
consumer normalises on its device), trains (`train`, feature `train`: a run's settings,
its folder and its training on a backend), predicts with any model ([`predict`]), scores
findings (LUNA16 FROC and CPM, [`evaluate`]), draws pictures a person looks at
([`picture`]), and generates synthetic LUNA-like datasets for tests and demos ([`synth`]).
[`verify`] reads a whole store back and reports per scan; [`view`] serves a store, its
predictions and a run to the browser (`ctstream view`).
The modules import downward only (`docs/ARCHITECTURE.md`, "Layers"; `tests/integration/layers.rs`).
The Python package (`python/`, PyO3) binds this crate and adds no logic of its own;
[`message`] gives the CLI and the bindings one text for an error and its causes.

Axis order, everywhere: physical vectors (origin, spacing, world points) are **(x, y, z)**
in mm; array shapes and voxel indices are **(z, y, x)**. See [`geometry`].

```no_run
use ctstream::io::{read_scan, dicom::DicomOptions};
let scan = read_scan("subset0/1.3.6.1.4.1.14519.5.2.1.6279.mhd".as_ref(), &DicomOptions::default(), &())?;
let v = &scan.volume;
// World position of the centre of voxel (z=10, y=200, x=250):
let xyz = v.geometry.index_to_world([10.0, 200.0, 250.0]);
println!("{:?} -> {:?} mm, HU {}", v.shape_zyx(), xyz, v.hu[[10, 200, 250]]);
# Ok::<(), ctstream::io::ReadError>(())
```
*/
#![deny(missing_docs)]

pub mod annotations;
pub mod evaluate;
pub mod fsutil;
pub mod geometry;
pub mod hu;
pub mod ingest;
pub mod io;
pub mod labels;
pub mod lidc;
pub mod loader;
pub mod message;
pub mod picture;
pub mod predict;
pub mod progress;
pub mod resample;
pub mod seed;
pub mod store;
pub mod synth;
#[cfg(feature = "train")]
pub mod train;
pub mod verify;
pub mod view;
pub mod volume;
