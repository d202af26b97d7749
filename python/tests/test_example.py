"""examples/train_torch.py trains from ctstream.torch: a few steps on the test store, with
a tiny U-Net, must run, report what it promises, and learn (the loss falls)."""

import json
import math
import subprocess
import sys

from conftest import ROOT


def test_train_torch_example_runs_and_learns(store_path):
    cmd = [
        sys.executable,
        str(ROOT / "examples" / "train_torch.py"),
        "--store",
        str(store_path),
        "--steps",
        "30",
        "--log",
        "5",
        "--batch-size",
        "2",
        "--patch",
        "16,32,32",
        "--width",
        "4",
        "--lr",
        "3e-3",
        "--device",
        "cpu",
        "--json",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    logged, summary = rows[:-1], rows[-1]
    assert [row["step"] for row in logged] == [5, 10, 15, 20, 25, 30]
    assert summary["steps"] == 30 and summary["final_loss"] == logged[-1]["loss"]
    for row in logged:
        assert (
            math.isfinite(row["loss"]) and 0 <= row["dice"] <= 1 and 0 <= row["loader_share"] <= 1
        ), row
    # Soft Dice + BCE starts near 1 + ln 2 for a fresh network and falls as it fits the masks.
    assert logged[-1]["loss"] < logged[0]["loss"], logged
    # The store's epoch is shorter than 30 batches: the example goes on into the next epochs.
    assert logged[-1]["epoch"] >= 1
