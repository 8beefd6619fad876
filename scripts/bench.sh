#!/usr/bin/env bash
# The benchmark command: runs the default load scenario end to end, then the Redis Pub/Sub
# baselines and the saturation ramp on the same city, and writes their JSON results and SVG
# plots under target/loadgen/ (see docs/PERFORMANCE.md).
#
#   scripts/bench.sh                      # the default scenario
#   scripts/bench.sh --duration 60s ...   # extra flags go to `nearby-loadgen run` (later wins)
#   scripts/bench.sh --scenario stress --people 2000 --interval 5s   # the heavier scenario
#
# If a system already answers on the usual admin ports (9080 gateway, 9081 fanout, 9082 history
# sink), it is measured as it is. Otherwise scripts/run.sh is started in the background (stack,
# schema, topics, the three services), the load runs once everything is ready, and afterwards
# the run.sh this script started is stopped by its pid (its services with it; the stack of
# Kafka, Cassandra and Redis stays up: `stack/stack.sh down` stops it).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bin=${CARGO_TARGET_DIR:-target}/release

# The default scenario: 5,000 people with 50 friends each on average (clustered: about half of
# the pairs within 5 miles), each reporting every 30 s (± 10 %), as phones do, for 3 minutes.
city=(--people 5000 --degree 50)
timing=(--interval 30s --duration 180s)
scenario=(--scenario default "${city[@]}" "${timing[@]}" --drain 5s)

ready() {
    curl -fsS http://127.0.0.1:9081/readyz >/dev/null 2>&1 &&
        curl -fsS http://127.0.0.1:9080/readyz >/dev/null 2>&1 &&
        curl -fsS http://127.0.0.1:9082/healthz >/dev/null 2>&1 # the sink's /readyz waits for a first record
}

started=""
stop() {
    if [[ -n $started ]]; then
        echo "--- bench.sh: stopping the run.sh it started (pid $started)"
        kill -TERM "$started" 2>/dev/null || true
        for _ in $(seq 1 60); do
            kill -0 "$started" 2>/dev/null || break
            sleep 0.5
        done
    fi
}
trap stop EXIT INT TERM

if ready; then
    echo "--- bench.sh: measuring the system already running"
    # The same build as run.sh's (every binary of the workspace at once): building one package
    # alone unifies features differently and rebuilds shared dependencies.
    cargo build --release --locked --bins
else
    logs=${NEARBY_STACK_DIR:-$root/.stack}/logs
    mkdir -p "$logs"
    echo "--- bench.sh: starting scripts/run.sh (log $logs/bench-run.log)"
    setsid bash scripts/run.sh >"$logs/bench-run.log" 2>&1 &
    started=$!
    # run.sh builds first: a cold release build takes minutes, a warm one seconds.
    for _ in $(seq 1 1800); do
        ready && break
        kill -0 "$started" 2>/dev/null || { echo "bench.sh: run.sh ended; see $logs/bench-run.log" >&2; exit 1; }
        sleep 1
    done
    ready || { echo "bench.sh: the system never became ready; see $logs/bench-run.log" >&2; exit 1; }
fi

# Each socket is a file descriptor.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$bin"/nearby-loadgen run "${scenario[@]}" "$@"

# The baseline in the same run, on the same city and report rate: the original design's Redis
# Pub/Sub routing (see docs/PERFORMANCE.md). Its JSON goes next to the run's.
# Extra flags that shape the city or the report rate apply to it too (the last one given wins).
# It runs for 60 s: it has no start-up phase, so a minute gives its steady rates.
# The ramp below takes the city's flags only (`same_city`): it sets its own report rates.
same=()
same_city=()
while (($#)); do
    case $1 in
    --people | --degree | --side-km | --local-share | --local-km | --seed)
        (($# >= 2)) && same+=("$1" "$2") && same_city+=("$1" "$2") && shift ;;
    --people=* | --degree=* | --side-km=* | --local-share=* | --local-km=* | --seed=*)
        same+=("$1") && same_city+=("$1") ;;
    --interval)
        (($# >= 2)) && same+=("$1" "$2") && shift ;;
    --interval=*)
        same+=("$1") ;;
    esac
    shift
done
echo "--- bench.sh: the Redis Pub/Sub baseline on the same city: routing only"
"$bin"/nearby-loadgen baseline "${city[@]}" "${timing[@]}" "${same[@]}" --duration 60s --out target/loadgen
echo "--- bench.sh: the same, each delivery also written to its recipient's socket (as our gateway does)"
"$bin"/nearby-loadgen baseline "${city[@]}" "${timing[@]}" "${same[@]}" --duration 60s --push --out target/loadgen
echo "--- bench.sh: the same, the servers also taking each report in from its socket (as our gateway does)"
"$bin"/nearby-loadgen baseline "${city[@]}" "${timing[@]}" "${same[@]}" --duration 60s --push --intake --out target/loadgen

# The saturation curve on the same city: the offered report rate raised step by step (50/s,
# × 1.5 each 30 s step, at most 12) until p99 passes 50 ms, a consumer group's lag grows through
# a step, or the generator falls short (see docs/PERFORMANCE.md, "Saturation curve").
echo "--- bench.sh: the saturation ramp on the same city"
"$bin"/nearby-loadgen ramp "${city[@]}" "${same_city[@]}" --out target/loadgen
