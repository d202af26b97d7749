#!/usr/bin/env bash
# The lint gates CI runs (.ci/run), in one command:
#   tools/lint.sh          rustfmt and ruff (seconds; no build)
#   tools/lint.sh clippy   clippy on every target of both packages, warnings as errors,
#                          with tools/features.sh's features less LibTorch (a type-check of
#                          the build without PyTorch as well). --release, so it reuses the
#                          build scripts and proc macros of tools/test.sh's release build.
# ruff comes from tools/lint/requirements.txt (pinned); `RUFF=path` names another.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
    "")
        cargo fmt --all --check
        ruff="${RUFF:-ruff}"
        if ! command -v "$ruff" >/dev/null 2>&1; then
            echo "error: ruff not found (python3 -m pip install -r tools/lint/requirements.txt)" >&2
            exit 1
        fi
        "$ruff" check python tools examples
        "$ruff" format --check python tools examples
        echo "lint: rustfmt and ruff clean"
        ;;
    clippy)
        features=$(tools/features.sh | sed 's/,tch//')
        # Package-qualified: the workspace's other member (python/) has no such features.
        qualified=$(echo "$features" | sed 's/\([a-z]*\)/ctstream\/\1/g')
        cargo clippy --release --locked --workspace --all-targets --features "$qualified" -- -D warnings
        echo "lint: clippy clean ($features)"
        ;;
    *)
        echo "usage: tools/lint.sh [clippy]" >&2
        exit 2
        ;;
esac
