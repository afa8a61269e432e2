#!/usr/bin/env bash
# Tests the libclang detection of ensure-deps.sh against what clang-sys accepts: Debian's
# libclang-cpp (the C++ API, pulled in by unrelated packages) is not libclang; libclang-14.so is.
set -euo pipefail
cd "$(dirname "$0")"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/cpp-only" "$dir/versioned-only" "$dir/dev" "$dir/plain" "$dir/empty"
touch "$dir/cpp-only/libclang-cpp.so.14" "$dir/cpp-only/libclang-cpp.so"
touch "$dir/versioned-only/libclang-14.so.1" "$dir/versioned-only/libclang.so.1"
touch "$dir/dev/libclang-14.so"
touch "$dir/plain/libclang.so"
fail=0
expect() {
  local want=$1
  shift
  local got
  got=$(./ensure-deps.sh --libclang-in "$@")
  if [ "$got" != "$want" ]; then
    echo "ensure-deps: expected $want for $*, got $got" >&2
    fail=1
  fi
}
expect missing "$dir/cpp-only"
expect missing "$dir/versioned-only"
expect missing "$dir/empty" "$dir/nonexistent"
expect present "$dir/dev"
expect present "$dir/plain"
expect present "$dir/cpp-only" "$dir/dev"
if [ "$fail" = 0 ]; then echo "ensure-deps libclang detection: 6 passed, 0 failed"; fi
exit "$fail"
