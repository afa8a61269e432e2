#!/usr/bin/env bash
# Builds cairnd and the harness (release) and runs the many-host testnet: 20 hosts at 20 Mbit/s,
# every scenario, a table on stdout and testnet-report.json. Needs root (network namespaces).
# Flags go to cairn-testnet (`scripts/testnet.sh --help`); see docs/testnet.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build -j2 --release -p cairnd -p cairn-testnet
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/cairn-testnet" --cairnd "$target/release/cairnd" "$@"
