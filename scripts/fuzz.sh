#!/usr/bin/env bash
# Runs the cargo-fuzz targets in fuzz/ (libFuzzer + AddressSanitizer).
#
#   scripts/fuzz.sh [seconds per target] [target...]
#
# Defaults: 600 s for each of request, promql, response, cache_value and cache_read, two
# at a time (one per core). Built with debug assertions on (integer overflow panics). Each run starts from fuzz/regressions/<target>/ plus the corpus left by
# earlier runs (fuzz/corpus/, not committed) and prints one summary line: executions,
# coverage, and when it last found new coverage. A crash stops that target and leaves
# the input in fuzz/artifacts/<target>/; fix it, then copy the input into
# fuzz/regressions/<target>/ so `cargo test` keeps checking it.
#
# cargo-fuzz builds with sanitizer flags that stable rustc accepts only with
# RUSTC_BOOTSTRAP=1; this machine has a stable toolchain only, so the script sets it.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request promql response cache_value cache_read)

if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O -a

mkdir -p logs
run() {
    local t=$1 start status
    mkdir -p "corpus/$t"
    cp -n "regressions/$t"/* "corpus/$t/" 2>/dev/null || true
    start=$SECONDS
    # Each output line gets the seconds since the start, to tell when coverage stopped growing.
    set +e
    cargo fuzz run -O -a "$t" "corpus/$t" -- -max_total_time="$seconds" -print_final_stats=1 \
        -rss_limit_mb=4096 2>&1 | while IFS= read -r line; do
            printf '%d %s\n' $((SECONDS - start)) "$line"
        done >"logs/$t.log"
    status=${PIPESTATUS[0]}
    set -e
    local execs cov last_new verdict
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1 | grep -o '[0-9]*' || echo '?')
    last_new=$(grep -E '^[0-9]+ #[0-9]+[[:space:]]+NEW' "logs/$t.log" | tail -1 | cut -d' ' -f1 || true)
    if [ "$status" -ne 0 ] || grep -q 'ERROR: libFuzzer\|ERROR: AddressSanitizer' "logs/$t.log"; then
        verdict="CRASH: see fuzz/logs/$t.log and fuzz/artifacts/$t/"
    else
        verdict="no crash"
    fi
    echo "$verdict" >"logs/$t.verdict"
    printf '%-12s %ss  execs %s  cov %s  last new coverage at %ss  %s\n' \
        "$t" "$seconds" "$execs" "$cov" "${last_new:-?}" "$verdict"
}

# Two at a time: one per core on the 2-core machines this project is developed on.
for ((i = 0; i < ${#targets[@]}; i += 2)); do
    run "${targets[$i]}" &
    if [ $((i + 1)) -lt ${#targets[@]} ]; then run "${targets[$((i + 1))]}" & fi
    wait
done
for t in "${targets[@]}"; do
    if [ "$(cat "logs/$t.verdict")" != "no crash" ]; then exit 1; fi
done
