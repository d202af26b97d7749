#!/usr/bin/env bash
# ctstream's test command: every test this machine can run.
#
# - With cmake and a C++ compiler, JPEG-LS decoding (CharLS) is built and its goldens
#   are checked; without, the JPEG-LS test checks the clear error instead.
# - With the pinned Python packages (tools/goldens/requirements.txt and
#   tools/python/requirements.txt, checked by tools/python/check_requirements.py), the
#   goldens are regenerated from SimpleITK/pydicom and must equal the committed ones, and
#   the tests cross-check files ctstream writes against SimpleITK.
# - With the pinned PyTorch (tools/bench/requirements.txt), the LibTorch backend (feature
#   `tch`) is built against it and tested beside flex, and the PyTorch twins of the
#   networks are checked against them.
# - In a virtual environment with python/requirements.txt as well, the Python package
#   (python/) is built by maturin and its pytest suite run against the binary.
# - With moto's S3 server (tools/s3/requirements.txt, in target/s3-venv or
#   $CTSTREAM_S3_PYTHON), the object-storage tests run against it (tests/integration/remote.rs).
# The Rust tests that need one of these are marked #[ignore = "needs ..."], so a plain
# `cargo test` lists them as ignored, with the reason, rather than passing them; this
# script runs each group with `--ignored` where its packages are installed (the Python
# cross-checks: `with_python::`; the PyTorch twins: `with_pytorch::`; tests/integration/remote.rs)
# and says which groups it skipped.
# - With Chromium, chromedriver and Selenium (tools/view/requirements.txt), `ctstream view`
#   is tested in a headless browser (tools/view/browser_test.py).
# CI (.ci/run) installs all of them and sets CTSTREAM_REQUIRE_JPEGLS / _PYTHON / _LIBTORCH / _S3 / _BROWSER,
# so nothing is skipped there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step's time, so a slow one shows (CI prints these too).
last=$SECONDS
took() {
    echo "test.sh: $1 took $((SECONDS - last)) s"
    last=$SECONDS
}

# The real fixtures: $CTSTREAM_TEST_DATA, else ../shared/data; where neither holds them,
# fetched from upstream into target/fixtures (tools/fixtures.sh, checked by SHA-256).
data="${CTSTREAM_TEST_DATA:-../shared/data}"
if [ ! -f "$data/README.md" ]; then
    echo "fixtures: none in $data; fetching them into target/fixtures (tools/fixtures.sh)"
    tools/fixtures.sh target/fixtures
    data="$PWD/target/fixtures"
fi
export CTSTREAM_TEST_DATA="$(cd "$data" && pwd)"

# Tests talk to loopback only. A cloud client without credentials asks the instance
# metadata service (169.254.169.254) for them: point every such lookup at a closed
# loopback port, so a test that forgot its credentials fails at once instead of reaching
# out (tests/integration/robustness.rs checks the redirection works).
export GCE_METADATA_HOST=127.0.0.1:9 GCE_METADATA_IP=127.0.0.1:9
export AWS_METADATA_ENDPOINT=http://127.0.0.1:9 AWS_EC2_METADATA_DISABLED=true
export AZURE_MSI_ENDPOINT=http://127.0.0.1:9/metadata/identity/oauth2/token

# The default features (training with Burn on the CPU and CUDA) are always built and
# tested; JPEG-LS where it can be built (tools/features.sh). One release build serves the
# tests and the binary (Burn's numeric code is far too slow unoptimised).
features=$(tools/features.sh)
case ",$features," in
    # torch-sys finds LibTorch inside the installed PyTorch (no download).
    *,tch,*) export LIBTORCH_USE_PYTORCH=1 ;;
esac

# Every Python package the tests import is pinned in these two files; check_requirements.py
# names any that is missing or at another version (without importing anything).
requirements=(tools/goldens/requirements.txt tools/python/requirements.txt)
have_python=""
if missing=$(python3 tools/python/check_requirements.py "${requirements[@]}" 2>&1); then
    have_python=1
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 tools/goldens/make_goldens.py --data "$data" --out "$tmp" >/dev/null
    if ! diff -ru tests/goldens "$tmp"; then
        echo "error: tools/goldens/make_goldens.py no longer produces the committed goldens (diff above)" >&2
        exit 1
    fi
    echo "goldens: regenerated from SimpleITK/pydicom, identical to tests/goldens/"
    took "the goldens"
elif [ -n "${CTSTREAM_REQUIRE_PYTHON:-}" ]; then
    echo "$missing" >&2
    echo "error: CTSTREAM_REQUIRE_PYTHON is set but $(command -v python3) lacks the pinned packages above" >&2
    exit 1
else
    echo "note: pinned Python packages missing: goldens not regenerated, Python cross-checks skipped"
    echo "      (python3 -m pip install -r ${requirements[0]} -r ${requirements[1]} to run them)"
fi

# Build every target first (tests, benches, the binary): `cargo build --all-targets`
# resolves features with the dev-dependencies exactly as `cargo test` does, so this one
# build is the release binary with CUDA that CI must build, and the tests reuse it.
cargo build --release --locked --all-targets --features "$features"
took "the release build ($features)"
# --no-fail-fast: a failing test binary does not hide the failures of the others.
# Each step below runs even when one before it failed; the script fails at the end.
status=0
cargo test --release --locked --no-fail-fast --features "$features" || status=1
took "the tests"

# The ignored groups whose packages are here (no rebuild: the same build as above).
skipped=()
if [ -n "$have_python" ]; then
    cargo test --release --locked --no-fail-fast --features "$features" --tests -- --ignored with_python:: || status=1
else
    skipped+=("the Python cross-checks (with_python::)")
fi
case ",$features," in
    *,tch,*) cargo test --release --locked --no-fail-fast --features "$features" --tests -- --ignored with_pytorch:: || status=1 ;;
    *) skipped+=("the PyTorch twins (with_pytorch::)") ;;
esac
s3_python="${CTSTREAM_S3_PYTHON:-target/s3-venv/bin/python}"
if [ -x "$s3_python" ] && "$s3_python" tools/python/check_requirements.py tools/s3/requirements.txt >/dev/null 2>&1; then
    CTSTREAM_S3_PYTHON="$(cd "$(dirname "$s3_python")" && pwd)/$(basename "$s3_python")" \
        cargo test --release --locked --no-fail-fast --features "$features" --test integration -- --ignored remote:: || status=1
elif [ -n "${CTSTREAM_REQUIRE_S3:-}" ]; then
    echo "error: CTSTREAM_REQUIRE_S3 is set but $s3_python lacks the packages of tools/s3/requirements.txt" >&2
    exit 1
else
    skipped+=("the object-storage tests (tests/integration/remote.rs: python3 -m venv target/s3-venv && target/s3-venv/bin/pip install -r tools/s3/requirements.txt)")
fi
took "the tests that need packages"
for group in "${skipped[@]}"; do
    echo "skipped: $group"
done

# The Python package (python/): built by maturin into the active virtual environment
# (maturin develop: what a developer runs; the same build as `pip install ./python`), then
# its pytest suite, which compares it with the binary built above. Needs a virtual
# environment with python/requirements.txt and the pinned numpy, pyarrow and PyTorch.
py_requirements=(python/requirements.txt tools/python/requirements.txt tools/bench/requirements.txt)
if [ -n "${VIRTUAL_ENV:-}" ] && py_missing=$(python3 tools/python/check_requirements.py "${py_requirements[@]}" 2>&1); then
    py_features=()
    case ",$features," in *,jpegls,*) py_features=(--features jpegls) ;; esac
    (cd python && maturin develop --release --locked --quiet "${py_features[@]}")
    took "the Python package's build"
    CTSTREAM_BIN="$PWD/target/release/ctstream" python3 -m pytest -q -p no:cacheprovider python/tests || status=1
    took "the Python tests"
elif [ -n "${CTSTREAM_REQUIRE_PYTHON:-}" ]; then
    echo "${py_missing:-no virtual environment is active (VIRTUAL_ENV is unset)}" >&2
    echo "error: CTSTREAM_REQUIRE_PYTHON is set but the Python package cannot be built and tested here (needs a virtual environment with the packages above)" >&2
    exit 1
else
    echo "note: the Python package (python/) is not built or tested: it needs an active virtual environment with"
    echo "      python3 -m pip install -r ${py_requirements[0]} -r ${py_requirements[1]} -r ${py_requirements[2]}"
fi
# `ctstream view` in a real browser: Chromium and chromedriver (Debian's chromium and
# chromium-driver), Selenium (tools/view/requirements.txt). It makes its own small demo
# (ctstream demo --small) and keeps a screenshot of each state in target/view-screenshots/.
if command -v chromium >/dev/null && command -v chromedriver >/dev/null &&
    python3 tools/python/check_requirements.py tools/view/requirements.txt >/dev/null 2>&1; then
    python3 tools/view/browser_test.py --bin target/release/ctstream --out target/view-screenshots || status=1
    took "the browser test of ctstream view"
elif [ -n "${CTSTREAM_REQUIRE_BROWSER:-}" ]; then
    echo "error: CTSTREAM_REQUIRE_BROWSER is set but chromium, chromedriver or the packages of tools/view/requirements.txt are missing" >&2
    exit 1
else
    echo "skipped: the browser test of ctstream view (needs apt-get install chromium chromium-driver and pip install -r tools/view/requirements.txt)"
fi
exit "$status"
