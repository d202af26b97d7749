#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (or those in $TARGETS) for SECONDS each (default 300),
# two at a time, starting
# from the seeds in fuzz/seeds/TARGET, and prints executions, time and findings per target.
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Limits: an input may not run longer than 10 s (a hang), allocate more than 1 GiB at once
# or keep more than 2 GiB (unbounded allocation); each is a finding, saved under
# fuzz/artifacts/TARGET/. Turn a finding into a regression test under tests/fuzz/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
SECONDS_EACH=${1:-300}
read -r -a TARGETS <<< "${TARGETS:-metaimage_header metaimage_read csv_readers volume_file volume_mutated dicom_series ingest_metaimage ingest_nifti}"
cargo +nightly fuzz build -O
mkdir -p logs
run() {
    local t=$1
    mkdir -p "corpus/$t"
    cargo +nightly fuzz run -O "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -malloc_limit_mb=1024 -rss_limit_mb=2048 \
        -max_len=8192 -print_final_stats=1 > "logs/$t.log" 2>&1 || echo "$t: FINDING (see fuzz/logs/$t.log, fuzz/artifacts/$t/)"
}
for ((i = 0; i < ${#TARGETS[@]}; i += 2)); do
    run "${TARGETS[i]}" &
    [[ -n "${TARGETS[i+1]:-}" ]] && run "${TARGETS[i+1]}" &
    wait
done
for t in "${TARGETS[@]}"; do
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')
    secs=$(grep -o 'Done [0-9]* runs in [0-9]* second' "logs/$t.log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 || true)
    found=$(ls "artifacts/$t" 2>/dev/null | wc -l)
    echo "$t: ${execs} executions in ${secs} s, ${cov}, findings: ${found}"
done
