#!/usr/bin/env bash
# Installs every Debian package Steward needs to build, test, benchmark and run its demo.
# Idempotent: packages already present are left alone; apt-get update runs only when something
# is missing. Needs root (or sudo). Usage: scripts/deps.sh
set -euo pipefail

packages=(
  # toolchain
  build-essential g++ cmake ninja-build pkg-config clang-14 libclang-rt-14-dev clang-format
  # libraries (DESIGN.md section 3)
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev
  libssl-dev libsqlite3-dev libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  # real peers and baselines for the controller
  openvswitch-switch openvswitch-common python3-openvswitch
  # the agent: MQTT transport, logind source, and the real peers of its tests
  libpaho-mqttpp-dev libpaho-mqtt-dev libsystemd-dev mosquitto mosquitto-clients dbus
  # the VPN: XML login, links/routes/rules, nftables; real peers and baselines of its tests
  libxml2-dev libnl-3-dev libnl-route-3-dev libnftables-dev nftables
  ocserv openconnect iperf3 tcpdump dnsmasq-base
  # tools the tests and the demo call
  iproute2 procps curl sqlite3 python3
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps: all ${#packages[@]} packages already installed"
  exit 0
fi

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
echo "deps: installing ${#missing[@]} packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"

# The openvswitch-switch package starts a system-wide OVS on install where an init system runs.
# Steward's tests and demo start their own instances with private run directories, so the
# system one is not needed; it is left as the package set it up.
echo "deps: done"
