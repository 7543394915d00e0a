"""The benchmark's inventory and migrations, generated from a fixed seed, and Steward's row
layout (src/controller/southbound/ovsdb/ovsdb_switch.h) spelled as ovs-vsctl commands, so the
baselines write exactly the columns Steward writes.
"""

import random

OWNER = "steward"


def make_inventory(vm_count=2000, host_count=4, on_first_host=1000, seed=2026):
    """Hosts host-1..N, each on its own switch sw-1..N; `on_first_host` VMs on host-1 and the
    rest spread evenly over the others. Each VM has 1-2 interfaces, each an access VLAN or a
    trunk, some with ingress policing, some with an egress max-rate (a QoS row)."""
    rng = random.Random(seed)
    hosts = [{"id": "host-{}".format(i + 1), "switch": "sw-{}".format(i + 1)}
             for i in range(host_count)]
    vms = []
    for index in range(vm_count):
        if index < on_first_host:
            host = hosts[0]["id"]
        else:
            host = hosts[1 + (index - on_first_host) % (host_count - 1)]["id"]
        vms.append(_make_vm(rng, index, host))
    return hosts, vms


def _make_vm(rng, index, host):
    interfaces = []
    for k in range(1 if rng.random() < 0.6 else 2):
        serial = index * 2 + k
        interface = {
            "id": "eth{}".format(k),
            "device": "tapvm{:05d}n{}".format(index, k),
            "mac": "fa:16:3e:{:02x}:{:02x}:{:02x}".format(serial >> 16 & 255, serial >> 8 & 255,
                                                          serial & 255),
            # Documentation range (198.18.0.0/15): these addresses only ever sit in external_ids.
            "ips": ["198.{}.{}.{}".format(18 + (serial >> 16 & 1), serial >> 8 & 255,
                                          serial & 255)],
        }
        if rng.random() < 0.7:
            interface["vlan"] = rng.randrange(100, 200)
        else:
            interface["trunks"] = sorted(rng.sample(range(100, 300), rng.randrange(2, 5)))
        if rng.random() < 0.3:
            interface["ingress_policing_rate_kbps"] = rng.randrange(10_000, 100_000, 1000)
            interface["ingress_policing_burst_kb"] = rng.randrange(1000, 10_000, 100)
        if rng.random() < 0.25:
            interface["egress_max_rate_bps"] = rng.randrange(100, 1000) * 1_000_000
        if rng.random() < 0.5:
            interface["external_ids"] = {"project": "p{:03d}".format(index % 40)}
        interfaces.append(interface)
    return {"id": "vm-{:05d}".format(index), "name": "guest-{:05d}".format(index), "host": host,
            "interfaces": interfaces}


def evacuation(vms, source_host, target_hosts):
    """One phase-less migration for each VM on `source_host`, spread round-robin over
    `target_hosts`."""
    leaving = [vm for vm in vms if vm["host"] == source_host]
    return [{"vm": vm["id"], "source_host": source_host,
             "target_host": target_hosts[i % len(target_hosts)]} for i, vm in enumerate(leaving)]


def markers(vm, interface):
    return {"steward-owner": OWNER, "steward-vm": vm["id"], "steward-iface": interface["id"]}


def interface_ids(vm, interface):
    """The Interface row's external_ids, as Steward writes them."""
    ids = dict(interface.get("external_ids", {}))
    ids.update(markers(vm, interface))
    ids["iface-id"] = interface["id"]
    ids["vm-id"] = vm["id"]
    ids["attached-mac"] = interface["mac"]
    ids["steward-ips"] = ",".join(interface["ips"])
    return ids


def _map_args(column, values):
    return ['{}:{}="{}"'.format(column, key, value) for key, value in sorted(values.items())]


def vsctl_install(vm, bridge):
    """ovs-vsctl arguments that create every interface of `vm` (Port, Interface and, with a
    max-rate, QoS) in one transaction, with Steward's columns."""
    args = []
    for n, interface in enumerate(vm["interfaces"]):
        device = interface["device"]
        args += ["--", "add-port", bridge, device]
        port = ["--", "set", "Port", device] + _map_args("external_ids", markers(vm, interface))
        if "vlan" in interface:
            port.append("tag={}".format(interface["vlan"]))
        if interface.get("trunks"):
            port.append("trunks={}".format(",".join(str(t) for t in interface["trunks"])))
        if interface.get("egress_max_rate_bps", 0) > 0:
            qos = "@qos{}".format(n)
            args += ["--", "--id=" + qos, "create", "QoS", "type=linux-htb",
                     'other_config:max-rate="{}"'.format(interface["egress_max_rate_bps"])]
            args += _map_args("external_ids", markers(vm, interface))
            port.append("qos=" + qos)
        args += port
        args += ["--", "set", "Interface", device,
                 "ingress_policing_rate={}".format(interface.get("ingress_policing_rate_kbps", 0)),
                 "ingress_policing_burst={}".format(interface.get("ingress_policing_burst_kb", 0))]
        args += _map_args("external_ids", interface_ids(vm, interface))
    return args


def vsctl_remove(vm, bridge):
    """ovs-vsctl calls (each a list of arguments) that delete every interface of `vm`. A port
    with a QoS row takes two: ovs-vsctl cannot drop a Port and its QoS row in one transaction
    (its IDL leaves the orphaned Port to the server's garbage collection, which runs after the
    reference check that refuses the QoS delete), so the QoS row goes first, with the reference
    to it, and the ports after."""
    calls = []
    qos = []
    for interface in vm["interfaces"]:
        if interface.get("egress_max_rate_bps", 0) > 0:
            qos += ["--", "destroy", "QoS", interface["device"],
                    "--", "clear", "Port", interface["device"], "qos"]
    if qos:
        calls.append(qos)
    ports = []
    for interface in vm["interfaces"]:
        ports += ["--", "del-port", bridge, interface["device"]]
    calls.append(ports)
    return calls
