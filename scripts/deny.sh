#!/usr/bin/env bash
# Supply-chain checks of the whole dependency tree: licenses, bans (duplicate major versions,
# crates with known advisories) and sources, as deny.toml says. Installs cargo-deny (from
# crates.io, pinned) beside the build cache on a fresh machine.
#
#   scripts/deny.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

version=0.20.2
tools=${NEARBY_TOOLS_DIR:-$HOME/.cache/nearby-friends/tools}
if [[ ! -x $tools/bin/cargo-deny ]] || ! "$tools/bin/cargo-deny" --version | grep -q " $version"; then
    echo "--- deny.sh: installing cargo-deny $version into $tools (once per machine)"
    cargo install cargo-deny --version "$version" --locked --root "$tools"
fi
"$tools/bin/cargo-deny" --log-level warn check bans licenses sources
