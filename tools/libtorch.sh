#!/usr/bin/env bash
# Builds ctstream with the LibTorch backend (`--backend libtorch`, the default on the CPU
# once built in): PyTorch's CPU kernels (oneDNN) and cuDNN on GPUs, several times faster
# than the pure-Rust flex backend on the CPU (README, Performance).
#
#   tools/libtorch.sh [VENV]      # default VENV: .venv-libtorch
#
# 1. makes a Python virtual environment VENV with the pinned PyTorch 2.9.0
#    (tools/bench/requirements.txt: the version burn-tch 0.21 is made for; from PyPI, the
#    Linux wheel is the CUDA 12.8 build, about 3.5 GB to download and 6.8 GB installed);
# 2. builds target/release/ctstream with `--features tch` against the LibTorch inside it
#    (LIBTORCH_USE_PYTORCH=1; nothing else is downloaded). The binary finds LibTorch's
#    libraries in VENV by an rpath, so VENV must stay where it is; it needs no activation.
#
# It also serves tools/bench/train_vs_pytorch.py: run that with VENV/bin/python3.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-libtorch}"
if ! "$venv/bin/python3" tools/python/check_requirements.py tools/bench/requirements.txt 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/python3" -m pip install --disable-pip-version-check -r tools/bench/requirements.txt
fi
export LIBTORCH_USE_PYTORCH=1 PATH="$PWD/$venv/bin:$PATH"
cargo build --release --locked --features tch
echo "built target/release/ctstream with LibTorch ($(python3 -c 'import torch; print(torch.__version__)')); try: target/release/ctstream bench-net --backend libtorch"
