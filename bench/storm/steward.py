"""The Steward daemon under test (`steward controller run`, embedded SQLite store) and a small
keep-alive client of its HTTP API for setting up the inventory and reading results."""

import http.client
import json
import os
import time

from . import procs


class Api:
    def __init__(self, port, token):
        self.port = port
        self.token = token
        self._connection = None

    def call(self, method, path, body=None, timeout=120):
        for attempt in (1, 2):
            if self._connection is None:
                self._connection = http.client.HTTPConnection("127.0.0.1", self.port,
                                                              timeout=timeout)
            try:
                headers = {"Authorization": "Bearer " + self.token}
                payload = None
                if body is not None:
                    payload = json.dumps(body)
                    headers["Content-Type"] = "application/json"
                self._connection.request(method, path, body=payload, headers=headers)
                response = self._connection.getresponse()
                text = response.read().decode()
                if response.status >= 300:
                    raise RuntimeError("{} {}: HTTP {}: {}".format(method, path, response.status,
                                                                   text.strip()))
                return json.loads(text) if text.strip() else None
            except (ConnectionError, http.client.HTTPException):
                self._connection.close()
                self._connection = None
                if attempt == 2:
                    raise

    def close(self):
        if self._connection is not None:
            self._connection.close()
            self._connection = None


class Daemon:
    def __init__(self, processes, binary, directory):
        self.processes = processes
        self.binary = binary
        self.dir = directory
        self.child = None
        self.port = None
        self.token = None
        os.makedirs(directory, exist_ok=True)

    @property
    def database(self):
        return os.path.join(self.dir, "controller.db")

    @property
    def log(self):
        return os.path.join(self.dir, "stewardd.log")

    def start(self):
        port_file = os.path.join(self.dir, "port")
        token_file = os.path.join(self.dir, "token")
        argv = [self.binary, "controller", "run", "--database", self.database, "--port", "0",
                "--port-file", port_file, "--token-file", token_file]
        env = dict(os.environ)
        env.pop("STEWARD_TOKEN", None)
        self.child = self.processes.spawn("steward controller", argv, self.log, env=env)

        def listening():
            if not self.processes.alive(self.child):
                raise RuntimeError("steward controller exited; see " + self.log)
            return os.path.exists(port_file) and open(port_file).read().strip() != ""

        procs.wait_for(listening, 20, "the steward controller's port file")
        self.port = int(open(port_file).read().strip())
        self.token = open(token_file).read().strip()
        return Api(self.port, self.token)

    def stop(self):
        if self.child is not None:
            self.processes.stop(self.child)
            self.child = None


def register(api, switches, hosts, vms, progress):
    """PUTs the switches, hosts and VMs (each VM's configuration is installed on its switch by
    the daemon as it is registered)."""
    for switch in switches:
        api.call("PUT", "/v1/switches/" + switch["id"], switch)
    for host in hosts:
        api.call("PUT", "/v1/hosts/" + host["id"], host)
    for done, vm in enumerate(vms, 1):
        api.call("PUT", "/v1/vms/" + vm["id"], vm)
        if done % 500 == 0 or done == len(vms):
            progress("registered {}/{} VMs".format(done, len(vms)))


def wait_until_placed(api, timeout, progress):
    """Waits until /v1/verify is clean: every VM's configuration is on exactly its switch."""
    deadline = time.monotonic() + timeout
    while True:
        health = api.call("GET", "/healthz")
        if all(s["state"] == "ready" for s in health["switches"].values()):
            report = api.call("GET", "/v1/verify")
            if report["clean"] and not report["in_flight"]:
                return report
            progress("  waiting for placement: {} problems".format(len(report["problems"])))
        if time.monotonic() > deadline:
            raise RuntimeError("VM configuration did not reach the switches within {} s"
                               .format(timeout))
        time.sleep(0.5)


def metrics(api):
    """The daemon's /metrics as {name{labels}: value}."""
    connection = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
    connection.request("GET", "/metrics", headers={"Authorization": "Bearer " + api.token})
    text = connection.getresponse().read().decode()
    connection.close()
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
