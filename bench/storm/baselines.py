"""The two baselines of the storm, doing the same switch work as Steward on their own switches:

- ovs-vsctl: one process per step, as hook scripts do (create on the target, then delete on the
  source), several migrations at a time on a small pool of workers;
- Python IDL (python3-openvswitch): one agent with one IDL per switch, committing each step and
  waiting for it (commit_block), one migration after the other, as Python agents do.

Each returns one timing per migration: (started, target_committed, source_committed) in
seconds on the monotonic clock.
"""

import concurrent.futures
import time

from . import procs, switches, workload


def run_vsctl(switch_of_host, vms, migrations, workers):
    def migrate(migration):
        vm = vms[migration["vm"]]
        target = switch_of_host[migration["target_host"]]
        source = switch_of_host[migration["source_host"]]
        started = time.monotonic()
        target.vsctl(*workload.vsctl_install(vm, switches.BRIDGE))
        ready = time.monotonic()
        for call in workload.vsctl_remove(vm, switches.BRIDGE):
            source.vsctl(*call)
        return started, ready, time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(migrate, migrations))


class IdlAgent:
    """One Python IDL per switch, watching the four tables Steward writes (all columns, as
    agents built on the IDL usually register whole tables), with an index on Port.name."""

    TABLES = ("Bridge", "Port", "Interface", "QoS")

    def __init__(self, switch_of_host):
        import ovs.db.idl
        import ovs.poller
        self._idl_module = ovs.db.idl
        self._poller = ovs.poller
        self.idls = {}
        for host, switch in switch_of_host.items():
            helper = ovs.db.idl.SchemaHelper(location=switches.SCHEMA)
            for table in self.TABLES:
                helper.register_table(table)
            idl = ovs.db.idl.Idl(switch.endpoint, helper)
            idl.index_create("Port", "name").add_column("name")
            self.idls[host] = idl
        for host, idl in self.idls.items():
            procs.wait_for(lambda: self._synced(idl), 60, "the IDL of " + host, step=0)

    def _synced(self, idl):
        idl.run()
        if idl.has_ever_connected() and self._bridge(idl) is not None:
            return True
        poller = self._poller.Poller()
        idl.wait(poller)
        poller.timer_wait(10)
        poller.block()
        return False

    @staticmethod
    def _bridge(idl):
        for row in idl.tables["Bridge"].rows.values():
            if row.name == switches.BRIDGE:
                return row
        return None

    def _port(self, idl, name):
        entry = idl.tables["Port"].rows.IndexEntry(name=name)
        return next(iter(idl.index_equal("Port", "name", entry)), None)

    def _commit(self, txn, what):
        status = txn.commit_block()
        if status not in (self._idl_module.Transaction.SUCCESS,
                          self._idl_module.Transaction.UNCHANGED):
            raise RuntimeError("IDL transaction {} failed: {}".format(what, txn.get_error()))

    def install(self, host, vm):
        idl = self.idls[host]
        txn = self._idl_module.Transaction(idl)
        bridge = self._bridge(idl)
        for interface in vm["interfaces"]:
            row = txn.insert(idl.tables["Interface"])
            row.name = interface["device"]
            row.type = ""
            row.ingress_policing_rate = interface.get("ingress_policing_rate_kbps", 0)
            row.ingress_policing_burst = interface.get("ingress_policing_burst_kb", 0)
            row.external_ids = workload.interface_ids(vm, interface)
            port = txn.insert(idl.tables["Port"])
            port.name = interface["device"]
            port.interfaces = [row]
            port.external_ids = workload.markers(vm, interface)
            if "vlan" in interface:
                port.tag = interface["vlan"]
            if interface.get("trunks"):
                port.trunks = interface["trunks"]
            if interface.get("egress_max_rate_bps", 0) > 0:
                qos = txn.insert(idl.tables["QoS"])
                qos.type = "linux-htb"
                qos.other_config = {"max-rate": str(interface["egress_max_rate_bps"])}
                qos.external_ids = workload.markers(vm, interface)
                port.qos = [qos]
            bridge.addvalue("ports", port)
        self._commit(txn, "install " + vm["id"])

    def remove(self, host, vm):
        idl = self.idls[host]
        txn = self._idl_module.Transaction(idl)
        bridge = self._bridge(idl)
        for interface in vm["interfaces"]:
            port = self._port(idl, interface["device"])
            if port is None:
                raise RuntimeError("port {} not on {}".format(interface["device"], host))
            if port.qos:
                qos = port.qos[0]
                port.qos = []
                qos.delete()
            bridge.delvalue("ports", port)
        self._commit(txn, "remove " + vm["id"])

    def close(self):
        for idl in self.idls.values():
            idl.close()


def run_idl(agent, vms, migrations):
    timings = []
    for migration in migrations:
        vm = vms[migration["vm"]]
        started = time.monotonic()
        agent.install(migration["target_host"], vm)
        ready = time.monotonic()
        agent.remove(migration["source_host"], vm)
        timings.append((started, ready, time.monotonic()))
    return timings
