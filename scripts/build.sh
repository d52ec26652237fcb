#!/usr/bin/env bash
# Configure and build: build/ (debugoptimized) and, with --asan, build-asan/ (ASan + UBSan, fatal UB).
set -euo pipefail
cd "$(dirname "$0")/.."

setup() { # dir, meson args...
  local dir=$1
  shift
  if [[ ! -f $dir/build.ninja ]]; then
    meson setup "$dir" "$@" >/dev/null
  fi
  ninja -C "$dir" >/dev/null
}

setup build
if [[ ${1:-} == --asan ]]; then
  setup build-asan -Db_sanitize=address,undefined -Dc_args=-fno-sanitize-recover=all -Db_lundef=false
fi
