#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build Cairn: RocksDB's bindings are generated
# with bindgen, which needs libclang; RocksDB itself needs a C++ compiler. Idempotent and quiet
# when everything is already there.
set -euo pipefail

need=()
if ! ldconfig -p 2>/dev/null | grep -q 'libclang[-.0-9]*\.so'; then
  ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || need+=(libclang-dev)
fi
command -v c++ >/dev/null 2>&1 || need+=(g++)
command -v cargo >/dev/null 2>&1 || { echo "error: cargo not found; install Rust from rustup.rs" >&2; exit 1; }

if ((${#need[@]})); then
  echo "installing build dependencies: ${need[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
