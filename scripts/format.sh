#!/usr/bin/env bash
# clang-format on every C++ file of the project. --check fails (and lists them) when any file
# is not formatted, without changing it.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cpp' '*.h')
if [ "${1:-}" = "--check" ]; then
  bad=()
  for f in "${files[@]}"; do
    clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
  done
  if [ "${#bad[@]}" -ne 0 ]; then
    printf 'not clang-formatted (run scripts/format.sh):\n'; printf '  %s\n' "${bad[@]}"; exit 1
  fi
  echo "format: ${#files[@]} files clean"
else
  clang-format -i "${files[@]}"
fi
