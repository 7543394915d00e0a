// OvsdbSwitch against a real ovsdb-server (OvsSandbox): install, read back, update in place,
// remove, conflicts with rows that are not Steward's, and the switch going away and coming back.
#include "controller/southbound/ovsdb/ovsdb_switch.h"
#include "support/ovs_sandbox.h"

#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>
#include <filesystem>
#include <optional>

namespace steward::controller {
namespace {

using steward::testing::OvsSandbox;
using steward::testing::run_io_until;

constexpr const char* kOwner = "steward-test";

Interface make_interface(std::string id, std::string device, std::string mac) {
  Interface interface;
  interface.id = std::move(id);
  interface.device = std::move(device);
  interface.mac = std::move(mac);
  return interface;
}

// A VM with three interfaces on different VLANs: access + policing + max-rate, trunks, access.
Vm three_interface_vm(const std::string& id = "vm-1", const std::string& prefix = "tap-a") {
  Vm vm;
  vm.id = id;
  vm.name = "web-" + id;
  vm.host = "host-1";
  Interface first = make_interface("eth0", prefix + "0", "52:54:00:00:00:01");
  first.ips = {"10.0.0.5", "fd00::5"};
  first.vlan = 100;
  first.ingress_policing_rate_kbps = 1000;
  first.ingress_policing_burst_kb = 100;
  first.egress_max_rate_bps = 5'000'000;
  first.external_ids = {{"color", "blue"}};
  Interface second = make_interface("eth1", prefix + "1", "52:54:00:00:00:02");
  second.ips = {"10.1.0.5"};
  second.trunks = {10, 20, 30};
  Interface third = make_interface("eth2", prefix + "2", "52:54:00:00:00:03");
  third.vlan = 200;
  vm.interfaces = {first, second, third};
  return vm;
}

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
    text.pop_back();
  return text;
}

class OvsdbSwitchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto made = OvsSandbox::create();
    ASSERT_TRUE(made) << made.error().message;
    sandbox_ = std::move(*made);
  }

  std::unique_ptr<OvsdbSwitch> connect(OvsdbSwitchOptions options = fast_options(),
                                       const std::string& bridge = "br-int") {
    Switch spec{"s1", sandbox_->unix_endpoint(), bridge, {}};
    auto client = std::make_unique<OvsdbSwitch>(io_, spec, kOwner, options);
    client->start();
    return client;
  }

  static OvsdbSwitchOptions fast_options() {
    OvsdbSwitchOptions options;
    options.connection.backoff_initial = std::chrono::milliseconds(20);
    options.connection.backoff_max = std::chrono::milliseconds(200);
    return options;
  }

  bool wait_ready(OvsdbSwitch& client) {
    return run_io_until(io_, [&] { return client.state() == SwitchState::kReady; });
  }

  Status wait(const std::function<void(StatusCallback)>& operation) {
    std::optional<Status> result;
    operation([&](Status status) { result = std::move(status); });
    if (!run_io_until(io_, [&] { return result.has_value(); }))
      return Error{ErrorCode::kTimeout, "operation did not complete"};
    return *result;
  }
  Status install(OvsdbSwitch& client, const Vm& vm) {
    return wait([&](StatusCallback done) { client.install(vm, std::move(done)); });
  }
  Status remove(OvsdbSwitch& client, const std::string& vm_id) {
    return wait([&](StatusCallback done) { client.remove(vm_id, std::move(done)); });
  }
  Result<OwnedRows> read_owned(OvsdbSwitch& client) {
    std::optional<Result<OwnedRows>> result;
    client.read_owned([&](Result<OwnedRows> rows) { result = std::move(rows); });
    if (!run_io_until(io_, [&] { return result.has_value(); }))
      return Error{ErrorCode::kTimeout, "read_owned did not complete"};
    return std::move(*result);
  }

  std::string vsctl(const std::vector<std::string>& args) {
    auto out = sandbox_->vsctl(args);
    EXPECT_TRUE(out) << out.error().message;
    return out ? trimmed(*out) : std::string();
  }
  std::uintmax_t database_size() {
    return std::filesystem::file_size(sandbox_->dir() + "/conf.db");
  }

  boost::asio::io_context io_;
  std::unique_ptr<OvsSandbox> sandbox_;
};

TEST_F(OvsdbSwitchTest, InstallsThreeInterfacesAndReadsThemBack) {
  auto client = connect();
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  Vm vm = three_interface_vm();

  ASSERT_TRUE(install(*client, vm)) << install(*client, vm).error().message;

  // The monitor view and a fresh read agree with the configuration.
  ASSERT_TRUE(run_io_until(io_, [&] { return client->owned()->contains("vm-1"); }));
  EXPECT_TRUE(matches(vm, client->owned()->at("vm-1")));
  auto fresh = read_owned(*client);
  ASSERT_TRUE(fresh) << fresh.error().message;
  ASSERT_TRUE(fresh->contains("vm-1"));
  EXPECT_TRUE(matches(vm, fresh->at("vm-1")));

  // And so does ovs-vsctl.
  EXPECT_EQ(vsctl({"get", "port", "tap-a0", "tag"}), "100");
  EXPECT_EQ(vsctl({"get", "port", "tap-a1", "trunks"}), "[10, 20, 30]");
  EXPECT_EQ(vsctl({"get", "port", "tap-a2", "tag"}), "200");
  EXPECT_EQ(vsctl({"get", "interface", "tap-a0", "ingress_policing_rate"}), "1000");
  EXPECT_EQ(vsctl({"get", "interface", "tap-a0", "ingress_policing_burst"}), "100");
  EXPECT_EQ(vsctl({"get", "interface", "tap-a0", "external_ids:attached-mac"}),
            "\"52:54:00:00:00:01\"");
  EXPECT_EQ(vsctl({"get", "interface", "tap-a0", "external_ids:steward-ips"}),
            "\"10.0.0.5,fd00::5\"");
  EXPECT_EQ(vsctl({"get", "interface", "tap-a0", "external_ids:color"}), "blue");
  EXPECT_EQ(vsctl({"get", "interface", "tap-a1", "type"}), "\"\"");
  std::string qos = vsctl({"get", "port", "tap-a0", "qos"});
  EXPECT_EQ(vsctl({"get", "qos", qos, "other_config:max-rate"}), "\"5000000\"");
  EXPECT_EQ(vsctl({"get", "qos", qos, "type"}), "linux-htb");
  EXPECT_EQ(vsctl({"get", "port", "tap-a1", "qos"}), "[]");
  EXPECT_EQ(vsctl({"get", "port", "tap-a2", "external_ids:steward-owner"}), kOwner);
}

TEST_F(OvsdbSwitchTest, InstallingTheSameVmTwiceSendsNoTransaction) {
  auto client = connect();
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  Vm vm = three_interface_vm();
  ASSERT_TRUE(install(*client, vm));
  ASSERT_TRUE(run_io_until(io_, [&] { return client->owned()->contains("vm-1"); }));
  auto size_before = database_size();

  EXPECT_TRUE(install(*client, vm));

  EXPECT_EQ(database_size(), size_before);
}

TEST_F(OvsdbSwitchTest, ChangingOneVlanUpdatesThePortInPlace) {
  auto client = connect();
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  Vm vm = three_interface_vm();
  ASSERT_TRUE(install(*client, vm));
  std::string port_before = vsctl({"get", "port", "tap-a2", "_uuid"});
  std::string other_port_before = vsctl({"get", "port", "tap-a0", "_uuid"});

  vm.interfaces[2].vlan = 201;
  ASSERT_TRUE(install(*client, vm));

  EXPECT_EQ(vsctl({"get", "port", "tap-a2", "tag"}), "201");
  EXPECT_EQ(vsctl({"get", "port", "tap-a2", "_uuid"}), port_before);
  EXPECT_EQ(vsctl({"get", "port", "tap-a0", "_uuid"}), other_port_before);
  EXPECT_TRUE(matches(vm, client->owned()->at("vm-1")));
}

TEST_F(OvsdbSwitchTest, ChangingRatesAndAddressesUpdatesRowsInPlace) {
  auto client = connect();
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  Vm vm = three_interface_vm();
  ASSERT_TRUE(install(*client, vm));
  std::string port_before = vsctl({"get", "port", "tap-a0", "_uuid"});

  vm.interfaces[0].egress_max_rate_bps = 0;  // QoS row goes away
  vm.interfaces[0].ips = {"10.0.0.6"};
  vm.interfaces[0].external_ids = {{"color", "green"}, {"tier", "web"}};
  vm.interfaces[1].egress_max_rate_bps = 7'000;  // QoS row appears
  vm.interfaces[1].ingress_policing_rate_kbps = 50;
  ASSERT_TRUE(install(*client, vm));

  EXPECT_EQ(vsctl({"get", "port", "tap-a0", "_uuid"}), port_before);
  EXPECT_EQ(vsctl({"get", "port", "tap-a0", "qos"}), "[]");
  std::string qos = vsctl({"get", "port", "tap-a1", "qos"});
  EXPECT_EQ(vsctl({"get", "qos", qos, "other_config:max-rate"}), "\"7000\"");
  EXPECT_EQ(vsctl({"--bare", "--columns=_uuid", "list", "qos"}), qos);
  EXPECT_TRUE(matches(vm, client->owned()->at("vm-1")));
  auto fresh = read_owned(*client);
  ASSERT_TRUE(fresh);
  EXPECT_TRUE(matches(vm, fresh->at("vm-1")));
}

TEST_F(OvsdbSwitchTest, DroppingAnInterfaceFromTheConfigRemovesItsRows) {
  auto client = connect();
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  Vm vm = three_interface_vm();
  ASSERT_TRUE(install(*client, vm));

  vm.interfaces.erase(vm.interfaces.begin());  // eth0 had the QoS row
  ASSERT_TRUE(install(*client, vm));

  EXPECT_EQ(vsctl({"list-ports", "br-int"}), "tap-a1\ntap-a2");
  EXPECT_EQ(vsctl({"--bare", "--columns=_uuid", "list", "qos"}), "");
  EXPECT_TRUE(matches(vm, client->owned()->at("vm-1")));
}

TEST_F(OvsdbSwitchTest, RemoveDeletesOnlyStewardRows) {
  ASSERT_TRUE(sandbox_->add_foreign_port("foreign0"));
  auto foreign_qos = sandbox_->add_foreign_qos();
  ASSERT_TRUE(foreign_qos) << foreign_qos.error().message;
  auto client = connect();
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  ASSERT_TRUE(install(*client, three_interface_vm()));

  ASSERT_TRUE(remove(*client, "vm-1"));

  EXPECT_FALSE(client->owned()->contains("vm-1"));
  EXPECT_EQ(vsctl({"list-ports", "br-int"}), "foreign0");
  EXPECT_EQ(vsctl({"--bare", "--columns=_uuid", "list", "qos"}), *foreign_qos);
  EXPECT_EQ(vsctl({"--bare", "--columns=name", "list", "interface"}).find("tap-a"),
            std::string::npos);
}

TEST_F(OvsdbSwitchTest, RemovingAVmWithNothingOwnedSucceedsWithoutATransaction) {
  auto client = connect();
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  auto size_before = database_size();

  EXPECT_TRUE(remove(*client, "vm-unknown"));

  EXPECT_EQ(database_size(), size_before);
}

TEST_F(OvsdbSwitchTest, PortNameOfAForeignPortIsAConflictAndChangesNothing) {
  ASSERT_TRUE(sandbox_->add_foreign_port("tap-a1"));
  auto client = connect();
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();

  Status status = install(*client, three_interface_vm());

  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kConflict) << status.error().message;
  EXPECT_NE(status.error().message.find("s1"), std::string::npos) << status.error().message;
  EXPECT_NE(status.error().message.find("tap-a1"), std::string::npos) << status.error().message;
  EXPECT_EQ(vsctl({"list-ports", "br-int"}), "tap-a1");
  EXPECT_EQ(vsctl({"--bare", "--columns=_uuid", "list", "qos"}), "");
  EXPECT_EQ(vsctl({"get", "port", "tap-a1", "external_ids"}), "{created-by=test}");
}

TEST_F(OvsdbSwitchTest, DeviceOfAnotherStewardVmIsAConflict) {
  auto client = connect();
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  ASSERT_TRUE(install(*client, three_interface_vm("vm-1", "tap-a")));

  Status status = install(*client, three_interface_vm("vm-2", "tap-a"));

  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kConflict) << status.error().message;
}

TEST_F(OvsdbSwitchTest, ManyVmsInstalledAtOnceArePipelined) {
  auto client = connect();
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  constexpr int kVms = 40;
  int completed = 0;
  int failed = 0;
  for (int i = 0; i < kVms; ++i) {
    Vm vm = three_interface_vm(fmt::format("vm-{}", i), fmt::format("t{}-", i));
    client->install(vm, [&](Status status) {
      completed++;
      failed += status ? 0 : 1;
    });
    // The same VM again, queued behind the first: must plan from the updated rows.
    client->install(vm, [&](Status status) {
      completed++;
      failed += status ? 0 : 1;
    });
  }
  ASSERT_TRUE(run_io_until(io_, [&] { return completed == 2 * kVms; }));
  EXPECT_EQ(failed, 0);
  EXPECT_EQ(client->owned()->size(), static_cast<std::size_t>(kVms));
  std::string ports = vsctl({"list-ports", "br-int"});
  EXPECT_EQ(std::count(ports.begin(), ports.end(), '\n') + 1, 3 * kVms);
}

TEST_F(OvsdbSwitchTest, ListenerSeesChangesMadeByOthers) {
  auto client = connect();
  int notifications = 0;
  client->set_listener([&] { notifications++; });
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  Vm vm = three_interface_vm();
  ASSERT_TRUE(install(*client, vm));
  int before = notifications;

  vsctl({"set", "port", "tap-a2", "tag=999"});

  ASSERT_TRUE(run_io_until(io_, [&] { return notifications > before; }));
  ASSERT_TRUE(run_io_until(io_, [&] { return !matches(vm, client->owned()->at("vm-1")); }));
  EXPECT_EQ(client->owned()->at("vm-1")[2].config.vlan, 999);
  // Installing again repairs the drift.
  ASSERT_TRUE(install(*client, vm));
  EXPECT_EQ(vsctl({"get", "port", "tap-a2", "tag"}), "200");
}

TEST_F(OvsdbSwitchTest, MissingBridgeKeepsTheSwitchNotReadyUntilItAppears) {
  auto client = connect(fast_options(), "br-later");
  ASSERT_TRUE(run_io_until(io_, [&] {
    return client->state() == SwitchState::kConnecting && !client->last_error().empty() &&
           client->last_error().find("not found") != std::string::npos;
  }));
  EXPECT_EQ(client->last_error(), "bridge br-later not found on switch s1");
  Status refused = install(*client, three_interface_vm());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnavailable);

  vsctl({"add-br", "br-later"});

  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  EXPECT_TRUE(install(*client, three_interface_vm()));
}

TEST_F(OvsdbSwitchTest, StoppedServerMeansDisconnectedAndInstallFailsUnavailable) {
  auto client = connect();
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();

  ASSERT_TRUE(sandbox_->stop());

  ASSERT_TRUE(run_io_until(io_, [&] { return client->state() == SwitchState::kDisconnected; }));
  EXPECT_EQ(client->owned(), nullptr);
  Status status = install(*client, three_interface_vm());
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(status.error().message.find("switch s1"), std::string::npos) << status.error().message;
  auto rows = read_owned(*client);
  ASSERT_FALSE(rows);
  EXPECT_EQ(rows.error().code, ErrorCode::kUnavailable);
}

TEST_F(OvsdbSwitchTest, RestartedServerIsReconnectedAndReadyAgain) {
  auto client = connect();
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  Vm vm = three_interface_vm();
  ASSERT_TRUE(install(*client, vm));
  ASSERT_TRUE(sandbox_->stop());
  ASSERT_TRUE(run_io_until(io_, [&] { return client->state() == SwitchState::kDisconnected; }));

  ASSERT_TRUE(sandbox_->start());

  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  ASSERT_NE(client->owned(), nullptr);
  ASSERT_TRUE(client->owned()->contains("vm-1"));
  EXPECT_TRUE(matches(vm, client->owned()->at("vm-1")));
  vm.interfaces[1].trunks = {10, 20};
  EXPECT_TRUE(install(*client, vm));
}

TEST_F(OvsdbSwitchTest, InstallInFlightWhenServerDiesFailsUnavailable) {
  auto client = connect();
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  ASSERT_EQ(::kill(sandbox_->server_pid(), SIGSTOP), 0);  // requests now go unanswered
  std::optional<Status> result;
  client->install(three_interface_vm(), [&](Status status) { result = std::move(status); });
  ASSERT_FALSE(run_io_until(
      io_, [&] { return result.has_value(); }, std::chrono::milliseconds(50)));

  ASSERT_EQ(::kill(sandbox_->server_pid(), SIGKILL), 0);

  ASSERT_TRUE(run_io_until(io_, [&] { return result.has_value(); }));
  ASSERT_FALSE(*result);
  EXPECT_EQ(result->error().code, ErrorCode::kUnavailable);
  EXPECT_NE(result->error().message.find("switch s1"), std::string::npos)
      << result->error().message;
  ASSERT_TRUE(sandbox_->stop());
}

TEST_F(OvsdbSwitchTest, PlainMonitorWorksWhenConditionalMonitorIsOff) {
  OvsdbSwitchOptions options = fast_options();
  options.conditional_monitor = false;
  ASSERT_TRUE(sandbox_->add_foreign_port("foreign0"));
  auto client = connect(options);
  ASSERT_TRUE(wait_ready(*client)) << client->last_error();
  EXPECT_FALSE(client->conditional_monitor_in_use());
  Vm vm = three_interface_vm();

  ASSERT_TRUE(install(*client, vm));
  vm.interfaces[0].vlan = 101;
  ASSERT_TRUE(install(*client, vm));

  EXPECT_TRUE(matches(vm, client->owned()->at("vm-1")));
  EXPECT_EQ(client->owned()->size(), 1u);
  ASSERT_TRUE(remove(*client, "vm-1"));
  EXPECT_TRUE(client->owned()->empty());
  EXPECT_EQ(vsctl({"list-ports", "br-int"}), "foreign0");
}

TEST_F(OvsdbSwitchTest, CallbacksNeverRunInsideTheCallThatRegisteredThem) {
  auto client = connect();
  bool inside = true;
  bool ran_inside = false;
  client->install(three_interface_vm(), [&](Status) { ran_inside = inside; });
  inside = false;
  ASSERT_TRUE(wait_ready(*client));
  inside = true;
  client->remove("vm-unknown", [&](Status) { ran_inside = ran_inside || inside; });
  client->install(three_interface_vm(), [&](Status) { ran_inside = ran_inside || inside; });
  inside = false;
  ASSERT_TRUE(run_io_until(io_, [&] { return client->owned()->contains("vm-1"); }));
  EXPECT_FALSE(ran_inside);
}

}  // namespace
}  // namespace steward::controller
