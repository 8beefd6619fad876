#!/usr/bin/env bash
# Holds many idle WebSocket connections at once on this machine and reports the gateways' RSS
# per connection (docs/PERFORMANCE.md, "Connections held").
#
#   scripts/bench-connections.sh [TOTAL] [HOLD_SECS]     # default 51000 sockets, held 40 s
#
# A process may hold at most as many sockets as its open-file limit allows (`ulimit -n`; 20,000
# hard on the benchmark machine, which cannot be raised there), on both ends. So the sockets are
# spread over gateway processes of SHARE (default 17,000) sockets each: the one scripts/run.sh
# started (gw-1, port 8080) and as many more as needed (gw-2, gw-3, ... on ports 8083, 8084, ...,
# admin ports 9083, 9084, ...), each driven by its own `nearby-loadgen measure idle` client from
# its own range of source addresses. The extra gateways are stopped by their pids at the end.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
bin=${CARGO_TARGET_DIR:-target}/release
total=${1:-51000}
hold=${2:-40}
share=${SHARE:-17000}
logs=${NEARBY_STACK_DIR:-$root/.stack}/logs
mkdir -p "$logs"

curl -fsS http://127.0.0.1:9080/readyz >/dev/null ||
    { echo "bench-connections.sh: start scripts/run.sh first (no gateway on 9080)" >&2; exit 1; }
# The same build as run.sh's (every binary of the workspace at once): building one package alone
# unifies features differently and rebuilds shared dependencies.
cargo build --release --locked --bins
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
echo "--- open-file limit here: $(ulimit -n)"

gateways=$(((total + share - 1) / share))
extra_pids=()
stop() {
    for pid in "${extra_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
}
trap stop EXIT INT TERM

# Gateway i (1-based): gw-1 is run.sh's; the others are started here.
for ((i = 2; i <= gateways; i++)); do
    port=$((8081 + i)) admin=$((9081 + i))
    NEARBY_DEV=1 NEARBY_GATEWAY_ID=gw-$i NEARBY_GATEWAY_LISTEN=127.0.0.1:$port \
        NEARBY_GATEWAY_ADMIN_LISTEN=127.0.0.1:$admin \
        "$bin"/nearby-gateway >"$logs/gateway-$i.log" 2>&1 &
    extra_pids+=($!)
done
for ((i = 2; i <= gateways; i++)); do
    admin=$((9081 + i))
    for _ in $(seq 1 120); do
        curl -fsS "http://127.0.0.1:$admin/readyz" >/dev/null 2>&1 && break
        sleep 0.5
    done
done

# One client per gateway, all at once, each from 127.0.0.(2 + 10 (i - 1)) on; each holds its
# sockets for HOLD_SECS after they are all open, so every gateway holds its share at the same time.
client_pids=()
left=$total
for ((i = 1; i <= gateways; i++)); do
    n=$((left < share ? left : share))
    left=$((left - n))
    if ((i == 1)); then
        port=8080 admin=9080 pid=$(pgrep -o -x nearby-gateway) # the oldest: run.sh's
    else
        port=$((8081 + i)) admin=$((9081 + i)) pid=${extra_pids[i - 2]}
    fi
    "$bin"/nearby-loadgen measure --gateway "127.0.0.1:$port" --gateway-admin "127.0.0.1:$admin" \
        idle --connections "$n" --gateway-pid "$pid" --first-source "127.0.0.$((2 + 10 * (i - 1)))" \
        --settle-secs $((hold / 2)) --hold-secs $((hold / 2)) >"$logs/connections-$i.log" 2>&1 &
    client_pids+=($!)
done
# The proof that they are held at the same time: every 2 s, the sum of the connections the
# gateways' /readyz report; the peak is printed.
peak=0
while kill -0 "${client_pids[0]}" 2>/dev/null; do
    sum=0
    for ((i = 1; i <= gateways; i++)); do
        admin=$((i == 1 ? 9080 : 9081 + i))
        n=$(curl -fsS "http://127.0.0.1:$admin/readyz" 2>/dev/null | grep -oE '[0-9]+ connections' | cut -d' ' -f1)
        sum=$((sum + ${n:-0}))
    done
    ((sum > peak)) && peak=$sum
    sleep 2
done
status=0
for pid in "${client_pids[@]}"; do wait "$pid" || status=1; done
for ((i = 1; i <= gateways; i++)); do
    echo "--- gateway gw-$i"
    grep -E "opened|settling|per idle|more:" "$logs/connections-$i.log" || cat "$logs/connections-$i.log"
done
echo "--- peak: $peak connections held at once over $gateways gateways (sum of their /readyz counts)"
exit $status
