"""The benchmark's network: client, gateway and intranet namespaces, ocserv and intranet servers.

    client ns  c0 198.19.1.2/24 --veth-- g0 198.19.1.1/24  gateway ns (ocserv, forwards)
               default route via 198.19.1.1; the gateway forwards nothing from g0 to g1
    gateway ns g1 198.19.2.1/24 --veth-- i0 198.19.2.2/24  intranet ns (HTTP, iperf3, UDP echo)
    tunnel addresses: 198.19.100.0/24 (ocserv's pool), routed back by the intranet via g1

Only 198.18.0.0/15 addresses, in namespaces created here and deleted by `destroy`, which also
runs when anything fails. The client namespace gets /etc/netns/<ns>/resolv.conf, so that a VPN
client's DNS changes (vpnc-script) land in that file and never in the host's /etc/resolv.conf.
"""

import json
import os
import shutil
import subprocess

from storm import procs

CLIENT_ADDRESS = "198.19.1.2"
GATEWAY_OUTSIDE = "198.19.1.1"
GATEWAY_INSIDE = "198.19.2.1"
INTRANET_ADDRESS = "198.19.2.2"
INTRANET_PREFIX = "198.19.2.0/24"
POOL = "198.19.100.0"
DOMAIN = "intranet.bench"
USERNAME = "bench"
PASSWORD = "bench horse battery"
GATEWAY_PORT = 4443
HTTP_PORT = 8080
IPERF_PORT = 5201
ECHO_PORT = 7007
NFT_TABLE = "steward_vpn_bench"
# Steward's cgroup in this run: CGROUP_PREFIX + the driver's PID.
CGROUP_PREFIX = "steward-vpn-bench-"


class Lab:
    def __init__(self, processes, work_dir, python, bench_dir):
        self.processes = processes
        self.dir = os.path.join(work_dir, "lab")
        self.python = python
        self.bench_dir = bench_dir
        suffix = str(os.getpid())
        self.client_ns = "stwb-client-" + suffix
        self.gateway_ns = "stwb-gw-" + suffix
        self.intranet_ns = "stwb-intra-" + suffix
        self.created = []
        self.ocserv = None
        self.intranet = {}
        os.makedirs(self.dir)
        # ocserv's workers run as nobody and read the certificates and the password file.
        os.chmod(work_dir, 0o755)
        os.chmod(self.dir, 0o755)

    # --- namespaces ---------------------------------------------------------------------------

    def path(self, name):
        return os.path.join(self.dir, name)

    def netns_dir(self):
        return os.path.join("/etc/netns", self.client_ns)

    def create(self):
        for ns in (self.client_ns, self.gateway_ns, self.intranet_ns):
            procs.run(["ip", "netns", "add", ns])
            self.created.append(ns)
            procs.run(["ip", "-n", ns, "link", "set", "lo", "up"])
        c, g, i = self.client_ns, self.gateway_ns, self.intranet_ns
        for step in (
                ["ip", "-n", c, "link", "add", "c0", "type", "veth", "peer", "name", "g0",
                 "netns", g],
                ["ip", "-n", g, "link", "add", "g1", "type", "veth", "peer", "name", "i0",
                 "netns", i],
                ["ip", "-n", c, "addr", "add", CLIENT_ADDRESS + "/24", "dev", "c0"],
                ["ip", "-n", g, "addr", "add", GATEWAY_OUTSIDE + "/24", "dev", "g0"],
                ["ip", "-n", g, "addr", "add", GATEWAY_INSIDE + "/24", "dev", "g1"],
                ["ip", "-n", i, "addr", "add", INTRANET_ADDRESS + "/24", "dev", "i0"],
                ["ip", "-n", c, "link", "set", "c0", "up"],
                ["ip", "-n", g, "link", "set", "g0", "up"],
                ["ip", "-n", g, "link", "set", "g1", "up"],
                ["ip", "-n", i, "link", "set", "i0", "up"],
                ["ip", "-n", i, "route", "add", POOL + "/24", "via", GATEWAY_INSIDE],
                # Like any machine the client has a default route, through the gateway host
                # (which drops what it would forward from the client to the intranet: only
                # tunnelled traffic gets there).
                ["ip", "-n", c, "route", "add", "default", "via", GATEWAY_OUTSIDE],
                ["ip", "netns", "exec", g, "sysctl", "-qw", "net.ipv4.ip_forward=1"]):
            procs.run(step)
        os.makedirs(self.netns_dir(), exist_ok=True)
        with open(os.path.join(self.netns_dir(), "resolv.conf"), "w") as out:
            out.write("# client namespace of the Steward VPN benchmark\n")
        self.make_credentials()

    def exec_in(self, ns, argv):
        return ["ip", "netns", "exec", ns] + argv

    def pids_in(self, ns):
        out = procs.run(["ip", "netns", "pids", ns], check=False)
        return [int(pid) for pid in out.split()]

    def destroy(self):
        self.stop_gateway()
        for child in self.intranet.values():
            self.processes.stop(child)
        self.intranet = {}
        # Whatever still runs in these namespaces was started by this benchmark (ocserv's
        # workers, VPN clients and their helpers): end it by PID before the namespaces go.
        for ns in self.created:
            for pid in self.pids_in(ns):
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        for ns in reversed(self.created):
            procs.run(["ip", "netns", "delete", ns], check=False)
        self.created = []
        shutil.rmtree(self.netns_dir(), ignore_errors=True)
        self.remove_cgroups()

    def remove_cgroups(self):
        """Steward removes its cgroup when it stops; one a killed daemon left (the cgroup2
        hierarchy is the host's) is removed here, deepest first, once its processes are gone."""
        for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup"):
            top = os.path.join(root, CGROUP_PREFIX + str(os.getpid()))
            if not os.path.isdir(top):
                continue
            for directory, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(directory)
                except OSError:
                    pass

    # --- credentials and ocserv ---------------------------------------------------------------

    def make_credentials(self):
        d = self.dir

        def key(name):
            procs.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
                       "ec_paramgen_curve:P-256", "-out", os.path.join(d, name)])

        key("ca.key")
        procs.run(["openssl", "req", "-x509", "-new", "-key", self.path("ca.key"), "-out",
                   self.path("ca.pem"), "-days", "2", "-subj", "/CN=Steward bench CA"])
        key("server.key")
        procs.run(["openssl", "req", "-new", "-key", self.path("server.key"), "-out",
                   self.path("server.csr"), "-subj", "/CN=gateway.bench"])
        with open(self.path("server.ext"), "w") as ext:
            ext.write("subjectAltName=DNS:gateway.bench,IP:{}\nextendedKeyUsage=serverAuth\n"
                      .format(GATEWAY_OUTSIDE))
        procs.run(["openssl", "x509", "-req", "-in", self.path("server.csr"), "-CA",
                   self.path("ca.pem"), "-CAkey", self.path("ca.key"), "-CAcreateserial", "-out",
                   self.path("server.pem"), "-days", "2", "-extfile", self.path("server.ext")])
        for name in ("ca.pem", "server.pem", "server.key"):
            os.chmod(self.path(name), 0o644)
        hashed = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=PASSWORD.encode(),
                                capture_output=True, check=True).stdout.decode().strip()
        with open(self.path("passwd"), "w") as out:
            out.write("{}:*:{}\n".format(USERNAME, hashed))
        os.chmod(self.path("passwd"), 0o644)
        with open(self.path("password"), "w") as out:
            out.write(PASSWORD + "\n")
        os.chmod(self.path("password"), 0o600)

    @property
    def gateway_url(self):
        return "https://{}:{}/".format(GATEWAY_OUTSIDE, GATEWAY_PORT)

    def write_gateway_config(self):
        d = self.dir
        lines = [
            'auth = "plain[passwd={}]"'.format(self.path("passwd")),
            "tcp-port = {}".format(GATEWAY_PORT),
            "udp-port = {}".format(GATEWAY_PORT),
            "run-as-user = nobody",
            "run-as-group = nogroup",
            "socket-file = {}/ocserv.sock".format(d),
            "occtl-socket-file = {}/occtl.sock".format(d),
            "use-occtl = true",
            "pid-file = {}/ocserv.pid".format(d),
            "server-cert = {}".format(self.path("server.pem")),
            "server-key = {}".format(self.path("server.key")),
            "isolate-workers = false",
            "max-clients = 16",
            "max-same-clients = 0",
            "keepalive = 300",
            "dpd = 60",
            "mobile-dpd = 60",
            "switch-to-tcp-timeout = 25",
            "try-mtu-discovery = false",
            # Debian's default config keeps TLS 1.3 off; both clients may use it here.
            'tls-priorities = "NORMAL:%SERVER_PRECEDENCE"',
            "auth-timeout = 240",
            "min-reauth-time = 0",
            "max-ban-score = 0",
            "cookie-timeout = 300",
            "deny-roaming = false",
            "rekey-time = 172800",
            "rekey-method = ssl",
            "device = vpns",
            "predictable-ips = true",
            "default-domain = {}".format(DOMAIN),
            "ipv4-network = {}".format(POOL),
            "ipv4-netmask = 255.255.255.0",
            "dns = {}".format(INTRANET_ADDRESS),
            "route = {}/255.255.255.0".format(INTRANET_PREFIX.split("/")[0]),
            "ping-leases = false",
            "cisco-client-compat = true",
            "dtls-legacy = true",
        ]
        with open(self.path("ocserv.conf"), "w") as out:
            out.write("\n".join(lines) + "\n")

    def listening(self, ns, port):
        out = procs.run(self.exec_in(ns, ["ss", "-Hltn", "sport = :{}".format(port)]),
                        check=False)
        return out.strip() != ""

    def start_gateway(self):
        self.write_gateway_config()
        # Level 1 logs ocserv's errors only (why it dropped a session, say); more with
        # STEWARD_VPN_BENCH_OCSERV_DEBUG for diagnostics.
        debug = ["-d", os.environ.get("STEWARD_VPN_BENCH_OCSERV_DEBUG", "1")]
        self.ocserv = self.processes.spawn(
            "ocserv", self.exec_in(self.gateway_ns, ["/usr/sbin/ocserv", "-f", "-c",
                                                     self.path("ocserv.conf")] + debug),
            self.path("ocserv.log"))

        def up():
            if not self.processes.alive(self.ocserv):
                raise RuntimeError("ocserv exited at start; see " + self.path("ocserv.log"))
            return self.listening(self.gateway_ns, GATEWAY_PORT)

        procs.wait_for(up, 15, "ocserv to listen", step=0.05)
        self.setup_counters()

    def stop_gateway(self):
        if self.ocserv is None:
            return
        self.processes.stop(self.ocserv)
        self.ocserv = None
        # Its sec-mod and workers may outlive it for a moment; they are ours.
        for pid in self.pids_in(self.gateway_ns):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    def gateway_errors(self, since):
        """ocserv's error lines written after offset `since` of its log."""
        return [line.split(": ", 1)[-1] for line in log_lines(
            self.path("ocserv.log"), ("error", "unexpected", "failed"), since)]

    def gateway_cpu_seconds(self):
        """CPU time used so far by the processes now in the gateway namespace (ocserv's main
        process, sec-mod and the workers serving the tunnels)."""
        total = 0.0
        for pid in self.pids_in(self.gateway_ns):
            try:
                total += procs.cpu_seconds(pid)
            except (FileNotFoundError, ProcessLookupError):
                pass
        return total

    # --- counters and the DTLS block in the gateway namespace --------------------------------

    def nft(self, script):
        procs.run(self.exec_in(self.gateway_ns, ["nft", script]))

    def setup_counters(self):
        """Byte counters of what reaches ocserv over TCP (CSTP) and UDP (DTLS): they show which
        channel carried a measurement, whatever the client says about itself."""
        t = NFT_TABLE
        self.nft("add table inet {t}; add counter inet {t} cstp; add counter inet {t} dtls; "
                 "add chain inet {t} input {{ type filter hook input priority 0; }}; "
                 "add chain inet {t} output {{ type filter hook output priority 0; }}; "
                 "add rule inet {t} input tcp dport {p} counter name cstp; "
                 "add rule inet {t} input udp dport {p} counter name dtls; "
                 "add rule inet {t} output tcp sport {p} counter name cstp; "
                 "add rule inet {t} output udp sport {p} counter name dtls; "
                 "add chain inet {t} forward {{ type filter hook forward priority 0; }}; "
                 "add rule inet {t} forward iifname g0 oifname g1 counter drop".format(
                     t=t, p=GATEWAY_PORT))

    def counters(self):
        out = procs.run(self.exec_in(self.gateway_ns, ["nft", "-j", "list", "counters", "table",
                                                       "inet", NFT_TABLE]))
        values = {}
        for item in json.loads(out)["nftables"]:
            if "counter" in item:
                values[item["counter"]["name"]] = item["counter"]["bytes"]
        return values

    def losses(self):
        """Kernel counters of packets lost or refused, per namespace: UDP buffer overruns, TUN
        and veth drops, TCP retransmissions. Their change over a measurement says where a
        pipeline dropped packets (iperf3 only counts the retransmissions)."""
        wanted = ("UdpRcvbufErrors", "UdpSndbufErrors", "UdpInErrors", "IpOutDiscards",
                  "IpInDiscards", "TcpExtTCPBacklogDrop", "TcpExtTCPRcvQDrop",
                  "TcpExtTCPOFOQueue", "TcpRetransSegs")
        values = {}
        for where, ns in (("client", self.client_ns), ("gateway", self.gateway_ns),
                          ("intranet", self.intranet_ns)):
            out = procs.run(self.exec_in(ns, ["nstat", "-asz", "--json"]), check=False)
            try:
                counters = json.loads(out).get("kernel", {})
            except ValueError:
                counters = {}
            for name in wanted:
                values["{} {}".format(where, name)] = counters.get(name, 0)
            out = procs.run(self.exec_in(ns, ["ip", "-j", "-s", "link"]), check=False)
            try:
                links = json.loads(out)
            except ValueError:
                links = []
            for link in links:
                stats = link.get("stats64", {})
                for way in ("rx", "tx"):
                    values["{} {} {} dropped".format(where, link["ifname"], way)] = stats.get(
                        way, {}).get("dropped", 0)
        return values

    def block_dtls(self, blocked):
        """CSTP only: datagrams to ocserv's UDP port are dropped before ocserv sees them."""
        t = NFT_TABLE
        if blocked:
            self.nft("add chain inet {t} block {{ type filter hook input priority -10; }}; "
                     "add rule inet {t} block udp dport {p} drop".format(t=t, p=GATEWAY_PORT))
        else:
            self.nft("delete chain inet {t} block".format(t=t))

    # --- intranet services --------------------------------------------------------------------

    def start_intranet(self):
        www = self.path("www")
        os.makedirs(www, exist_ok=True)
        with open(os.path.join(www, "index.html"), "w") as out:
            out.write("intranet\n")
        env = dict(os.environ, PYTHONPATH=self.bench_dir, PYTHONDONTWRITEBYTECODE="1")
        self.intranet["http"] = self.processes.spawn(
            "http server", self.exec_in(self.intranet_ns, [
                self.python, "-m", "http.server", "--bind", INTRANET_ADDRESS, "--directory",
                www, str(HTTP_PORT)]), self.path("http.log"), env=env)
        self.intranet["echo"] = self.processes.spawn(
            "udp echo", self.exec_in(self.intranet_ns, [
                self.python, "-m", "vpn.probes", "udp-echo", "--bind", INTRANET_ADDRESS,
                "--port", str(ECHO_PORT)]), self.path("echo.log"), env=env)
        self.start_iperf()
        procs.wait_for(lambda: self.listening(self.intranet_ns, HTTP_PORT), 15,
                       "the intranet HTTP server", step=0.05)

    def start_iperf(self):
        if "iperf" in self.intranet:
            self.processes.stop(self.intranet.pop("iperf"))
        self.intranet["iperf"] = self.processes.spawn(
            "iperf3 server", self.exec_in(self.intranet_ns, [
                "iperf3", "-s", "-B", INTRANET_ADDRESS, "-p", str(IPERF_PORT)]),
            self.path("iperf-server.log"))
        procs.wait_for(lambda: self.listening(self.intranet_ns, IPERF_PORT), 15,
                       "the iperf3 server", step=0.05)

    def intranet_unreachable_directly(self):
        """Without a tunnel the client cannot reach the intranet (nothing bypasses it)."""
        done = subprocess.run(self.exec_in(self.client_ns, [
            "curl", "-s", "-o", "/dev/null", "--max-time", "1",
            "http://{}:{}/".format(INTRANET_ADDRESS, HTTP_PORT)]), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return done.returncode != 0

    def client_leftovers(self):
        """What a VPN client left in the client namespace: routes toward the intranet in any
        table, and tunnel devices."""
        found = [line for line in procs.run(self.exec_in(self.client_ns, [
            "ip", "-4", "route", "show", "table", "all"])).splitlines()
            if INTRANET_PREFIX.split("/")[0] in line]
        found += [line.split("<")[0] for line in procs.run(self.exec_in(self.client_ns, [
            "ip", "-o", "link", "show", "type", "tun"])).splitlines()]
        return found

    def wait_client_clean(self, who, timeout=10):
        try:
            procs.wait_for(lambda: not self.client_leftovers(), timeout,
                           "{} to leave the client namespace clean".format(who), step=0.05)
        except RuntimeError:
            raise RuntimeError("{} left behind: {}".format(who, "; ".join(
                self.client_leftovers())))

    def wait_route(self, ns, prefix, timeout=20):
        def present():
            return prefix in procs.run(self.exec_in(ns, ["ip", "-4", "route", "show"]))

        procs.wait_for(present, timeout, "a route to {} in {}".format(prefix, ns), step=0.02)


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def log_lines(path, marks, since=0, most=3):
    """The first distinct lines after offset `since` of a log that contain one of `marks`
    (case-insensitive), without a leading timestamp."""
    found = []
    try:
        with open(path, "rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        if not any(mark.lower() in line.lower() for mark in marks):
            continue
        first, _, rest = line.strip().partition(" ")
        text = (rest if first[:1].isdigit() and "T" in first else line.strip())[:200]
        if text not in found:
            found.append(text)
        if len(found) == most:
            break
    return found
