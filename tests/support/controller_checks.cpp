#include "support/controller_checks.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <algorithm>

namespace steward::testing {

namespace json = boost::json;

json::object rich_vm(const std::string& id, int n, const std::string& device_prefix) {
  json::object eth0 =
      ControllerFixture::interface("eth0", device_prefix + "0", "52:54:00:aa:00:01");
  eth0["ips"] = json::array{"198.18.0.5", "fd00::5"};
  eth0["vlan"] = 100;
  eth0["ingress_policing_rate_kbps"] = 1000;
  eth0["ingress_policing_burst_kb"] = 100;
  eth0["egress_max_rate_bps"] = 5'000'000;
  eth0["external_ids"] = json::object{{"color", "blue"}};
  json::object eth1 =
      ControllerFixture::interface("eth1", device_prefix + "1", "52:54:00:aa:00:02");
  eth1["ips"] = json::array{"198.18.1.5"};
  eth1["trunks"] = json::array{30, 10, 20};
  json::object eth2 =
      ControllerFixture::interface("eth2", device_prefix + "2", "52:54:00:aa:00:03");
  eth2["vlan"] = 200;
  return json::object{{"id", id},
                      {"name", "web-" + id},
                      {"host", ControllerFixture::host(n)},
                      {"interfaces", json::array{eth0, eth1, eth2}}};
}

namespace {

std::string text(const json::value& value) {
  return value.is_string() ? std::string(value.as_string()) : "";
}

}  // namespace

int64_t id_of(const ControllerFixture::Answer& answer) {
  const json::value* id =
      answer.body.is_object() ? answer.body.as_object().if_contains("id") : nullptr;
  return id && id->is_int64() ? id->as_int64() : -1;
}

std::string field(const ControllerFixture::Answer& answer, const char* key) {
  const json::value* found =
      answer.body.is_object() ? answer.body.as_object().if_contains(key) : nullptr;
  return found ? text(*found) : "";
}

std::map<std::string, std::string> port_uuids(const SwitchRows& rows, const std::string& vm) {
  std::map<std::string, std::string> out;
  for (const auto& [name, port] : rows.ports_of_vm(vm))
    out[name] = port->uuid;
  return out;
}

void expect_config_on(const SwitchRows& rows, const json::object& vm) {
  std::string vm_id = text(vm.at("id"));
  const json::array& interfaces = vm.at("interfaces").as_array();
  auto ports = rows.ports_of_vm(vm_id);
  EXPECT_EQ(ports.size(), interfaces.size()) << "owned ports of " << vm_id;
  size_t with_qos = 0;
  for (const json::value& item : interfaces) {
    const json::object& wanted = item.as_object();
    std::string device = text(wanted.at("device"));
    std::string iface_id = text(wanted.at("id"));
    SCOPED_TRACE("vm " + vm_id + " interface " + iface_id + " device " + device);
    auto port_found = ports.find(device);
    ASSERT_NE(port_found, ports.end()) << "no Port " << device;
    const PortRow& port = *port_found->second;
    EXPECT_TRUE(port.in_bridge) << "Port " << device << " is not in any bridge";
    EXPECT_EQ(port.external_ids.at("steward-iface"), iface_id);

    // VLAN: access tag or trunks (the server keeps trunks sorted).
    if (const json::value* vlan = wanted.if_contains("vlan")) {
      EXPECT_EQ(port.tag, std::optional<int64_t>(vlan->as_int64()));
    } else {
      EXPECT_FALSE(port.tag.has_value());
    }
    std::vector<int64_t> trunks;
    if (const json::value* listed = wanted.if_contains("trunks")) {
      for (const json::value& trunk : listed->as_array())
        trunks.push_back(trunk.as_int64());
      std::sort(trunks.begin(), trunks.end());
    }
    EXPECT_EQ(port.trunks, trunks);

    // The Interface: one per Port, with policing and the attachment keys.
    auto interface_found = rows.interfaces.find(device);
    ASSERT_NE(interface_found, rows.interfaces.end()) << "no Interface " << device;
    const InterfaceRow& interface = interface_found->second;
    EXPECT_EQ(port.interfaces, std::vector<std::string>{interface.uuid});
    auto number = [&](const char* key) {
      const json::value* value = wanted.if_contains(key);
      return value ? value->as_int64() : 0;
    };
    EXPECT_EQ(interface.ingress_policing_rate, number("ingress_policing_rate_kbps"));
    EXPECT_EQ(interface.ingress_policing_burst, number("ingress_policing_burst_kb"));
    const auto& ids = interface.external_ids;
    EXPECT_EQ(ids.count("steward-owner") ? ids.at("steward-owner") : "", "steward");
    EXPECT_EQ(ids.count("steward-vm") ? ids.at("steward-vm") : "", vm_id);
    EXPECT_EQ(ids.count("attached-mac") ? ids.at("attached-mac") : "", text(wanted.at("mac")));
    EXPECT_EQ(ids.count("iface-id") ? ids.at("iface-id") : "", iface_id);
    EXPECT_EQ(ids.count("vm-id") ? ids.at("vm-id") : "", vm_id);
    std::vector<std::string> ips;
    if (const json::value* listed = wanted.if_contains("ips")) {
      for (const json::value& ip : listed->as_array())
        ips.push_back(text(ip));
    }
    if (!ips.empty()) {
      EXPECT_EQ(ids.count("steward-ips") ? ids.at("steward-ips") : "",
                fmt::format("{}", fmt::join(ips, ",")));
    }
    if (const json::value* extra = wanted.if_contains("external_ids")) {
      for (const auto& [key, value] : extra->as_object())
        EXPECT_EQ(ids.count(key) ? ids.at(key) : "<absent>", text(value)) << "external_ids:" << key;
    }

    // Egress max-rate: a linux-htb QoS row of Steward's, referenced by the Port.
    int64_t max_rate = number("egress_max_rate_bps");
    if (max_rate == 0) {
      EXPECT_TRUE(port.qos.empty()) << "unexpected QoS on " << device;
      continue;
    }
    with_qos++;
    auto qos = rows.qos.find(port.qos);
    ASSERT_NE(qos, rows.qos.end()) << "Port " << device << " has no QoS row";
    EXPECT_EQ(qos->second.type, "linux-htb");
    EXPECT_EQ(
        qos->second.other_config.count("max-rate") ? qos->second.other_config.at("max-rate") : "",
        std::to_string(max_rate));
    EXPECT_EQ(qos->second.external_ids.count("steward-owner")
                  ? qos->second.external_ids.at("steward-owner")
                  : "",
              "steward");
  }
  size_t owned_qos_of_vm = 0;
  for (const QosRow* qos : rows.owned_qos()) {
    auto vm_key = qos->external_ids.find("steward-vm");
    if (vm_key != qos->external_ids.end() && vm_key->second == vm_id) owned_qos_of_vm++;
  }
  EXPECT_EQ(owned_qos_of_vm, with_qos) << "owned QoS rows of " << vm_id;
}

void expect_nothing_of(const SwitchRows& rows, const json::object& vm) {
  std::string vm_id = text(vm.at("id"));
  EXPECT_TRUE(rows.ports_of_vm(vm_id).empty()) << vm_id << " still has ports";
  for (const json::value& item : vm.at("interfaces").as_array()) {
    std::string device = text(item.at("device"));
    EXPECT_EQ(rows.ports.count(device), 0u) << "Port " << device << " left behind";
    EXPECT_EQ(rows.interfaces.count(device), 0u) << "Interface " << device << " left behind";
  }
  for (const QosRow* qos : rows.owned_qos()) {
    auto vm_key = qos->external_ids.find("steward-vm");
    EXPECT_FALSE(vm_key != qos->external_ids.end() && vm_key->second == vm_id)
        << "QoS row " << qos->uuid << " of " << vm_id << " left behind";
  }
}

void expect_clean(const json::value& report) {
  ASSERT_TRUE(report.is_object()) << to_text(report);
  EXPECT_EQ(report.at("clean"), true) << to_text(report);
  EXPECT_TRUE(report.at("in_flight").as_array().empty()) << to_text(report);
}

}  // namespace steward::testing
