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
# Rust itself: through rustup (stable toolchain), which needs curl and CA certificates.
if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  command -v curl >/dev/null 2>&1 || need+=(curl ca-certificates)
  install_rust=1
fi

if ((${#need[@]})); then
  echo "installing build dependencies: ${need[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ "${install_rust:-0}" = 1 ]; then
  echo "installing the Rust stable toolchain with rustup" >&2
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable -c rustfmt,clippy >&2
fi
