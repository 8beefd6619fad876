#!/usr/bin/env bash
# Profiles a running stage with `perf` and draws the flamegraph (docs/PERFORMANCE.md, "Where
# the time goes"). Start scripts/run.sh and a load (`nearby-loadgen run ...`) first.
#
#   scripts/profile.sh STAGE [SECONDS] [FREQUENCY]   # STAGE: gateway | fanout | history-sink
#                                                   # default 20 s at 499 Hz
#
# Writes target/profile/STAGE-TIMESTAMP.svg (and the folded stacks beside it, for
# `inferno-diff-folded` between two profiles). Installs what it needs on a fresh machine:
# Debian's linux-perf, and inferno (the flamegraph tools, from crates.io) into target/tools.
# The stacks are unwound with DWARF (the release build carries debug info; it has no frame
# pointers), so each sample copies 32 KiB of stack: keep SECONDS short.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
stage=${1:?usage: scripts/profile.sh gateway|fanout|history-sink [SECONDS] [FREQUENCY]}
seconds=${2:-20}
freq=${3:-499}
inferno_version=0.12.8
tools=${CARGO_TARGET_DIR:-target}/tools
out=${CARGO_TARGET_DIR:-target}/profile

as_root() {
    if ((EUID == 0)); then "$@"; else sudo "$@"; fi
}

if ! command -v perf >/dev/null 2>&1; then
    echo "--- profile.sh: installing linux-perf"
    as_root apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends linux-perf
fi
if [[ ! -x $tools/bin/inferno-flamegraph ]]; then
    echo "--- profile.sh: installing inferno $inferno_version into $tools"
    cargo install inferno --version "$inferno_version" --locked --root "$tools"
fi

# Process names are cut to 15 bytes: `nearby-history-sink` is `nearby-history-`.
comm=nearby-$stage
pid=$(pgrep -x "${comm:0:15}" -n || true)
[[ -n $pid ]] || { echo "profile.sh: no running nearby-$stage (start scripts/run.sh)" >&2; exit 1; }

mkdir -p "$out"
name=$out/$stage-$(date +%s)
# perf may refuse an unprivileged user (kernel.perf_event_paranoid > 1): then it runs as root.
record=(perf record -F "$freq" --call-graph dwarf,32768 -p "$pid" -o "$name.data" -- sleep "$seconds")
echo "--- profile.sh: $stage (pid $pid), $seconds s at $freq Hz"
if (($(cat /proc/sys/kernel/perf_event_paranoid) > 1 && EUID != 0)); then
    as_root "${record[@]}"
    as_root chown "$(id -u):$(id -g)" "$name.data"
else
    "${record[@]}"
fi
perf script -i "$name.data" 2>/dev/null | "$tools/bin/inferno-collapse-perf" --all >"$name.folded"
"$tools/bin/inferno-flamegraph" --title "nearby-$stage, $seconds s at $freq Hz" \
    --colors rust <"$name.folded" >"$name.svg"
rm -f "$name.data"
echo "--- profile.sh: wrote $name.svg and $name.folded"
