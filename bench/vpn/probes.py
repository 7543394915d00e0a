"""Small tools the VPN benchmark runs inside its network namespaces.

  python3 -m vpn.probes udp-echo --bind ADDR --port P
      answers every datagram with the same bytes (the intranet's UDP service);
  python3 -m vpn.probes udp-ping --host ADDR --port P --count N
      N request/response round trips one after the other, JSON figures on stdout;
  python3 -m vpn.probes http-get --url URL
      one GET; exit 0 on a 200 answer (the startup probe's attempt when no curl is wanted);
  python3 -m vpn.probes startup --connect JSON_ARGV --attempt JSON_ARGV [...]
      starts the connect command, then runs the attempt command again and again until it exits
      0, and prints the time from the connect command's start to that first success.

The connect command is this process's child (storm.procs: it dies with this process and is
ended by its PID).
"""

import argparse
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import urllib.request

from storm import procs

def udp_echo(args):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.bind, args.port))
    while True:
        data, peer = sock.recvfrom(65535)
        sock.sendto(data, peer)


def _percentile(ordered, p):
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def udp_ping(args):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((args.host, args.port))
    sock.settimeout(args.timeout)
    padding = b"\0" * max(0, args.size - 8)
    rtts_us, lost = [], 0
    for seq in range(args.warmup + args.count):
        request = struct.pack("!Q", seq) + padding
        started = time.perf_counter_ns()
        sock.send(request)
        while True:
            try:
                reply = sock.recv(65535)
            except socket.timeout:
                lost += seq >= args.warmup
                break
            except ConnectionRefusedError:
                # An ICMP error from an earlier request; this one's answer may still come.
                continue
            if reply[:8] == request[:8]:
                if seq >= args.warmup:
                    rtts_us.append((time.perf_counter_ns() - started) / 1e3)
                break
            # A late answer to an earlier request that had timed out: not ours, keep waiting.
    rtts_us.sort()
    figures = {"count": len(rtts_us), "lost": lost, "size": args.size}
    if rtts_us:
        figures.update(p50_us=_percentile(rtts_us, 50), p99_us=_percentile(rtts_us, 99),
                       mean_us=sum(rtts_us) / len(rtts_us), max_us=rtts_us[-1])
    json.dump(figures, sys.stdout)
    print()
    return 0 if rtts_us else 1


def http_get(args):
    try:
        with urllib.request.urlopen(args.url, timeout=args.timeout) as answer:
            answer.read()
            return 0 if answer.status == 200 else 1
    except OSError:
        return 1


def startup(args):
    processes = procs.Processes()
    connect_argv = json.loads(args.connect)
    attempt_argv = json.loads(args.attempt)
    log = args.log or os.devnull
    attempts = 0
    result = {"ok": False}
    started = time.monotonic()
    connect = processes.spawn("connect", connect_argv, log, stdin_path=args.stdin_file)
    try:
        deadline = started + args.timeout
        while time.monotonic() < deadline:
            attempts += 1
            with open(log, "ab") as out:
                done = subprocess.run(attempt_argv, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=out)
            if done.returncode == 0:
                result = {"ok": True, "seconds": time.monotonic() - started}
                break
            exited = connect.poll()
            if exited is not None and not (args.connect_exits_ok and exited == 0):
                break
            time.sleep(args.pause)
        result["attempts"] = attempts
        result["connect_exit"] = connect.poll()
    finally:
        if args.teardown:
            with open(log, "ab") as out:
                subprocess.run(json.loads(args.teardown), stdin=subprocess.DEVNULL, stdout=out,
                               stderr=out, timeout=30)
        processes.stop(connect, grace=args.grace)
    json.dump(result, sys.stdout)
    print()
    return 0 if result["ok"] else 1


def main():
    parser = argparse.ArgumentParser(prog="python3 -m vpn.probes")
    sub = parser.add_subparsers(dest="tool", required=True)
    echo = sub.add_parser("udp-echo")
    echo.add_argument("--bind", required=True)
    echo.add_argument("--port", type=int, required=True)
    ping = sub.add_parser("udp-ping")
    ping.add_argument("--host", required=True)
    ping.add_argument("--port", type=int, required=True)
    ping.add_argument("--count", type=int, default=2000)
    ping.add_argument("--warmup", type=int, default=50)
    ping.add_argument("--size", type=int, default=64)
    ping.add_argument("--timeout", type=float, default=1.0)
    get = sub.add_parser("http-get")
    get.add_argument("--url", required=True)
    get.add_argument("--timeout", type=float, default=2.0)
    start = sub.add_parser("startup")
    start.add_argument("--connect", required=True, help="JSON argv of the connect command")
    start.add_argument("--attempt", required=True, help="JSON argv; success = exit status 0")
    start.add_argument("--teardown", help="JSON argv run after success or failure")
    start.add_argument("--stdin-file", help="bytes written to the connect command's stdin")
    start.add_argument("--connect-exits-ok", action="store_true",
                       help="the connect command returns once connected (a daemon stays)")
    start.add_argument("--timeout", type=float, default=30.0)
    start.add_argument("--pause", type=float, default=0.005)
    start.add_argument("--grace", type=float, default=10.0)
    start.add_argument("--log")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tools = {"udp-echo": udp_echo, "udp-ping": udp_ping, "http-get": http_get,
             "startup": startup}
    return tools[args.tool](args)


if __name__ == "__main__":
    sys.exit(main())
