"""Fixtures of the Python package's tests: a small synthetic store, made by the `ctstream`
binary's `synth` and ingested through `ctstream.ingest` (so ingest is tested as well), and
that binary itself (the Rust side of the byte-for-byte comparisons).

The binary is `$CTSTREAM_BIN`, or `target/release/ctstream` of this repository (what
tools/test.sh builds)."""

import json
import os
import subprocess
from pathlib import Path

import ctstream
import pytest

ROOT = Path(__file__).resolve().parents[2]


def ctstream_bin() -> str:
    b = os.environ.get("CTSTREAM_BIN") or str(ROOT / "target" / "release" / "ctstream")
    if not os.path.exists(b):
        pytest.fail(
            f"the ctstream binary {b} is missing: build it (cargo build --release) or set CTSTREAM_BIN"
        )
    return b


def run_cli(*args: str) -> str:
    r = subprocess.run([ctstream_bin(), "-q", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"ctstream {' '.join(args)} exited {r.returncode}: {r.stderr}")
    return r.stdout


@pytest.fixture(scope="session")
def raw(tmp_path_factory) -> Path:
    """A synthetic LUNA-style dataset: 4 small scans with annotations and candidates."""
    d = tmp_path_factory.mktemp("raw")
    run_cli("synth", "--out", str(d), "--scans", "4", "--small", "--seed", "5")
    return d


@pytest.fixture(scope="session")
def store_path(raw, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("store") / "store"
    summary = ctstream.ingest(
        raw,
        out,
        annotations=raw / "annotations.csv",
        candidates=raw / "candidates.csv",
        jobs=2,
        progress=False,
    )
    assert len(summary["stored"]) == 4 and not summary["failed"], summary
    return out


@pytest.fixture(scope="session")
def store(store_path) -> ctstream.Store:
    return ctstream.Store(store_path)


def rust_batches(store_path, **flags) -> list:
    """`ctstream batches --json` with these flags (``batch_size=4`` -> ``--batch-size 4``)."""
    args = ["batches", "--store", str(store_path), "--json"]
    for k, v in flags.items():
        args += [
            f"--{k.replace('_', '-')}",
            ",".join(map(str, v)) if isinstance(v, (tuple, list)) else str(v),
        ]
    return [json.loads(line) for line in run_cli(*args).splitlines()]


def loader_threads() -> int:
    """Threads of this process named by the loader (`ctstream.loader.N`, cut to 15 bytes)."""
    n = 0
    for t in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{t}/comm") as f:
                n += f.read().startswith("ctstream.loader")
        except FileNotFoundError:
            pass
    return n
