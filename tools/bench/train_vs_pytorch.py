"""ctstream's training step and prediction tile against PyTorch's, same network, same run.

    python3 tools/bench/train_vs_pytorch.py --ctstream target/release/ctstream [--quick]

For each configuration, times the PyTorch twin (tools/bench/twin.py) in this process, then
`ctstream bench-net --json` on each backend the binary has (flex, and LibTorch when built
with the feature `tch`), one after the other, and prints a markdown table of median
seconds per step and per tile with ctstream's ratio to PyTorch (lower is better; 1.00 is
parity). Parameter counts must be equal, or it stops.

Configurations (model, width, patch, batch): the two of issue 14 (U-Net 0.25 on 16x32x32 at
batch 4, V-Net 0.125 on 32x64x64 at batch 2) and both networks at full width on 32x64x64 at
batch 2. `--quick` runs only the first two. Requirements: tools/bench/requirements.txt.

Both sides do the same work per step: the batch made from host arrays, forward, Dice + BCE,
the loss and the probabilities read back to the host, backward, Adam (Burn's defaults).
Prediction: one call of `--predict-batch` tiles in inference mode, read back. The machine
may be shared: `--rounds` alternates the frameworks and reports medians over the rounds.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import twin  # noqa: E402

CONFIGS = [
    # (model, width, patch zyx, batch, timed steps, warm-up steps)
    ("unet3d", 0.25, (16, 32, 32), 4, 10, 2),
    ("vnet", 0.125, (32, 64, 64), 2, 6, 2),
    ("unet3d", 1.0, (32, 64, 64), 2, 3, 1),
    ("vnet", 1.0, (32, 64, 64), 2, 3, 1),
]


def ball_mask(patch):
    """The mask ctstream's bench uses (src/train/bench.rs `synthetic_batch`): a centred ball of
    radius min(patch) / 4."""
    z, y, x = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in patch], indexing="ij")
    c = [(s - 1) / 2 for s in patch]
    r = min(patch) / 4
    return (((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= r * r).astype(np.float32)


def time_torch(model, width, patch, batch, steps, warmup, predict_batch, predict_calls, seed=0):
    torch.manual_seed(seed)
    net = twin.build(model, width)
    opt = twin.adam(net, 1e-3)
    rng = np.random.default_rng(seed)
    images = rng.random((batch, 1, *patch), dtype=np.float32)
    masks = np.broadcast_to(ball_mask(patch), (batch, 1, *patch)).copy()
    net.train()
    step_s, losses = [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        x, y = torch.from_numpy(images.copy()), torch.from_numpy(masks.copy())
        p = net(x)
        loss = twin.dice_bce(p, y)
        value = loss.item()
        probs = p.detach().numpy().copy()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            step_s.append(time.perf_counter() - t0)
            losses.append(value)
        del probs
    call_s = []
    if predict_batch > 0:
        net.eval()
        tiles = rng.random((predict_batch, 1, *patch), dtype=np.float32)
        with torch.inference_mode():
            for i in range(predict_calls + 1):
                t0 = time.perf_counter()
                out = net(torch.from_numpy(tiles.copy())).numpy().copy()
                if i > 0:
                    call_s.append(time.perf_counter() - t0)
                del out
    return {
        "params": twin.num_params(net),
        "median_step_s": statistics.median(step_s),
        "median_tile_s": statistics.median(call_s) / predict_batch if call_s else None,
        "loss": losses,
    }


def time_ctstream(
    binary, backend, model, width, patch, batch, steps, warmup, predict_batch, predict_calls
):
    argv = [
        binary,
        "bench-net",
        "--json",
        "--backend",
        backend,
        "--model",
        model,
        "--width",
        str(width),
        "--patch",
        ",".join(map(str, patch)),
        "--batch-size",
        str(batch),
        "--steps",
        str(steps),
        "--warmup",
        str(warmup),
        "--loss",
        "dice-bce",
        "--predict-batch",
        str(predict_batch),
        "--predict-calls",
        str(predict_calls),
    ]
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr.strip().splitlines()[
            -1
        ] if r.stderr.strip() else f"exit {r.returncode}"
    return json.loads(r.stdout), None


def backends_of(binary):
    """flex always; libtorch when the binary has it (it says so when asked for it)."""
    found = ["burn"]
    r = subprocess.run(
        [
            binary,
            "bench-net",
            "--backend",
            "libtorch",
            "--width",
            "0.0625",
            "--patch",
            "16,16,16",
            "--batch-size",
            "1",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--predict-batch",
            "0",
        ],
        capture_output=True,
        text=True,
    )
    if r.returncode == 0:
        found.append("libtorch")
    return found


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--ctstream", default="target/release/ctstream", help="the ctstream binary")
    ap.add_argument("--quick", action="store_true", help="only the two small configurations")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="PyTorch intra-op threads [default: PyTorch's own, the physical cores]",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of PyTorch then ctstream LibTorch (flex: the first only)",
    )
    ap.add_argument("--predict-batch", type=int, default=8)
    ap.add_argument("--predict-calls", type=int, default=3)
    ap.add_argument("--json", help="also write every measurement to this file")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    backends = backends_of(a.ctstream)
    print(
        f"# {cpu_name()}, {os.cpu_count()} logical cores; PyTorch {torch.__version__} with {torch.get_num_threads()} threads "
        f"(oneDNN {'on' if torch.backends.mkldnn.is_available() else 'off'}); ctstream backends: {', '.join(backends)}\n",
        flush=True,
    )
    rows, results = [], []
    for model, width, patch, batch, steps, warmup in CONFIGS[:2] if a.quick else CONFIGS:
        name = f"{model} {width}, {'x'.join(map(str, patch))}, batch {batch}"
        # Rounds alternate the frameworks, so that a slow spell of this shared machine
        # falls on both; each figure is the median over its rounds' medians. flex, far
        # from parity, runs in the first round only.
        runs = {"pytorch": [], **{b: [] for b in backends}}
        errors = {}
        for r in range(a.rounds):
            runs["pytorch"].append(
                time_torch(
                    model,
                    width,
                    patch,
                    batch,
                    steps,
                    warmup,
                    a.predict_batch,
                    a.predict_calls,
                    seed=r,
                )
            )
            for b in backends:
                if b == "burn" and r > 0:
                    continue
                cs, err = time_ctstream(
                    a.ctstream,
                    b,
                    model,
                    width,
                    patch,
                    batch,
                    steps,
                    warmup,
                    a.predict_batch,
                    a.predict_calls,
                )
                if cs is None:
                    errors[b] = err
                    continue
                if cs["params"] != runs["pytorch"][0]["params"]:
                    sys.exit(
                        f"{name}: ctstream's network has {cs['params']} parameters, the PyTorch twin {runs['pytorch'][0]['params']}"
                    )
                runs[b].append(cs)
        med = {
            k: (
                statistics.median(x["median_step_s"] for x in v),
                statistics.median(x["median_tile_s"] for x in v),
            )
            for k, v in runs.items()
            if v
        }
        pt_step, pt_tile = med["pytorch"]
        cells = [name, f"{runs['pytorch'][0]['params']:,}", f"{pt_step:.3f}"]
        tile_cells = [f"{pt_tile * 1000:.1f}"]
        for b in backends:
            if b not in med:
                cells.append(f"failed: {errors.get(b)}")
                tile_cells.append("-")
                continue
            step, tile = med[b]
            cells.append(f"{step:.3f} ({step / pt_step:.2f}x)")
            tile_cells.append(f"{tile * 1000:.1f} ({tile / pt_tile:.2f}x)")
        rows.append(cells + tile_cells)
        results.append({"config": name, "runs": runs, "errors": errors})
        print(f"  done: {name}", file=sys.stderr, flush=True)
    label = {"burn": "flex", "libtorch": "LibTorch"}
    head = (
        ["network, patch, batch", "parameters", "PyTorch s/step"]
        + [f"ctstream {label[b]} s/step" for b in backends]
        + ["PyTorch ms/tile"]
        + [f"ctstream {label[b]} ms/tile" for b in backends]
    )
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {
                    "cpu": cpu_name(),
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "results": results,
                },
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
