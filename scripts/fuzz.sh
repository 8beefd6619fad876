#!/usr/bin/env bash
# Runs every cargo fuzz target (or those named) for SECONDS each (default 60) and prints, per
# target, the executions and the crashes. New inputs go to a scratch corpus; the committed seeds
# in fuzz/corpus/<target> are read, never written. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script exit 1.
#
#   scripts/fuzz.sh                  # every target, 60 s each
#   scripts/fuzz.sh 600 token        # one target, 10 minutes
#
# Needs the nightly toolchain (libFuzzer's instrumentation); installs cargo-fuzz (crates.io,
# pinned) beside the build cache on a fresh machine. Builds without a sanitizer: the code is
# safe Rust (unsafe is forbidden), so ASan would cost speed and find nothing more; debug
# assertions are on, so an arithmetic overflow is a crash.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-60}
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=(client_frame upload_body cursors avro_records token)
fi

version=0.13.2
tools=${NEARBY_TOOLS_DIR:-$HOME/.cache/nearby-friends/tools}
if [[ ! -x $tools/bin/cargo-fuzz ]]; then
    echo "--- fuzz.sh: installing cargo-fuzz $version into $tools (once per machine)"
    cargo install cargo-fuzz --version "$version" --locked --root "$tools"
fi
export PATH="$tools/bin:$PATH"
rustup run nightly rustc --version >/dev/null

flags=(--release --debug-assertions --sanitizer none --fuzz-dir fuzz)
# Every target at once (they share the build).
cargo +nightly fuzz build "${flags[@]}"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
printf '%-14s %14s %10s %8s\n' target executions exec/s crashes
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    log="$scratch/$t.log"
    crashed=0
    cargo +nightly fuzz run "${flags[@]}" "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        >"$log" 2>&1 || crashed=1
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    printf '%-14s %14s %10s %8s\n' "$t" "${runs:-?}" "${rate:-?}" "$crashed"
    if [[ $crashed -ne 0 ]]; then
        status=1
        tail -30 "$log"
    fi
done
exit $status
