#!/usr/bin/env bash
# The test command. On a fresh machine it installs what is missing (Debian packages, the Kafka
# and Cassandra jars from Maven Central), brings up the real stack, checks that a second `up` is a
# no-op, runs every test of the workspace against it, and stops the stack again if it started it
# (set NEARBY_KEEP_STACK=1 to leave it running for the next run).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo is not on PATH: install Rust (rustup) first" >&2
    exit 1
fi

started_here=0
if ! bash stack/stack.sh status >/dev/null 2>&1; then
    started_here=1
fi
stop_stack() {
    local rc=$?
    if [ "$started_here" = 1 ] && [ "${NEARBY_KEEP_STACK:-0}" != 1 ]; then
        echo "--- test.sh: stopping the stack it started"
        # `down` fails if a port of the stack is still listening afterwards.
        bash stack/stack.sh down || rc=1
    fi
    exit "$rc"
}
trap stop_stack EXIT

echo "--- test.sh: stack up"
bash stack/stack.sh up
pids_before=$(cat "${NEARBY_STACK_DIR:-.stack}"/run/*.pid 2>/dev/null | sort | tr '\n' ' ')
bash stack/stack.sh up >/dev/null
pids_after=$(cat "${NEARBY_STACK_DIR:-.stack}"/run/*.pid 2>/dev/null | sort | tr '\n' ' ')
if [ "$pids_before" != "$pids_after" ]; then
    echo "test.sh: a second 'stack up' restarted something ($pids_before -> $pids_after)" >&2
    exit 1
fi
echo "--- test.sh: second 'stack up' was a no-op (pids $pids_after)"

eval "$(bash stack/stack.sh env)"

echo "--- test.sh: docker-compose.yml in step with the scripts"
python3 scripts/check-compose.py

# The spec tests validate the served OpenAPI and AsyncAPI files with the reference Python tools.
if ! python3 -c "import openapi_spec_validator, yaml" >/dev/null 2>&1; then
    echo "--- test.sh: installing the Python spec validators"
    python3 -m pip install --quiet --user "openapi-spec-validator>=0.7" pyyaml
fi

# The analytics example's test runs the Python reader of examples/analytics against the broker.
if ! python3 -c "import confluent_kafka, fastavro" >/dev/null 2>&1; then
    echo "--- test.sh: installing the analytics example's Python packages"
    python3 -m pip install --quiet --user -r examples/analytics/requirements.txt
fi

# The metrics test parses /metrics with the reference Prometheus parser.
if ! python3 -c "import prometheus_client" >/dev/null 2>&1; then
    echo "--- test.sh: installing prometheus-client (Python)"
    python3 -m pip install --quiet --user "prometheus-client>=0.20"
fi

echo "--- test.sh: cargo test"
cargo test --workspace --all-targets --locked --no-fail-fast
