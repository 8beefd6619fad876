#!/usr/bin/env bash
# The run command: installs what is missing, brings up the real stack (Kafka, Cassandra, Redis),
# creates the CQL schema and the topics, and prints where everything is. Stop it all with `stack/stack.sh down`.
# (The stages — gateway, fanout, history-sink — join this script as they are built.)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash stack/stack.sh up
eval "$(bash stack/stack.sh env)"

echo "--- run.sh: building"
cargo build --release --locked --bins

echo "--- run.sh: CQL schema"
./target/release/nearby-admin schema create

echo "--- run.sh: topics"
./target/release/nearby-admin topics create --gateway "${NEARBY_GATEWAY_ID:-gw-1}"

echo
bash stack/stack.sh status
cat <<MSG

The stack is up. To use it from a shell:
  eval "\$(stack/stack.sh env)"
  ./target/release/nearby-admin --help
Logs: stack/stack.sh logs kafka|cassandra|redis.  Stop everything: stack/stack.sh down
MSG
