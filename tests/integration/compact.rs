//! Compact batches (int16 HU, uint8 masks, `LoaderConfig::compact`): after the
//! normalisation a consumer does, the same values bit for bit as the f32 batches of the
//! same configuration, for any number of workers; the stored HU themselves equal the
//! decoded volume; augmentations that need f32 are refused, naming themselves.

use std::path::{Path, PathBuf};

use crate::common::*;
use ctstream::ingest::{self, IngestConfig};
use ctstream::loader::{Augment, Loader, LoaderConfig, PatchMut, Transform, TransformError};
use ctstream::store::{Region, Store};
use ctstream::synth::{self, SynthConfig};

const P: [usize; 3] = [32, 64, 64];
const N: usize = 32 * 64 * 64;

fn make_store(dir: &Path) -> PathBuf {
    let data = dir.join("data");
    synth::generate(&data, &SynthConfig { small: true, ..SynthConfig::new(3, 31) }, &()).unwrap();
    let out = dir.join("store");
    let mut cfg = IngestConfig::new(vec![data.clone()], out.clone());
    cfg.annotations = Some(data.join("annotations.csv"));
    ingest::ingest(&cfg, &()).unwrap();
    out
}

fn config(augment: &str, workers: usize, compact: bool) -> LoaderConfig {
    LoaderConfig {
        patch_zyx: P,
        batch_size: 4,
        augment: Augment::parse(augment, P).unwrap(),
        workers,
        seed: 5,
        batches_per_epoch: Some(5),
        compact,
        ..LoaderConfig::default()
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn compact_batches_normalise_to_the_f32_batches_bit_for_bit() {
    let dir = tempdir();
    let store = Store::open(&make_store(dir.path())).unwrap();
    // Mirroring, quarter turns and a HU factor and shift: each patch moved and mapped
    // differently.
    let aug = "flip,rot90,hu:shift=40:scale=0.1";
    let float = Loader::builder(&store).config(config(aug, 2, false)).build().unwrap();
    let mut turned = 0;
    for workers in [1, 3] {
        let compact = Loader::builder(&store).config(config(aug, workers, true)).build().unwrap();
        for epoch in 0..2 {
            for (f, c) in float.epoch(epoch).zip(compact.epoch(epoch)) {
                let (f, c) = (f.unwrap(), c.unwrap());
                assert_eq!(f.patches, c.patches, "the same patches, drawn alike");
                assert!(c.images.is_empty() && c.masks.is_empty());
                let cb = c.compact.as_ref().expect("a compact batch");
                assert_eq!((cb.images.len(), cb.masks.len()), (4 * N, 4 * N));
                assert_eq!(cb.window, [-1000.0, 400.0]);
                for (i, p) in c.patches.iter().enumerate() {
                    assert_eq!(
                        (cb.hu_scale[i], cb.hu_shift[i]),
                        (p.augment.hu_scale, p.augment.hu_shift)
                    );
                    turned += usize::from(p.augment.quarter_turns % 4 != 0);
                }
                assert!(cb.masks.iter().all(|&m| m <= 1));
                let (images, masks) = cb.normalise();
                assert_eq!(bits(&images), bits(&f.images), "epoch {epoch} batch {}", f.index);
                assert_eq!(bits(&masks), bits(&f.masks));
                assert_eq!(c.clone().into_float().images, f.images);
                // Later batches are built in these buffers: they must come out the same.
                float.recycle(f);
                compact.recycle(c);
            }
        }
    }
    assert!(turned > 0, "some patches were turned");
}

#[test]
fn compact_images_are_the_stored_hu() {
    let dir = tempdir();
    let store = Store::open(&make_store(dir.path())).unwrap();
    let loader = Loader::builder(&store).config(config("none", 2, true)).build().unwrap();
    let mut inside = 0;
    for b in loader.epoch(0) {
        let b = b.unwrap();
        let cb = b.compact.unwrap();
        for (i, p) in b.patches.iter().enumerate() {
            let v = store.volume(&p.series_id).unwrap();
            let shape = v.shape_zyx();
            let s = p.start_zyx;
            if (0..3).any(|a| s[a] < 0 || s[a] as usize + P[a] > shape[a]) {
                continue;
            }
            inside += 1;
            // An independent read: the whole volume decoded, the patch cut out of it.
            let full = v.read_all().unwrap();
            let r = Region { start_zyx: s, shape_zyx: P };
            let [z, y, x] = s.map(|c| c as usize);
            let want = full.slice(ndarray::s![z..z + 32, y..y + 64, x..x + 64]);
            assert_eq!(
                &cb.images[i * N..(i + 1) * N],
                want.iter().copied().collect::<Vec<_>>().as_slice()
            );
            assert_eq!(
                v.read_region(r).unwrap().iter().copied().collect::<Vec<_>>(),
                want.iter().copied().collect::<Vec<_>>()
            );
            assert_eq!(cb.hu_scale[i], 1.0);
            assert_eq!(cb.hu_shift[i], 0.0);
        }
    }
    assert!(inside > 5, "{inside} patches inside their scan");
}

#[derive(Debug)]
struct Identity;

impl Transform for Identity {
    fn name(&self) -> &str {
        "identity"
    }
    fn apply(&self, _: PatchMut<'_>, _: &mut dyn rand::RngCore) -> Result<(), TransformError> {
        Ok(())
    }
}

#[test]
fn augmentations_that_need_f32_are_refused_by_name() {
    let dir = tempdir();
    let store = Store::open(&make_store(dir.path())).unwrap();
    for (aug, named) in [
        ("nnunet", "rotation"),
        ("scaling:p=0.5", "scaling"),
        ("elastic:p=0.5", "elastic"),
        ("blur", "blur"),
        ("gamma", "gamma"),
        ("noise", "noise"),
    ] {
        let e = Loader::builder(&store).config(config(aug, 1, true)).build().unwrap_err();
        let e = e.to_string();
        assert!(e.contains("compact") && e.contains(named), "{aug}: {e}");
    }
    let e = Loader::builder(&store)
        .config(config("flip", 1, true))
        .transform(Identity)
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("compact") && e.contains("identity"), "{e}");
    // Without compact, the same configurations build.
    assert!(Loader::builder(&store).config(config("nnunet", 1, false)).build().is_ok());
}
