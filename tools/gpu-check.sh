#!/usr/bin/env bash
# GPU check: build here (no GPU, no CUDA toolkit needed), run there (no Rust, no network).
#
#   tools/gpu-check.sh [BUNDLE]      # default BUNDLE: target/gpu-check
#
# makes BUNDLE/ with
#   ctstream.gz   the release binary built with --features cuda (stripped, gzipped: ~17 MB)
#   store/        a small synthetic store (8 small LUNA-like scans, 1 mm, ~10 MB)
#   run.sh        the one command to run on the GPU machine
#
# Copy BUNDLE to the GPU machine and run `BUNDLE/run.sh`. It trains a full-width V-Net on
# 32x64x64 patches for a fixed number of steps and prints, over the steps after the
# warm-up (CUDA kernel compilation and autotuning happen in the first steps): patches/s
# trained, mean step time, the share of step time spent waiting for the loader, and the
# GPU memory used (nvidia-smi). Target on an H100: loader wait below 2% at batch 16.
#
# run.sh takes its settings from the environment (defaults in brackets):
#   DEVICE [cuda]  BATCH [16]  STEPS [60]  WARMUP [10]  WORKERS [2]  WIDTH [1.0]
#   MODEL [vnet]   CACHE_MB [32: smaller than the store, so chunks are decoded as on a
#                  real dataset]
#   SUITE=1        runs batch 16 and 32 with 2 workers, then batch 16 with one worker per
#                  core, one line each.
# A CPU smoke test of the bundle here: DEVICE=cpu WIDTH=0.125 BATCH=2 STEPS=3 WARMUP=1 BUNDLE/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bundle="${1:-target/gpu-check}"

# The same features as tools/test.sh, less LibTorch: the GPU machine has no PyTorch for a
# LibTorch build to load. Where tools/test.sh built no LibTorch, this build is its build.
# CTSTREAM_BIN=PATH bundles that binary instead of building one: CI checks the bundle and
# run.sh with the binary tools/test.sh built (LibTorch included, so not one to copy to
# the GPU machine) rather than spend a second release build on it.
bin="${CTSTREAM_BIN:-}"
if [ -z "$bin" ]; then
    features=$(tools/features.sh | sed 's/,tch//')
    cargo build --release --locked --bin ctstream --features "$features"
    bin=target/release/ctstream
fi

rm -rf "$bundle"
mkdir -p "$bundle"
strip -o "$bundle/ctstream" "$bin"
gzip -9 "$bundle/ctstream"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" --quiet synth --out "$tmp/data" --scans 8 --small --seed 11 >/dev/null
"$bin" --quiet ingest --input "$tmp/data" --out "$bundle/store" --annotations "$tmp/data/annotations.csv" --candidates "$tmp/data/candidates.csv" >/dev/null

cat > "$bundle/run.sh" <<'RUN'
#!/usr/bin/env bash
# Trains on the bundled store and prints the figures of the GPU check (see tools/gpu-check.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="${WORK:-$here/work}"
mkdir -p "$work"
bin="$work/ctstream"
[ -x "$bin" ] || { gunzip -c "$here/ctstream.gz" > "$bin"; chmod +x "$bin"; }
"$bin" --version
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
fi
echo "cores: $(nproc)"

one() { # MODEL WIDTH BATCH WORKERS STEPS WARMUP
    local model=$1 width=$2 batch=$3 workers=$4 steps=$5 warmup=$6
    local run="$work/$model-w$width-b$batch-j$workers"
    rm -rf "$run"
    local mem="$work/mem.log"
    : > "$mem"
    local sampler=""
    if command -v nvidia-smi >/dev/null 2>&1 && [ "${DEVICE:-cuda}" != cpu ]; then
        nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 250 > "$mem" 2>/dev/null &
        sampler=$!
    fi
    local t0=$(date +%s.%N)
    "$bin" --quiet train --store "$here/store" --model "$model" --width "$width" --device "${DEVICE:-cuda}" \
        --batch-size "$batch" --workers "$workers" --cache "${CACHE_MB:-32}" --steps "$steps" \
        --patch 32,64,64 --val-fraction 0 --checkpoint-every 0 --keep-checkpoints 1 --out "$run" >/dev/null
    local t1=$(date +%s.%N)
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null || true
    local peak=$(sort -n "$mem" | tail -1)
    awk -F, -v w="$warmup" -v b="$batch" -v m="$model" -v wd="$width" -v j="$workers" -v mem="${peak:-n/a}" -v t0="$t0" -v t1="$t1" '
        NR == 2 { first = $2 }
        NR > 1 + w { n++; step += $6; wait += $5; last = $2 }
        END {
            if (n == 0) { print "no steps after the warm-up"; exit 1 }
            printf "%s width %s batch %d workers %d: %d steps after %d warm-up: %.1f patches/s trained, %.2f steps/s, mean step %.4f s, loader wait %.2f%% of step time, loss %.3f -> %.3f, GPU memory used %s MiB, wall %.0f s\n",
                m, wd, b, j, n, w, n * b / step, n / step, step / n, 100 * wait / step, first, last, mem, t1 - t0
        }' "$run/metrics.csv"
}

if [ -n "${SUITE:-}" ]; then
    one "${MODEL:-vnet}" "${WIDTH:-1.0}" 16 2 "${STEPS:-60}" "${WARMUP:-10}"
    one "${MODEL:-vnet}" "${WIDTH:-1.0}" 32 2 "${STEPS:-60}" "${WARMUP:-10}"
    one "${MODEL:-vnet}" "${WIDTH:-1.0}" 16 "$(nproc)" "${STEPS:-60}" "${WARMUP:-10}"
else
    one "${MODEL:-vnet}" "${WIDTH:-1.0}" "${BATCH:-16}" "${WORKERS:-2}" "${STEPS:-60}" "${WARMUP:-10}"
fi
RUN
chmod +x "$bundle/run.sh"
echo "bundle: $bundle ($(du -sh "$bundle" | cut -f1)); on the GPU machine run: $bundle/run.sh  (or SUITE=1 $bundle/run.sh)"
