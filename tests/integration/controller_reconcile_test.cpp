// The controller's reconciler end to end: the switches are changed behind the daemon's back with
// ovs-vsctl, and the daemon repairs the drift — configuration missing or changed on the VM's
// switch is put back, Steward-owned rows anywhere else are removed, rows of others stay. Also
// inventory changes made while a migration is in flight.
#include "support/controller_checks.h"
#include "support/controller_fixture.h"

#include <fmt/format.h>
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>
#include <boost/json.hpp>

#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace steward::testing {
namespace {

namespace json = boost::json;

class ControllerReconcile : public ControllerFixture {
 protected:
  // steward_reconcile_repairs_total from /metrics, all kinds together.
  double repairs_started() {
    Answer metrics = get("/metrics");
    std::istringstream lines(metrics.text);
    double total = 0;
    for (std::string line; std::getline(lines, line);) {
      if (line.starts_with("steward_reconcile_repairs_total"))
        total += std::stod(line.substr(line.rfind(' ') + 1));
    }
    return total;
  }
};

// Whether `rows` hold `vm` exactly (no GoogleTest failure while polling).
bool holds_exactly(const SwitchRows& rows, const json::object& vm) {
  ::testing::TestPartResultArray failures;
  {
    ::testing::ScopedFakeTestPartResultReporter quiet(
        ::testing::ScopedFakeTestPartResultReporter::INTERCEPT_ONLY_CURRENT_THREAD, &failures);
    expect_config_on(rows, vm);
  }
  return failures.size() == 0;
}

TEST_F(ControllerReconcile, StewardRowsChangedOrDeletedByHandAreRepairedOnTheVmsSwitch) {
  json::object vm = rich_vm("vm-drift", 1, "tap-drift");
  add_vm(vm);
  std::string qos = rows(1).ports.at("tap-drift0").qos;

  const std::vector<std::vector<std::string>> tamperings = {
      {"del-port", "tap-drift1"},
      {"set", "port", "tap-drift1", "trunks=99"},
      {"set", "port", "tap-drift2", "tag=4000"},
      {"remove", "port", "tap-drift0", "tag", "100"},
      {"set", "interface", "tap-drift0", "ingress_policing_rate=1"},
      {"set", "interface", "tap-drift0", "external_ids:color=red"},
      {"remove", "interface", "tap-drift0", "external_ids", "attached-mac"},
      {"set", "interface", "tap-drift1", "external_ids:steward-ips=198.18.9.9"},
      {"set", "qos", qos, "other_config:max-rate=1"},
      {"set", "qos", qos, "type=linux-hfsc"},
  };
  for (const auto& tampering : tamperings) {
    SCOPED_TRACE(fmt::format("ovs-vsctl {}", fmt::join(tampering, " ")));
    // The repair may land before the switch can be read again: count repairs instead.
    double repairs = repairs_started();
    ASSERT_TRUE(sandbox(1).vsctl(tampering));
    EXPECT_TRUE(eventually([&] {
      return repairs_started() > repairs && holds_exactly(rows(1), vm);
    })) << "repairs before: "
        << repairs << ", now: " << repairs_started();
  }
  expect_config_on(rows(1), vm);
  expect_clean(verify());
}

TEST_F(ControllerReconcile, AnInterfaceWhoseMaxRateIsDroppedOrThatIsDeletedTakesItsQosRowAlong) {
  json::object vm = rich_vm("vm-trim", 1, "tap-trim");
  add_vm(vm);
  json::object eth0 = vm.at("interfaces").as_array()[0].as_object();

  eth0["egress_max_rate_bps"] = 0;
  Answer edited = call("PUT", "/v1/vms/vm-trim/interfaces/eth0", json::serialize(eth0));
  ASSERT_EQ(edited.status, 200) << edited.text;
  vm["interfaces"].as_array()[0] = eth0;
  EXPECT_TRUE(eventually([&] { return holds_exactly(rows(1), vm); }));
  EXPECT_TRUE(rows(1).owned_qos().empty());
  EXPECT_TRUE(rows(1).qos.empty()) << "the QoS row outlived its reference";

  eth0["egress_max_rate_bps"] = 7'000'000;
  edited = call("PUT", "/v1/vms/vm-trim/interfaces/eth0", json::serialize(eth0));
  ASSERT_EQ(edited.status, 200) << edited.text;
  vm["interfaces"].as_array()[0] = eth0;
  EXPECT_TRUE(eventually([&] { return holds_exactly(rows(1), vm); }));

  Answer deleted = call("DELETE", "/v1/vms/vm-trim/interfaces/eth0");
  ASSERT_EQ(deleted.status, 204) << deleted.text;
  vm["interfaces"].as_array().erase(vm["interfaces"].as_array().begin());
  EXPECT_TRUE(eventually([&] { return holds_exactly(rows(1), vm); }));
  EXPECT_EQ(rows(1).ports.count("tap-trim0"), 0u);
  EXPECT_TRUE(rows(1).qos.empty()) << "the QoS row outlived its port";
  expect_clean(verify());
}

TEST_F(ControllerReconcile, QosRowsLeftBehindByAPortDeletedOrClearedByHandAreDeleted) {
  json::object vm = rich_vm("vm-orphan", 1, "tap-orphan");
  add_vm(vm);
  std::size_t qos_rows = rows(1).owned_qos().size();
  ASSERT_GT(qos_rows, 0u);
  std::string qos = rows(1).ports.at("tap-orphan0").qos;

  // The port goes; its QoS row (a root row) stays unless Steward deletes it. Then the port's
  // reference is cleared by hand: that row is left without a port as well.
  const std::vector<std::vector<std::string>> tamperings = {
      {"del-port", "tap-orphan0"},
      {"clear", "port", "tap-orphan0", "qos"},
  };
  for (const auto& tampering : tamperings) {
    SCOPED_TRACE(fmt::format("ovs-vsctl {}", fmt::join(tampering, " ")));
    ASSERT_TRUE(sandbox(1).vsctl(tampering));
    EXPECT_TRUE(eventually([&] {
      SwitchRows now = rows(1);
      return holds_exactly(now, vm) && now.owned_qos().size() == qos_rows;
    })) << "owned QoS rows: "
        << rows(1).owned_qos().size() << ", want " << qos_rows;
    expect_clean(verify());
  }
  EXPECT_EQ(rows(1).qos.count(qos), 0u) << "the first QoS row is still there";
  EXPECT_EQ(rows(1).qos.size(), qos_rows);
}

TEST_F(ControllerReconcile, StewardRowsLeftOnAnotherSwitchAreRemovedAndRowsOfOthersAreNot) {
  json::object vm = rich_vm("vm-home", 1, "tap-home");
  add_vm(vm);
  auto home_ports = port_uuids(rows(1), "vm-home");

  // On sw-3, by hand: a stale copy of vm-home's eth0 (with its QoS row), Steward rows of a VM
  // the inventory does not know, and a port of someone else.
  auto steward_port = [&](const std::string& name, const std::string& vm_id) {
    std::vector<std::string> ids = {"external_ids:steward-owner=steward",
                                    "external_ids:steward-vm=" + vm_id,
                                    "external_ids:steward-iface=eth0"};
    std::vector<std::string> args = {"add-port", sandbox(3).bridge(), name, "--", "set", "port",
                                     name};
    args.insert(args.end(), ids.begin(), ids.end());
    args.insert(args.end(), {"--", "set", "interface", name});
    args.insert(args.end(), ids.begin(), ids.end());
    return sandbox(3).vsctl(args);
  };
  ASSERT_TRUE(steward_port("tap-home0", "vm-home"));
  ASSERT_TRUE(sandbox(3).vsctl(
      {"--", "set", "port", "tap-home0", "qos=@q", "--", "--id=@q", "create", "qos",
       "type=linux-htb", "other_config:max-rate=5000000", "external_ids:steward-owner=steward",
       "external_ids:steward-vm=vm-home", "external_ids:steward-iface=eth0"}));
  ASSERT_TRUE(steward_port("tap-gone0", "vm-gone"));
  ASSERT_TRUE(sandbox(3).add_foreign_port("foreign0"));
  SwitchRows tampered = rows(3);
  ASSERT_EQ(tampered.vms(), (std::set<std::string>{"vm-gone", "vm-home"}));
  ASSERT_EQ(tampered.owned_qos().size(), 1u);

  // The reconciler removes both, with the stale QoS row, and leaves the foreign port alone.
  EXPECT_TRUE(eventually([&] { return rows(3).owned_ports().empty(); })) << "stale rows stayed";
  SwitchRows repaired = rows(3);
  EXPECT_TRUE(repaired.owned_interfaces().empty());
  EXPECT_TRUE(repaired.owned_qos().empty()) << "the stale QoS row leaked";
  ASSERT_EQ(repaired.ports.count("foreign0"), 1u);
  EXPECT_EQ(repaired.ports.at("foreign0").uuid, tampered.ports.at("foreign0").uuid);
  EXPECT_EQ(port_uuids(rows(1), "vm-home"), home_ports);
  expect_config_on(rows(1), vm);
  expect_clean(verify());
}

TEST_F(ControllerReconcile,
       AnInterfaceChangedDuringAPreparedMigrationReachesTheTargetAfterComplete) {
  json::object vm = rich_vm("vm-edit", 1, "tap-edit");
  add_vm(vm);
  Answer prepared = migrate("vm-edit", host(1), host(2), "prepare");
  ASSERT_EQ(field(prepared, "state"), "prepared") << prepared.text;

  // The VM's configuration changes while it is between two hosts.
  json::object eth2 = vm.at("interfaces").as_array()[2].as_object();
  eth2["vlan"] = 300;
  eth2["ingress_policing_rate_kbps"] = 2000;
  Answer edited = call("PUT", "/v1/vms/vm-edit/interfaces/eth2", json::serialize(eth2));
  ASSERT_EQ(edited.status, 200) << edited.text;
  vm["interfaces"].as_array()[2] = eth2;

  // It cannot be deleted or moved by a PUT meanwhile.
  Answer deleted = call("DELETE", "/v1/vms/vm-edit");
  EXPECT_EQ(deleted.status, 409) << deleted.text;
  json::object moved = vm;
  moved["host"] = host(3);
  Answer put = call("PUT", "/v1/vms/vm-edit", json::serialize(moved));
  EXPECT_EQ(put.status, 409) << put.text;

  Answer completed = migrate("vm-edit", host(1), host(2), "complete");
  ASSERT_EQ(field(completed, "state"), "completed") << completed.text;
  EXPECT_TRUE(eventually([&] { return holds_exactly(rows(2), vm); }))
      << "the edited configuration never reached the target";
  expect_config_on(rows(2), vm);
  expect_nothing_of(rows(1), vm);
  EXPECT_EQ(host_of("vm-edit"), host(2));
  expect_clean(verify());
}

}  // namespace
}  // namespace steward::testing
