"""Figures and the docs/benchmarks.md section of the VPN benchmark."""

import statistics

from storm import report as storm_report

from . import lab as lab_

SECTION = "## VPN"

NAMES = {"openconnect": "openconnect 9.01 + vpnc-script",
         "steward": "Steward, only the measured process admitted (`steward vpn run --`)",
         "steward-all": "Steward admitting everything (`steward vpn connect --admit-all`)",
         "steward-session": "Steward, the measured command's shell admitted by PID "
                            "(`steward vpn admit`)"}
SHORT = {"openconnect": "openconnect", "steward": "Steward (`run`)",
         "steward-all": "Steward admitting everything",
         "steward-session": "Steward (shell admitted by PID)"}
# What ocserv's complaint means, from its source (worker-vpn.c, parse_cstp_data): it takes each
# TLS record it reads as exactly one CSTP frame.
CSTP_RECORD_NOTE = (
    "ocserv's `error parsing CSTP data` (with `-d 4` it also says `unexpected CSTP length "
    "(have <frame length>, should be <record length - 8>)`): ocserv 1.1.6 reads each TLS record "
    "as exactly one CSTP frame and ends the session otherwise. A client that hands several "
    "frames to one TLS write (records of up to 16 KiB holding several frames, or a frame split "
    "across two records) is dropped as soon as its upload is fast enough to queue more than one "
    "frame; each CSTP frame needs a TLS record of its own.")
SESSION_NOTE = (
    "This `steward vpn connect` has no option to admit every process, so the third Steward row "
    "admits the measured command's shell by PID (`steward vpn admit`) before it execs the "
    "command. Its packets take the same path as those of `steward vpn run` (admitted cgroup, "
    "nft mark, policy routing, flow check), so the cost of per-process admission against none "
    "is not measured.")
ALL_NOTE = (
    "\"Admitting everything\": `steward vpn connect --admit-all` (per-process admission off: no "
    "cgroup match in the nft rules, no flow check on the TUN); the measured commands run "
    "directly in the client namespace, not through `steward vpn run`. The cost of per-process "
    "admission compares the `run` row with this one, same channel, same direction.")
HOW = [
    "Each round runs, over CSTP only and then with DTLS, every system one after the other on a "
    "fresh connection: connect, iperf3 up, iperf3 down, UDP round trips, disconnect. Only one "
    "system is connected at a time.",
    "openconnect runs in the foreground as `openconnect --protocol=anyconnect --user ... "
    "--passwd-on-stdin --cafile ... --interface tun-oc --script "
    "/usr/share/vpnc-scripts/vpnc-script [--no-dtls] https://198.19.1.1:4443/`; its script "
    "installs the split-include route and writes the DNS settings into the client namespace's "
    "own resolv.conf (`/etc/netns/<ns>/resolv.conf`, which `ip netns exec` shows as "
    "/etc/resolv.conf); the host's /etc/resolv.conf is checked to be unchanged at the end.",
    "Steward runs in the foreground as `steward vpn connect --config ...` (the config names the "
    "gateway, the CA, a credentials file and, for CSTP only, `dtls = false`); it is counted "
    "ready when `steward vpn status --json` says the tunnel is up (and the data channel is "
    "DTLS where it should be).",
    "The client namespace has a default route through the gateway host, as a machine does; "
    "the gateway host forwards nothing from the client's link to the intranet, so only "
    "tunnelled traffic gets there. nft byte counters on ocserv's TCP and UDP port check that "
    "each measurement went over the channel its row names (a DTLS row needs at least 90% of "
    "the bytes on UDP, a CSTP row none).",
    "CPU % = CPU time (user + system, `/proc/<pid>/stat`) used during the upload / its wall "
    "time; the waiting share is from `/proc/<pid>/schedstat`. iperf3 and the UDP probe are not "
    "counted.",
    "Reading the uploads: ocserv 1.1.6's worker serves a session in one process that takes one "
    "record or datagram per turn of its loop (worker-vpn.c) and writes each packet to its TUN, "
    "which here also runs the intranet host's TCP receive in its context. When the client "
    "sends faster than that, the surplus is dropped at ocserv's UDP socket over DTLS (\"ocserv "
    "socket full\") or waits in TCP over CSTP; a client can then only win by leaving ocserv "
    "more of the two cores, which is why the CPU column matters on this machine.",
    "UDP round trips: a Python client sends a 64-byte datagram, waits for the echo (1 s "
    "timeout, counted lost) and sends the next; 50 warm-up round trips are not counted.",
]
CHANNELS = {"cstp": "CSTP only", "dtls": "DTLS"}


def _median_by(rows, key):
    ordered = sorted(rows, key=key)
    return ordered[(len(ordered) - 1) // 2]


def _rounds(results, system, transport, direction):
    """(measured rounds, failed rounds) of one direction."""
    rounds = results["throughput"].get((system, transport), [])
    done, failed = [], 0
    for figures in rounds:
        f = figures.get(direction)
        if f is None or "error" in f:
            failed += 1
        else:
            done.append(f)
    return done, failed


def throughput(results, system, transport, direction):
    """The median measured round's figures of one direction, or None when none was."""
    done, _ = _rounds(results, system, transport, direction)
    return _median_by(done, lambda f: f["gbps"]) if done else None


def _gbps(results, system, transport, direction):
    done, failed = _rounds(results, system, transport, direction)
    failures = " ({} of {} rounds failed, see below)".format(failed, failed + len(done)) \
        if failed else ""
    if not done:
        return "**failed**" + failures
    median = _median_by(done, lambda f: f["gbps"])["gbps"]
    if len(done) == 1:
        return "{:.2f}".format(median) + failures
    return "{:.2f} ({})".format(median, ", ".join(
        "{:.2f}".format(f["gbps"]) for f in done)) + failures


def _cpu(figures):
    if figures is None:
        return "-"
    parts = ["{} {:.0f} (waited {:.0f})".format(name, value, figures["waited_percent"][name])
             for name, value in figures["cpu_percent"].items()]
    parts.append("ocserv {:.0f}".format(figures["gateway_cpu_percent"]))
    return ", ".join(parts)


def _loss_columns(figures):
    """Kernel loss counters of one run (lab.losses()), summed into where the packets went."""
    losses = figures.get("losses", {})

    def total(where, suffix):
        return sum(v for k, v in losses.items() if k.startswith(where + " ") and k.endswith(suffix))
    return [figures.get("retransmits", 0), total("gateway", "UdpRcvbufErrors"),
            total("client", "UdpRcvbufErrors"), total("client", " dropped"),
            total("gateway", " dropped")]


def loss_lines(results, systems, directions):
    """Where the packets of the median round of each measurement were lost."""
    lines = [
        "Losses in the median round, packets per run (kernel counters in each namespace, "
        "`nstat` and `ip -s link`): TCP retransmissions by the sender; datagrams dropped "
        "because a UDP socket's buffer was full (ocserv's worker, or the client's DTLS "
        "socket); packets dropped by a device queue (the client's TUN or veth, the "
        "gateway's TUN toward the intranet).",
        "",
        "| system | channel | direction | retransmitted | ocserv socket full | client "
        "socket full | client devices | gateway devices |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for transport in ("cstp", "dtls"):
        for system in systems:
            for direction in directions:
                figures = throughput(results, system, transport, direction)
                if figures is None or "losses" not in figures:
                    continue
                lines.append("| {} | {} | {} | {} |".format(
                    SHORT.get(system, system), CHANNELS[transport], direction,
                    " | ".join(str(v) for v in _loss_columns(figures))))
    return lines


def _latency(results, system, transport):
    rounds = [r for r in results["latency"].get((system, transport), []) if "error" not in r]
    if not rounds:
        return "**failed**" if results["latency"].get((system, transport)) else "-"
    f = _median_by(rounds, lambda r: r["p50_us"])
    return "{:.0f} / {:.0f} ({} lost)".format(f["p50_us"], f["p99_us"],
                                              sum(r["lost"] for r in rounds))


def startup_median(results, system):
    runs = results["startup"].get(system, [])
    return statistics.median(r["seconds"] for r in runs) if runs else None


def targets(results, directions):
    """[(target, required, measured, met)] from the median figures of one run."""
    rows = []
    for transport in ("cstp", "dtls"):
        for direction in directions:
            oc = throughput(results, "openconnect", transport, direction)
            st = throughput(results, "steward", transport, direction)
            target = "throughput vs openconnect, {}, {}".format(CHANNELS[transport], direction)
            if oc and st:
                ratio = st["gbps"] / oc["gbps"]
                rows.append((target, ">= 1.2x", "{:.2f}x ({:.2f} vs {:.2f} Gbit/s)".format(
                    ratio, st["gbps"], oc["gbps"]), ratio >= 1.2))
            elif oc and (("steward", transport) in results["throughput"]):
                rows.append((target, ">= 1.2x", "Steward's measurement failed", False))
    oc, st = startup_median(results, "openconnect"), startup_median(results, "steward")
    if oc is not None and st is not None:
        rows.append(("startup, connect -> first intranet HTTP answer (median)",
                     "< 0.5x openconnect's", "{:.3f} s vs {:.3f} s ({:.2f}x)".format(
                         st, oc, st / oc), st < 0.5 * oc))
    for transport in ("cstp", "dtls"):
        for direction in directions:
            st = throughput(results, "steward", transport, direction)
            everything = throughput(results, "steward-all", transport, direction)
            session = throughput(results, "steward-session", transport, direction)
            target = "cost of per-process admission, {}, {}".format(CHANNELS[transport],
                                                                     direction)
            if st and everything:
                cost = 1 - st["gbps"] / everything["gbps"]
                rows.append((target, "<= 5% vs admitting everything",
                             "{:+.1f}% ({:.2f} vs {:.2f} Gbit/s)".format(
                                 cost * 100, st["gbps"], everything["gbps"]), cost <= 0.05))
            elif st and session:
                # Admitting a session by PID takes the same per-packet path as `run`, so this
                # compares two ways to admit, not admission against none.
                cost = 1 - st["gbps"] / session["gbps"]
                rows.append((target, "<= 5% vs admitting everything",
                             "Steward has no admit-everything mode; `run` vs session admitted "
                             "by PID: {:+.1f}% ({:.2f} vs {:.2f} Gbit/s)".format(
                                 cost * 100, st["gbps"], session["gbps"]), None))
    return rows


def failure_notes(results):
    """One note for each kind of failure: which system, channel and step, in which rounds,
    with what the client and ocserv logged the first time."""
    groups = {}
    for f in results.get("failures", []):
        key = (f["system"], f["transport"], f["what"], f["error"])
        groups.setdefault(key, []).append(f)
    notes = []
    for (system, transport, what, error), failures in groups.items():
        where = "{}, {}".format(SHORT.get(system, system), CHANNELS.get(transport, transport))
        rounds = ", ".join(str(f["round"]) for f in failures)
        text = "Failed: {}: {} (round{} {}): {}".format(
            where, what, "s" if len(failures) > 1 else "", rounds, error)
        if failures[0]["logged"]:
            text += "; logged meanwhile: " + "; ".join(
                "`{}`".format(line) for line in failures[0]["logged"])
        notes.append(text)
    if any("error parsing CSTP data" in line for f in results.get("failures", [])
           for line in f["logged"]):
        notes.append(CSTP_RECORD_NOTE)
    return notes


def render(args, results):
    m = results["machine"]
    directions = ["up", "down"] if args.reverse else ["up"]
    systems = [s for s in ("openconnect", "steward", "steward-all", "steward-session")
               if any(key[0] == s for key in results["throughput"])]
    lines = [
        SECTION, "",
        "Client, gateway and intranet hosts are network namespaces joined by veth pairs "
        "(198.19.1.0/24 outside, 198.19.2.0/24 intranet, tunnel pool 198.19.100.0/24). The "
        "gateway is Debian's ocserv 1.1.6 (password login, TLS 1.3 allowed, DTLS offered on "
        "the same port, split-include route {prefix}); the intranet host runs an iperf3 "
        "server, a UDP echo and an HTTP server. Every system uses the same ocserv in the same "
        "run. \"CSTP only\": the gateway drops datagrams to its UDP port (nft) and openconnect "
        "also gets `--no-dtls`; nft byte counters at the gateway confirm which channel carried "
        "each measurement.".format(prefix=lab_.INTRANET_PREFIX),
        "",
    ] + storm_report.run_lines(m, args.command) + [
        "",
        "TCP throughput, `iperf3 -t {}` from the client namespace to the intranet (up) and "
        "with `-R` (down), Gbit/s received; the median of {} round(s), every round in "
        "brackets. CPU: % of one core used during the upload by the VPN client process (in "
        "brackets: % of the time it was runnable but waiting for a core, a sign of the other "
        "load on the machine) and by ocserv (all its processes). UDP: {} request/response round trips of 64 bytes, "
        "one after the other, p50 / p99 in microseconds.".format(
            args.seconds, args.rounds, args.pings),
        "",
        "| system | channel | up Gbit/s | down Gbit/s | CPU % during upload | UDP p50 / p99 us |",
        "|---|---|---|---|---|---|",
    ]
    for transport in ("cstp", "dtls"):
        for system in systems:
            if (system, transport) not in results["throughput"]:
                continue
            lines.append("| {} | {} | {} | {} | {} | {} |".format(
                NAMES[system], CHANNELS[transport],
                _gbps(results, system, transport, "up"),
                _gbps(results, system, transport, "down") if "down" in directions else "-",
                _cpu(throughput(results, system, transport, "up")) if throughput(
                    results, system, transport, "up") or "down" not in directions else
                "download: " + _cpu(throughput(results, system, transport, "down")),
                _latency(results, system, transport)))
    lines += [""] + loss_lines(results, systems, directions)
    lines += [
        "",
        "Startup: from starting the connect command in the client namespace to the first "
        "successful HTTP GET of the intranet server (curl, each attempt given 0.25 s, the next "
        "one 5 ms after a failure; for Steward through `steward vpn run -- curl`, which waits "
        "for the tunnel once the daemon answers), DTLS offered; {} times each, interleaved.".format(
            args.startups),
        "",
        "| system | median s | min s | max s |",
        "|---|---|---|---|",
    ]
    for system in ("openconnect", "steward"):
        runs = [r["seconds"] for r in results["startup"].get(system, [])]
        if runs:
            lines.append("| {} | {:.3f} | {:.3f} | {:.3f} |".format(
                NAMES[system].split(",")[0], statistics.median(runs), min(runs), max(runs)))
    phases = [r.get("phases", {}) for r in results["startup"].get("steward", [])]
    known = [name for name in ("login", "tunnel", "steering", "ready")
             if phases and all(name in p for p in phases)]
    if known:
        lines += ["", "Steward's own log on the way (median ms after its first log line): " +
                  ", ".join("{} {:.0f}".format(
                      {"login": "login complete", "tunnel": "CSTP tunnel open",
                       "steering": "steering set up", "ready": "ready"}[name],
                      statistics.median(p[name] for p in phases)) for name in known) + "."]
    met = targets(results, directions)
    lines += [""] + storm_report.target_lines("issue 3", met)
    lines += ["", "How the figures are taken:"] + ["- " + line for line in HOW]
    notes = list(results.get("notes", [])) + failure_notes(results)
    if "steward-session" in systems:
        notes.insert(0, SESSION_NOTE)
    if "steward-all" in systems:
        notes.insert(0, ALL_NOTE)
    lines += [""] + ["- " + note for note in notes]
    return "\n".join(lines).rstrip("\n") + "\n"

