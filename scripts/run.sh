#!/usr/bin/env bash
# The run command: installs what is missing, brings up the real stack (Kafka, Cassandra, Redis),
# creates the CQL schema and the topics, then runs a fanout instance, a history sink and a
# gateway in the foreground until Ctrl-C. Open http://127.0.0.1:8080/demo to look at it (two browser tabs,
# two users, see each other move). The stack stays up afterwards: `stack/stack.sh down` stops it.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash stack/stack.sh up
eval "$(bash stack/stack.sh env)"

echo "--- run.sh: building"
cargo build --release --locked --bins
# Where cargo put them (CARGO_TARGET_DIR, when set, moves the target directory).
bin=${CARGO_TARGET_DIR:-target}/release

gateway_id=${NEARBY_GATEWAY_ID:-gw-1}
echo "--- run.sh: CQL schema and topics"
"$bin"/nearby-admin schema create
"$bin"/nearby-admin topics create --gateway "$gateway_id"

# Each socket is a file descriptor: let the gateway hold tens of thousands (best effort).
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

logs=${NEARBY_STACK_DIR:-$root/.stack}/logs
mkdir -p "$logs"
pids=()
stop() {
    echo "--- run.sh: stopping fanout, history sink and gateway"
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    wait
}
trap stop EXIT INT TERM

"$bin"/nearby-fanout >"$logs/fanout.log" 2>&1 &
pids+=($!)
"$bin"/nearby-history-sink >"$logs/history-sink.log" 2>&1 &
pids+=($!)
# The admin token that `POST /drain` (and `nearby-admin drain`) needs: made once, kept in the
# stack's directory (readable by this user only), unless NEARBY_ADMIN_TOKEN is set.
admin_token_file=${NEARBY_STACK_DIR:-$root/.stack}/admin-token
if [[ -z ${NEARBY_ADMIN_TOKEN:-} ]]; then
    if [[ ! -s $admin_token_file ]]; then
        (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$admin_token_file")
    fi
    NEARBY_ADMIN_TOKEN=$(cat "$admin_token_file")
fi
export NEARBY_ADMIN_TOKEN
# Development mode: the gateway accepts the public development secret (tokens from
# `nearby-admin token`, the demo page, the load generator) unless NEARBY_JWT_SECRET is set.
export NEARBY_DEV=${NEARBY_DEV:-1}
NEARBY_GATEWAY_ID=$gateway_id "$bin"/nearby-gateway >"$logs/gateway.log" 2>&1 &
pids+=($!)

for url in http://127.0.0.1:9081/readyz http://127.0.0.1:9080/readyz http://127.0.0.1:9082/healthz; do
    for _ in $(seq 1 120); do
        if curl -fsS "$url" >/dev/null 2>&1; then break; fi
        sleep 0.5
    done
    curl -fsS "$url" >/dev/null || { echo "run.sh: $url not ready; see $logs" >&2; exit 1; }
done

cat <<MSG

Nearby Friends is running:
  gateway   ws://127.0.0.1:8080/v1/ws   (admin http://127.0.0.1:9080/readyz, log $logs/gateway.log)
  fanout    admin http://127.0.0.1:9081/readyz   (log $logs/fanout.log)
  history   admin http://127.0.0.1:9082/readyz   (log $logs/history-sink.log)
  demo      http://127.0.0.1:8080/demo  (tokens: ./target/release/nearby-admin token --user 1)
  admin     token for POST /drain in $admin_token_file (NEARBY_ADMIN_TOKEN=\$(cat $admin_token_file) nearby-admin drain ...)
Ctrl-C stops fanout, the sink and the gateway; stack/stack.sh down stops Kafka, Cassandra and Redis.
MSG
wait
