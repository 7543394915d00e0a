"""Child processes the benchmark starts, owned by PID and ended by PID.

Every child gets SIGTERM from the kernel if this driver dies first (PR_SET_PDEATHSIG), and
Processes.stop_all() ends whatever is still running (SIGTERM, then SIGKILL after a grace
period). Nothing is ever ended by name.
"""

import ctypes
import os
import resource
import signal
import subprocess
import time

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Processes:
    def __init__(self):
        self._running = {}  # pid -> (name, Popen)
        self.switch_cpus = None  # CPUs of the switches' servers (None: wherever the driver runs)

    def spawn(self, name, argv, log_path, env=None, stdin_path=None):
        """Starts argv with its output appended to log_path; stdin is stdin_path's content
        (a password file, say) or empty."""
        with open(log_path, "ab") as log, open(stdin_path or os.devnull, "rb") as stdin:
            child = subprocess.Popen(argv, stdin=stdin, stdout=log, stderr=log,
                                     env=env, preexec_fn=_die_with_parent, close_fds=True)
        self._running[child.pid] = (name, child)
        if self.switch_cpus and name.startswith("ovsdb-server"):
            os.sched_setaffinity(child.pid, self.switch_cpus)
        return child

    def alive(self, child):
        return child.poll() is None

    def stop(self, child, grace=5.0):
        if child.pid not in self._running:
            return
        del self._running[child.pid]
        if child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()

    def stop_all(self):
        for _, child in list(self._running.values()):
            self.stop(child)


def run(argv, env=None, timeout=60, check=True):
    """Runs a short command to completion; returns its stdout as text."""
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                          timeout=timeout, preexec_fn=_die_with_parent)
    if check and done.returncode != 0:
        raise RuntimeError("{} failed ({}): {}".format(
            " ".join(argv[:4]), done.returncode, done.stderr.decode(errors="replace").strip()))
    return done.stdout.decode()


def wait_for(condition, timeout, what, step=0.005):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out after {:.0f} s waiting for {}".format(timeout, what))
        time.sleep(step)


def children_cpu_seconds():
    """User + system CPU time of this process's finished (waited-for) children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pid):
    """User + system CPU time a running process has used so far."""
    with open("/proc/{}/stat".format(pid)) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
