"""ctstream's loader with nnU-Net's augmentation against nnU-Net's own pipeline, one run.

    python -m venv nnvenv && nnvenv/bin/pip install -r tools/bench/requirements-nnunet.txt
    nnvenv/bin/python tools/bench/nnunet_augment.py --ctstream target/release/ctstream --store STORE

Both sides deliver batches of 8 augmented 32x64x64 patches, 80 % of them on a nodule, from
the same scans, with 2 workers:

- **nnU-Net**: the store's scans are exported (`ctstream export`), z-scored as nnU-Net's CT
  normalisation leaves them (float32), with the nodule spheres of the store's index as the
  segmentation (int16), and written as nnU-Net's preprocessing writes them
  (`nnUNetDatasetBlosc2.save_case` with `comp_blosc2_params` for the patch, the
  foreground locations of `DefaultPreprocessor._sample_foreground_locations`). Then
  nnU-Net v2's training pipeline as `nnUNetTrainer.get_dataloaders` builds it: the
  initial patch size and rotation of `configure_rotation_dummyDA_mirroring_and_inital_patch_size`
  for a 3D patch, `nnUNetTrainer.get_training_transforms` (no deep supervision),
  `nnUNetDataLoader` with `oversample_foreground_percent=0.8`, and a
  `NonDetMultiThreadedAugmenter` with 2 processes (`num_cached` 6, as nnU-Net sets it).
- **ctstream**: `ctstream bench --store STORE --augment nnunet` and `--augment none`
  (2 workers, batch 8, positive share 0.8: the defaults).

Rounds alternate between the three. Prints one JSON object (with `--json`) or a table:
patches per second of each and the two ratios the README reports.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

PATCH = (32, 64, 64)
BATCH = 8


def export_cases(ctstream, store, out_dir):
    """Writes each stored scan as nnU-Net's preprocessing would: (data, seg, properties)."""
    import blosc2
    import numpy as np
    import pyarrow.parquet as pq
    import SimpleITK as sitk
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.training.dataloading.nnunet_dataset import (
        comp_blosc2_params,
        nnUNetDatasetBlosc2,
    )

    scans = pq.read_table(os.path.join(store, "index", "scans.parquet")).to_pylist()
    nodules = pq.read_table(os.path.join(store, "index", "nodules.parquet")).to_pylist()
    blosc2.set_nthreads(1)
    ids = []
    for s in scans:
        sid = s["series_id"]
        mha = os.path.join(out_dir, "export.mha")
        subprocess.run(
            [ctstream, "export", store, "--series", sid, "--out", mha, "-q"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        hu = sitk.GetArrayFromImage(sitk.ReadImage(mha)).astype(np.float32)
        os.remove(mha)
        # nnU-Net's CT normalisation: clip to the foreground's 0.5 and 99.5 percentiles,
        # then subtract its mean and divide by its standard deviation.
        lo, hi = np.percentile(hu, [0.5, 99.5])
        data = np.clip(hu, lo, hi)
        data = ((data - data.mean()) / max(data.std(), 1e-8)).astype(np.float32)[None]
        # The nodule spheres, as ctstream's loader rasterises them (a voxel is in where
        # sum(((p - c) / r)^2) <= 1, voxel centres at integer indices).
        seg = np.zeros(hu.shape, np.int16)
        zz, yy, xx = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
        spacing = (s["spacing_z"], s["spacing_y"], s["spacing_x"])
        for n in nodules:
            d = n["diameter_mm"]
            if n["series_id"] != sid or d is None or not math.isfinite(d) or d <= 0:
                continue
            if n.get("source", "annotations") not in ("annotations", "lidc"):
                continue
            c = (n["voxel_z"], n["voxel_y"], n["voxel_x"])
            r = [d / 2 / sp for sp in spacing]
            inside = (
                ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
            ) <= 1
            seg[inside] = 1
        seg = seg[None]
        props = {
            "class_locations": DefaultPreprocessor._sample_foreground_locations(seg, [1]),
            "spacing": list(spacing),
        }
        base = os.path.join(out_dir, sid)
        for old in (base + ".b2nd", base + "_seg.b2nd", base + ".pkl"):
            # blosc2 does not overwrite: a --work folder of an earlier run is rewritten.
            if os.path.exists(old):
                os.remove(old)
        bd, cd = comp_blosc2_params(data.shape, PATCH, data.itemsize)
        bs, cs = comp_blosc2_params(seg.shape, PATCH, seg.itemsize)
        nnUNetDatasetBlosc2.save_case(
            data,
            seg,
            props,
            base,
            chunks=cd,
            blocks=bd,
            chunks_seg=cs,
            blocks_seg=bs,
        )
        ids.append(sid)
    return ids


def nnunet_pipeline(folder, workers, seed):
    """nnU-Net v2's training data pipeline over `folder`, as nnUNetTrainer builds it."""
    import numpy as np
    from batchgenerators.dataloading.nondet_multi_threaded_augmenter import (
        NonDetMultiThreadedAugmenter,
    )
    from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
    from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

    np.random.seed(seed)
    # configure_rotation_dummyDA_mirroring_and_inital_patch_size, 3D, not anisotropic
    # (64 / 32 = 2 <= ANISO_THRESHOLD 3).
    rotation = (-30.0 / 360 * 2.0 * np.pi, 30.0 / 360 * 2.0 * np.pi)
    initial = get_patch_size(PATCH, rotation, rotation, rotation, (0.85, 1.25))
    mirror_axes = (0, 1, 2)
    labels = LabelManager({"background": 0, "nodule": 1}, regions_class_order=None)
    transforms = nnUNetTrainer.get_training_transforms(
        PATCH,
        rotation,
        None,
        mirror_axes,
        False,
        use_mask_for_norm=[False],
        is_cascaded=False,
        foreground_labels=labels.foreground_labels,
        regions=None,
        ignore_label=None,
    )
    dataset = nnUNetDatasetBlosc2(folder)
    loader = nnUNetDataLoader(
        dataset,
        BATCH,
        initial,
        PATCH,
        labels,
        oversample_foreground_percent=0.8,
        sampling_probabilities=None,
        pad_sides=None,
        transforms=transforms,
    )
    return NonDetMultiThreadedAugmenter(
        data_loader=loader,
        transform=None,
        num_processes=workers,
        num_cached=max(6, workers // 2),
        seeds=None,
        pin_memory=False,
        wait_time=0.002,
    )


def time_nnunet(gen, seconds):
    """Patches per second delivered by `gen` over `seconds` (after one batch)."""
    b = next(gen)
    shape = tuple(b["data"].shape)
    if shape != (BATCH, 1, *PATCH):
        raise SystemExit(f"nnU-Net delivered batches of {shape}, expected {(BATCH, 1, *PATCH)}")
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        next(gen)
        n += BATCH
    return n / (time.perf_counter() - t0)


def time_ctstream(ctstream, store, seconds, workers, augment):
    out = subprocess.run(
        [
            ctstream,
            "bench",
            "--store",
            store,
            "--seconds",
            str(seconds),
            "--workers",
            str(workers),
            "--batch-size",
            str(BATCH),
            "--augment",
            augment,
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)["patches_per_s"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ctstream", required=True, help="the ctstream binary")
    ap.add_argument("--store", required=True, help="a ctstream store (a folder)")
    ap.add_argument("--seconds", type=float, default=20.0, help="per side and round")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", help="folder for nnU-Net's blosc2 files (default: temporary)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.seconds <= 0 or a.rounds < 1 or a.workers < 1:
        raise SystemExit("--seconds must be above 0, --rounds and --workers at least 1")
    with tempfile.TemporaryDirectory() as tmp:
        folder = a.work or tmp
        os.makedirs(folder, exist_ok=True)
        t0 = time.perf_counter()
        ids = export_cases(a.ctstream, a.store, folder)
        export_s = time.perf_counter() - t0
        gen = nnunet_pipeline(folder, a.workers, 1234)
        rounds = []
        try:
            for _ in range(a.rounds):
                nn = time_nnunet(gen, a.seconds)
                aug = time_ctstream(a.ctstream, a.store, a.seconds, a.workers, "nnunet")
                plain = time_ctstream(a.ctstream, a.store, a.seconds, a.workers, "none")
                rounds.append({"nnunet": nn, "ctstream_nnunet": aug, "ctstream_none": plain})
        finally:
            gen._finish()
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    result = {
        "scans": len(ids),
        "export_s": round(export_s, 1),
        "patch_zyx": PATCH,
        "batch": BATCH,
        "workers": a.workers,
        "seconds": a.seconds,
        "rounds": rounds,
        "patches_per_s": med,
        "ctstream_over_nnunet": med["ctstream_nnunet"] / med["nnunet"],
        "augmented_over_unaugmented": med["ctstream_nnunet"] / med["ctstream_none"],
    }
    if a.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"{len(ids)} scans, {a.rounds} round(s) of {a.seconds} s, {a.workers} workers")
        for k, v in med.items():
            print(f"  {k:18} {v:9.1f} patches/s")
        print(f"  ctstream (nnunet) / nnU-Net: {result['ctstream_over_nnunet']:.1f}")
        print(f"  ctstream nnunet / none:      {result['augmented_over_unaugmented']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
