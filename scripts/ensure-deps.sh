#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build Cairn: RocksDB's bindings are generated
# with bindgen, which loads libclang at build time through clang-sys; RocksDB itself needs a C++
# compiler. Idempotent and quiet when everything is already there.
#
#   scripts/ensure-deps.sh                    check and install what is missing
#   scripts/ensure-deps.sh --libclang-in DIR… print "present" or "missing" for those directories
#                                             only (how the detection is tested; installs nothing)
set -euo pipefail

# The names clang-sys accepts when it looks for a shared libclang: `libclang.so` or
# `libclang-<version>.so`. Debian's `libclang-cpp14` (pulled in by many unrelated packages) ships
# `libclang-cpp.so.14`, which is the C++ API, not the C library bindgen loads: it must not count,
# and neither must versioned names (`libclang-14.so.1`) without the unversioned link that
# `libclang-14-dev` adds.
libclang_in() {
  local dir f name
  for dir in "$@"; do
    [ -d "$dir" ] || continue
    for f in "$dir"/libclang.so "$dir"/libclang-*.so; do
      [ -e "$f" ] || continue
      name=${f##*/}
      case "$name" in
        libclang-cpp*) continue ;;
      esac
      return 0
    done
  done
  return 1
}

# The directories clang-sys searches on Linux, in its order: $LIBCLANG_PATH, `llvm-config
# --libdir`, then the system library directories.
libclang_search_dirs() {
  if [ -n "${LIBCLANG_PATH:-}" ]; then echo "$LIBCLANG_PATH"; fi
  if command -v llvm-config >/dev/null 2>&1; then llvm-config --libdir 2>/dev/null || true; fi
  local d
  for d in /usr/local/llvm*/lib* /usr/local/lib*/*/* /usr/local/lib*/* /usr/local/lib* \
    /usr/lib*/*/* /usr/lib*/* /usr/lib*; do
    [ -d "$d" ] && echo "$d"
  done
  return 0
}

if [ "${1:-}" = "--libclang-in" ]; then
  shift
  if libclang_in "$@"; then echo present; else echo missing; fi
  exit 0
fi

need=()
mapfile -t dirs < <(libclang_search_dirs)
libclang_in "${dirs[@]}" || need+=(libclang-dev)
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
  mapfile -t dirs < <(libclang_search_dirs)
  if ! libclang_in "${dirs[@]}"; then
    echo "error: installed libclang-dev but no libclang.so is where clang-sys looks;" \
      "set LIBCLANG_PATH to the directory holding libclang.so" >&2
    exit 1
  fi
fi

if [ "${install_rust:-0}" = 1 ]; then
  echo "installing the Rust stable toolchain with rustup" >&2
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain stable -c rustfmt,clippy >&2
fi
