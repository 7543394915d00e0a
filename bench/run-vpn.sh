#!/usr/bin/env bash
# VPN benchmark (issue 3): Steward against openconnect 9.01 with Debian's vpnc-script, through
# the same ocserv in the same network namespaces, in one run: iperf3 TCP throughput and UDP
# round trips over CSTP only and with DTLS, the cost of per-process admission (Steward admitting
# everything), and connect -> first intranet HTTP answer. Writes the "## VPN" section of
# docs/benchmarks.md.
#
#   bench/run-vpn.sh [driver options, see --help]
#
# STEWARD_BUILD_DIR selects the CMake build directory (default: build/, configured with the
# default preset if missing). STEWARD_VPN_BENCH_OPENCONNECT_ONLY=1 measures openconnect alone
# (checks the harness; docs/benchmarks.md untouched); STEWARD_VPN_BENCH_KEEP=1 keeps the work
# directory (configs, logs) for a look afterwards. Needs root: it creates network
# namespaces (198.18.0.0/15 addresses only) and deletes them at the end, also on failure; every
# process it starts is ended by PID, and the work directory removed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${STEWARD_BUILD_DIR:-$repo/build}
command_line="bench/run-vpn.sh${*:+ $*}"
[[ -n ${STEWARD_BUILD_DIR:-} ]] && command_line="STEWARD_BUILD_DIR=$STEWARD_BUILD_DIR $command_line"

[[ $(id -u) == 0 ]] || { echo "run-vpn: needs root (network namespaces, ocserv, TUN)" >&2; exit 2; }
for tool in /usr/sbin/ocserv /usr/sbin/openconnect /usr/share/vpnc-scripts/vpnc-script \
  iperf3 curl nft ip ss openssl; do
  command -v "$tool" >/dev/null || {
    echo "run-vpn: $tool not found (scripts/deps.sh; vpnc-script is Debian's vpnc-scripts)" >&2
    exit 2
  }
done
# Debian's interpreter, not whichever python3 comes first on the PATH.
python=/usr/bin/python3

steward=()
if [[ -z ${STEWARD_VPN_BENCH_OPENCONNECT_ONLY:-} ]]; then
  echo "run-vpn: building steward in $build"
  if [[ ! -f $build/build.ninja ]]; then
    (cd "$repo" && cmake --preset default >/dev/null)
  fi
  cmake --build "$build" --target steward -j2 >/dev/null
  steward=(--steward "$build/src/cli/steward")
fi

work=$(mktemp -d /tmp/steward-vpn-bench-XXXXXX)
driver=
cleanup() {
  if [[ -n $driver ]] && kill -0 "$driver" 2>/dev/null; then
    kill -TERM "$driver" 2>/dev/null || true
    wait "$driver" 2>/dev/null || true
  fi
  if [[ -n ${STEWARD_VPN_BENCH_KEEP:-} ]]; then
    echo "run-vpn: logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# As in the storm benchmark: when root, run above the neighbours' builds (nice -10); the doc
# records the priority and the load average at the start.
priority=(nice -n -10)

cd "$repo"
"${priority[@]}" env PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$repo/bench" "$python" -m vpn \
  --work-dir "$work" \
  --bench-dir "$repo/bench" \
  --python "$python" \
  --doc "$repo/docs/benchmarks.md" \
  --command "$command_line" \
  "${steward[@]}" \
  "$@" &
driver=$!
wait "$driver"
