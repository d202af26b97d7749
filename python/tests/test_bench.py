"""python/bench.py runs both sides on one store and reports what it claims (the figures
themselves belong in the README, from a long run: this is not a timed test)."""

import json
import subprocess
import sys

from conftest import ROOT, ctstream_bin


def test_bench_script_measures_both_sides(store_path):
    cmd = [
        sys.executable,
        str(ROOT / "python" / "bench.py"),
        "--ctstream",
        ctstream_bin(),
        "--store",
        str(store_path),
        "--seconds",
        "0.5",
        "--rounds",
        "1",
        "--batch-size",
        "4",
        "--json",
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    (rust,), (py,) = out["rounds"]["rust"], out["rounds"]["python"]
    assert rust["patches"] > 0 and py["patches"] > 0 and py["patches"] % 4 == 0
    assert out["python_torch_patches_per_s"] == py["patches"] / py["seconds"]
    assert out["ratio"] == out["python_torch_patches_per_s"] / out["rust_patches_per_s"]
    assert out["scans"] == 4 and out["batch_size"] == 4
