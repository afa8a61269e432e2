#!/usr/bin/env bash
# Runs the whole test suite: unit, property and end-to-end tests (real cairnd processes).
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
# The end-to-end tests start the cairnd and cairn-wallet binaries: build them first.
cargo build -j2 --workspace --bins
exec cargo test -j2 --workspace "$@"
