#!/usr/bin/env bash
# ctstream's test command: every test this machine can run.
#
# - With cmake and a C++ compiler, JPEG-LS decoding (CharLS) is built and its goldens
#   are checked; without, the JPEG-LS test checks the clear error instead.
# - With the pinned Python readers (pip install -r tools/goldens/requirements.txt), the
#   goldens are regenerated from SimpleITK/pydicom and must equal the committed ones, and
#   the tests cross-check files ctstream writes against SimpleITK.
# CI (.ci/run) installs both and sets CTSTREAM_REQUIRE_JPEGLS / CTSTREAM_REQUIRE_PYTHON,
# so nothing is skipped there.
set -euo pipefail
cd "$(dirname "$0")/.."

data="${CTSTREAM_TEST_DATA:-../shared/data}"

# The default features (training with Burn on the CPU and CUDA) are always built and
# tested; JPEG-LS where it can be built (tools/features.sh). One release build serves the
# tests and the binary (Burn's numeric code is far too slow unoptimised).
features=$(tools/features.sh)

if python3 -c 'import SimpleITK, pydicom, numpy, zstandard, pyarrow, duckdb' >/dev/null 2>&1; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 tools/goldens/make_goldens.py --data "$data" --out "$tmp" >/dev/null
    if ! diff -ru tests/goldens "$tmp"; then
        echo "error: tools/goldens/make_goldens.py no longer produces the committed goldens (diff above)" >&2
        exit 1
    fi
    echo "goldens: regenerated from SimpleITK/pydicom, identical to tests/goldens/"
elif [ -n "${CTSTREAM_REQUIRE_PYTHON:-}" ]; then
    echo "error: CTSTREAM_REQUIRE_PYTHON is set but the pinned Python packages are not importable" >&2
    exit 1
else
    echo "note: Python packages missing: goldens not regenerated, Python cross-checks skipped"
    echo "      (pip install -r tools/goldens/requirements.txt -r tools/python/requirements.txt to run them)"
fi

# Build every target first (tests, benches, the binary): `cargo build --all-targets`
# resolves features with the dev-dependencies exactly as `cargo test` does, so this one
# build is the release binary with CUDA that CI must build, and the tests reuse it.
cargo build --release --locked --all-targets --features "$features"
cargo test --release --locked --features "$features"
