#!/usr/bin/env bash
# Steward's main job, end to end on one machine: a VM's network configuration follows its live
# migrations across three real Open vSwitch instances.
#
#   sudo bash scripts/demo.sh [--keep] [--no-deps] [--no-build]
#
# 1. installs the Debian packages (scripts/deps.sh) and builds the `steward` binary;
# 2. starts three OVS instances (ovsdb-server + ovs-vswitchd, userspace `netdev` datapath), each
#    with its own run directory and database under a temporary directory, each ovs-vswitchd in a
#    network namespace of its own (DESIGN.md section 6);
# 3. starts the controller with an embedded store in that directory;
# 4. imports examples/demo/inventory.json (3 switches, 3 hosts, 50 VMs) and waits for a clean
#    verify;
# 5. replays examples/demo/nova-trace.jsonl (Nova live-migration notifications);
# 6. runs `steward controller verify` and checks every VM against examples/demo/expected-hosts.json
#    on all three switches;
# 7. stops everything it started, by PID, and removes its namespaces and temporary directory, also
#    on failure and on Ctrl-C. A system-wide OVS, if one runs, is never touched.
#
# Options: --keep leaves the temporary directory (logs, OVS databases, controller store) for
# inspection; --no-deps and --no-build skip step 1's install and build (for quick re-runs).
# Exit codes: 0 every VM's configuration is on exactly its current switch; 1 a step failed;
# 2 bad usage; 3 the demo ran but some VM's configuration is misplaced; 130/143 interrupted.
set -euo pipefail

readonly kSchema=/usr/share/openvswitch/vswitch.ovsschema
readonly kSwitchCount=3
readonly kBridge=br-int
readonly kStartTimeout=20    # seconds for a daemon to come up
readonly kSettleTimeout=60   # seconds for the switches to be ready and verify to be clean
readonly kStopGrace=5        # seconds between SIGTERM and SIGKILL
readonly kExitProblems=3

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
demo_dir=$repo/examples/demo
steward=$repo/build/src/cli/steward

keep=false
run_deps=true
run_build=true

usage() {
  sed -n '2,23s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

for arg in "$@"; do
  case $arg in
    --keep) keep=true ;;
    --no-deps) run_deps=false ;;
    --no-build) run_build=false ;;
    -h | --help) usage; exit 0 ;;
    *) echo "demo: unknown option '$arg'" >&2; usage >&2; exit 2 ;;
  esac
done

# --- what this run owns -------------------------------------------------------------------------
# Everything below is created by this run and released by cleanup(), by PID and by name.
work=""              # temporary directory: run dirs, databases, store, token, logs
controller_pid=""
vswitchd_pids=()
ovsdb_pids=()
namespaces=()
cleaned=false

# --- output -------------------------------------------------------------------------------------
run_started=$EPOCHREALTIME
step_started=$EPOCHREALTIME
step_number=0
readonly kStepCount=7
declare -a timings=()

# Seconds since $1 (an EPOCHREALTIME value), with one decimal. Digits only: the separator
# follows the locale.
elapsed() {
  local now=${EPOCHREALTIME//[!0-9]/} then=${1//[!0-9]/}
  local tenths=$(((now - then) / 100000))
  printf '%d.%d' $((tenths / 10)) $((tenths % 10))
}

step() {
  step_number=$((step_number + 1))
  step_title=$1
  step_started=$EPOCHREALTIME
  printf '\n==> [%d/%d] %s\n' "$step_number" "$kStepCount" "$step_title"
}

step_done() {
  local took
  took=$(elapsed "$step_started")
  timings+=("$(printf '%d. %-63s %6ss' "$step_number" "$step_title" "$took")")
  printf '    done in %ss\n' "$took"
}

say() { printf '    %s\n' "$*"; }

# Prints the last lines of a log, indented, if it exists.
show_tail() {
  local log=$1 lines=${2:-25}
  [ -s "$log" ] || return 0
  printf '    --- last %d lines of %s ---\n' "$lines" "$log"
  tail -n "$lines" "$log" | sed 's/^/    | /'
}

# Prints the controller log's last warnings and errors (lines "<time> W ..." / "<time> E ...").
show_controller_problems() {
  local log=$work/controller.log
  [ -s "$log" ] || return 0
  local problems
  problems=$(grep -E '^[0-9T:.-]+ [WE] ' "$log" | tail -n 15)
  [ -n "$problems" ] || return 0
  printf '    --- last warnings and errors in %s ---\n' "$log"
  printf '%s\n' "$problems" | sed 's/^/    | /'
}

# fail MESSAGE [LOG...]: says what failed, shows the logs' tails, exits 1 (cleanup runs on EXIT).
fail() {
  local message=$1
  shift
  restore_output
  printf '\ndemo: FAILED in step %d (%s): %s\n' "$step_number" "${step_title:-setup}" "$message" >&2
  local log
  for log in "$@"; do
    show_tail "$log" >&2
    [ "$log" = "$work/controller.log" ] && show_controller_problems >&2
  done
  if [ -n "$work" ]; then
    if $keep; then
      printf 'demo: every log is in %s (kept: --keep)\n' "$work" >&2
    else
      printf 'demo: logs are in %s, removed on exit; rerun with --keep to keep them\n' "$work" >&2
    fi
  fi
  exit 1
}

# A signal can arrive while a command's output is redirected to a file in $work (the trap then
# runs with that redirection in place); the messages of fail, on_signal and cleanup go to the
# terminal through copies of stdout and stderr taken at start (fds 3 and 4, not given to daemons).
exec 3>&1 4>&2
restore_output() {
  exec 1>&3 2>&4
}

# --- process ownership --------------------------------------------------------------------------
# True while `pid` is alive and still one of ours: its command line names our work directory.
# Guards every signal we send against a PID the kernel has since given to someone else.
ours() {
  local pid=$1
  [ -n "$pid" ] || return 1
  { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -qF -- "$work"
}

# stop_pids PID...: SIGTERM to each, then SIGKILL to those still alive after kStopGrace.
stop_pids() {
  local pid deadline
  for pid in "$@"; do
    if ours "$pid"; then kill -TERM "$pid" 2>/dev/null || true; fi
  done
  deadline=$((SECONDS + kStopGrace))
  for pid in "$@"; do
    while ours "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.05
    done
    if ours "$pid"; then
      say "pid $pid did not stop within ${kStopGrace}s: SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
}

cleanup() {
  local status=$?
  $cleaned && return
  cleaned=true
  [ -n "$work" ] || return "$status"  # nothing was created yet
  restore_output
  trap '' INT TERM
  set +e
  if [ "$status" -eq 0 ] && [ "$step_number" -eq $((kStepCount - 1)) ]; then
    step "stop all processes, delete namespaces, temp dir"
  else
    printf '\n==> cleanup: stop all processes, delete namespaces, temp dir\n'
    step_started=$EPOCHREALTIME
  fi
  if [ -n "$controller_pid" ]; then
    stop_pids "$controller_pid"
    say "controller stopped (pid $controller_pid)"
  fi
  if [ "${#vswitchd_pids[@]}" -gt 0 ]; then
    stop_pids "${vswitchd_pids[@]}"
    say "ovs-vswitchd stopped (pids ${vswitchd_pids[*]})"
  fi
  if [ "${#ovsdb_pids[@]}" -gt 0 ]; then
    stop_pids "${ovsdb_pids[@]}"
    say "ovsdb-server stopped (pids ${ovsdb_pids[*]})"
  fi
  local ns
  for ns in "${namespaces[@]}"; do
    ip netns del "$ns" 2>/dev/null || say "could not delete namespace $ns"
  done
  [ "${#namespaces[@]}" -gt 0 ] && say "namespaces deleted: ${namespaces[*]}"
  if [ -n "$work" ] && [ -d "$work" ]; then
    if $keep; then
      say "kept $work (logs, databases, store); remove it with: rm -rf $work"
    else
      rm -rf -- "$work"
      say "removed $work"
    fi
  fi
  if [ "$status" -eq 0 ]; then
    step_done
  else
    say "cleanup took $(elapsed "$step_started")s"
  fi
  return "$status"
}

on_signal() {
  restore_output
  printf '\ndemo: interrupted by SIG%s during step %d (%s)\n' "$1" "$step_number" \
    "${step_title:-setup}" >&2
  [ "$1" = INT ] && exit 130
  exit 143
}

trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

# --- preconditions ------------------------------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: needs root (network namespaces, Open vSwitch): sudo bash scripts/demo.sh" >&2
  exit 1
fi
for file in inventory.json nova-trace.jsonl expected-hosts.json; do
  [ -r "$demo_dir/$file" ] || { echo "demo: missing $demo_dir/$file" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/steward-demo.XXXXXX")
# Unix socket paths are limited to 107 bytes; the longest one is <work>/sw-N/br-int.mgmt.
if [ "${#work}" -gt 80 ]; then
  fail "temporary directory path '$work' is too long for unix sockets; set TMPDIR to a shorter one"
fi
printf 'Steward demo: 3 Open vSwitch hosts, 50 VMs, Nova live-migration trace\n'
printf 'repo %s\nwork %s (logs here)\n' "$repo" "$work"

# Never let the caller's environment point the CLI or the daemon elsewhere.
unset STEWARD_URL STEWARD_TOKEN

# --- 1. dependencies and build ------------------------------------------------------------------
# Copies the build output to `log` and shows ninja's [done/total] counter: in place on a
# terminal, else one line per tenth of the work (a first build takes minutes on two cores).
build_progress() {
  local log=$1 line shown=-1 done_count total tenth
  while IFS= read -r line; do
    printf '%s\n' "$line" >>"$log"
    [[ $line =~ ^\[([0-9]+)/([0-9]+)\] ]] || continue
    done_count=${BASH_REMATCH[1]}
    total=${BASH_REMATCH[2]}
    if [ -t 1 ]; then
      printf '\r    building: %d/%d' "$done_count" "$total"
      [ "$done_count" -eq "$total" ] && printf '\n'
    else
      tenth=$((done_count * 10 / total))
      if [ "$tenth" -gt "$shown" ]; then
        shown=$tenth
        printf '    building: %d/%d %s\n' "$done_count" "$total" "${line#*] }"
      fi
    fi
  done
}

build_steward() {
  local log=$work/build.log
  if $run_deps; then
    bash "$repo/scripts/deps.sh" >"$work/deps.log" 2>&1 ||
      fail "scripts/deps.sh failed" "$work/deps.log"
    say "$(tail -n 1 "$work/deps.log")"
  fi
  if $run_build; then
    say "cmake --preset default && cmake --build build --target steward (log: $log)"
    local status=0
    (cd "$repo" && cmake --preset default && cmake --build build --target steward -j"$(nproc)") \
      2>&1 | build_progress "$log" || status=$?
    [ "$status" -eq 0 ] || fail "build failed (exit $status)" "$log"
    if grep -q '^ninja: no work to do' "$log"; then say "build/src/cli/steward is up to date"; fi
  fi
  [ -x "$steward" ] || fail "$steward does not exist; run without --no-build"
}

# --- 2. Open vSwitch ----------------------------------------------------------------------------
# Every OVS command runs with this switch's own run, log and database directories, and names its
# database socket or control socket explicitly: nothing reaches a system-wide OVS.
in_ovs_env() {
  local dir=$1
  shift
  env OVS_RUNDIR="$dir" OVS_LOGDIR="$dir" OVS_DBDIR="$dir" OVS_SYSCONFDIR="$dir" "$@"
}

vsctl() {
  local dir=$1
  shift
  in_ovs_env "$dir" ovs-vsctl --db="unix:$dir/db.sock" "$@"
}

# wait_for WHAT PID LOG COMMAND...: polls COMMAND until it succeeds; fails if PID exits first or
# kStartTimeout passes.
wait_for() {
  local what=$1 pid=$2 log=$3
  shift 3
  local deadline=$((SECONDS + kStartTimeout))
  until "$@" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || fail "$what exited during start-up" "$log" "${log%.log}.out"
    [ "$SECONDS" -lt "$deadline" ] || fail "$what did not come up in ${kStartTimeout}s" "$log"
    sleep 0.05
  done
}

start_ovsdb_server() {
  local dir=$1
  local -a ovs_vars=(OVS_RUNDIR="$dir" OVS_LOGDIR="$dir" OVS_DBDIR="$dir" OVS_SYSCONFDIR="$dir")
  in_ovs_env "$dir" ovsdb-tool create "$dir/conf.db" "$kSchema" >"$dir/ovsdb-tool.out" 2>&1 ||
    fail "ovsdb-tool create $dir/conf.db failed" "$dir/ovsdb-tool.out"
  # A simple command started with & is exec'd, so $! is the daemon itself (not a subshell).
  env "${ovs_vars[@]}" ovsdb-server "$dir/conf.db" \
    --remote="punix:$dir/db.sock" --unixctl="$dir/ovsdb-server.ctl" \
    --pidfile="$dir/ovsdb-server.pid" --log-file="$dir/ovsdb-server.log" -vconsole:off \
    </dev/null >"$dir/ovsdb-server.out" 2>&1 3>&- 4>&- &
  ovsdb_pids+=("$!")
  wait_for "ovsdb-server ($dir)" "$!" "$dir/ovsdb-server.log" \
    ovsdb-client --timeout=2 list-dbs "unix:$dir/db.sock"
  vsctl "$dir" --no-wait --timeout=10 init >"$dir/ovs-vsctl.out" 2>&1 ||
    fail "ovs-vsctl init on $dir/db.sock failed" "$dir/ovs-vsctl.out" "$dir/ovsdb-server.log"
}

start_vswitchd() {
  local dir=$1 ns=$2
  local -a ovs_vars=(OVS_RUNDIR="$dir" OVS_LOGDIR="$dir" OVS_DBDIR="$dir" OVS_SYSCONFDIR="$dir")
  ip netns add "$ns" 2>"$dir/netns.err" || fail "ip netns add $ns failed" "$dir/netns.err"
  namespaces+=("$ns")
  # `ip netns exec` execs in place, so $! is ovs-vswitchd itself.
  env "${ovs_vars[@]}" ip netns exec "$ns" ovs-vswitchd "unix:$dir/db.sock" \
    --unixctl="$dir/ovs-vswitchd.ctl" --pidfile="$dir/ovs-vswitchd.pid" \
    --log-file="$dir/ovs-vswitchd.log" -vconsole:off \
    </dev/null >"$dir/ovs-vswitchd.out" 2>&1 3>&- 4>&- &
  vswitchd_pids+=("$!")
  wait_for "ovs-vswitchd ($dir)" "$!" "$dir/ovs-vswitchd.log" \
    ovs-appctl --timeout=2 -t "$dir/ovs-vswitchd.ctl" version
  # Without --no-wait, ovs-vsctl returns once ovs-vswitchd has applied the change: the bridge
  # exists in the userspace datapath when this succeeds.
  vsctl "$dir" --timeout=10 -- --may-exist add-br "$kBridge" \
    -- set bridge "$kBridge" datapath_type=netdev >"$dir/ovs-vsctl.out" 2>&1 ||
    fail "ovs-vswitchd did not create bridge $kBridge" "$dir/ovs-vsctl.out" \
      "$dir/ovs-vswitchd.log"
}

start_switches() {
  local i dir ns
  for i in $(seq 1 "$kSwitchCount"); do
    dir=$work/sw-$i
    ns=steward-demo-$$-$i
    mkdir -p "$dir"
    start_ovsdb_server "$dir"
    start_vswitchd "$dir" "$ns"
    say "sw-$i: ovsdb-server pid ${ovsdb_pids[-1]}, ovs-vswitchd pid ${vswitchd_pids[-1]}" \
      "in netns $ns, $kBridge datapath $(vsctl "$dir" get bridge "$kBridge" datapath_type)," \
      "run dir $dir"
  done
}

# --- 3. controller ------------------------------------------------------------------------------
port=""
cli() {
  "$steward" controller --url "http://127.0.0.1:$port" --token-file "$work/controller.token" "$@"
}

healthz() {
  curl -fsS --max-time 5 "http://127.0.0.1:$port/healthz"
}

# True once the controller has written its port file (a whole number) and answers /healthz.
controller_answers() {
  local written
  written=$(cat "$work/controller.port" 2>/dev/null) || return 1
  [[ $written =~ ^[0-9]+$ ]] || return 1
  port=$written
  healthz >/dev/null 2>&1
}

start_controller() {
  local log=$work/controller.log
  "$steward" controller run --listen 127.0.0.1 --port 0 --port-file "$work/controller.port" \
    --database "$work/controller.db" --token-file "$work/controller.token" --log-level info \
    </dev/null >"$log" 2>&1 3>&- 4>&- &
  controller_pid=$!
  local deadline=$((SECONDS + kStartTimeout))
  until controller_answers; do
    kill -0 "$controller_pid" 2>/dev/null || fail "the controller exited during start-up" "$log"
    [ "$SECONDS" -lt "$deadline" ] || fail "the controller did not answer /healthz" "$log"
    sleep 0.05
  done
  say "controller pid $controller_pid on http://127.0.0.1:$port, store $work/controller.db"
  say "log $log"
}

# --- 4. inventory -------------------------------------------------------------------------------
# Prints "sw-1=ready sw-2=ready ..." from /healthz; succeeds when every switch is ready.
switch_states() {
  healthz | python3 -c '
import json, sys
switches = json.load(sys.stdin)["switches"]
print(" ".join("%s=%s" % (k, v["state"]) + (" (%s)" % v["error"] if "error" in v else "")
               for k, v in sorted(switches.items())))
sys.exit(0 if len(switches) == int(sys.argv[1]) and
         all(v["state"] == "ready" for v in switches.values()) else 1)' "$kSwitchCount"
}

import_inventory() {
  local inventory=$work/inventory.json log=$work/controller.log
  sed "s#@RUNDIR@#$work#g" "$demo_dir/inventory.json" >"$inventory"
  cli import "$inventory" >"$work/import.out" 2>&1 ||
    fail "steward controller import $inventory failed" "$work/import.out" "$log"
  say "$(cat "$work/import.out")"

  local deadline=$((SECONDS + kSettleTimeout)) states
  until states=$(switch_states 2>/dev/null); do
    [ "$SECONDS" -lt "$deadline" ] ||
      fail "switches not ready after ${kSettleTimeout}s: ${states:-no answer}" "$log"
    sleep 0.1
  done
  say "switches: $states"

  # The controller installs each VM on its switch as it is imported; verify turns clean once
  # every install has been confirmed.
  until cli verify >"$work/verify-before.out" 2>&1; do
    [ "$SECONDS" -lt "$deadline" ] ||
      fail "verify still not clean ${kSettleTimeout}s after import" "$work/verify-before.out" "$log"
    sleep 0.2
  done
  say "$(tail -n 1 "$work/verify-before.out")"
}

# --- 5. replay ----------------------------------------------------------------------------------
replay_status=0
replay_summary=""
replay_trace() {
  local trace=$demo_dir/nova-trace.jsonl
  say "$(wc -l <"$trace") notifications from examples/demo/nova-trace.jsonl"
  set +e
  cli replay-nova "$trace" 2>&1 | tee "$work/replay.out" | sed 's/^/    /'
  replay_status=${PIPESTATUS[0]}
  set -e
  replay_summary=$(grep -E '^replayed ' "$work/replay.out" || echo 'replay: no summary line')
  if [ "$replay_status" -ne 0 ]; then
    say "replay-nova exited with $replay_status: some migrations failed or events were rejected"
    say "(controller log: $work/controller.log)"
  fi
}

# --- 6. check -----------------------------------------------------------------------------------
verify_status=0
placement_status=0
verify_summary=""
placement_summary=""

migrations_in_flight() {
  healthz | python3 -c 'import json, sys; print(json.load(sys.stdin)["migrations_in_flight"])'
}

# Waits until no migration is in flight, so the checks see where the trace left every VM.
wait_until_idle() {
  local deadline=$((SECONDS + kSettleTimeout)) active
  while active=$(migrations_in_flight) && [ "$active" != 0 ]; do
    [ "$SECONDS" -lt "$deadline" ] || { say "still $active migrations in flight"; return 0; }
    sleep 0.1
  done
}

# Dumps the Steward-owned rows of every switch as JSON files for check_placement.
dump_switches() {
  local i dir table columns
  for i in $(seq 1 "$kSwitchCount"); do
    dir=$work/sw-$i
    for table in Port Interface QoS; do
      columns=_uuid,name,external_ids
      [ "$table" = QoS ] && columns=_uuid,external_ids
      vsctl "$dir" --no-wait --timeout=10 --format=json --columns="$columns" \
        find "$table" external_ids:steward-owner=steward \
        >"$work/rows-sw-$i-$table.json" 2>"$work/ovs-vsctl.err" ||
        fail "cannot read the $table rows of sw-$i" "$work/ovs-vsctl.err"
    done
    # Ports by name, whoever owns them: a VM's device must not exist on a wrong switch at all.
    vsctl "$dir" --no-wait --timeout=10 --format=json --columns=name list Port \
      >"$work/rows-sw-$i-all-ports.json" 2>"$work/ovs-vsctl.err" ||
      fail "cannot list the ports of sw-$i" "$work/ovs-vsctl.err"
  done
}

check_placement() {
  cli --json vm list >"$work/vms.json" 2>"$work/vms.err" ||
    fail "steward controller vm list failed" "$work/vms.err"
  dump_switches
  set +e
  python3 - "$work" "$demo_dir/expected-hosts.json" "$kSwitchCount" <<'EOF' |
import json, sys

work, expected_path, switch_count = sys.argv[1], sys.argv[2], int(sys.argv[3])
expected = json.load(open(expected_path))
vms = {vm["id"]: vm for vm in json.load(open(f"{work}/vms.json"))}
inventory = json.load(open(f"{work}/inventory.json"))
switch_of_host = {h["id"]: h["switch"] for h in inventory["hosts"]}
switches = [f"sw-{i}" for i in range(1, switch_count + 1)]

def ovs_rows(path):
    table = json.load(open(path))
    columns = table["headings"]
    rows = []
    for values in table["data"]:
        row = {}
        for column, value in zip(columns, values):
            if isinstance(value, list) and value and value[0] == "map":
                value = dict(value[1])
            row[column] = value
        rows.append(row)
    return rows

# owned[switch][table][vm] -> names (or uuids for QoS); names[switch] -> every port name
owned, names = {}, {}
for sw in switches:
    owned[sw] = {}
    for table in ("Port", "Interface", "QoS"):
        by_vm = {}
        for row in ovs_rows(f"{work}/rows-{sw}-{table}.json"):
            vm = row["external_ids"].get("steward-vm", "?")
            by_vm.setdefault(vm, []).append(row.get("name") or row["_uuid"][1])
        owned[sw][table] = by_vm
    names[sw] = {row["name"] for row in ovs_rows(f"{work}/rows-{sw}-all-ports.json")}

problems = []
for vm_id, want_host in sorted(expected.items()):
    vm = vms.get(vm_id)
    if vm is None:
        problems.append(f"vm {vm_id}: not known to the controller")
        continue
    label = f"vm {vm_id} ({vm['name']})"
    if vm["host"] != want_host:
        problems.append(f"{label}: controller says host {vm['host']}, trace ends on {want_host}")
    home = switch_of_host[want_host]
    devices = sorted(i["device"] for i in vm["interfaces"])
    qos_count = sum(1 for i in vm["interfaces"] if i.get("egress_max_rate_bps", 0) > 0)
    for sw in switches:
        ports = sorted(owned[sw]["Port"].get(vm_id, []))
        ifaces = sorted(owned[sw]["Interface"].get(vm_id, []))
        qos = owned[sw]["QoS"].get(vm_id, [])
        stray = sorted(set(devices) & names[sw]) if sw != home else []
        if sw == home:
            if ports != devices or ifaces != devices or len(qos) != qos_count:
                problems.append(f"{label}: on its switch {sw} wants ports {devices} and "
                                f"{qos_count} QoS, has ports {ports}, interfaces {ifaces}, "
                                f"{len(qos)} QoS")
        elif ports or ifaces or qos or stray:
            problems.append(f"{label}: stale on {sw} (its host is {want_host} on {home}): "
                            f"ports {ports or stray}, interfaces {ifaces}, {len(qos)} QoS")
for vm_id in sorted(set(vms) - set(expected)):
    problems.append(f"vm {vm_id}: known to the controller but not in expected-hosts.json")

counts = ", ".join(
    f"{sw} {sum(len(v) for v in owned[sw]['Port'].values())} ports" for sw in switches)
for problem in problems:
    print(problem)
print(f"placement: {len(expected)} VMs against expected-hosts.json; Steward rows: {counts}; "
      f"{len(problems)} problems")
sys.exit(3 if problems else 0)
EOF
    tee "$work/placement.out" | sed 's/^/    /'
  placement_status=${PIPESTATUS[0]}
  placement_summary=$(tail -n 1 "$work/placement.out")
  set -e
}

check_result() {
  wait_until_idle
  set +e
  cli verify >"$work/verify-after.out" 2>&1
  verify_status=$?
  set -e
  sed 's/^/    /' "$work/verify-after.out"
  verify_summary=$(tail -n 1 "$work/verify-after.out")
  [ "$verify_status" -eq 0 ] || [ "$verify_status" -eq "$kExitProblems" ] ||
    fail "steward controller verify could not run (exit $verify_status)" \
      "$work/verify-after.out" "$work/controller.log"
  check_placement
}

# --- summary ----------------------------------------------------------------------------------
summary() {
  printf '\n==> summary\n'
  say "$replay_summary"
  say "$verify_summary"
  say "$placement_summary"
  local line
  for line in "${timings[@]}"; do
    say "$line"
  done
  say "$(printf '%-66s %6ss' total "$(elapsed "$run_started")")"
}

main() {
  step "dependencies and build"
  build_steward
  step_done

  step "start 3 Open vSwitch instances (netdev datapath)"
  start_switches
  step_done

  step "start the controller"
  start_controller
  step_done

  step "import 3 switches, 3 hosts, 50 VMs; wait for a clean verify"
  import_inventory
  step_done

  step "replay the Nova live-migration trace"
  replay_trace
  step_done

  step "verify every VM on all three switches"
  check_result
  step_done

  # Step 7: stop and remove everything, then report.
  cleanup
  summary

  if [ "$verify_status" -ne 0 ] || [ "$placement_status" -ne 0 ]; then
    printf '\ndemo: RESULT: some VM configuration is NOT on exactly its current switch ' >&2
    printf '(verify exit %d, placement check exit %d)\n' "$verify_status" "$placement_status" >&2
    return "$kExitProblems"
  fi
  if [ "$replay_status" -ne 0 ]; then
    printf '\ndemo: RESULT: every VM is placed right, but the replay reported failed ' >&2
    printf 'migrations or rejected events (exit %d)\n' "$replay_status" >&2
    return 1
  fi
  printf '\ndemo: RESULT: every VM configuration is on exactly its current switch\n'
}

main
