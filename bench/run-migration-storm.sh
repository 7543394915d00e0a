#!/usr/bin/env bash
# Migration-storm benchmark of the controller (issue 2): Steward against ovs-vsctl, the Python
# OVS IDL and the floor, on real ovsdb-server switches, in one run. Writes its figures to the
# "## Controller: migration storm" section of docs/benchmarks.md.
#
#   bench/run-migration-storm.sh [driver options, see --help]
#
# STEWARD_BUILD_DIR selects the CMake build directory (default: build/, configured with the
# default preset if missing). Everything runs on this machine: unix sockets and 127.0.0.1.
# Every process started is ended by PID, and the work directory removed, also on failure.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${STEWARD_BUILD_DIR:-$repo/build}
command_line="bench/run-migration-storm.sh${*:+ $*}"
[[ -n ${STEWARD_BUILD_DIR:-} ]] && command_line="STEWARD_BUILD_DIR=$STEWARD_BUILD_DIR $command_line"

for tool in ovsdb-server ovsdb-tool ovsdb-client ovs-vsctl; do
  command -v "$tool" >/dev/null || { echo "run-migration-storm: $tool not found" >&2; exit 2; }
done
# Debian's interpreter: python3-openvswitch is installed for it, not for others on the PATH.
python=/usr/bin/python3
"$python" -c 'import ovs.db.idl' 2>/dev/null || {
  echo "run-migration-storm: $python cannot import ovs.db.idl (apt-get install python3-openvswitch)" >&2
  exit 2
}

echo "run-migration-storm: building steward and the benchmark clients in $build"
if [[ ! -f $build/build.ninja ]]; then
  (cd "$repo" && cmake --preset default >/dev/null)
fi
cmake --build "$build" --target steward steward-bench-storm steward-bench-floor >/dev/null

work=$(mktemp -d /tmp/steward-storm-XXXXXX)
driver=
cleanup() {
  if [[ -n $driver ]] && kill -0 "$driver" 2>/dev/null; then
    kill -TERM "$driver" 2>/dev/null || true
    wait "$driver" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Builds and tests of other work on this machine compete for the same cores: when allowed
# (root), the benchmark and everything it starts run at a higher priority (nice -10), so that
# they measure Steward and its baselines rather than the neighbours. The doc records the
# priority and the load average at the start.
priority=()
[[ $(id -u) == 0 ]] && priority=(nice -n -10)

cd "$repo"
"${priority[@]}" env PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$repo/bench" "$python" -m storm \
  --work-dir "$work" \
  --steward "$build/src/cli/steward" \
  --storm-client "$build/bench/steward-bench-storm" \
  --floor-client "$build/bench/steward-bench-floor" \
  --doc "$repo/docs/benchmarks.md" \
  --command "$command_line" \
  "$@" &
driver=$!
wait "$driver"
