"""ctstream's loader beside the peers and the NumPy bounds, on the same scans, in one run.

    python -m venv peersvenv && peersvenv/bin/pip install -r tools/bench/requirements-peers.txt
    peersvenv/bin/python tools/bench/peers.py --ctstream target/release/ctstream --store STORE

Every loader delivers batches of 8 patches of 32x64x64, image and mask as float32, 80 % of
the patches centred on a nodule (within 8 voxels), from the same scans (the store's
volumes on its grid, exported once with `ctstream export`; masks are the nodule spheres of
the store's index), with 2 threads:

- **ctstream**: `ctstream bench --store STORE --json` (f32 batches, and compact batches:
  int16 HU and uint8 masks, normalised later on the device).
- **NumPy f32 bound**: whole scans in memory as int16 and a uint8 mask volume;
  `vol[z:z+32, y:y+64, x:x+64].astype(np.float32)` for image and mask.
- **NumPy int16 bound**: the int16 crop copy of the image alone (the compact target).
- **blosc2 memory map, nnU-Net style**: each scan and mask written as a `.b2nd` file
  (ZSTD level 8, as nnU-Net's `save_case`; chunks and blocks by nnU-Net's
  `comp_blosc2_params` where nnunetv2 is installed, else chunks of the patch's shape and
  blocks of half of it), opened with
  `mmap_mode="r"` and one decompression thread as nnU-Net's dataset opens them; a crop is
  a slice of the memory-mapped array, then cast.
- **medrs** (Rust NIfTI reader): `medrs.load_cropped` of the image and the mask from
  uncompressed NIfTI files (crop-first loads), as float32.

- **medkit-rs** (Rust + PyO3), with `--medkit PATH` to its CLI (`medkit`, not in its wheel:
  built from its source at the wheel's tag, `cargo build --release -p medkit-cli` at
  v0.1.1): the NIfTI files in nnU-Net's layout, `medkit dataset validate`, `medkit
  prepare` with a plan that windows to the same HU range and scales to 0..1 (its cache:
  float32, uncompressed), `medkit sample --strategy foreground-balanced` (patches planned
  ahead; its own share of foreground), then its native `DatasetHandle` with the volumes
  resident in memory, each thread filling float32 batch buffers (`fill_batch_ptr`).

Each loader runs in a process of its own (so its peak RSS is its own), rounds alternate
between them; medians and the ratios the README reports are printed (``--json``: every
round).
"""

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

PATCH = (32, 64, 64)
BATCH = 8
POSITIVE = 0.8
JITTER = 8
PEERS = ("numpy_f32", "numpy_int16", "blosc2", "medrs")
WINDOW = (-1000.0, 400.0)


def export(ctstream, store, work, scans):
    """Writes each of the first `scans` scans as int16 NIfTI (z, y, x in C order), its nodule
    mask as uint8 NIfTI and both as blosc2 files; returns the list of cases."""
    import blosc2
    import nibabel as nib
    import numpy as np
    import pyarrow.parquet as pq

    rows = pq.read_table(os.path.join(store, "index", "scans.parquet")).to_pylist()[:scans]
    nodules = pq.read_table(os.path.join(store, "index", "nodules.parquet")).to_pylist()
    try:  # nnU-Net's own rule for chunks and blocks, where it is installed
        from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params
    except ImportError:
        comp_blosc2_params = None
    blosc2.set_nthreads(1)
    cases = []
    for s in rows:
        sid = s["series_id"]
        base = os.path.join(work, sid)
        nii = base + ".nii"
        subprocess.run(
            [ctstream, "export", store, "--series", sid, "--out", nii, "-q"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        # NIfTI holds x fastest: the array nibabel gives is (x, y, z).
        hu = np.ascontiguousarray(np.asarray(nib.load(nii).dataobj).transpose(2, 1, 0))
        hu = hu.astype(np.int16)
        mask = np.zeros(hu.shape, np.uint8)
        zz, yy, xx = np.ogrid[: hu.shape[0], : hu.shape[1], : hu.shape[2]]
        spacing = (s["spacing_z"], s["spacing_y"], s["spacing_x"])
        centres = []
        for n in nodules:
            d = n["diameter_mm"]
            if n["series_id"] != sid or d is None or not math.isfinite(d) or d <= 0:
                continue
            c = (n["voxel_z"], n["voxel_y"], n["voxel_x"])
            r = [d / 2 / sp for sp in spacing]
            inside = (
                ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
            ) <= 1
            mask[inside] = 1
            centres.append([int(round(v)) for v in c])
        # Our own files, in one layout: (z, y, x) C order, x fastest on disk.
        nib.save(nib.Nifti1Image(hu.transpose(2, 1, 0), np.eye(4)), nii)
        nib.save(nib.Nifti1Image(mask.transpose(2, 1, 0), np.eye(4)), base + "_mask.nii")
        for path, a in ((base + ".b2nd", hu), (base + "_mask.b2nd", mask)):
            if os.path.exists(path):
                os.remove(path)
            # Without nnunetv2: chunks of the patch's shape, blocks of half of it (the aim
            # of nnU-Net's rule: a patch touches few chunks, a block fits a core's cache).
            kw = {"chunks": PATCH, "blocks": tuple(p // 2 for p in PATCH)}
            if comp_blosc2_params is not None:
                blocks, chunks = comp_blosc2_params(a[None].shape, PATCH, a.itemsize)
                kw = {"chunks": tuple(chunks[1:]), "blocks": tuple(blocks[1:])}
            blosc2.asarray(
                a,
                urlpath=path,
                cparams={"codec": blosc2.Codec.ZSTD, "clevel": 8},
                mmap_mode="w+",
                **kw,
            )
        cases.append({"id": sid, "shape": list(hu.shape), "centres": centres, "base": base})
    return cases


def prepare_medkit(medkit, cases, work, seed):
    """medkit-rs's cache and patch plan for the cases (see the module docs)."""
    root = os.path.join(work, "medkit")
    shutil.rmtree(root, ignore_errors=True)
    for sub in ("imagesTr", "labelsTr"):
        os.makedirs(os.path.join(root, "raw", sub))
    for k, c in enumerate(cases):
        name = f"case{k:03d}"
        os.link(c["base"] + ".nii", os.path.join(root, "raw", "imagesTr", f"{name}_0000.nii"))
        os.link(c["base"] + "_mask.nii", os.path.join(root, "raw", "labelsTr", f"{name}.nii"))
    with open(os.path.join(root, "plan.toml"), "w") as f:
        f.write(
            'name = "ctstream-peers"\nimage_interpolation = "linear"\nlabel_interpolation = "nearest"\n'
            '[[operations]]\nop = "resample"\nspacing = [1.0, 1.0, 1.0]\n'
            f'[[operations]]\nop = "ct_window"\nmin = {WINDOW[0]}\nmax = {WINDOW[1]}\n'
            '[[operations]]\nop = "min_max_normalize"\n'
        )
    steps = [
        ["dataset", "validate", "raw", "--images", "imagesTr", "--labels", "labelsTr"],
        ["prepare", ".", "--manifest", "manifest.json", "--plan", "plan.toml", "--cache", "cache"],
        ["sample", "cache", "--patch", f"{PATCH[2]},{PATCH[1]},{PATCH[0]}"],
    ]
    steps[0] += ["--layout", "nnunet", "--out", "manifest.json", "--report", "report.txt"]
    steps[2] += ["--strategy", "foreground-balanced", "--count", "4096", "--out", "patches.jsonl"]
    steps[2] += ["--seed", str(seed)]
    for step in steps:
        subprocess.run([medkit, *step], cwd=root, check=True, stdout=subprocess.DEVNULL)
    return root


def plan(cases, seed, n):
    """`n` patch starts (case, z, y, x): POSITIVE of them on a nodule (jittered), the rest
    anywhere; inside the scan."""
    import numpy as np

    rng = np.random.default_rng(seed)
    with_nodules = [k for k, c in enumerate(cases) if c["centres"]]
    out = []
    for _ in range(n):
        if with_nodules and rng.random() < POSITIVE:
            k = int(rng.choice(with_nodules))
            c = cases[k]["centres"][rng.integers(len(cases[k]["centres"]))]
            centre = [c[a] + int(rng.integers(-JITTER, JITTER + 1)) for a in range(3)]
        else:
            k = int(rng.integers(len(cases)))
            centre = [int(rng.integers(cases[k]["shape"][a])) for a in range(3)]
        shape = cases[k]["shape"]
        start = [min(max(centre[a] - PATCH[a] // 2, 0), shape[a] - PATCH[a]) for a in range(3)]
        out.append((k, *start))
    return out


def reader(name, cases):
    """A function (case, z, y, x) -> (image, mask) as the peer `name` reads a patch."""
    import numpy as np

    sl = lambda z, y, x: (slice(z, z + PATCH[0]), slice(y, y + PATCH[1]), slice(x, x + PATCH[2]))  # noqa: E731
    if name in ("numpy_f32", "numpy_int16"):
        import nibabel as nib

        vols = []
        for c in cases:
            hu = np.ascontiguousarray(np.asarray(nib.load(c["base"] + ".nii").dataobj).T)
            m = np.ascontiguousarray(np.asarray(nib.load(c["base"] + "_mask.nii").dataobj).T)
            vols.append((hu, m))
        if name == "numpy_int16":
            return lambda k, z, y, x: (vols[k][0][sl(z, y, x)].copy(), None)
        return lambda k, z, y, x: (
            vols[k][0][sl(z, y, x)].astype(np.float32),
            vols[k][1][sl(z, y, x)].astype(np.float32),
        )
    if name == "blosc2":
        import blosc2

        blosc2.set_nthreads(1)
        arrs = [
            (
                blosc2.open(c["base"] + ".b2nd", mmap_mode="r", dparams={"nthreads": 1}),
                blosc2.open(c["base"] + "_mask.b2nd", mmap_mode="r", dparams={"nthreads": 1}),
            )
            for c in cases
        ]
        return lambda k, z, y, x: (
            arrs[k][0][sl(z, y, x)].astype(np.float32),
            arrs[k][1][sl(z, y, x)].astype(np.float32),
        )
    if name == "medrs":
        import medrs

        # medrs indexes a file as NIfTI does, (i, j, k) = (x, y, z), and returns (x, y, z).
        size = [PATCH[2], PATCH[1], PATCH[0]]

        def read(k, z, y, x):
            b = cases[k]["base"]
            img = medrs.load_cropped(b + ".nii", [x, y, z], size).to_numpy()
            msk = medrs.load_cropped(b + "_mask.nii", [x, y, z], size).to_numpy()
            return img.transpose(2, 1, 0), msk.transpose(2, 1, 0)

        return read
    raise ValueError(name)


def check_layout(cases):
    """medrs reads the crops the NumPy peers read (same axes, same values)."""
    import numpy as np

    np_read, md_read = reader("numpy_f32", cases[:1]), reader("medrs", cases[:1])
    for start in plan(cases[:1], 1, 3):
        a, b = np_read(*start), md_read(*start)
        if a[0].shape != b[0].shape or not np.array_equal(a[0], b[0]):
            sys.exit(f"medrs reads another crop than NumPy at {start}: {b[0].shape}")


def vm_hwm():
    """Peak resident memory of this process (VmHWM), bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_peer(name, cases, seconds, threads, seed):
    """Patches/s of `name` on `threads` threads for `seconds` after a warm-up."""
    import numpy as np

    # A forked child starts with its parent's peak: reset it (Linux), so it is the peer's.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

    stop, counts = threading.Event(), [0] * threads
    if name == "medkit":
        from medkit_rs import _native

        # Its cache names its files relative to the folder it was made in.
        os.chdir(cases[0]["medkit"])
        handle = _native.DatasetHandle("cache", "patches.jsonl", "resident")

        def work(t):
            shape = (BATCH, 1, *PATCH)
            img, lbl = np.empty(shape, np.float32), np.empty(shape, np.float32)
            i = t * BATCH
            while not stop.is_set():
                handle.fill_batch_ptr(
                    i % (handle.records - BATCH), BATCH, img.ctypes.data, lbl.ctypes.data
                )
                counts[t] += BATCH
                i += BATCH * threads

        return timed(work, threads, seconds, stop, counts)
    read = reader(name, cases)
    starts = plan(cases, seed, 4096)

    def work(t):
        i = t
        while not stop.is_set():
            batch = [read(*starts[(i + j) % len(starts)]) for j in range(BATCH)]
            np.stack([b[0] for b in batch])
            if batch[0][1] is not None:
                np.stack([b[1] for b in batch])
            counts[t] += BATCH
            i += BATCH * threads

    return timed(work, threads, seconds, stop, counts)


def timed(work, threads, seconds, stop, counts):
    """Runs `work(t)` on `threads` threads; patches/s after a warm-up, and the peak RSS."""
    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for p in pool:
        p.start()
    time.sleep(min(seconds / 4, 5.0))
    c0, t0 = sum(counts), time.perf_counter()
    time.sleep(seconds)
    n, elapsed = sum(counts) - c0, time.perf_counter() - t0
    stop.set()
    for p in pool:
        p.join()
    return {
        "patches_per_s": n / elapsed,
        "peak_rss_bytes": vm_hwm(),
    }


def run_ctstream(binary, store, seconds, threads, cache_mb):
    cmd = [binary, "-q", "bench", "--store", store, "--seconds", str(seconds)]
    cmd += ["--workers", str(threads), "--cache", str(cache_mb), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()}")
    rep = json.loads(r.stdout)
    c = rep.get("compact") or {}
    return {
        "ctstream": {
            "patches_per_s": rep["patches_per_s"],
            "peak_rss_bytes": rep["peak_rss_bytes"],
        },
        "ctstream_compact": {
            "patches_per_s": c.get("patches_per_s", float("nan")),
            "peak_rss_bytes": c.get("peak_rss_bytes", 0),
        },
    }


def size_of(paths):
    return sum(os.path.getsize(p) for p in paths if os.path.exists(p))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ctstream", default="target/release/ctstream")
    ap.add_argument("--store", required=True, help="a ctstream store (local folder)")
    ap.add_argument("--scans", type=int, default=8, help="the first N scans of the store")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-mb", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", help="folder for the peers' files (default: temporary)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--medkit", help="medkit-rs's CLI (built from its source): adds medkit-rs")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # a peer's own process
    ap.add_argument("--cases", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        with open(a.cases) as f:
            cases = json.load(f)
        print(json.dumps(run_peer(a.one, cases, a.seconds, a.threads, a.seed)))
        return
    work = a.work or tempfile.mkdtemp(prefix="ctstream-peers-")
    os.makedirs(work, exist_ok=True)
    try:
        cases = export(a.ctstream, a.store, work, a.scans)
        check_layout(cases)
        peers = PEERS
        if a.medkit:
            root = prepare_medkit(a.medkit, cases, work, a.seed)
            for c in cases:
                c["medkit"] = root
            peers = (*PEERS, "medkit")
        cases_file = os.path.join(work, "cases.json")
        with open(cases_file, "w") as f:
            json.dump(cases, f)
        rounds = []
        for r in range(a.rounds):
            got = run_ctstream(a.ctstream, a.store, a.seconds, a.threads, a.cache_mb)
            for name in peers:
                cmd = [sys.executable, __file__, "--one", name, "--cases", cases_file]
                cmd += ["--store", a.store]
                cmd += ["--seconds", str(a.seconds), "--threads", str(a.threads)]
                cmd += ["--seed", str(a.seed + r)]
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    sys.exit(f"{name} failed: {out.stderr.strip()[-2000:]}")
                got[name] = json.loads(out.stdout)
            rounds.append(got)
            if not a.json:
                line = ", ".join(f"{k} {v['patches_per_s']:.0f}" for k, v in got.items())
                print(f"round {r + 1}: {line}", file=sys.stderr)
        names = list(rounds[0])
        med = {n: statistics.median(r[n]["patches_per_s"] for r in rounds) for n in names}
        peak = {n: max(r[n]["peak_rss_bytes"] for r in rounds) for n in names}
        bases = [c["base"] for c in cases]
        disk = {
            "ctstream": sum(
                os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(a.store) for f in fs
            ),
            "blosc2": size_of([b + s for b in bases for s in (".b2nd", "_mask.b2nd")]),
            "medrs": size_of([b + s for b in bases for s in (".nii", "_mask.nii")]),
        }
        if a.medkit:
            cache = os.path.join(work, "medkit", "cache")
            disk["medkit"] = sum(
                os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(cache) for f in fs
            )
        ratios = {
            "ctstream / numpy_f32": med["ctstream"] / med["numpy_f32"],
            "ctstream_compact / ctstream": med["ctstream_compact"] / med["ctstream"],
            "ctstream_compact / numpy_int16": med["ctstream_compact"] / med["numpy_int16"],
            "ctstream / blosc2": med["ctstream"] / med["blosc2"],
            "ctstream / medrs": med["ctstream"] / med["medrs"],
        }
        if a.medkit:
            ratios["ctstream / medkit"] = med["ctstream"] / med["medkit"]
            ratios["ctstream_compact / medkit"] = med["ctstream_compact"] / med["medkit"]
        result = {"median_patches_per_s": med, "peak_rss_bytes": peak, "disk_bytes": disk}
        result.update({"ratios": ratios, "rounds": rounds, "scans": len(cases)})
        if a.json:
            print(json.dumps(result, indent=2))
            return
        print(
            f"{len(cases)} scans, {a.threads} threads, batch {BATCH} of {PATCH}, {a.rounds} rounds of {a.seconds} s"
        )
        for n in names:
            rss = peak[n] / 2**30
            print(f"{n:18s} {med[n]:8.0f} patches/s   peak RSS {rss:5.2f} GiB")
        for k, v in disk.items():
            print(f"on disk  {k:10s} {v / 1e6:8.0f} MB")
        for k, v in ratios.items():
            print(f"{k:32s} {v:6.2f}")
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
