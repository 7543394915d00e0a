"""Figures and the docs/benchmarks.md section of the migration storm."""

import datetime
import os
import platform
import re

SECTION = "## Controller: migration storm"

INTRO = """# Benchmarks

Whole-system measurements of Steward's components, each run against real peers with its
baselines side by side in the same run (DESIGN.md §5). Every figure below was written by the
benchmark that measured it; the command that reproduces it is given with it. Each component owns
one `##` section and rewrites only that one.
"""


def percentile(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return ordered[int(rank) - 1]


def summary(count, wall_s, target_ms, source_ms):
    return {"count": count, "wall_s": wall_s, "rate": count / wall_s if wall_s > 0 else 0.0,
            "target_p50": percentile(target_ms, 50), "target_p99": percentile(target_ms, 99),
            "source_p50": percentile(source_ms, 50), "source_p99": percentile(source_ms, 99)}


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as loadavg:
        load = " ".join(loadavg.read().split()[:3])
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(), "load": load,
            "nice": os.nice(0),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def replace_section(path, text, section=SECTION):
    """Writes `text` (starting with `section`) into `path`, replacing only that section."""
    if os.path.exists(path):
        with open(path) as current:
            document = current.read()
    else:
        document = INTRO
    pattern = re.compile(r"^" + re.escape(section) + r"\n.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(document):
        document = pattern.sub(lambda _: text.rstrip("\n") + "\n\n", document, count=1)
    else:
        document = document.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n"
    with open(path, "w") as out:
        out.write(document.rstrip("\n") + "\n")


def run_lines(m, command):
    """The date, machine and command lines of a section, from machine()."""
    return [
        "- date: {}".format(m["date"]),
        "- machine: {} cores (`nproc`), {}, kernel {}; load average at start {} (other work "
        "on the machine); the benchmark ran at nice {}".format(
            m["nproc"], m["cpu"], m["kernel"], m["load"], m["nice"]),
        "- command: `{}`".format(command),
    ]


def target_lines(issue, met):
    """The targets table of [(target, required, measured, met)] and its one-line summary; met
    is None for a target the run could not measure."""
    verdict = {True: "yes", False: "**no**", None: "not measured"}
    lines = ["| target ({}) | required | measured | met |".format(issue), "|---|---|---|---|"]
    lines += ["| {} | {} | {} | {} |".format(t, r, v, verdict[ok]) for t, r, v, ok in met]
    yes = [t for t, _, _, ok in met if ok]
    no = [t for t, _, _, ok in met if ok is False]
    unknown = [t for t, _, _, ok in met if ok is None]
    summary = "Met: {}. Not met: {}.".format("; ".join(yes) or "none", "; ".join(no) or "none")
    if unknown:
        summary += " Not measured: {}.".format("; ".join(unknown))
    return lines + ["", summary]


def median_round(rounds):
    """The round whose rate is the median (the lower middle one for an even count)."""
    ordered = sorted(rounds, key=lambda figures: figures["rate"])
    return ordered[(len(ordered) - 1) // 2]


def _rates(rounds):
    if len(rounds) == 1:
        return "{:.1f}".format(rounds[0]["rate"])
    return "{:.1f} ({})".format(median_round(rounds)["rate"],
                                ", ".join("{:.0f}".format(f["rate"]) for f in rounds))


def _row(name, rounds):
    f = median_round(rounds)
    return "| {} | {} | {:.2f} | {} | {:.2f} / {:.2f} | {:.2f} / {:.2f} |".format(
        name, f["count"], f["wall_s"], _rates(rounds), f["target_p50"], f["target_p99"],
        f["source_p50"], f["source_p99"])


def targets(results):
    """[(target, required, measured, met)] from the median rounds of one run."""
    steward = median_round(results["steward"])["rate"]
    floor = median_round(results["floor"])["rate"]
    idl = median_round(results["idl"])["rate"]
    vsctl = results["vsctl"]["rate"]
    idle_p99 = results["idle"]["target_p99"]
    return [
        ("throughput vs ovs-vsctl", ">= 20x", "{:.1f}x".format(steward / vsctl),
         steward >= 20 * vsctl),
        ("throughput vs Python IDL", ">= 5x", "{:.1f}x".format(steward / idl), steward >= 5 * idl),
        ("throughput vs floor", "Steward >= floor / 1.5 (floor/Steward <= 1.5)",
         "floor/Steward = {:.2f}".format(floor / steward), steward >= floor / 1.5),
        ("idle single migration, message -> target committed", "p99 < 50 ms",
         "p99 = {:.2f} ms".format(idle_p99), idle_p99 < 50),
    ]


def _cpu_row(name, figures):
    parts = ", ".join("{} {:.3f}".format(who, used * 1e3 / figures["count"])
                      for who, used in figures["cpu"].items())
    return "| {} | {} |".format(name, parts)


def _metric(metrics, name):
    return metrics.get(name, 0.0)


def _step_means(metrics):
    parts = []
    for step in ("install_target", "remove_source"):
        total = _metric(metrics, 'steward_migration_step_seconds_sum{step="%s"}' % step)
        count = _metric(metrics, 'steward_migration_step_seconds_count{step="%s"}' % step)
        if count:
            parts.append("{} {:.2f} ms mean over {:.0f} steps".format(step, total / count * 1e3,
                                                                      count))
    return "; ".join(parts) if parts else "not reported"


LAYOUTS = {
    "split": "switches on their own core (as on other hosts): the four ovsdb-servers on core 1; "
             "the controller side (Steward's daemon and load generator, the Python agent, the "
             "floor client, ovs-vsctl) on core 0",
    "shared": "shared cores: every process on both cores, scheduled by the kernel",
}


def _layout_rows(layout, results):
    return [
        _row("Steward ({})".format(layout), results["steward"]),
        _row("Python IDL agent ({})".format(layout), results["idl"]),
        _row("floor ({})".format(layout), results["floor"]),
    ]


def render(args, by_layout):
    layouts = list(by_layout)
    results = by_layout[layouts[0]]
    others = layouts[1:]
    m, idle, vs = results["machine"], results["idle"], results["vsctl"]
    s = median_round(results["steward"])
    def in_layout(layout):
        return " ({} layout)".format(layout) if others else ""

    met = [(t + in_layout(layouts[0]), r, v, ok) for t, r, v, ok in targets(results)]
    for layout in others:  # ovs-vsctl runs in the first layout only
        met += [(t + in_layout(layout), r, v, ok)
                for t, r, v, ok in targets(by_layout[layout]) if "ovs-vsctl" not in t]
    tag = " ({})".format(layouts[0]) if others else ""
    layout_lines = ["CPU layout: {}.".format(LAYOUTS[layouts[0]])]
    if others:
        layout_lines = [
            "The switches stand for other hosts, so the run measures two CPU layouts, rounds "
            "interleaved: **{}** ({}), and **{}** ({}). The first part of each table is the {} "
            "layout; the {} layout follows it.".format(
                layouts[0], LAYOUTS[layouts[0]], others[0], LAYOUTS[others[0]], layouts[0],
                others[0])]
    lines = [
        SECTION, "",
        "Host evacuation on real Open vSwitch databases (`ovsdb-server`, vswitch schema, bridge "
        "`br-int`, datapath_type netdev; no `ovs-vswitchd`): {vms} VMs with 1-2 interfaces each "
        "(access VLAN or trunks, some ingress policing, some egress max-rate as a QoS row) on 4 "
        "hosts, {storm} of them on host-1, which is evacuated by {storm} concurrent phase-less "
        "migrations spread over hosts 2-4. Every system below starts from the same rows (the "
        "switches' databases saved after Steward placed the VMs) and does the same switch work; "
        "afterwards each switch is read back and must hold exactly its VMs' ports and QoS rows, "
        "and Steward's `GET /v1/verify` must be clean.".format(vms=args.vms, storm=s["count"]),
        "",
    ] + run_lines(m, args.command) + [
        "",
        "Steward, the Python IDL and the floor ran {} rounds, interleaved (Steward each time on "
        "a fresh controller and fresh switches); the table shows each one's median round, with "
        "the rate of every round in brackets.".format(args.rounds),
        "",
    ] + layout_lines + [
        "",
        "| system | migrations | wall s | migrations/s | target committed p50 / p99 ms "
        "| source cleaned p50 / p99 ms |",
        "|---|---|---|---|---|---|",
        _row("Steward (HTTP API, {} keep-alive connections){}".format(args.connections, tag),
             results["steward"]),
        _row("ovs-vsctl, one process per step, {} workers ({} of {} migrations, {} calls)".format(
            vs["workers"], vs["count"], s["count"], vs["calls"]), [vs]),
        _row("Python IDL agent, commit_block per step" + tag, results["idl"]),
        _row("floor: Steward's transactions pipelined, no controller" + tag, results["floor"]),
        "| Steward idle, single migrations one at a time" + tag + " | {} | - | - | {:.2f} / {:.2f} | "
        "{:.2f} / {:.2f} |".format(idle["count"], idle["target_p50"], idle["target_p99"],
                                   idle["source_p50"], idle["source_p99"]),
    ] + [row for layout in others for row in _layout_rows(layout, by_layout[layout])] + [
        "",
        "CPU time per migration (user + system, from `/proc` and `getrusage`), which depends "
        "less on what else the machine runs than the rates do:",
        "",
        "| system | CPU ms per migration |",
        "|---|---|",
    ] + [_cpu_row(name + (tag if key != "vsctl" else ""),
                  median_round(results[key]) if isinstance(results[key], list)
                  else results[key]) for name, key in (
        ("Steward", "steward"), ("ovs-vsctl", "vsctl"), ("Python IDL", "idl"),
        ("floor", "floor"))] + [
        _cpu_row("{} ({})".format(name, layout), median_round(by_layout[layout][key]))
        for layout in others for name, key in (
            ("Steward", "steward"), ("Python IDL", "idl"), ("floor", "floor"))] + [
        "",
    ] + target_lines("issue 2", met) + [""]
    lines += [
        "How the figures are taken:",
        "- migrations/s = migrations / wall time from the first message (Steward: first "
        "`POST /v1/migrations` sent; baselines and floor: first step started) to the last "
        "source cleaned (Steward: the first `/healthz` poll, every 2 ms, that shows no "
        "migration in flight).",
        "- Steward's latencies are its migration records: `target_ready_ms` (message journaled "
        "-> target switch committed) and `source_cleaned_ms` (complete message -> source "
        "committed; a phase-less message is also the complete message). The baselines and the "
        "floor measure the same span from the moment they take the migration up (its first "
        "step starts or its install is queued).",
        "- Steward's intake: all {} POSTs answered {:.2f} s after the first was sent; POST "
        "round trip p50 {:.2f} ms, p99 {:.2f} ms; {} step retries.".format(
            s["count"], s["intake_s"], s["post_p50"], s["post_p99"], s["retries"]),
        "- Steward's switch steps during the storm (daemon `/metrics`): {}.".format(
            _step_means(s["metrics"])),
        "- During the storm's {:.2f} s the daemon ran {:.2f} s and was runnable but waiting for "
        "a CPU {:.2f} s; the four ovsdb-servers ran {:.2f} s and waited {:.2f} s "
        "(`/proc/<pid>/schedstat`).".format(
            s["wall_s"], s["cpu"]["daemon"], s["run_queue"]["daemon"], s["cpu"]["switches"],
            s["run_queue"]["switches"]),
    ] + ([
        "- Layouts: in production the switches run on the hypervisor hosts, not on the "
        "controller's machine. With the switches on a core of their own (split), Steward runs "
        "at the floor's rate: the switches are the bottleneck. With every process on both cores "
        "(shared), the daemon's CPU per migration (table above) is taken from the switches' "
        "share, while the floor client needs almost none, so the floor pulls ahead.",
    ] if others else []) + [
        "- Idle: each migration is sent with `?wait=` and the next one 10 ms after its answer; "
        "client round trip (message sent -> answer once source cleaned) p50 {:.2f} ms, p99 "
        "{:.2f} ms.".format(idle["round_trip_p50"], idle["round_trip_p99"]),
        "- ovs-vsctl runs `--no-wait` (there is no ovs-vswitchd to wait for). It cannot delete "
        "a Port and its QoS row in one transaction (its IDL leaves the orphaned Port to the "
        "server's garbage collection, which comes after the reference check that refuses the "
        "QoS delete), so a VM with an egress limit takes two calls on its source. Each call "
        "reads the whole database and verifies every port of the bridge, so it is slow on "
        "bridges of this size (host-1's holds {} ports at the start), and the run measures the "
        "first {} of the {} migrations (`--vsctl-migrations`).".format(
            results["ports_at_start"]["host-1"], vs["count"], s["count"]),
        "- The Python IDL agent registers the Bridge, Port, Interface and QoS tables with all "
        "their columns, keeps an index on Port.name and runs the migrations one after the "
        "other, each step committed with `commit_block`.",
        "- The floor (`bench/floor_client.cpp`) builds every transaction beforehand with "
        "Steward's own builder (`ovsdb::plan_install` / `plan_remove`), pipelines the installs "
        "on one unix-socket connection per switch and sends each remove as soon as its install "
        "is confirmed, and checks every reply as Steward does. Each round runs it with {} "
        "installs in flight, each on fresh switches, and keeps the fastest (the median round's "
        "came from {}).".format(
            ", ".join(str(w) if w else "all" for w in args.floor_windows),
            "all at once" if not median_round(results["floor"]).get("window")
            else "{} in flight".format(median_round(results["floor"])["window"])),
    ]
    return "\n".join(lines) + "\n"
