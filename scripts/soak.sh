#!/usr/bin/env bash
# The soak test (not in CI): the default bench load (5,000 people, 50 friends each, a report
# every 30 s) for MINUTES against the system scripts/run.sh runs, each stage sampled every 10 s,
# then a verdict (docs/PERFORMANCE.md, "Soak").
#
#   scripts/soak.sh                          # 30 minutes
#   scripts/soak.sh 120                      # two hours
#   scripts/soak.sh 60 --out target/soak     # where its files go (default: a new soak-DATE folder
#                                            # in the stack's logs folder, beside run.sh's logs)
#   scripts/soak.sh 30 --people 2000 ...     # other flags go to `nearby-loadgen run` (later wins)
#
# Start scripts/run.sh first: this script starts nothing but the load generator and its own
# sampler, and stops nothing else. It finds the gateway, fanout and history sink by the
# processes listening on their admin ports (9080, 9081, 9082, or NEARBY_GATEWAY_ADMIN_LISTEN,
# NEARBY_FANOUT_ADMIN_LISTEN, NEARBY_HISTORY_ADMIN_LISTEN as the stages read them), builds the
# release binaries as bench.sh does, and runs `nearby-loadgen run --scenario soak` for the whole
# time. Meanwhile scripts/soak.py samples every 10 s (NEARBY_SOAK_EVERY), per stage: RSS
# (VmRSS), open fds, threads, CPU seconds (utime + stime over `getconf CLK_TCK`), consumer lag
# and error counters from its /metrics, one row of samples.csv each. At the end it writes
# summary.json and soak.svg (RSS and lag against time) beside the load generator's JSON and SVG,
# prints a line per rule, and exits 0 only if all hold:
#   - RSS after the warm-up (the first 5 minutes of the load, or a sixth of a shorter run) stays
#     within ±10 % of its median, each stage;
#   - lag after the warm-up never above max(2 × the warm-up's largest, 10 s of offered reports);
#   - no error counter rose; the load generator saw no error frame and no socket closed early;
#   - each stage is still the same process, answers /metrics, and logged no "panicked" line.
# The load generator keeps every latency sample (8 bytes a delivery, ~130 MB an hour at this
# load): mind its memory on runs of many hours.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bin=${CARGO_TARGET_DIR:-target}/release
logs=${NEARBY_STACK_DIR:-$root/.stack}/logs
every=${NEARBY_SOAK_EVERY:-10}
gateway_listen=${NEARBY_GATEWAY_LISTEN:-127.0.0.1:8080}
gateway_admin=${NEARBY_GATEWAY_ADMIN_LISTEN:-127.0.0.1:9080}
fanout_admin=${NEARBY_FANOUT_ADMIN_LISTEN:-127.0.0.1:9081}
sink_admin=${NEARBY_HISTORY_ADMIN_LISTEN:-127.0.0.1:9082}

usage() {
    echo "usage: scripts/soak.sh [MINUTES] [--out DIR] [nearby-loadgen run flags...]   (MINUTES: 30)" >&2
    exit 2
}

minutes=30
if (($#)) && [[ $1 =~ ^[0-9]+$ ]]; then
    minutes=$1
    shift
fi
((minutes > 0)) || usage
out=""
extra=()
while (($#)); do
    case $1 in
    --out)
        (($# >= 2)) || usage
        out=$2
        shift
        ;;
    --out=*) out=${1#--out=} ;;
    -h | --help) usage ;;
    *) extra+=("$1") ;;
    esac
    shift
done
out=${out:-$logs/soak-$(date +%Y%m%d-%H%M%S)}

ready() {
    curl -fsS "http://$fanout_admin/readyz" >/dev/null 2>&1 &&
        curl -fsS "http://$gateway_admin/readyz" >/dev/null 2>&1 &&
        curl -fsS "http://$sink_admin/healthz" >/dev/null 2>&1 # the sink's /readyz waits for a first record
}
if ! ready; then
    echo "soak.sh: no ready system on the admin ports ($gateway_admin, $fanout_admin, $sink_admin): start scripts/run.sh first" >&2
    exit 1
fi

# The same build as run.sh's (every binary of the workspace at once): building one package alone
# unifies features differently and rebuilds shared dependencies.
cargo build --release --locked --bins
eval "$(bash stack/stack.sh env)"

# The stages run.sh started, by the processes holding their admin ports (names checked).
pids=$(python3 scripts/soak.py pids --gateway-admin "$gateway_admin" --fanout-admin "$fanout_admin" \
    --sink-admin "$sink_admin") ||
    { echo "soak.sh: could not tell the stages' pids from their admin ports" >&2; exit 1; }
read -r gateway_pid fanout_pid sink_pid <<<"$pids"
echo "--- soak.sh: $minutes min; gateway pid $gateway_pid, fanout pid $fanout_pid, history sink pid $sink_pid; files in $out"
mkdir -p "$out"

sampler=""
stop() {
    if [[ -n $sampler ]]; then
        kill -TERM "$sampler" 2>/dev/null || true
        wait "$sampler" 2>/dev/null || true
        sampler=""
    fi
}
trap stop EXIT
trap 'exit 130' INT TERM

python3 scripts/soak.py sample --out "$out" --every "$every" --logs "$logs" --clk-tck "$(getconf CLK_TCK)" \
    --gateway-admin "$gateway_admin" --fanout-admin "$fanout_admin" --sink-admin "$sink_admin" \
    --pid gateway="$gateway_pid" --pid fanout="$fanout_pid" --pid sink="$sink_pid" &
sampler=$!

# Each socket is a file descriptor.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# The default scenario (scripts/bench.sh's) for the whole soak, its JSON and plot in $out.
loadgen_ok=1
"$bin"/nearby-loadgen run --scenario soak --people 5000 --degree 50 --interval 30s \
    --duration "${minutes}m" --drain 5s --no-progress --out "$out" \
    --gateway "$gateway_listen" --gateway-admin "$gateway_admin" --fanout-admin "$fanout_admin" \
    --sink-admin "$sink_admin" --gateway-pid "$gateway_pid" --fanout-pid "$fanout_pid" \
    --sink-pid "$sink_pid" "${extra[@]}" 2>&1 | tee "$out/loadgen.log" || loadgen_ok=0

stop
echo "--- soak.sh: verdict"
python3 scripts/soak.py report --dir "$out" --minutes "$minutes" --loadgen-status "$loadgen_ok"
