#!/usr/bin/env bash
# Builds the libFuzzer targets (in the sanitizer build, preset "asan", clang-14; nothing to do
# when the ASan test stage already built them) and runs each for a while on its seed corpus. A
# crash, leak or sanitizer report fails the run and leaves the reproducer in
# build-asan/fuzz-artifacts/. Usage: scripts/fuzz.sh [seconds-per-target, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
build=build-asan
targets=()
for source in tests/fuzz/*_fuzz.cpp; do targets+=("$(basename "$source" .cpp)"); done
cmake --preset asan >/dev/null
cmake --build --preset asan -j"$(nproc)" --target "${targets[@]}"
artifacts=$build/fuzz-artifacts
mkdir -p "$artifacts"
for name in "${targets[@]}"; do
  corpus=$build/fuzz-corpus/$name
  mkdir -p "$corpus"
  seeds=tests/fuzz/corpus/$name
  echo "fuzz: $name for ${seconds}s"
  log=$artifacts/$name.log
  status=0
  "$build/tests/fuzz/$name" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$name-" \
    "$corpus" $( [ -d "$seeds" ] && echo "$seeds" ) >"$log" 2>&1 || status=$?
  grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units)" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 40 "$log"
    echo "fuzz: $name FAILED (exit $status; reproducer and log in $artifacts/)"
    exit 1
  fi
done
echo "fuzz: all targets ran ${seconds}s without findings"
