#!/usr/bin/env bash
# The whole test suite, as the README and CI run it: installs what is missing, builds, and runs
# every unit and integration test (integration tests start their own ovsdb-server peers).
# STEWARD_PRESET=asan runs the same suite built with AddressSanitizer + UBSan.
# Needs root for the Debian packages. Usage: [STEWARD_PRESET=asan] scripts/test.sh [ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${STEWARD_PRESET:-default}
bash scripts/deps.sh
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j"$(nproc)"
ctest --preset "$preset" -j"$(nproc)" "$@"
