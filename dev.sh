#!/usr/bin/env bash
# Starts a dev node: a fresh single-node chain in ~/.cairn/dev, mining a block every 2 s, RPC on
# 127.0.0.1:8645, and a funded dev wallet (path printed). Extra flags go to cairnd.
set -euo pipefail
cd "$(dirname "$0")"
scripts/ensure-deps.sh
# rustup installs into ~/.cargo/bin, which a fresh shell may not have on its PATH yet.
export PATH="$HOME/.cargo/bin:$PATH"
exec cargo run -j2 --release -p cairnd -- --dev "$@"
