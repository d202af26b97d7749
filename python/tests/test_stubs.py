"""The type stubs editors read (ctstream/_native.pyi, and the inline annotations marked by
py.typed) agree with the built extension and with the code that calls it."""

import subprocess
import sys

from conftest import ROOT


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=ROOT / "python"
    )


def test_native_stub_matches_the_extension():
    # stubtest imports ctstream._native and compares every name, signature and class.
    r = run("mypy.stubtest", "ctstream._native")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_package_and_the_example_type_check(tmp_path):
    r = run(
        "mypy",
        "--ignore-missing-imports",
        "--cache-dir",
        str(tmp_path),
        "ctstream",
        str(ROOT / "examples" / "train_torch.py"),
    )
    assert r.returncode == 0, r.stdout + r.stderr
