"""VPN benchmark: Steward against openconnect + vpnc-script, same namespaces, same ocserv, one run.

Run through bench/run-vpn.sh, which owns the work directory and cleans it up.
  1. the lab: client, gateway and intranet namespaces, ocserv (password login, DTLS offered),
     an HTTP server, an iperf3 server and a UDP echo in the intranet namespace;
  2. `--rounds` rounds, each over CSTP only (DTLS datagrams dropped at the gateway, openconnect
     also told --no-dtls) and then with DTLS: for openconnect, Steward (the measured process
     started by `steward vpn run`) and Steward admitting everything (its option for it; without
     one, the measured process's session admitted by PID), one after the other: connect,
     iperf3 up (and down), UDP round trips, disconnect;
  3. startup: connect command -> first intranet HTTP answer, `--startups` times each,
     interleaved;
  4. docs/benchmarks.md, section "## VPN" (unless a diagnostic option says otherwise).
"""

import argparse
import hashlib
import os
import signal
import sys
import time

from storm import procs
from storm import report as storm_report

from . import lab as lab_
from . import measure, openconnect, report

TRANSPORTS = ("cstp", "dtls")


class Run:
    def __init__(self, args):
        self.args = args
        self.processes = procs.Processes()
        self.started = time.monotonic()
        self.lab = None
        self.results = {"throughput": {}, "latency": {}, "startup": {}, "failures": [],
                        "notes": []}

    def progress(self, text):
        print("[{:6.1f}s] {}".format(time.monotonic() - self.started, text), flush=True)

    def systems(self):
        """(name, factory(dtls, label)) of every system measured, in the order they run."""
        systems = [("openconnect", lambda dtls, label: openconnect.OpenConnect(
            self.processes, self.lab, dtls, label))]
        if self.args.steward:
            from . import steward
            binary = self.args.steward

            def make_steward(admission):
                return lambda dtls, label: steward.Steward(self.processes, self.lab, binary, dtls,
                                                           label, admission)

            systems.append(("steward", make_steward("run")))
            if steward.admit_all_flags(binary) is not None:
                systems.append(("steward-all", make_steward("all")))
            else:
                systems.append(("steward-session", make_steward("session")))
        return systems

    def setup(self):
        self.lab = lab_.Lab(self.processes, self.args.work_dir, self.args.python,
                            self.args.bench_dir)
        self.progress("lab: namespaces {}, {}, {}".format(
            self.lab.client_ns, self.lab.gateway_ns, self.lab.intranet_ns))
        self.lab.create()
        self.lab.start_gateway()
        self.lab.start_intranet()
        if not self.lab.intranet_unreachable_directly():
            raise RuntimeError("the client namespace reaches the intranet without a tunnel")
        self.progress("lab: ocserv listens on {}, intranet services up, no direct route".format(
            self.lab.gateway_url))

    def throughput_round(self, round_):
        for transport in self.args.transport or TRANSPORTS:
            dtls = transport == "dtls"
            if not dtls:
                self.lab.block_dtls(True)
            try:
                for name, make in self.systems():
                    if self.args.only and name not in self.args.only:
                        continue
                    self.one_system(name, make, transport, round_)
            finally:
                if not dtls:
                    self.lab.block_dtls(False)

    def one_system(self, name, make, transport, round_):
        """Connects, measures and disconnects one system. A failed measurement is recorded
        with what the client and ocserv logged meanwhile, and the next one starts on a fresh
        connection, so that one failure does not break the others."""
        label = "{}-{}-{}".format(name, transport, round_ + 1)
        figures = {}
        self.results["throughput"].setdefault((name, transport), []).append(figures)
        where = (name, transport, round_ + 1)
        client = self.connect(make, transport, label, where)
        try:
            for direction in ["up", "down"] if self.args.reverse else ["up"]:
                if client is None:
                    figures[direction] = {"error": "not connected"}
                    continue
                marks = self.log_marks(client)
                profiler = self.start_profile(name, client, label + "-" + direction)
                try:
                    f = measure.iperf(self.lab, client, self.args.seconds, direction == "down",
                                      self.args.bitrate)
                    self.check_channel(label, transport, f)
                except RuntimeError as error:
                    figures[direction] = {"error": self.failure(
                        where, "iperf3 " + direction, error, client, marks)}
                    self.stop_client(where, client)
                    client = self.connect(make, transport, label, where)
                    continue
                finally:
                    self.stop_profile(profiler)
                figures[direction] = f
                self.progress("{}: iperf3 {} {:.2f} Gbit/s, retransmits {}, client CPU {}, "
                              "gateway CPU {:.0f}%, bytes cstp/dtls {}/{}".format(
                                  label, direction, f["gbps"], f["retransmits"],
                                  ", ".join("{} {:.0f}% (waited {:.0f}%)".format(
                                      k, v, f["waited_percent"][k])
                                      for k, v in f["cpu_percent"].items()),
                                  f["gateway_cpu_percent"], f["channel_bytes"]["cstp"],
                                  f["channel_bytes"]["dtls"]))
                if f["losses"]:
                    self.progress("{}: {} losses: {}".format(label, direction, ", ".join(
                        "{} {}".format(k, v) for k, v in sorted(f["losses"].items()))))
            ping = {"error": "not connected"}
            if client is not None:
                marks = self.log_marks(client)
                try:
                    ping = measure.udp_ping(self.lab, client, self.args.pings)
                    self.progress("{}: UDP round trips p50 {:.0f} us, p99 {:.0f} us, lost {}"
                                  .format(label, ping["p50_us"], ping["p99_us"], ping["lost"]))
                except RuntimeError as error:
                    ping = {"error": self.failure(where, "UDP round trips", error, client,
                                                  marks)}
            self.results["latency"].setdefault((name, transport), []).append(ping)
        finally:
            if client is not None:
                self.stop_client(where, client)

    def connect(self, make, transport, label, where):
        """A connected client, or None when it could not connect (recorded)."""
        client = make(transport == "dtls", label)
        marks = self.log_marks(client)
        self.progress("{}: connecting".format(label))
        try:
            client.connect()
            return client
        except RuntimeError as error:
            self.failure(where, "connect", error, client, marks)
            self.stop_client(where, client)
            return None

    def log_marks(self, client):
        """Where the client's and ocserv's logs end now: a failure quotes what follows."""
        return {"client": lab_.file_size(client.log),
                "gateway": lab_.file_size(self.lab.path("ocserv.log"))}

    def start_profile(self, name, client, label):
        """Diagnostics (--perf-out): a sampling profile of Steward's daemon during iperf3."""
        if not self.args.perf_out or name != "steward":
            return None
        os.makedirs(self.args.perf_out, exist_ok=True)
        return self.processes.spawn("perf record", [
            "perf", "record", "-F", "999", "--call-graph", "dwarf,16384", "-o",
            os.path.join(self.args.perf_out, label + ".data"), "-p",
            str(client.cpu_pids()["steward"])], self.lab.path("perf-" + label + ".log"))

    def stop_profile(self, profiler):
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            try:
                profiler.wait(timeout=60)
            finally:
                self.processes.stop(profiler)

    def stop_client(self, where, client):
        try:
            client.disconnect()
        except RuntimeError as error:
            self.failure(where, "disconnect", error, client, None)

    def failure(self, where, what, error, client, marks):
        """Records a failed step of (system, transport, round) with the client's and ocserv's
        complaints since `marks`; returns its one-line summary."""
        said = []
        if marks is not None:
            if client is not None:
                said += client.complaints(marks["client"])
            said += ["ocserv: " + line for line in self.lab.gateway_errors(marks["gateway"])]
        message = str(error).strip().splitlines()[-1][:300] if str(error).strip() else "failed"
        self.results["failures"].append({"system": where[0], "transport": where[1],
                                         "round": where[2], "what": what, "error": message,
                                         "logged": said[:4]})
        text = "{} {} round {}: {}: {}".format(where[0], where[1], where[2], what, message)
        if said:
            text += " (logged: {})".format("; ".join(said[:4]))
        self.progress("FAILED " + text)
        return text

    def check_channel(self, label, transport, figures):
        """The data went over the channel the row claims (counted at the gateway)."""
        cstp, dtls = figures["channel_bytes"]["cstp"], figures["channel_bytes"]["dtls"]
        carried = cstp + dtls
        if transport == "cstp" and dtls > 0:
            raise RuntimeError("{}: {} bytes reached ocserv over UDP with DTLS blocked".format(
                label, dtls))
        if transport == "dtls" and dtls < 0.9 * carried:
            raise RuntimeError("{}: only {} of {} bytes went over DTLS".format(
                label, dtls, carried))

    def startup_phase(self):
        systems = [name for name, _ in self.systems() if name in ("openconnect", "steward")]
        if self.args.only:
            systems = [s for s in systems if s in self.args.only]
        for rep in range(self.args.startups):
            for name in systems:
                log = self.lab.path("startup-{}-{}.log".format(name, rep + 1))
                if name == "openconnect":
                    connect, attempt, teardown, exits = openconnect.startup_commands(
                        self.lab, dtls=True)
                    stdin_path = self.lab.path("password")
                else:
                    from . import steward
                    connect, attempt, teardown, exits, stdin_path = steward.startup_commands(
                        self.lab, self.args.steward, "startup-{}".format(rep + 1))
                gateway_mark = lab_.file_size(self.lab.path("ocserv.log"))
                try:
                    result = measure.startup(self.lab, name, connect, attempt, teardown, exits,
                                             stdin_path, log)
                except RuntimeError as error:
                    self.results["startup_failures"] = self.results.get("startup_failures", 0) + 1
                    self.failure((name, "startup", rep + 1), "connect -> first HTTP answer",
                                 error, None, {"client": 0, "gateway": gateway_mark})
                    self.wait_clean(name)
                    continue
                if name == "steward":
                    from . import steward
                    result["phases"] = steward.startup_phases(log)
                self.results["startup"].setdefault(name, []).append(result)
                self.progress("startup {} #{}: {:.3f} s ({} attempts)".format(
                    name, rep + 1, result["seconds"], result["attempts"]))
                self.wait_clean(name)

    def wait_clean(self, name):
        """The next repetition starts from a client namespace without the previous tunnel."""
        self.lab.wait_client_clean(name)


def resolv_digest():
    with open("/etc/resolv.conf", "rb") as resolv:
        return hashlib.sha256(resolv.read()).hexdigest()


def parse_args():
    parser = argparse.ArgumentParser(prog="run-vpn.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--bench-dir", required=True, help="bench/, the probes' PYTHONPATH")
    parser.add_argument("--python", default="/usr/bin/python3")
    parser.add_argument("--steward", help="the steward binary (without it: openconnect only, "
                        "docs/benchmarks.md untouched)")
    parser.add_argument("--doc", required=True, help="docs/benchmarks.md")
    parser.add_argument("--command", required=True, help="the command line, for the doc")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="iperf3 -t")
    parser.add_argument("--no-reverse", dest="reverse", action="store_false",
                        help="iperf3 client -> server only (no -R run)")
    parser.add_argument("--pings", type=int, default=2000, help="UDP round trips per system")
    parser.add_argument("--startups", type=int, default=7)
    parser.add_argument("--only", action="append",
                        help="diagnostics: only this system (openconnect, steward, "
                        "steward-all or steward-session); docs/benchmarks.md untouched")
    parser.add_argument("--transport", action="append", choices=TRANSPORTS,
                        help="diagnostics: only this channel; docs/benchmarks.md untouched")
    parser.add_argument("--bitrate", help="diagnostics: iperf3 -b (e.g. 900M), a sender paced "
                        "below the link's rate instead of one limited only by TCP; "
                        "docs/benchmarks.md untouched")
    parser.add_argument("--perf-out", help="diagnostics: perf record of Steward's daemon "
                        "during each of its iperf3 runs, into this directory; "
                        "docs/benchmarks.md untouched")
    return parser.parse_args()


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = Run(args)
    resolv_before = resolv_digest()
    try:
        run.results["machine"] = storm_report.machine()
        run.setup()
        for round_ in range(args.rounds):
            run.progress("round {} of {}".format(round_ + 1, args.rounds))
            run.throughput_round(round_)
        run.startup_phase()
    finally:
        if run.lab is not None:
            run.lab.destroy()
        run.processes.stop_all()
        resolv_kept = resolv_digest() == resolv_before
        if not resolv_kept:
            print("run-vpn: the host's /etc/resolv.conf changed during the run", file=sys.stderr)
    if not resolv_kept:
        sys.exit(1)
    run.progress("lab removed; the host's /etc/resolv.conf is unchanged")
    text = report.render(args, run.results)
    if args.steward and not (args.only or args.transport or args.perf_out or args.bitrate):
        storm_report.replace_section(args.doc, text, report.SECTION)
        print(text)
        run.progress("wrote {}".format(args.doc))
    else:
        print(text)
        run.progress("diagnostic run: {} untouched".format(args.doc))


if __name__ == "__main__":
    main()
