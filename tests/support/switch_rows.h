// SwitchRows: what one Open vSwitch database holds — its bridges' ports, interfaces and QoS rows —
// read with `ovs-vsctl --format=json` through an OvsSandbox, independently of the controller and
// of Steward's own OVSDB client. Tests use it to check a switch the way an operator would.
//
// Threading: plain values; read_switch() blocks on ovs-vsctl.
// Failures: read_switch() returns the ovs-vsctl error or names the JSON it could not read.
#pragma once

#include "core/result.h"
#include "support/ovs_sandbox.h"

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace steward::testing {

struct PortRow {
  std::string uuid;
  std::string name;
  std::optional<int64_t> tag;
  std::vector<int64_t> trunks;  // ascending, as the server keeps sets
  std::string qos;              // QoS row uuid, empty when none
  std::vector<std::string> interfaces;
  std::map<std::string, std::string> external_ids;
  bool in_bridge = false;  // listed in some Bridge's ports
};

struct InterfaceRow {
  std::string uuid;
  std::string name;
  int64_t ingress_policing_rate = 0;
  int64_t ingress_policing_burst = 0;
  std::map<std::string, std::string> external_ids;
};

struct QosRow {
  std::string uuid;
  std::string type;
  std::map<std::string, std::string> other_config;
  std::map<std::string, std::string> external_ids;
};

struct SwitchRows {
  std::map<std::string, PortRow> ports;            // by name (bridges' own ports included)
  std::map<std::string, InterfaceRow> interfaces;  // by name
  std::map<std::string, QosRow> qos;               // by uuid

  // Rows whose external_ids mark them as owned by `owner` (steward-owner).
  std::vector<const PortRow*> owned_ports(const std::string& owner = "steward") const;
  std::vector<const InterfaceRow*> owned_interfaces(const std::string& owner = "steward") const;
  std::vector<const QosRow*> owned_qos(const std::string& owner = "steward") const;
  // Owned ports of one VM (steward-vm), by port name.
  std::map<std::string, const PortRow*> ports_of_vm(const std::string& vm,
                                                    const std::string& owner = "steward") const;
  // VMs with at least one owned port here.
  std::set<std::string> vms(const std::string& owner = "steward") const;
  // Every row uuid of every table, to compare a whole switch before and after.
  std::set<std::string> all_uuids() const;
};

Result<SwitchRows> read_switch(OvsSandbox& sandbox);

}  // namespace steward::testing
