"""Steward's VPN client in the client namespace: `steward vpn connect` in the foreground (its
PID is the one spawned, ended by that PID after `steward vpn disconnect`), traffic from
processes started with `steward vpn run --`.

Everything it keeps on the host's file system (state directory, control socket, the fallback
cgroup2 mount point) is under the benchmark's work directory, its cgroup has a name of its own,
and its TUN, routes, rules and nft table live in the client namespace.
"""

import datetime
import json
import os
import subprocess

from storm import procs

from . import lab as lab_


def _write_files(lab, binary, label, dtls):
    d = os.path.join(lab.dir, "steward-" + label)
    os.makedirs(d, exist_ok=True)
    credentials = os.path.join(d, "credentials.toml")
    with open(credentials, "w") as out:
        out.write('username = "{}"\npassword = "{}"\n'.format(lab_.USERNAME, lab_.PASSWORD))
    os.chmod(credentials, 0o600)
    config = os.path.join(d, "vpn.toml")
    lines = [
        "[vpn]",
        'gateway = "{}"'.format(lab.gateway_url),
        'ca_file = "{}"'.format(lab.path("ca.pem")),
        'credentials_file = "{}"'.format(credentials),
        "dtls = {}".format("true" if dtls else "false"),
        'instance = "bench"',
        'state_directory = "{}"'.format(os.path.join(d, "state")),
        "status_port = 0",
        'port_file = "{}"'.format(os.path.join(d, "status-port")),
        'tun_name = "stw-bench"',
        # A cgroup of its own: the cgroup2 hierarchy is the host's, shared with other runs.
        'cgroup_path = "{}{}/admitted"'.format(lab_.CGROUP_PREFIX, os.getpid()),
        'cgroup2_fallback_mount = "{}"'.format(os.path.join(d, "cgroup2")),
    ]
    with open(config, "w") as out:
        out.write("\n".join(lines) + "\n")
    return config


class Steward:
    """admission: "run" (each measured command behind `steward vpn run --`), "session" (the
    measured command's shell admitted by PID with `steward vpn admit`, then it execs the
    command) or "all" (the daemon's admit-everything option)."""

    kind = "steward"
    COMPLAINTS = (" W vpn ", " E vpn ")

    def __init__(self, processes, lab, binary, dtls, label, admission):
        self.processes = processes
        self.lab = lab
        self.binary = binary
        self.dtls = dtls
        self.label = label
        self.admission = admission
        self.log = os.path.join(lab.dir, "steward-{}.log".format(label))
        self.config = _write_files(lab, binary, label, dtls)
        self.child = None

    def cli(self, *argv):
        return [self.binary, "vpn"] + list(argv)

    def status(self):
        out = procs.run(self.lab.exec_in(self.lab.client_ns, self.cli(
            "status", "--config", self.config, "--json")), check=False)
        try:
            return json.loads(out)
        except ValueError:
            return {}

    def connect(self):
        argv = self.cli("connect", "--config", self.config)
        if self.admission == "all":
            argv += admit_all_flags(self.binary)
        self.child = self.processes.spawn("steward vpn connect", self.lab.exec_in(
            self.lab.client_ns, argv), self.log)

        def ready():
            if not self.processes.alive(self.child):
                raise RuntimeError("steward vpn connect exited; see " + self.log)
            status = self.status()
            if not status.get("tunnel_up"):
                return False
            return not self.dtls or status.get("data_channel") == "dtls"

        procs.wait_for(ready, 30, "Steward's tunnel ({})".format(
            "DTLS" if self.dtls else "CSTP"), step=0.05)

    def run(self, argv, timeout, env=None):
        if self.admission == "run":
            argv = self.cli("run", "--config", self.config, "--") + argv
        if self.admission != "session":
            return subprocess.run(self.lab.exec_in(self.lab.client_ns, argv),
                                  stdin=subprocess.DEVNULL, capture_output=True, env=env,
                                  timeout=timeout)
        # The shell waits for a line on stdin, is admitted by its PID meanwhile, then execs
        # the measured command (same PID, already in the admitted cgroup).
        shell = subprocess.Popen(self.lab.exec_in(self.lab.client_ns, [
            "sh", "-c", 'read go; exec "$@"', "sh"] + argv), stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            procs.run(self.lab.exec_in(self.lab.client_ns, self.cli(
                "admit", "--config", self.config, str(shell.pid))))
            out, err = shell.communicate(b"go\n", timeout=timeout)
        finally:
            if shell.poll() is None:
                shell.kill()
                shell.wait()
        return subprocess.CompletedProcess(argv, shell.returncode, out, err)

    def complaints(self, since=0):
        """The warnings and errors in its log after offset `since`."""
        return lab_.log_lines(self.log, self.COMPLAINTS, since)

    def cpu_pids(self):
        return {"steward": self.child.pid}

    def disconnect(self):
        if self.child is None:
            return
        subprocess.run(self.lab.exec_in(self.lab.client_ns, self.cli(
            "disconnect", "--config", self.config)), stdin=subprocess.DEVNULL,
            capture_output=True, timeout=30)
        try:
            self.child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        code = self.child.poll()
        self.processes.stop(self.child)
        self.child = None
        self.lab.wait_client_clean("steward")
        if code not in (0, None):
            raise RuntimeError("steward vpn connect ended with {}; see {}".format(code, self.log))


def admit_all_flags(binary):
    """The connect option that admits every process, when this steward has one."""
    done = subprocess.run([binary, "vpn", "connect", "--help"], capture_output=True)
    text = done.stdout.decode(errors="replace")
    for flag in ("--admit-all", "--admit-everything", "--all-processes"):
        if flag in text:
            return [flag]
    return None


def startup_commands(lab, binary, label):
    """(connect argv, attempt argv, teardown argv, connect returns once connected, stdin)."""
    config = _write_files(lab, binary, label, dtls=True)
    attempt = [binary, "vpn", "run", "--config", config, "--", "curl", "-s", "-o", "/dev/null",
               "-f", "--max-time", "0.25",
               "http://{}:{}/".format(lab_.INTRANET_ADDRESS, lab_.HTTP_PORT)]
    return ([binary, "vpn", "connect", "--config", config], attempt,
            [binary, "vpn", "disconnect", "--config", config], False, None)


# Lines of `steward vpn connect`'s log that mark its way to a usable tunnel.
PHASES = (("login", " login complete "), ("tunnel", " tunnel open "),
          ("steering", " steering started "), ("ready", " vpn ready "))


def startup_phases(log_path):
    """Milliseconds from the daemon's first log line to each phase, from its timestamps."""
    stamps = {}
    first = None
    with open(log_path, errors="replace") as log:
        for line in log:
            try:
                stamp = datetime.datetime.fromisoformat(line.split(" ", 1)[0])
            except ValueError:
                continue
            first = first or stamp
            for name, mark in PHASES:
                if mark in line and name not in stamps:
                    stamps[name] = (stamp - first).total_seconds() * 1e3
    return stamps
