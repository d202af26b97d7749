"""Train a small 3D U-Net in plain PyTorch on nodule-centred patches streamed by ctstream.

    pip install ./python torch
    python examples/train_torch.py                    # a synthetic store, made on the spot
    python examples/train_torch.py --store luna-store --steps 2000 --device cuda

Without --store it writes a small synthetic LUNA-like dataset (ctstream.synth) and ingests
it (ctstream.ingest) into a temporary folder first. Every --log steps it prints the loss
(soft Dice + BCE, as `ctstream train`), the batch's Dice of the thresholded prediction,
and the share of the step spent waiting for the loader: near 0 means the GPU (or CPU)
never waits for data. The loader's worker threads are in Rust, so the DataLoader has
num_workers=0 and batch_size=None (the dataset yields whole batches).
"""

import argparse
import json
import os
import sys
import tempfile
import time

import ctstream
import ctstream.torch
import torch
import torch.nn.functional as F
from torch import nn


def block(cin, cout):
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
        nn.Conv3d(cout, cout, 3, padding=1),
        nn.BatchNorm3d(cout),
        nn.ReLU(inplace=True),
    )


class UNet3d(nn.Module):
    """A small 3D U-Net: `levels` poolings, `width` channels at the top, doubling below."""

    def __init__(self, width=8, levels=2):
        super().__init__()
        chans = [width * 2**i for i in range(levels + 1)]
        self.down = nn.ModuleList(
            [block(1, chans[0])] + [block(chans[i], chans[i + 1]) for i in range(levels)]
        )
        self.up = nn.ModuleList(
            [
                nn.ConvTranspose3d(chans[i + 1], chans[i], 2, stride=2)
                for i in reversed(range(levels))
            ]
        )
        self.merge = nn.ModuleList([block(2 * chans[i], chans[i]) for i in reversed(range(levels))])
        self.head = nn.Conv3d(chans[0], 1, 1)

    def forward(self, x):
        skips = []
        for i, down in enumerate(self.down):
            x = down(x if i == 0 else F.max_pool3d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)  # logits


def soft_dice(p, t, smooth=1.0):
    return (2 * (p * t).sum() + smooth) / (p.sum() + t.sum() + smooth)


def hard_dice(p, t):
    """Dice of the prediction thresholded at 0.5 against the mask (1 when both are empty)."""
    b = (p > 0.5).float()
    denom = b.sum() + t.sum()
    return 1.0 if denom == 0 else float(2 * (b * t).sum() / denom)


def synthetic_store(root, scans, seed):
    raw = os.path.join(root, "raw")
    d = ctstream.synth(raw, scans=scans, small=True, seed=seed, progress=False)
    out = os.path.join(root, "store")
    s = ctstream.ingest(
        d["out"], out, annotations=d["annotations"], candidates=d["candidates"], progress=False
    )
    print(
        f"synthetic store: {len(s['stored'])} scans, {s['nodules_indexed']} nodules in {out}",
        file=sys.stderr,
    )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", help="a ctstream store (default: make a synthetic one)")
    ap.add_argument("--scans", type=int, default=6, help="scans of the synthetic store")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--patch", default="32,64,64", help="z,y,x voxels")
    ap.add_argument("--width", type=int, default=8, help="channels of the U-Net's first level")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--workers", type=int, default=2, help="the loader's Rust threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--log", type=int, default=10, help="print every N steps")
    ap.add_argument(
        "--json", action="store_true", help="one JSON line per logged step, then the summary"
    )
    a = ap.parse_args(argv)
    patch = tuple(int(v) for v in a.patch.split(","))
    torch.manual_seed(a.seed)
    device = torch.device(a.device)

    with tempfile.TemporaryDirectory() as tmp:
        store = a.store or synthetic_store(tmp, a.scans, a.seed)
        ds = ctstream.torch.PatchDataset(
            store,
            patch=patch,
            batch_size=a.batch_size,
            workers=a.workers,
            seed=a.seed,
            augment="flip",
        )
        dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=0)
        net = UNet3d(a.width).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=a.lr)
        print(
            f"{sum(p.numel() for p in net.parameters())} parameters, {len(ds)} batches per epoch, {a.device}",
            file=sys.stderr,
        )

        step, wait_total, step_total, logged = 0, 0.0, 0.0, []
        while step < a.steps:
            it = iter(dl)  # one epoch per pass
            while step < a.steps:
                t0 = time.perf_counter()
                try:
                    batch = next(it)
                except StopIteration:
                    break
                image = batch["image"].to(device, non_blocking=True)
                mask = batch["mask"].to(device, non_blocking=True)
                t1 = time.perf_counter()
                logits = net(image)
                p = torch.sigmoid(logits)
                loss = (1 - soft_dice(p, mask)) + F.binary_cross_entropy_with_logits(logits, mask)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t2 = time.perf_counter()
                wait_total += t1 - t0
                step_total += t2 - t0
                step += 1
                if step % a.log == 0 or step == a.steps:
                    row = {
                        "step": step,
                        "epoch": batch["epoch"],
                        "loss": loss.item(),
                        "dice": hard_dice(p.detach(), mask),
                        "ms_per_step": 1e3 * step_total / step,
                        "loader_share": wait_total / step_total,
                    }
                    logged.append(row)
                    if a.json:
                        print(json.dumps(row), flush=True)
                    else:
                        print(
                            f"step {step:5d}  epoch {row['epoch']}  loss {row['loss']:.4f}  dice {row['dice']:.3f}  "
                            f"{row['ms_per_step']:.0f} ms/step  loader {100 * row['loader_share']:.1f} % of step time",
                            flush=True,
                        )
        summary = {
            "steps": step,
            "ms_per_step": 1e3 * step_total / max(step, 1),
            "loader_share": wait_total / max(step_total, 1e-12),
            "final_loss": logged[-1]["loss"] if logged else None,
        }
        print(
            json.dumps(summary)
            if a.json
            else f"done: {step} steps, {summary['ms_per_step']:.0f} ms/step, the loader {100 * summary['loader_share']:.1f} % of step time"
        )


if __name__ == "__main__":
    main()
