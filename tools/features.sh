#!/usr/bin/env bash
# Prints the cargo features ctstream is built and tested with on this machine, so that
# tools/test.sh and tools/gpu-check.sh build the same thing (and share the build):
# - training with CUDA always;
# - JPEG-LS (CharLS) where cmake and a C++ compiler are present;
# - LibTorch (`tch`) where python3 has the pinned PyTorch of tools/bench/requirements.txt
#   (the build then needs LIBTORCH_USE_PYTORCH=1, which tools/test.sh sets).
# With CTSTREAM_REQUIRE_JPEGLS / CTSTREAM_REQUIRE_LIBTORCH set, a missing one is an error
# (exit 1).
set -euo pipefail
cd "$(dirname "$0")/.."
features="train,cuda"
if command -v cmake >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1; then
    features="$features,jpegls"
elif [ -n "${CTSTREAM_REQUIRE_JPEGLS:-}" ]; then
    echo "error: CTSTREAM_REQUIRE_JPEGLS is set but cmake or c++ is missing" >&2
    exit 1
else
    echo "note: cmake/c++ not found: JPEG-LS is not built; its test checks the clear error instead" >&2
fi
if command -v python3 >/dev/null 2>&1 && missing=$(python3 tools/python/check_requirements.py tools/bench/requirements.txt 2>&1); then
    features="$features,tch"
elif [ -n "${CTSTREAM_REQUIRE_LIBTORCH:-}" ]; then
    echo "${missing:-python3 not found}" >&2
    echo "error: CTSTREAM_REQUIRE_LIBTORCH is set but python3 lacks the pinned PyTorch above" >&2
    exit 1
else
    echo "note: PyTorch 2.9.0 not installed: the LibTorch backend is not built or tested (pip install -r tools/bench/requirements.txt)" >&2
fi
echo "$features"
