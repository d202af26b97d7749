"""Patches/s delivered as torch tensors in Python against `ctstream bench` (the Rust
loader alone), on the same store, in the same run, with the same loader settings.

    python python/bench.py --ctstream target/release/ctstream            # synthetic store
    python python/bench.py --ctstream target/release/ctstream --store luna-store --seconds 30

The Python side is what a training script does: ctstream.torch.PatchDataset through a
torch DataLoader(batch_size=None, num_workers=0), each batch's image and mask as
float32 tensors [B, 1, D, H, W] (torch.from_numpy over the Rust buffers) and its other
fields converted, epoch after epoch (one DataLoader pass each; by default one epoch
longer than the run, `--batches-per-epoch 2` for a store of few batches). Rust streams
`ctstream bench`'s f32 batches. Both sides measure after the same warm-up (a quarter of
--seconds, at most 5 s), in rounds that alternate Rust and Python; the medians and their
ratio are printed (and with --json, every round).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import ctstream
import ctstream.torch
import torch


def rust_round(binary, store, a):
    cmd = [
        binary,
        "-q",
        "bench",
        "--store",
        store,
        "--seconds",
        str(a.seconds),
        "--workers",
        str(a.workers),
        "--batch-size",
        str(a.batch_size),
        "--cache",
        str(a.cache_mb),
        "--seed",
        str(a.seed),
        "--json",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
    rep = json.loads(r.stdout)
    return {
        "patches_per_s": rep["patches_per_s"],
        "patches": rep["patches"],
        "seconds": rep["seconds"],
        "peak_rss_bytes": rep.get("peak_rss_bytes"),
    }


def python_round(store, a):
    # Epoch after epoch, one pass of the DataLoader each, as a training script reads
    # (by default one epoch far longer than the run; --batches-per-epoch 2 for a store
    # of few batches).
    ds = ctstream.torch.PatchDataset(
        store,
        workers=a.workers,
        batch_size=a.batch_size,
        cache_mb=a.cache_mb,
        seed=a.seed,
        batches_per_epoch=a.batches_per_epoch,
    )
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
    warm = min(a.seconds / 4, 5.0)

    def passes():
        while True:
            yield from dl

    it = passes()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < warm:
        next(it)
    patches, t = 0, time.perf_counter()
    while time.perf_counter() - t < a.seconds:
        b = next(it)
        assert b["image"].dtype == torch.float32 and b["mask"].shape == b["image"].shape
        patches += b["image"].shape[0]
    elapsed = time.perf_counter() - t
    del it
    ds.close()  # stops the loader's threads
    return {"patches_per_s": patches / elapsed, "patches": patches, "seconds": elapsed}


def synthetic_store(root, scans, seed):
    d = ctstream.synth(os.path.join(root, "raw"), scans=scans, seed=seed, progress=False)
    out = os.path.join(root, "store")
    ctstream.ingest(
        d["out"], out, annotations=d["annotations"], candidates=d["candidates"], progress=False
    )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--ctstream",
        default="target/release/ctstream",
        help="the ctstream binary (for `ctstream bench`)",
    )
    ap.add_argument(
        "--store",
        help="the store to read (default: ingest --scans full-size synthetic scans into a temporary folder)",
    )
    ap.add_argument("--scans", type=int, default=10)
    ap.add_argument(
        "--seconds", type=float, default=10.0, help="measured seconds per round and side"
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--cache-mb", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--batches-per-epoch",
        type=int,
        default=1 << 40,
        help="batches in an epoch of the Python side (each epoch one DataLoader pass); default: one epoch longer than the run",
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if not os.path.exists(a.ctstream):
        sys.exit(f"{a.ctstream}: no such binary (cargo build --release, or give --ctstream)")
    with tempfile.TemporaryDirectory() as tmp:
        store = a.store
        if store is None:
            print(f"ingesting {a.scans} full-size synthetic scans ...", file=sys.stderr)
            store = synthetic_store(tmp, a.scans, a.seed)
        rust, py = [], []
        for i in range(a.rounds):
            rust.append(rust_round(a.ctstream, store, a))
            py.append(python_round(store, a))
            print(
                f"round {i + 1}: Rust {rust[-1]['patches_per_s']:.0f} patches/s, Python (torch tensors) {py[-1]['patches_per_s']:.0f} patches/s",
                file=sys.stderr,
            )
        r = statistics.median(x["patches_per_s"] for x in rust)
        p = statistics.median(x["patches_per_s"] for x in py)
        out = {
            "store": store,
            "scans": len(ctstream.Store(store)),
            "workers": a.workers,
            "batch_size": a.batch_size,
            "cache_mb": a.cache_mb,
            "seconds": a.seconds,
            "rust_patches_per_s": r,
            "python_torch_patches_per_s": p,
            "ratio": p / r,
            "rounds": {"rust": rust, "python": py},
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
        }
        if a.json:
            print(json.dumps(out, indent=2))
        else:
            print(f"ctstream bench (Rust)          {r:8.0f} patches/s (median of {a.rounds})")
            print(
                f"ctstream.torch (torch tensors) {p:8.0f} patches/s (median of {a.rounds})   Python / Rust = {p / r:.2f}"
            )


if __name__ == "__main__":
    main()
