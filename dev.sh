#!/usr/bin/env bash
# Starts a fresh single-node dev chain: mining on, RPC on 127.0.0.1:8645, a funded dev wallet.
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure-deps.sh
exec cargo run -j2 --release -p cairnd --bin cairnd -- --dev "$@"
