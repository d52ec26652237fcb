#!/usr/bin/env bash
# Build the libFuzzer target with clang (ASan + UBSan) and fuzz for SECONDS (default 60).
#   fuzz/run.sh 600        # ten minutes; new inputs land in fuzz/corpus-local, crashes in fuzz/artifacts
#                          # (neither is committed)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
dir=build-fuzz
if [[ ! -f $dir/build.ninja ]]; then
  CC=clang meson setup "$dir" -Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args='-fsanitize=fuzzer-no-link -fno-sanitize-recover=all' >/dev/null
fi
ninja -C "$dir" fuzz/fuzz_ttrpc >/dev/null
work=fuzz/corpus-local
mkdir -p "$work" fuzz/artifacts
# seeds (committed) first, new findings go to the scratch corpus
"$dir/fuzz/fuzz_ttrpc" -max_total_time="$secs" -max_len=65536 -timeout=10 -print_final_stats=1 \
  -artifact_prefix=fuzz/artifacts/ \
  "$work" fuzz/seeds 2>&1 | tail -n 12
