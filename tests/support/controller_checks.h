// Checks shared by the controller's end-to-end tests: a VM with a rich configuration, and
// GoogleTest expectations that compare what a switch holds (SwitchRows, read with ovs-vsctl)
// with a VM's configuration as the HTTP API takes it.
#pragma once

#include "support/controller_fixture.h"
#include "support/switch_rows.h"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <map>
#include <string>

namespace steward::testing {

// A VM with three interfaces on host compute-n: an access port on VLAN 100 with ingress
// policing, extra external_ids and an egress max-rate (a QoS row), a trunk port, and an access
// port on VLAN 200. Devices are `device_prefix` + 0..2.
boost::json::object rich_vm(const std::string& id, int n, const std::string& device_prefix);

// The "id" of an answer (a migration's id), -1 when absent.
int64_t id_of(const ControllerFixture::Answer& answer);
// A string field of an answer, "" when absent.
std::string field(const ControllerFixture::Answer& answer, const char* key);

// Port name -> Port uuid of the VM's Steward-owned ports.
std::map<std::string, std::string> port_uuids(const SwitchRows& rows, const std::string& vm);

// Expects `rows` to hold exactly the configuration `vm` describes: one owned Port per interface
// in the bridge, with its tag or trunks, one Interface with policing, MAC, ips and external_ids,
// and a linux-htb QoS row for an egress max-rate.
void expect_config_on(const SwitchRows& rows, const boost::json::object& vm);
// Expects nothing of the VM on the switch: no owned Port, Interface or QoS row, no port named
// like one of its devices.
void expect_nothing_of(const SwitchRows& rows, const boost::json::object& vm);
// Expects a GET /v1/verify report to be clean with no migration in flight.
void expect_clean(const boost::json::value& report);

}  // namespace steward::testing
