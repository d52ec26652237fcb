#!/usr/bin/env bash
# Configure and build: build/ (debugoptimized) and, with --asan, build-asan/ (ASan + UBSan, fatal UB); with
# --release, build-release/ (-O3, what bench/ measures: -Werror must hold there too).
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
for opt in "$@"; do
  case $opt in
    --asan) setup build-asan -Db_sanitize=address,undefined -Dc_args=-fno-sanitize-recover=all -Db_lundef=false ;;
    --release) setup build-release --buildtype=release -Db_ndebug=true ;;
    *) echo "usage: scripts/build.sh [--asan] [--release]" >&2; exit 2 ;;
  esac
done
