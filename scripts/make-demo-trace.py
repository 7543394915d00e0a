#!/usr/bin/env python3
"""Writes the controller demo's inputs: an inventory and a trace of Nova notifications.

  examples/demo/inventory.json      3 switches, 3 compute hosts, 50 VMs with their interfaces
  examples/demo/nova-trace.jsonl    one versioned Nova notification per line, in time order:
                                    about 40 live migrations of those VMs, most completing,
                                    some rolling back, a few notifications delivered twice
  examples/demo/expected-hosts.json where every VM runs once the whole trace has been applied

The output is deterministic: the same seed gives byte-identical files. Python 3 standard
library only. Usage: scripts/make-demo-trace.py [--seed N] [--out DIR]
"""

import argparse
import datetime
import json
import pathlib
import random
import uuid

DEFAULT_SEED = 20261204
SWITCHES = 3
VMS = 50
COMPLETED_MIGRATIONS = 32
ROLLED_BACK_MIGRATIONS = 8
DUPLICATED_NOTIFICATIONS = 4
TRACE_START = datetime.datetime(2026, 12, 4, 9, 0, 0, tzinfo=datetime.timezone.utc)

ROLES = ["web", "api", "db", "cache", "queue", "worker", "lb", "search", "auth", "batch"]
FLAVORS = [
    # name, vcpus, memory_mb, root_gb
    ("s1.small", 1, 2048, 20),
    ("s1.medium", 2, 4096, 40),
    ("s1.large", 4, 8192, 80),
    ("s1.xlarge", 8, 16384, 160),
]
TIERS = ["frontend", "backend", "data"]


class Ids:
    """Deterministic uuids, MACs and tap names drawn from one seeded generator."""

    def __init__(self, rng):
        self.rng = rng
        self.macs = set()
        self.devices = set()

    def uuid(self):
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def hex32(self):
        return "%032x" % self.rng.getrandbits(128)

    def mac(self):
        while True:
            tail = ":".join("%02x" % self.rng.randrange(256) for _ in range(3))
            mac = "fa:16:3e:" + tail
            if mac not in self.macs:
                self.macs.add(mac)
                return mac

    def port(self):
        """A Neutron-style port id and its tap device: "tap" + 11 hex characters."""
        while True:
            port_id = self.uuid()
            device = "tap" + port_id.replace("-", "")[:11]
            if device not in self.devices:
                self.devices.add(device)
                return port_id, device


# ---------------------------------------------------------------------------------------------
# Inventory


def make_interface(rng, ids, addresses, project):
    port_id, device = ids.port()
    interface = {"id": port_id, "device": device, "mac": ids.mac()}

    # Access VLAN (most ports) with an address in that VLAN's /24, or a trunk.
    if rng.random() < 0.85:
        vlan = rng.randint(100, 140)
        interface["vlan"] = vlan
        prefix = "198.18.%d." % vlan
    else:
        interface["trunks"] = sorted(rng.sample(range(100, 141), rng.randint(2, 4)))
        prefix = "198.19.0."
    ips = [addresses.take(prefix)]
    if rng.random() < 0.1:
        ips.append(addresses.take("198.19.1."))
    interface["ips"] = ips

    if rng.random() < 0.25:
        rate = rng.choice([10000, 50000, 100000])
        interface["ingress_policing_rate_kbps"] = rate
        interface["ingress_policing_burst_kb"] = rate // 10
    if rng.random() < 0.2:
        interface["egress_max_rate_bps"] = rng.choice([100, 250, 500, 1000]) * 1000000
    if rng.random() < 0.3:
        interface["external_ids"] = {"project": project, "tier": rng.choice(TIERS)}
    return interface


class Addresses:
    """Hands out unique host addresses inside 198.18.0.0/15, by /24 prefix."""

    def __init__(self):
        self.next_host = {}

    def take(self, prefix):
        host = self.next_host.get(prefix, 10)
        if host > 250:
            raise SystemExit("make-demo-trace: address pool %s0/24 exhausted" % prefix)
        self.next_host[prefix] = host + 1
        return prefix + str(host)


def make_inventory(rng, ids):
    switches = [
        {"id": "sw-%d" % n, "endpoint": "unix:@RUNDIR@/sw-%d/db.sock" % n, "bridge": "br-int"}
        for n in range(1, SWITCHES + 1)
    ]
    hosts = [{"id": "compute-%d" % n, "switch": "sw-%d" % n} for n in range(1, SWITCHES + 1)]
    projects = [ids.hex32() for _ in range(3)]
    addresses = Addresses()
    vms = []
    project_of = {}
    for index in range(VMS):
        project = rng.choice(projects)
        vm = {
            "id": ids.uuid(),
            "name": "%s-%02d" % (ROLES[index % len(ROLES)], index // len(ROLES) + 1),
            "host": hosts[index % len(hosts)]["id"],
            "interfaces": [
                make_interface(rng, ids, addresses, project) for _ in range(rng.randint(1, 3))
            ],
        }
        vms.append(vm)
        project_of[vm["id"]] = project
    return {"switches": switches, "hosts": hosts, "vms": vms}, project_of


# ---------------------------------------------------------------------------------------------
# Nova notifications


def nova_time(moment):
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def nova_object(name, version, data):
    return {
        "nova_object.data": data,
        "nova_object.name": name,
        "nova_object.namespace": "nova",
        "nova_object.version": version,
    }


def ip_payloads(vm):
    addresses = []
    for interface in vm["interfaces"]:
        label = "vlan-%d" % interface["vlan"] if "vlan" in interface else "trunk-net"
        for ip in interface["ips"]:
            addresses.append(
                nova_object(
                    "IpPayload",
                    "1.0",
                    {
                        "address": ip,
                        "device_name": interface["device"],
                        "label": label,
                        "mac": interface["mac"],
                        "meta": {},
                        "port_uuid": interface["id"],
                        "version": 4,
                    },
                )
            )
    return addresses


def instance_payload(vm, traits, host, task_state, power_state, action):
    """InstanceActionPayload for `vm` as Nova reports it while on `host`."""
    flavor_name, vcpus, memory_mb, root_gb = traits["flavor"]
    flavor = nova_object(
        "FlavorPayload",
        "1.4",
        {
            "description": None,
            "disabled": False,
            "ephemeral_gb": 0,
            "extra_specs": {"hw:cpu_policy": "shared"},
            "flavorid": traits["flavor_id"],
            "is_public": True,
            "memory_mb": memory_mb,
            "name": flavor_name,
            "projects": None,
            "root_gb": root_gb,
            "rxtx_factor": 1.0,
            "swap": 0,
            "vcpu_weight": 0,
            "vcpus": vcpus,
        },
    )
    data = {
        "action_initiator_project": action["project"],
        "action_initiator_user": "admin",
        "architecture": "x86_64",
        "auto_disk_config": "MANUAL",
        "availability_zone": "nova",
        "block_devices": [],
        "created_at": traits["created_at"],
        "deleted_at": None,
        "display_description": vm["name"],
        "display_name": vm["name"],
        "fault": None,
        "flavor": flavor,
        "host": host,
        "host_name": vm["name"],
        "image_uuid": traits["image"],
        "ip_addresses": ip_payloads(vm),
        "kernel_id": "",
        "key_name": "ops-key",
        "launched_at": traits["created_at"],
        "locked": False,
        "locked_reason": None,
        "metadata": {},
        "node": host,
        "os_type": None,
        "power_state": power_state,
        "progress": 0,
        "ramdisk_id": "",
        "request_id": action["request_id"],
        "reservation_id": traits["reservation_id"],
        "shares": [],
        "state": "active",
        "task_state": task_state,
        "tenant_id": traits["project"],
        "terminated_at": None,
        "updated_at": nova_time(action["started"]),
        "user_id": traits["user"],
        "uuid": vm["id"],
    }
    return nova_object("InstanceActionPayload", "1.8", data)


def notification(ids, event, publisher, moment, payload):
    return {
        "event_type": "instance.live_migration_%s" % event,
        "message_id": ids.uuid(),
        "payload": payload,
        "priority": "INFO",
        "publisher_id": "nova-compute:%s" % publisher,
        "timestamp": nova_time(moment),
    }


# ---------------------------------------------------------------------------------------------
# Migrations


def event(ids, vm, traits, action, name, publisher, host, at, task_state="migrating",
          power_state="running"):
    payload = instance_payload(vm, traits, host, task_state, power_state, action)
    return notification(ids, name, publisher, at, payload)


def completed_migration(rng, ids, vm, traits, source, target, start):
    """pre on the destination, then post on the source and post_dest on the destination."""
    action = {"request_id": "req-" + ids.uuid(), "project": traits["project"], "started": start}
    t = start
    steps = [("pre.start", target, source, t)]
    t += offset(rng, 1.0, 3.0)
    steps.append(("pre.end", target, source, t))
    t += offset(rng, 4.0, 30.0)  # memory copy
    steps.append(("post.start", source, source, t))
    t += offset(rng, 0.1, 0.6)
    steps.append(("post_dest.start", target, source, t))
    post_dest_end = t + offset(rng, 0.5, 2.5)
    post_end = t + offset(rng, 0.3, 2.5)  # the two hosts finish in either order
    steps.append(("post.end", source, source, post_end))
    events = [event(ids, vm, traits, action, *step) for step in steps]
    events.append(
        event(ids, vm, traits, action, "post_dest.end", target, target, post_dest_end, None,
              "pending"))
    return events, max(post_end, post_dest_end)


def rolled_back_migration(rng, ids, vm, traits, source, target, start, aborted):
    """pre on the destination, then (after an operator abort, or a failure) rollback on the
    source and rollback_dest on the destination."""
    action = {"request_id": "req-" + ids.uuid(), "project": traits["project"], "started": start}
    t = start
    steps = [("pre.start", target, source, t, "migrating")]
    t += offset(rng, 1.0, 3.0)
    steps.append(("pre.end", target, source, t, "migrating"))
    t += offset(rng, 3.0, 20.0)
    if aborted:
        steps.append(("abort.start", source, source, t, "migrating"))
        t += offset(rng, 0.5, 2.0)
        steps.append(("abort.end", source, source, t, "migrating"))
        t += offset(rng, 0.2, 1.0)
    steps.append(("rollback.start", source, source, t, "migrating"))
    t += offset(rng, 0.2, 1.0)
    steps.append(("rollback_dest.start", target, source, t, "migrating"))
    t += offset(rng, 0.5, 2.0)
    steps.append(("rollback_dest.end", target, source, t, "migrating"))
    t += offset(rng, 0.2, 1.0)
    steps.append(("rollback.end", source, source, t, None))
    return [event(ids, vm, traits, action, *step) for step in steps], t


def offset(rng, low, high):
    return datetime.timedelta(milliseconds=rng.randint(int(low * 1000), int(high * 1000)))


def plan_migrations(rng, vms):
    """(outcome, vm) pairs: completions, rollbacks (one of them an abort), and one VM moved
    twice in a row, A to B then on to C ("onward"). Shuffled so that outcomes mix over time."""
    plan = [("complete", rng.choice(vms)) for _ in range(COMPLETED_MIGRATIONS - 2)]
    plan += [("rollback", rng.choice(vms)) for _ in range(ROLLED_BACK_MIGRATIONS - 1)]
    plan.append(("abort", rng.choice(vms)))
    rng.shuffle(plan)
    planned = {vm["id"] for _, vm in plan}
    twice = next(vm for vm in vms if vm["id"] not in planned)
    middle = len(plan) // 2
    plan[middle:middle] = [("complete", twice), ("onward", twice)]
    return plan


def make_trace(rng, ids, inventory, project_of):
    vms = inventory["vms"]
    host_ids = [host["id"] for host in inventory["hosts"]]
    traits = {vm["id"]: vm_traits(rng, ids, project_of[vm["id"]]) for vm in vms}
    current_host = {vm["id"]: vm["host"] for vm in vms}
    free_at = {vm["id"]: TRACE_START for vm in vms}  # a VM's next migration starts after this
    came_from = {}

    notifications = []
    start = TRACE_START
    back_to_back = None
    for outcome, vm in plan_migrations(rng, vms):
        # Migrations overlap in time, but never two of the same VM.
        start += offset(rng, 5.0, 25.0)
        begin = max(start, free_at[vm["id"]] + offset(rng, 0.5, 2.0))
        if back_to_back == vm["id"]:
            begin = free_at[vm["id"]] + offset(rng, 0.5, 2.0)
        source = current_host[vm["id"]]
        avoid = {source, came_from.get(vm["id"])} if outcome == "onward" else {source}
        target = rng.choice([h for h in host_ids if h not in avoid])
        if outcome in ("complete", "onward"):
            events, end = completed_migration(rng, ids, vm, traits[vm["id"]], source, target, begin)
            current_host[vm["id"]] = target
            came_from[vm["id"]] = source
        else:
            events, end = rolled_back_migration(rng, ids, vm, traits[vm["id"]], source, target,
                                                begin, outcome == "abort")
        free_at[vm["id"]] = end
        back_to_back = vm["id"]
        notifications.extend(events)

    notifications.sort(key=lambda n: n["timestamp"])
    redeliver(rng, notifications)
    return notifications, current_host


def redeliver(rng, notifications):
    """The bus delivers a few notifications twice: the same message again, a little later."""
    for index in sorted(rng.sample(range(len(notifications) - 10), DUPLICATED_NOTIFICATIONS),
                        reverse=True):
        notifications.insert(index + rng.randint(1, 5), notifications[index])


def vm_traits(rng, ids, project):
    """What Nova reports about a VM besides its placement: flavor, image, owner."""
    flavor = rng.choice(FLAVORS)
    age = datetime.timedelta(days=rng.randint(3, 400), seconds=rng.randint(0, 86399))
    created = TRACE_START - age
    return {
        "flavor": flavor,
        "flavor_id": "flavor-" + flavor[0].replace(".", "-"),
        "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "image": ids.uuid(),
        "reservation_id": "r-%08x" % rng.getrandbits(32),
        "project": project,
        "user": ids.hex32(),
    }


# ---------------------------------------------------------------------------------------------


def write_json(path, value):
    path.write_text(json.dumps(value, indent=2) + "\n")


def main():
    repo = pathlib.Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=pathlib.Path, default=repo / "examples" / "demo")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    ids = Ids(rng)
    inventory, project_of = make_inventory(rng, ids)
    trace, final_hosts = make_trace(rng, ids, inventory, project_of)

    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "inventory.json", inventory)
    with open(args.out / "nova-trace.jsonl", "w") as out:
        for message in trace:
            out.write(json.dumps(message, separators=(",", ":")) + "\n")
    write_json(args.out / "expected-hosts.json", final_hosts)
    print("make-demo-trace: %d VMs, %d notifications in %s" % (len(inventory["vms"]), len(trace),
                                                             args.out))


if __name__ == "__main__":
    main()
