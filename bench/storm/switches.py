"""Real ovsdb-server switches for the benchmark: one server per simulated host, each in its own
directory with its own database and unix socket, holding bridge br-int (datapath_type netdev).
No ovs-vswitchd runs: the benchmark measures configuration work on the database servers.
"""

import json
import os
import socket

from . import procs

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
BRIDGE = "br-int"


class Switch:
    def __init__(self, processes, directory, switch_id):
        self.processes = processes
        self.dir = directory
        self.id = switch_id
        self.server = None
        os.makedirs(directory, exist_ok=True)

    @property
    def db(self):
        return os.path.join(self.dir, "conf.db")

    @property
    def socket(self):
        return os.path.join(self.dir, "db.sock")

    @property
    def endpoint(self):
        return "unix:" + self.socket

    def env(self):
        env = dict(os.environ)
        for key in ("OVS_RUNDIR", "OVS_LOGDIR", "OVS_DBDIR", "OVS_SYSCONFDIR"):
            env[key] = self.dir
        return env

    def create(self, snapshot=None):
        """A new database: empty with one bridge, or a copy of a snapshot (see backup())."""
        if snapshot is None:
            procs.run(["ovsdb-tool", "create", self.db, SCHEMA], env=self.env())
            self.start()
            self.vsctl("init")
            self.vsctl("add-br", BRIDGE, "--", "set", "bridge", BRIDGE, "datapath_type=netdev")
        else:
            with open(snapshot, "rb") as source, open(self.db, "wb") as target:
                target.write(source.read())
            self.start()

    def start(self):
        argv = ["ovsdb-server", self.db, "--remote=punix:" + self.socket,
                "--unixctl=" + os.path.join(self.dir, "ovsdb-server.ctl"),
                "--log-file=" + os.path.join(self.dir, "ovsdb-server.log"), "-vconsole:off"]
        self.server = self.processes.spawn("ovsdb-server " + self.id, argv,
                                           os.path.join(self.dir, "ovsdb-server.out"),
                                           env=self.env())
        procs.wait_for(self._answers, 10, "ovsdb-server " + self.id)

    def _answers(self):
        if not self.processes.alive(self.server):
            raise RuntimeError("ovsdb-server {} exited; see {}".format(self.id, self.dir))
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            probe.close()

    def stop(self):
        if self.server is not None:
            self.processes.stop(self.server)
            self.server = None

    def vsctl(self, *args):
        return procs.run(["ovs-vsctl", "--no-wait", "--timeout=30", "--db=" + self.endpoint]
                         + list(args), env=self.env())

    def backup(self, path):
        """A standalone copy of the database as it is now (ovsdb-client backup)."""
        data = procs.run(["ovsdb-client", "backup", self.endpoint, "Open_vSwitch"],
                         env=self.env(), timeout=120)
        with open(path, "w") as out:
            out.write(data)

    def ports(self):
        """{port name: {"vm", "iface", "qos" (bool), "interfaces" (count)}} of every port on the
        bridge, read with one select transaction; plus the number of QoS rows."""
        query = ["Open_vSwitch",
                 {"op": "select", "table": "Bridge", "where": [["name", "==", BRIDGE]],
                  "columns": ["ports"]},
                 {"op": "select", "table": "Port", "where": [],
                  "columns": ["_uuid", "name", "external_ids", "qos", "interfaces"]},
                 {"op": "select", "table": "QoS", "where": [], "columns": ["_uuid"]}]
        reply = json.loads(procs.run(["ovsdb-client", "transact", self.endpoint,
                                      json.dumps(query)], env=self.env(), timeout=120))
        bridge_ports = {uuid for _, uuid in _set(reply[0]["rows"][0]["ports"])}
        found = {}
        for row in reply[1]["rows"]:
            if row["_uuid"][1] not in bridge_ports or row["name"] == BRIDGE:
                continue
            ids = dict(row["external_ids"][1])
            found[row["name"]] = {"vm": ids.get("steward-vm"), "iface": ids.get("steward-iface"),
                                  "qos": bool(_set(row["qos"])),
                                  "interfaces": len(_set(row["interfaces"]))}
        return found, len(reply[2]["rows"])


def _set(datum):
    """The elements of an OVSDB set (a bare atom is a set of one)."""
    if isinstance(datum, list) and datum and datum[0] == "set":
        return datum[1]
    return [datum]
