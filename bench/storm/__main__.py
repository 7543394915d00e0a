"""Migration storm: Steward against ovs-vsctl, the Python IDL and the floor, in one run.

Run through bench/run-migration-storm.sh, which owns the work directory and cleans it up.
Phases (each on its own set of four ovsdb-server switches holding the same rows):
  1. Steward: 4 switches, the daemon, 4 hosts and the VMs registered, placement verified, the
     switches' databases saved as the starting point of the baselines;
  2. the storm: the first host evacuated by concurrent phase-less migrations, then verified;
  3. Python IDL, 4. the floor, each from the saved databases; 1-4 repeated `--rounds` times
     (Steward on a fresh controller and fresh switches from the saved databases);
  5. idle: single migrations one at a time on the idle controller (after the last storm);
  1-5 run in two CPU layouts, rounds interleaved (--layout): "split", the switches on cores of
  their own as if on other hosts, and "shared", every process on every core;
  6. ovs-vsctl on a subset of the migrations, from the saved databases (first layout);
  7. docs/benchmarks.md.
"""

import argparse
import json
import os
import signal
import sys
import time

from . import baselines, procs, report, steward, switches, workload

HOST_COUNT = 4


class Run:
    def __init__(self, args):
        self.args = args
        self.processes = procs.Processes()
        self.started = time.monotonic()
        self.hosts, self.vms = workload.make_inventory(args.vms, HOST_COUNT, args.on_first_host)
        self.vm_by_id = {vm["id"]: vm for vm in self.vms}
        self.storm = workload.evacuation(self.vms, "host-1", [h["id"] for h in self.hosts[1:]])
        self.snapshots = {}
        self.results = {}
        self.layout = ""  # "-split" or "-shared" when the run measures both CPU layouts

    def progress(self, text):
        print("[{:6.1f}s] {}".format(time.monotonic() - self.started, text), flush=True)

    def path(self, *parts):
        return os.path.join(self.args.work_dir, *parts)

    def write_json(self, name, value):
        with open(self.path(name), "w") as out:
            json.dump(value, out)
        return self.path(name)

    # --- switches ---------------------------------------------------------------------------

    def start_switches(self, label, from_snapshots):
        started = {}
        for host in self.hosts:
            switch = switches.Switch(self.processes, self.path(label, host["switch"]),
                                     host["switch"])
            switch.create(self.snapshots[host["id"]] if from_snapshots else None)
            started[host["id"]] = switch
        return started

    def stop_switches(self, started):
        for switch in started.values():
            switch.stop()

    def check_switches(self, started, moved, label):
        """Every VM's ports on exactly the switch of its host after `moved` (vm -> host), with
        their QoS rows and nothing else left behind. Raises when anything differs."""
        placement = {vm["id"]: moved.get(vm["id"], vm["host"]) for vm in self.vms}
        problems = []
        counts = {}
        for host, switch in started.items():
            ports, qos_rows = switch.ports()
            counts[host] = len(ports)
            wanted = {i["device"]: i for vm in self.vms if placement[vm["id"]] == host
                      for i in vm["interfaces"]}
            wanted_qos = sum(1 for i in wanted.values() if i.get("egress_max_rate_bps", 0) > 0)
            missing = sorted(set(wanted) - set(ports))
            extra = sorted(set(ports) - set(wanted))
            if missing or extra or qos_rows != wanted_qos:
                problems.append("{}: {} ports missing {}, {} extra {}, {} QoS rows (want {})"
                                .format(host, len(missing), missing[:3], len(extra), extra[:3],
                                        qos_rows, wanted_qos))
        if problems:
            raise RuntimeError("{}: switches do not hold what they should:\n  {}".format(
                label, "\n  ".join(problems)))
        self.progress("{}: every switch holds exactly its VMs' ports and QoS rows".format(label))
        return counts

    # --- Steward ------------------------------------------------------------------------------

    def steward_round(self, round_):
        """One storm on a fresh controller. The first round also places the VMs and saves the
        switches' databases that every later round and every baseline starts from; the last
        round also measures idle single migrations."""
        label = "steward-{}{}".format(round_ + 1, self.layout)
        first = not self.snapshots
        self.progress("{}: starting 4 ovsdb-server switches and the controller".format(label))
        started = self.start_switches(label, from_snapshots=not first)
        self.daemon = steward.Daemon(self.processes, self.args.steward, self.path(label, "daemon"))
        api = self.daemon.start()
        specs = [{"id": s.id, "endpoint": s.endpoint, "bridge": switches.BRIDGE}
                 for s in started.values()]
        self.progress("{}: registering {} hosts and {} VMs".format(label, len(self.hosts),
                                                                     len(self.vms)))
        steward.register(api, specs, self.hosts, self.vms, self.progress)
        placed = steward.wait_until_placed(api, 300, self.progress)
        self.progress("{}: placement verified ({} VMs)".format(label, placed["vms_checked"]))
        if first:
            self.results["ports_at_start"] = self.check_switches(started, {}, "steward setup")
            for host, switch in started.items():
                self.snapshots[host] = self.path("snapshot-" + host + ".db")
                switch.backup(self.snapshots[host])

        self.storm_phase(api, started, label)
        if round_ == self.args.rounds - 1 and not self.args.only_steward:
            self.idle_phase(api, label)
        self.daemon.stop()
        self.stop_switches(started)

    def storm_phase(self, api, started, label):
        before = steward.metrics(api)
        self.progress("storm: {} concurrent migrations off host-1 ({} connections)".format(
            len(self.storm), self.args.connections))
        out = self.path(label + "-storm.json")
        profiler = None
        if self.args.perf_out:
            # Sampling profile of the daemon during the storm only (a diagnostic run).
            profiler = self.processes.spawn("perf record", [
                "perf", "record", "-F", os.environ.get("STEWARD_PERF_HZ", "4000"), "--call-graph", os.environ.get("STEWARD_PERF_CALLGRAPH", "fp"), "-o", self.args.perf_out, "-p",
                str(self.daemon.child.pid)], self.path(label + "-perf.log"))
            time.sleep(0.5)
        procs.run([self.args.storm_client, "--port", str(api.port), "--token-file",
                   self.path(label, "daemon", "token"), "--migrations",
                   self.write_json("storm-migrations.json", self.storm), "--out", out,
                   "--connections", str(self.args.connections)] + self.watch(started),
                  timeout=600)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)
            profiler.wait(timeout=60)
            self.processes.stop(profiler)
        after = steward.metrics(api)
        with open(out) as results:
            storm = json.load(results)
        figures = self.steward_figures(storm)
        figures["metrics"] = metric_deltas(before, after)
        figures["cpu"] = storm["cpu_seconds"]
        figures["run_queue"] = storm["run_queue_seconds"]
        self.results.setdefault("steward", []).append(figures)
        self.progress("storm: {count} migrations in {wall_s:.2f} s = {rate:.0f}/s".format(
            **figures) + "; CPU ms per migration: " + ", ".join(
                "{} {:.3f}".format(name, seconds * 1e3 / figures["count"])
                for name, seconds in sorted(figures["cpu"].items())))
        verify = api.call("GET", "/v1/verify")
        if not verify["clean"] or verify["in_flight"]:
            raise RuntimeError("storm: /v1/verify is not clean: {}".format(
                json.dumps(verify["problems"][:5])))
        self.progress("storm: /v1/verify clean ({} VMs)".format(verify["vms_checked"]))
        self.check_switches(started, {m["vm"]: m["target_host"] for m in self.storm},
                            "steward storm")

    def watch(self, started):
        """--watch arguments: the load generator reports the CPU these used during the storm."""
        args = ["--watch", "daemon={}".format(self.daemon.child.pid)]
        for switch in started.values():
            args += ["--watch", "switches={}".format(switch.server.pid)]
        return args

    def steward_figures(self, storm):
        rows = storm["migrations"]
        bad = [r for r in rows if r["status"] != 202 or not r["record"]
               or r["record"]["state"] != "completed"]
        if bad:
            raise RuntimeError("storm: {} migrations did not complete, e.g. {}".format(
                len(bad), json.dumps(bad[0])[:400]))
        wall_s = (storm["settled_us"] - storm["first_sent_us"]) / 1e6
        figures = report.summary(len(rows), wall_s,
                                 [r["record"]["target_ready_ms"] for r in rows],
                                 [r["record"]["source_cleaned_ms"] for r in rows])
        post_ms = [(r["answered_us"] - r["sent_us"]) / 1e3 for r in rows]
        figures["intake_s"] = (storm["last_answered_us"] - storm["first_sent_us"]) / 1e6
        figures["post_p50"] = report.percentile(post_ms, 50)
        figures["post_p99"] = report.percentile(post_ms, 99)
        figures["retries"] = sum(r["record"]["attempts"] for r in rows)
        return figures

    def idle_phase(self, api, label):
        # Back to host-1, one at a time: the VMs the storm moved first.
        moves = [{"vm": m["vm"], "source_host": m["target_host"], "target_host": "host-1"}
                 for m in self.storm[:self.args.idle]]
        self.progress("idle: {} single migrations, one at a time".format(len(moves)))
        out = self.path("idle.json")
        procs.run([self.args.storm_client, "--port", str(api.port), "--token-file",
                   self.path(label, "daemon", "token"), "--migrations",
                   self.write_json("idle-migrations.json", moves), "--out", out, "--sequential",
                   "--gap-ms", "10"], timeout=600)
        with open(out) as results:
            rows = json.load(results)["migrations"]
        bad = [r for r in rows if not r["record"] or r["record"].get("state") != "completed"]
        if bad:
            raise RuntimeError("idle: {} migrations did not complete, e.g. {}".format(
                len(bad), json.dumps(bad[0])[:400]))
        target = [r["record"]["target_ready_ms"] for r in rows]
        round_trip = [(r["answered_us"] - r["sent_us"]) / 1e3 for r in rows]
        self.results["idle"] = {
            "count": len(rows), "target_p50": report.percentile(target, 50),
            "target_p99": report.percentile(target, 99),
            "source_p50": report.percentile([r["record"]["source_cleaned_ms"] for r in rows], 50),
            "source_p99": report.percentile([r["record"]["source_cleaned_ms"] for r in rows], 99),
            "round_trip_p50": report.percentile(round_trip, 50),
            "round_trip_p99": report.percentile(round_trip, 99)}
        self.progress("idle: target ready p50 {target_p50:.2f} ms, p99 {target_p99:.2f} ms".format(
            **self.results["idle"]))
        verify = api.call("GET", "/v1/verify")
        if not verify["clean"]:
            raise RuntimeError("idle: /v1/verify is not clean")

    # --- baselines ----------------------------------------------------------------------------

    def vsctl_phase(self):
        subset = self.storm[:self.args.vsctl_migrations]
        self.progress("ovs-vsctl: {} of the {} migrations, {} workers".format(
            len(subset), len(self.storm), self.args.vsctl_workers))
        started = self.start_switches("vsctl", from_snapshots=True)
        switch_cpu, client_cpu = switches_cpu(started), procs.children_cpu_seconds()
        timings = baselines.run_vsctl(started, self.vm_by_id, subset, self.args.vsctl_workers)
        self.results["vsctl"] = timing_figures(timings)
        self.results["vsctl"]["cpu"] = {"ovs-vsctl processes": procs.children_cpu_seconds()
                                        - client_cpu,
                                        "switches": switches_cpu(started) - switch_cpu}
        self.results["vsctl"]["workers"] = self.args.vsctl_workers
        self.results["vsctl"]["calls"] = sum(
            1 + len(workload.vsctl_remove(self.vm_by_id[m["vm"]], switches.BRIDGE))
            for m in subset)
        self.progress("ovs-vsctl: {count} migrations in {wall_s:.2f} s = {rate:.1f}/s".format(
            **self.results["vsctl"]))
        self.check_switches(started, {m["vm"]: m["target_host"] for m in subset}, "ovs-vsctl")
        self.stop_switches(started)

    def idl_round(self, round_):
        self.progress("python idl: {} migrations, one agent, one IDL per switch".format(
            len(self.storm)))
        started = self.start_switches("idl-{}{}".format(round_ + 1, self.layout),
                                     from_snapshots=True)
        agent = baselines.IdlAgent(started)
        switch_cpu, client_cpu = switches_cpu(started), time.process_time()
        timings = baselines.run_idl(agent, self.vm_by_id, self.storm)
        figures = timing_figures(timings)
        figures["cpu"] = {"agent": time.process_time() - client_cpu,
                          "switches": switches_cpu(started) - switch_cpu}
        agent.close()
        self.results.setdefault("idl", []).append(figures)
        self.progress("python idl: {count} migrations in {wall_s:.2f} s = {rate:.0f}/s".format(
            **figures))
        self.check_switches(started, {m["vm"]: m["target_host"] for m in self.storm},
                            "python idl")
        self.stop_switches(started)

    def floor_round(self, round_):
        """The floor at every window of --floor-windows, each on fresh switches; the round
        keeps the fastest (the floor is the best any client could do)."""
        best = None
        for window in self.args.floor_windows:
            figures = self.floor_run(round_, window)
            if best is None or figures["rate"] > best["rate"]:
                best = figures
        self.results.setdefault("floor", []).append(best)

    def floor_run(self, round_, window):
        self.progress("floor: {} migrations' transactions, pipelined ({}), no controller".format(
            len(self.storm), "{} installs in flight".format(window) if window else "all at once"))
        label = "floor-{}{}-w{}".format(round_ + 1, self.layout, window)
        started = self.start_switches(label, from_snapshots=True)
        out = self.path(label + ".json")
        argv = [self.args.floor_client, "--vms", self.write_json("vms.json", self.vms),
                "--migrations", self.path("storm-migrations.json"), "--out", out,
                "--window", str(window)]
        for host, switch in started.items():
            argv += ["--switch", "{}={}".format(host, switch.endpoint)]
        switch_cpu = switches_cpu(started)
        procs.run(argv, timeout=600)
        with open(out) as results:
            floor = json.load(results)
        floor_cpu = {"client": floor["cpu_seconds"],
                     "switches (incl. the untimed reads)": switches_cpu(started) - switch_cpu}
        if floor["errors"]:
            raise RuntimeError("floor: {} transactions failed".format(floor["errors"]))
        rows = floor["migrations"]
        wall_s = (max(r["remove_done_us"] for r in rows) - min(r["install_sent_us"] for r in rows))
        figures = report.summary(
            len(rows), wall_s / 1e6,
            [(r["install_done_us"] - r["install_sent_us"]) / 1e3 for r in rows],
            [(r["remove_done_us"] - r["install_sent_us"]) / 1e3 for r in rows])
        figures["cpu"] = floor_cpu
        figures["window"] = window
        self.progress("floor: {count} migrations in {wall_s:.2f} s = {rate:.0f}/s".format(
            **figures))
        self.check_switches(started, {m["vm"]: m["target_host"] for m in self.storm}, "floor")
        self.stop_switches(started)
        return figures


def switches_cpu(started):
    return sum(procs.cpu_seconds(switch.server.pid) for switch in started.values())


def timing_figures(timings):
    """Figures of (started, target committed, source committed) tuples, in seconds."""
    wall_s = max(t[2] for t in timings) - min(t[0] for t in timings)
    return report.summary(len(timings), wall_s, [(t[1] - t[0]) * 1e3 for t in timings],
                          [(t[2] - t[0]) * 1e3 for t in timings])


def metric_deltas(before, after):
    """What the storm added to the daemon's counters and histograms (sums and counts)."""
    return {name: after[name] - before.get(name, 0.0) for name in after
            if name.endswith(("_sum", "_count", "_total")) or "_total{" in name
            or "_sum{" in name or "_count{" in name}


def parse_args():
    parser = argparse.ArgumentParser(prog="run-migration-storm.sh", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--steward", required=True, help="the steward binary")
    parser.add_argument("--storm-client", required=True)
    parser.add_argument("--floor-client", required=True)
    parser.add_argument("--doc", required=True, help="docs/benchmarks.md")
    parser.add_argument("--command", required=True, help="the command line, for the doc")
    parser.add_argument("--vms", type=int, default=2000)
    parser.add_argument("--on-first-host", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3,
                        help="storms of Steward, the Python IDL and the floor, interleaved")
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--vsctl-migrations", type=int, default=100)
    parser.add_argument("--vsctl-workers", type=int, default=4)
    parser.add_argument("--only-steward", action="store_true",
                        help="diagnostics: Steward's storms only; docs/benchmarks.md untouched")
    parser.add_argument("--floor-windows", type=lambda text: [int(w) for w in text.split(",")],
                        default=[0, 256, 64, 16],
                        help="installs in flight for the floor client, comma-separated (0: all "
                        "at once); each round keeps the fastest")
    parser.add_argument("--layout", choices=["both", "split", "shared"], default="both",
                        help="split: the switches on cores of their own (all but the first), "
                        "everything else on the first core; shared: every process on every "
                        "core; both (default): the two, rounds interleaved")
    parser.add_argument("--perf-out", help="diagnostics: perf record of the daemon's storm here")
    return parser.parse_args()


def main():
    args = parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = Run(args)
    cpus = sorted(os.sched_getaffinity(0))
    layouts = ["split", "shared"] if args.layout == "both" else [args.layout]
    if len(cpus) < 2:
        layouts = ["shared"]  # nothing to split
    results = {layout: {} for layout in layouts}

    def use_layout(layout):
        # split: the switches stand for other hosts, so they get cores of their own.
        split = layout == "split"
        os.sched_setaffinity(0, set(cpus[:1]) if split else set(cpus))
        run.processes.switch_cpus = set(cpus[1:]) if split else None
        run.results = results[layout]
        run.layout = "-" + layout if len(layouts) > 1 else ""

    try:
        machine = report.machine()
        # Rounds interleave the systems and the layouts, so that a change in the machine's other
        # load during the run falls on all of them alike; the report takes each one's median.
        for round_ in range(args.rounds):
            for layout in layouts:
                run.progress("round {} of {}, {} layout".format(round_ + 1, args.rounds, layout))
                use_layout(layout)
                run.steward_round(round_)
                if args.only_steward:
                    continue
                run.idl_round(round_)
                run.floor_round(round_)
        if args.only_steward:
            return
        use_layout(layouts[0])
        run.vsctl_phase()
        for layout in layouts:
            results[layout]["machine"] = machine
            results[layout].setdefault("ports_at_start", results[layouts[0]]["ports_at_start"])
            results[layout].setdefault("vsctl", results[layouts[0]]["vsctl"])
        text = report.render(args, results)
        report.replace_section(args.doc, text)
        print(text)
        run.progress("wrote {}".format(args.doc))
    finally:
        run.processes.stop_all()


if __name__ == "__main__":
    main()
