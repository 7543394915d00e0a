"""openconnect 9.01 with Debian's vpnc-script in the client namespace: the baseline.

openconnect runs in the foreground (its PID is the one spawned: `ip netns exec` execs it), and
reads the password from stdin, so it is ended by that PID; on SIGTERM it says goodbye
to the gateway and vpnc-script removes its routes and restores the namespace's resolv.conf.
"""

import os
import subprocess

from storm import procs

from . import lab as lab_

BINARY = "/usr/sbin/openconnect"
SCRIPT = "/usr/share/vpnc-scripts/vpnc-script"
INTERFACE = "tun-oc"


def connect_argv(lab, dtls):
    argv = [BINARY, "--protocol=anyconnect", "--non-inter", "--user", lab_.USERNAME,
            "--passwd-on-stdin", "--cafile", lab.path("ca.pem"), "--interface", INTERFACE,
            "--script", SCRIPT]
    if not dtls:
        argv.append("--no-dtls")
    return argv + [lab.gateway_url]


class OpenConnect:
    kind = "openconnect"
    COMPLAINTS = ("error", "failed", "unexpected")

    def __init__(self, processes, lab, dtls, label):
        self.processes = processes
        self.lab = lab
        self.dtls = dtls
        self.label = label
        self.log = os.path.join(lab.dir, "openconnect-{}.log".format(label))
        self.child = None

    def connect(self):
        argv = self.lab.exec_in(self.lab.client_ns, connect_argv(self.lab, self.dtls))
        self.child = self.processes.spawn("openconnect", argv, self.log,
                                          stdin_path=self.lab.path("password"))
        self.lab.wait_route(self.lab.client_ns, lab_.INTRANET_PREFIX)
        if self.dtls:
            procs.wait_for(self._dtls_up, 20, "openconnect's DTLS channel", step=0.05)

    def _dtls_up(self):
        if not self.processes.alive(self.child):
            raise RuntimeError("openconnect exited; see " + self.log)
        with open(self.log, errors="replace") as log:
            return "Established DTLS connection" in log.read()

    def run(self, argv, timeout, env=None):
        """Every process of the client namespace uses openconnect's routes."""
        return subprocess.run(self.lab.exec_in(self.lab.client_ns, argv),
                              stdin=subprocess.DEVNULL, capture_output=True, env=env,
                              timeout=timeout)

    def complaints(self, since=0):
        """The warnings and errors in its log after offset `since`."""
        return lab_.log_lines(self.log, self.COMPLAINTS, since)

    def cpu_pids(self):
        return {"openconnect": self.child.pid}

    def disconnect(self):
        if self.child is not None:
            self.processes.stop(self.child, grace=10)
            self.child = None
            self.lab.wait_client_clean("openconnect")


def startup_commands(lab, dtls):
    """(connect argv, attempt argv, teardown argv or None, connect returns once connected)."""
    attempt = ["curl", "-s", "-o", "/dev/null", "-f", "--max-time", "0.25",
               "http://{}:{}/".format(lab_.INTRANET_ADDRESS, lab_.HTTP_PORT)]
    return connect_argv(lab, dtls), attempt, None, False
