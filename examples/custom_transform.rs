//! A transform of your own, chained with ctstream's augmentation in the loader's workers.
//!
//!     cargo run --release --example custom_transform            # a synthetic store, made on the spot
//!     cargo run --release --example custom_transform -- STORE   # your own store
//!
//! `CoarseDropout` blanks a few random boxes of the image outside the nodule's mask
//! (MONAI's `RandCoarseDropout`, sparing the label): the network learns not to lean on any
//! one part of the context. It runs after nnU-Net's default augmentation (`Augment::nnunet`)
//! on every patch, with a generator the loader seeds per patch, so the batches are the same
//! with any number of workers: the example checks that, and prints what the boxes took.

use std::error::Error;
use std::path::PathBuf;

use ctstream::loader::{Augment, Loader, PatchMut, Transform, TransformError};
use ctstream::store::Store;
use rand::Rng;

/// Sets `boxes` boxes of `size` voxels per axis to `fill`, skipping voxels where the
/// mask is on, each box with probability `p`.
#[derive(Debug)]
struct CoarseDropout {
    boxes: usize,
    size: [usize; 3],
    p: f64,
    fill: f32,
}

impl Transform for CoarseDropout {
    fn name(&self) -> &str {
        "coarse-dropout"
    }

    fn apply(
        &self,
        mut patch: PatchMut<'_>,
        rng: &mut dyn rand::RngCore,
    ) -> Result<(), TransformError> {
        let shape: [usize; 3] = patch.image.dim().into();
        if (0..3).any(|a| self.size[a] > shape[a]) {
            return Err(format!("box {:?} does not fit the patch {shape:?}", self.size).into());
        }
        for _ in 0..self.boxes {
            // Draw the same numbers whether or not the box is used: later boxes do not
            // depend on earlier coin flips.
            let on = rng.random_bool(self.p);
            let at: [usize; 3] =
                std::array::from_fn(|a| rng.random_range(0..=shape[a] - self.size[a]));
            if !on {
                continue;
            }
            let s = ndarray::s![
                at[0]..at[0] + self.size[0],
                at[1]..at[1] + self.size[1],
                at[2]..at[2] + self.size[2]
            ];
            let mask = patch.mask.slice(s).to_owned();
            ndarray::Zip::from(patch.image.slice_mut(s)).and(&mask).for_each(|v, &m| {
                if m == 0.0 {
                    *v = self.fill;
                }
            });
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let (store_dir, _tmp) = match std::env::args_os().nth(1) {
        Some(s) => (PathBuf::from(s), None),
        None => {
            // Two small synthetic LUNA-like scans, ingested into a temporary folder.
            let tmp = tempfile::tempdir()?;
            let data = tmp.path().join("data");
            let cfg = ctstream::synth::SynthConfig {
                small: true,
                ..ctstream::synth::SynthConfig::new(2, 7)
            };
            ctstream::synth::generate(&data, &cfg, &())?;
            let mut ingest =
                ctstream::ingest::IngestConfig::new(vec![data.clone()], tmp.path().join("store"));
            ingest.annotations = Some(data.join("annotations.csv"));
            ctstream::ingest::ingest(&ingest, &())?;
            (tmp.path().join("store"), Some(tmp))
        }
    };
    let store = Store::open(&store_dir)?;
    let loader = |workers: usize, dropout: bool| {
        let b = Loader::builder(&store)
            .augment(Augment::nnunet())
            .workers(workers)
            .seed(42)
            .batches_per_epoch(Some(8));
        match dropout {
            true => b.transform(CoarseDropout { boxes: 6, size: [6, 12, 12], p: 0.5, fill: 0.0 }),
            false => b,
        }
        .build()
    };
    let (one, two, without) = (loader(1, true)?, loader(2, true)?, loader(2, false)?);
    let (mut changed, mut voxels) = (0usize, 0usize);
    for ((a, b), c) in one.epoch(0).zip(two.epoch(0)).zip(without.epoch(0)) {
        let (a, b, c) = (a?, b?, c?);
        if a != b {
            return Err(format!("batch {} differs between 1 and 2 workers", a.index).into());
        }
        if a.masks != c.masks || a.patches != c.patches {
            return Err("the dropout changed a mask or the built-in draws".into());
        }
        changed += a.images.iter().zip(&c.images).filter(|(x, y)| x != y).count();
        voxels += a.images.len();
    }
    println!(
        "{}: 8 batches of {:?} patches, nnU-Net's augmentation then coarse dropout: {:.2} % of the voxels blanked, masks untouched; the same batches with 1 and 2 workers",
        store_dir.display(),
        one.config().patch_zyx,
        100.0 * changed as f64 / voxels as f64
    );
    Ok(())
}
