#!/usr/bin/env bash
# Prints the cargo features ctstream is built and tested with on this machine, so that
# tools/test.sh and tools/gpu-check.sh build the same thing (and share the build):
# training with CUDA always, JPEG-LS (CharLS) where cmake and a C++ compiler are present.
# With CTSTREAM_REQUIRE_JPEGLS set, a missing cmake/c++ is an error (exit 1).
set -euo pipefail
if command -v cmake >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1; then
    echo "train,cuda,jpegls"
elif [ -n "${CTSTREAM_REQUIRE_JPEGLS:-}" ]; then
    echo "error: CTSTREAM_REQUIRE_JPEGLS is set but cmake or c++ is missing" >&2
    exit 1
else
    echo "note: cmake/c++ not found: JPEG-LS is not built; its test checks the clear error instead" >&2
    echo "train,cuda"
fi
