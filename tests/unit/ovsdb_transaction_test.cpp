// The transactions Steward plans from the owned rows, and the checks of their replies.
#include "controller/southbound/ovsdb/transaction.h"

#include "controller/southbound/ovsdb/datum.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <optional>

namespace steward::ovsdb {
namespace {

using controller::Interface;
using controller::ObservedInterface;
using controller::OwnedRows;
using controller::Vm;

const std::string kOwner = "me";
const std::string kBridge = "bridge-uuid";

Interface interface(std::string id, std::string device) {
  Interface result;
  result.id = std::move(id);
  result.device = std::move(device);
  result.mac = "52:54:00:00:00:01";
  result.ips = {"10.0.0.1"};
  result.vlan = 100;
  return result;
}

Vm vm_with(std::vector<Interface> interfaces) {
  Vm vm;
  vm.id = "vm-1";
  vm.interfaces = std::move(interfaces);
  return vm;
}

// What the switch would hold after `vm` was installed.
OwnedRows installed(const Vm& vm) {
  OwnedRows rows;
  int n = 0;
  for (const Interface& config : vm.interfaces) {
    ObservedInterface seen;
    seen.port_uuid = fmt::format("port-{}", n);
    seen.interface_uuid = fmt::format("iface-{}", n);
    if (config.egress_max_rate_bps > 0) seen.qos_uuid = fmt::format("qos-{}", n);
    seen.vm_id = vm.id;
    seen.config = config;
    rows[vm.id].push_back(seen);
    n++;
  }
  return rows;
}

// The ops of a plan (without the leading database name).
std::vector<json::object> ops(const PlannedTransaction& plan) {
  std::vector<json::object> result;
  for (std::size_t i = 1; i < plan.params.size(); ++i)
    result.push_back(plan.params[i].as_object());
  return result;
}

std::vector<std::string> summary(const PlannedTransaction& plan) {
  std::vector<std::string> result;
  for (const json::object& op : ops(plan)) {
    std::string text(op.at("op").as_string());
    if (op.contains("table")) text += " " + std::string(op.at("table").as_string());
    result.push_back(text);
  }
  return result;
}

const json::object* find_op(const PlannedTransaction& plan, std::string_view op,
                            std::string_view table) {
  for (std::size_t i = 1; i < plan.params.size(); ++i) {
    const json::object& candidate = plan.params[i].as_object();
    if (candidate.at("op").as_string() == op && candidate.contains("table") &&
        candidate.at("table").as_string() == table)
      return &plan.params[i].as_object();
  }
  return nullptr;
}

TEST(PlanInstall, ANewInterfaceInsertsInterfacePortAndQosAndLinksTheBridge) {
  Interface eth0 = interface("eth0", "tap0");
  eth0.trunks = {30, 10};
  eth0.egress_max_rate_bps = 1000;
  eth0.ingress_policing_rate_kbps = 10;
  eth0.external_ids = {{"color", "blue"}};

  auto plan = plan_install(vm_with({eth0}), kOwner, kBridge, {});

  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(plan->inserted, 1);
  EXPECT_EQ(plan->params[0], "Open_vSwitch");
  EXPECT_EQ(summary(*plan), (std::vector<std::string>{"insert Interface", "insert QoS",
                                                      "insert Port", "mutate Bridge", "comment"}));
  const json::object* port = find_op(*plan, "insert", "Port");
  EXPECT_EQ(port->at("row").at("name"), "tap0");
  EXPECT_EQ(port->at("row").at("tag"), 100);
  EXPECT_EQ(port->at("row").at("trunks"), json::parse(R"(["set",[10,30]])"));
  EXPECT_EQ(string_map(port->at("row").at("external_ids")),
            (std::map<std::string, std::string>{
                {"steward-owner", "me"}, {"steward-vm", "vm-1"}, {"steward-iface", "eth0"}}));
  const json::object* iface = find_op(*plan, "insert", "Interface");
  EXPECT_EQ(iface->at("row").at("type"), "");
  EXPECT_EQ(iface->at("row").at("ingress_policing_rate"), 10);
  auto ids = string_map(iface->at("row").at("external_ids"));
  EXPECT_EQ(ids.at("attached-mac"), "52:54:00:00:00:01");
  EXPECT_EQ(ids.at("iface-id"), "eth0");
  EXPECT_EQ(ids.at("vm-id"), "vm-1");
  EXPECT_EQ(ids.at("steward-ips"), "10.0.0.1");
  EXPECT_EQ(ids.at("color"), "blue");
  const json::object* qos = find_op(*plan, "insert", "QoS");
  EXPECT_EQ(qos->at("row").at("type"), "linux-htb");
  EXPECT_EQ(map_lookup(qos->at("row").at("other_config"), "max-rate"), "1000");
  const json::object* bridge = find_op(*plan, "mutate", "Bridge");
  EXPECT_EQ(bridge->at("where"), json::parse(R"([["_uuid","==",["uuid","bridge-uuid"]]])"));
  EXPECT_EQ(plan->counted_ops, std::vector<std::size_t>{3});
}

TEST(PlanInstall, AMatchingSwitchNeedsNoTransaction) {
  Interface eth0 = interface("eth0", "tap0");
  eth0.egress_max_rate_bps = 1000;
  Vm vm = vm_with({eth0, interface("eth1", "tap1")});

  auto plan = plan_install(vm, kOwner, kBridge, installed(vm));

  ASSERT_TRUE(plan);
  EXPECT_TRUE(plan->empty());
}

TEST(PlanInstall, AChangedVlanUpdatesThePortInPlace) {
  Vm vm = vm_with({interface("eth0", "tap0"), interface("eth1", "tap1")});
  OwnedRows rows = installed(vm);
  vm.interfaces[1].vlan = std::nullopt;
  vm.interfaces[1].trunks = {5, 6};

  auto plan = plan_install(vm, kOwner, kBridge, rows);

  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->updated, 1);
  EXPECT_EQ(summary(*plan), (std::vector<std::string>{"update Port", "comment"}));
  const json::object* port = find_op(*plan, "update", "Port");
  EXPECT_EQ(port->at("where"), json::parse(R"([["_uuid","==",["uuid","port-1"]]])"));
  EXPECT_EQ(port->at("row"), json::parse(R"({"tag":["set",[]],"trunks":["set",[5,6]]})"));
  EXPECT_EQ(plan->counted_ops, std::vector<std::size_t>{0});
}

TEST(PlanInstall, ChangedAddressesAndPolicingUpdateTheInterface) {
  Vm vm = vm_with({interface("eth0", "tap0")});
  OwnedRows rows = installed(vm);
  vm.interfaces[0].ips = {"10.0.0.2", "10.0.0.1"};
  vm.interfaces[0].ingress_policing_burst_kb = 8;

  auto plan = plan_install(vm, kOwner, kBridge, rows);

  ASSERT_TRUE(plan);
  EXPECT_EQ(summary(*plan), (std::vector<std::string>{"update Interface", "comment"}));
  const json::object* iface = find_op(*plan, "update", "Interface");
  EXPECT_EQ(map_lookup(iface->at("row").at("external_ids"), "steward-ips"), "10.0.0.2,10.0.0.1");
  EXPECT_EQ(iface->at("row").at("ingress_policing_burst"), 8);
}

TEST(PlanInstall, AddingAndDroppingMaxRateCreatesAndDeletesQos) {
  Vm vm = vm_with({interface("eth0", "tap0"), interface("eth1", "tap1")});
  vm.interfaces[1].egress_max_rate_bps = 500;
  OwnedRows rows = installed(vm);
  vm.interfaces[0].egress_max_rate_bps = 900;
  vm.interfaces[1].egress_max_rate_bps = 0;

  auto plan = plan_install(vm, kOwner, kBridge, rows);

  ASSERT_TRUE(plan);
  EXPECT_EQ(summary(*plan), (std::vector<std::string>{"insert QoS", "update Port", "update Port",
                                                      "delete QoS", "comment"}));
  auto all = ops(*plan);
  EXPECT_EQ(all[1].at("row").at("qos"), json::parse(R"(["named-uuid","qos0"])"));
  EXPECT_EQ(all[2].at("row").at("qos"), json::parse(R"(["set",[]])"));
  EXPECT_EQ(all[3].at("where"), json::parse(R"([["_uuid","==",["uuid","qos-1"]]])"));
}

TEST(PlanInstall, AChangedMaxRateUpdatesTheQosRow) {
  Vm vm = vm_with({interface("eth0", "tap0")});
  vm.interfaces[0].egress_max_rate_bps = 500;
  OwnedRows rows = installed(vm);
  vm.interfaces[0].egress_max_rate_bps = 600;

  auto plan = plan_install(vm, kOwner, kBridge, rows);

  ASSERT_TRUE(plan);
  EXPECT_EQ(summary(*plan), (std::vector<std::string>{"update QoS", "comment"}));
}

TEST(PlanInstall, InterfacesNoLongerConfiguredAreRemovedWithTheirQos) {
  Vm vm = vm_with({interface("eth0", "tap0"), interface("eth1", "tap1")});
  vm.interfaces[1].egress_max_rate_bps = 500;
  OwnedRows rows = installed(vm);
  vm.interfaces.pop_back();

  auto plan = plan_install(vm, kOwner, kBridge, rows);

  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->removed, 1);
  EXPECT_EQ(summary(*plan),
            (std::vector<std::string>{"update Port", "delete QoS", "mutate Bridge", "comment"}));
  const json::object* bridge = find_op(*plan, "mutate", "Bridge");
  EXPECT_EQ(bridge->at("mutations"),
            json::parse(R"([["ports","delete",["set",[["uuid","port-1"]]]]])"));
}

TEST(PlanInstall, ARenamedDeviceReplacesThePort) {
  Vm vm = vm_with({interface("eth0", "tap0")});
  OwnedRows rows = installed(vm);
  vm.interfaces[0].device = "tap9";

  auto plan = plan_install(vm, kOwner, kBridge, rows);

  ASSERT_TRUE(plan);
  EXPECT_EQ(plan->removed, 1);
  EXPECT_EQ(plan->inserted, 1);
  const json::object* bridge = find_op(*plan, "mutate", "Bridge");
  EXPECT_EQ(bridge->at("mutations"), json::parse(R"([["ports","delete",["set",[["uuid","port-0"]]]],
                            ["ports","insert",["set",[["named-uuid","port1"]]]]])"));
}

TEST(PlanInstall, InvalidConfigurationsAreRefused) {
  auto refused = [](Vm vm) {
    auto plan = plan_install(vm, kOwner, kBridge, {});
    return !plan && plan.error().code == ErrorCode::kInvalidArgument;
  };
  Interface reserved = interface("eth0", "tap0");
  reserved.external_ids = {{"attached-mac", "x"}};
  Interface bad_vlan = interface("eth0", "tap0");
  bad_vlan.vlan = 4096;
  Interface bad_trunk = interface("eth0", "tap0");
  bad_trunk.trunks = {-1};
  Interface comma_ip = interface("eth0", "tap0");
  comma_ip.ips = {"10.0.0.1,10.0.0.2"};
  Interface negative = interface("eth0", "tap0");
  negative.egress_max_rate_bps = -5;
  EXPECT_TRUE(refused(vm_with({reserved})));
  EXPECT_TRUE(refused(vm_with({bad_vlan})));
  EXPECT_TRUE(refused(vm_with({bad_trunk})));
  EXPECT_TRUE(refused(vm_with({comma_ip})));
  EXPECT_TRUE(refused(vm_with({negative})));
  EXPECT_TRUE(refused(vm_with({interface("eth0", "tap0"), interface("eth0", "tap1")})));
  EXPECT_TRUE(refused(vm_with({interface("eth0", "tap0"), interface("eth1", "tap0")})));
  EXPECT_TRUE(refused(vm_with({interface("eth0", "")})));
}

TEST(PlanInstall, ADeviceOwnedByAnotherVmIsAConflict) {
  Vm other = vm_with({interface("eth0", "tap0")});
  other.id = "vm-2";

  auto plan = plan_install(vm_with({interface("eth0", "tap0")}), kOwner, kBridge, installed(other));

  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().code, ErrorCode::kConflict);
  EXPECT_NE(plan.error().message.find("vm-2"), std::string::npos);
}

TEST(PlanInstall, TheDeviceIndexFindsTheSameConflicts) {
  Vm other = vm_with({interface("eth0", "tap0")});
  other.id = "vm-2";
  DeviceOwners owners{{"tap0", "vm-2"}};

  auto plan = plan_install(vm_with({interface("eth0", "tap0")}), kOwner, kBridge, installed(other),
                           &owners);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().code, ErrorCode::kConflict);
  EXPECT_NE(plan.error().message.find("vm-2"), std::string::npos);

  Vm mine = vm_with({interface("eth0", "tap1")});
  DeviceOwners own{{"tap1", "vm-1"}};
  EXPECT_TRUE(plan_install(mine, kOwner, kBridge, installed(mine), &own));
}

TEST(PlanRemove, DropsEveryOwnedPortAndQosOfTheVm) {
  Vm vm = vm_with({interface("eth0", "tap0"), interface("eth1", "tap1")});
  vm.interfaces[0].egress_max_rate_bps = 10;
  OwnedRows rows = installed(vm);
  Vm other = vm_with({interface("eth0", "tapx")});
  other.id = "vm-2";
  rows.merge(installed(other));

  PlannedTransaction plan = plan_remove("vm-1", kBridge, rows);

  EXPECT_EQ(plan.removed, 2);
  EXPECT_EQ(summary(plan),
            (std::vector<std::string>{"update Port", "delete QoS", "mutate Bridge", "comment"}));
  EXPECT_EQ(find_op(plan, "mutate", "Bridge")->at("mutations"),
            json::parse(R"([["ports","delete",["set",[["uuid","port-0"],["uuid","port-1"]]]]])"));
  EXPECT_TRUE(plan_remove("vm-unknown", kBridge, rows).empty());
}

// The outcome, or nullopt for an error (Result has no operator== or printer for gtest).
std::optional<Outcome> outcome_of(const PlannedTransaction& plan, std::string_view reply) {
  auto outcome = check_transact_reply(plan, json::parse(reply));
  return outcome ? std::optional<Outcome>(*outcome) : std::nullopt;
}

PlannedTransaction two_counted_ops() {
  Vm vm = vm_with({interface("eth0", "tap0"), interface("eth1", "tap1")});
  OwnedRows rows = installed(vm);
  vm.interfaces[0].vlan = 1;
  vm.interfaces[1].vlan = 2;
  return plan_install(vm, kOwner, kBridge, rows).value();
}

TEST(CheckTransactReply, EveryCountedOpMustMatchOneRow) {
  PlannedTransaction plan = two_counted_ops();
  ASSERT_EQ(plan.counted_ops.size(), 2u);
  EXPECT_EQ(outcome_of(plan, R"([{"count":1},{"count":1},{}])"), Outcome::kCommitted);
  EXPECT_EQ(outcome_of(plan, R"([{"count":1},{"count":0},{}])"), Outcome::kStale);
}

TEST(CheckTransactReply, AnIndexViolationIsAConflict) {
  PlannedTransaction plan = two_counted_ops();
  auto outcome = check_transact_reply(plan, json::parse(R"([{"count":1},{"count":1},{},
      {"error":"constraint violation",
       "details":"Transaction causes multiple rows in \"Port\" table to have identical values (tap1) for index on column \"name\"."}])"));
  ASSERT_FALSE(outcome);
  EXPECT_EQ(outcome.error().code, ErrorCode::kConflict);
  EXPECT_NE(outcome.error().message.find("tap1"), std::string::npos);
}

TEST(CheckTransactReply, OtherErrorsAndMalformedRepliesAreInternal) {
  PlannedTransaction plan = two_counted_ops();
  auto refused = check_transact_reply(
      plan,
      json::parse(R"([{"error":"referential integrity violation","details":"no"},null,null])"));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kInternal);
  EXPECT_NE(refused.error().message.find("referential integrity violation"), std::string::npos);
  for (const char* reply : {R"({})", R"([{"count":1}])", R"(null)"}) {
    auto outcome = check_transact_reply(plan, json::parse(reply));
    ASSERT_FALSE(outcome) << reply;
    EXPECT_EQ(outcome.error().code, ErrorCode::kInternal);
  }
  EXPECT_EQ(outcome_of(plan, R"([{"count":"1"},{"count":1},{}])"), Outcome::kStale);
}

TEST(MonitorParams, ConditionalMonitorFiltersByBridgeNameAndOwner) {
  json::array params = monitor_params("m", "br-int", "me", true);
  EXPECT_EQ(params[0], "Open_vSwitch");
  EXPECT_EQ(params[1], "m");
  const json::object& tables = params[2].as_object();
  EXPECT_EQ(tables.at("Bridge").at(0).at("where"), json::parse(R"([["name","==","br-int"]])"));
  EXPECT_EQ(tables.at("QoS").at(0).at("where"),
            json::parse(R"([["external_ids","includes",["map",[["steward-owner","me"]]]]])"));
  json::array plain = monitor_params("m", "br-int", "me", false);
  EXPECT_FALSE(plain[2].at("Port").as_object().contains("where"));
}

TEST(SelectOwnedParams, SelectsTheFourTablesInOrder) {
  json::array params = select_owned_params("br-int", "me");
  ASSERT_EQ(params.size(), 5u);
  EXPECT_EQ(params[1].at("table"), "Bridge");
  EXPECT_EQ(params[4].at("table"), "QoS");
  EXPECT_EQ(params[2].at("columns").at(0), "_uuid");
}

}  // namespace
}  // namespace steward::ovsdb
