"""One measurement each: iperf3 TCP throughput, UDP round trips, connect -> first HTTP answer.

The measured commands run in the client namespace through the client's `run` (plain for
openconnect, behind `steward vpn run --` or admitted by PID for Steward), so that the process
being measured is the one the VPN client has to admit.
"""

import json
import os
import subprocess
import time

from storm import procs

from . import lab as lab_


def _env(lab):
    return dict(os.environ, PYTHONPATH=lab.bench_dir, PYTHONDONTWRITEBYTECODE="1")


def _cpu(pids):
    return {name: procs.cpu_seconds(pid) for name, pid in pids.items()}


def _waited(pids):
    """Seconds each process's main thread has been runnable but waiting for a CPU."""
    waited = {}
    for name, pid in pids.items():
        with open("/proc/{}/schedstat".format(pid)) as schedstat:
            waited[name] = int(schedstat.read().split()[1]) / 1e9
    return waited


def iperf(lab, client, seconds, reverse, bitrate=None):
    argv = ["iperf3", "-c", lab_.INTRANET_ADDRESS, "-p", str(lab_.IPERF_PORT), "-t",
            str(seconds), "-J"] + (["-R"] if reverse else [])
    if bitrate:
        argv += ["-b", bitrate]
    pids = client.cpu_pids()
    cpu_before, gateway_before, waited_before = _cpu(pids), lab.gateway_cpu_seconds(), _waited(
        pids)
    counters_before = lab.counters()
    losses_before = lab.losses()
    started = time.monotonic()
    done = client.run(argv, timeout=seconds + 60)
    wall = time.monotonic() - started
    cpu_after, gateway_after, waited_after = _cpu(pids), lab.gateway_cpu_seconds(), _waited(
        pids)
    counters_after = lab.counters()
    losses_after = lab.losses()
    text = done.stdout.decode(errors="replace")
    try:
        result = json.loads(text)
    except ValueError:
        result = {"error": text[-400:] + done.stderr.decode(errors="replace")[-400:]}
    if done.returncode != 0 or "error" in result:
        # A failed test can leave the iperf3 server waiting on its control connection.
        lab.start_iperf()
        raise RuntimeError("iperf3: {}".format(result.get("error", "exit status {}".format(
            done.returncode))))
    end = result["end"]
    figures = {
        "gbps": end["sum_received"]["bits_per_second"] / 1e9,
        "sent_gbps": end["sum_sent"]["bits_per_second"] / 1e9,
        "retransmits": end["sum_sent"].get("retransmits", 0),
        "iperf_cpu": end.get("cpu_utilization_percent", {}),
        "cpu_percent": {name: (cpu_after[name] - cpu_before[name]) / wall * 100
                        for name in pids},
        "waited_percent": {name: (waited_after[name] - waited_before[name]) / wall * 100
                           for name in pids},
        "gateway_cpu_percent": (gateway_after - gateway_before) / wall * 100,
        "channel_bytes": {name: counters_after.get(name, 0) - counters_before.get(name, 0)
                          for name in ("cstp", "dtls")},
        "losses": {name: value - losses_before.get(name, 0)
                   for name, value in losses_after.items()
                   if value - losses_before.get(name, 0) > 0},
    }
    return figures


def udp_ping(lab, client, count):
    done = client.run([lab.python, "-m", "vpn.probes", "udp-ping", "--host",
                       lab_.INTRANET_ADDRESS, "--port", str(lab_.ECHO_PORT), "--count",
                       str(count)], timeout=count * 2 + 60, env=_env(lab))
    if done.returncode != 0:
        raise RuntimeError("udp-ping exit status {}: {}".format(
            done.returncode, done.stderr.decode(errors="replace")[-400:]))
    return json.loads(done.stdout.decode())


def startup(lab, label, connect, attempt, teardown, connect_exits_ok, stdin_path, log):
    """Seconds from starting `connect` in the client namespace to the first `attempt` (an HTTP
    GET of the intranet server) that succeeds."""
    argv = lab.exec_in(lab.client_ns, [
        lab.python, "-m", "vpn.probes", "startup", "--connect", json.dumps(connect),
        "--attempt", json.dumps(attempt), "--log", log, "--timeout", "30"])
    if teardown:
        argv += ["--teardown", json.dumps(teardown)]
    if stdin_path:
        argv += ["--stdin-file", stdin_path]
    if connect_exits_ok:
        argv.append("--connect-exits-ok")
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=_env(lab),
                          timeout=120)
    text = done.stdout.decode(errors="replace").strip()
    try:
        result = json.loads(text.splitlines()[-1])
    except (ValueError, IndexError):
        result = {"ok": False}
    if not result.get("ok"):
        raise RuntimeError("startup of {} failed: {} {}; see {}".format(
            label, text[-300:], done.stderr.decode(errors="replace")[-300:], log))
    return result
