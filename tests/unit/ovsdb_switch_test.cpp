// OvsdbSwitch against a scripted peer, for what a real ovsdb-server will not do on demand: lack
// monitor_cond, answer with a stale count, reject a transaction, send a malformed update.
#include "controller/southbound/ovsdb/ovsdb_switch.h"

#include "support/ovs_sandbox.h"

#include <gtest/gtest.h>
#include <boost/json/serialize.hpp>

#include <stdlib.h>

#include <filesystem>
#include <optional>

namespace steward::controller {
namespace {

namespace json = boost::json;
using steward::testing::run_io_until;
using steward::testing::ScriptedOvsdbPeer;

// One owned interface (vm-1/eth0 on tap0, VLAN 100) in the bridge, as monitor_cond reports it.
constexpr const char* kInitialRows = R"({
  "Bridge": {"b1": {"initial": {"name": "br-int", "ports": ["uuid", "p1"]}}},
  "Port": {"p1": {"initial": {"name": "tap0", "interfaces": ["uuid", "i1"], "tag": 100,
      "external_ids": ["map", [["steward-owner", "me"], ["steward-vm", "vm-1"],
                               ["steward-iface", "eth0"]]]}}},
  "Interface": {"i1": {"initial": {"name": "tap0",
      "external_ids": ["map", [["steward-owner", "me"], ["steward-vm", "vm-1"],
                               ["steward-iface", "eth0"], ["iface-id", "eth0"],
                               ["vm-id", "vm-1"]]]}}}
})";

Vm vm_on_vlan(int vlan) {
  Vm vm;
  vm.id = "vm-1";
  Interface interface;
  interface.id = "eth0";
  interface.device = "tap0";
  interface.vlan = vlan;
  vm.interfaces = {interface};
  return vm;
}

class OvsdbSwitchScriptedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path().string() + "/steward-sw-XXXXXX";
    ASSERT_NE(::mkdtemp(dir_.data()), nullptr);
    peer_ = std::make_unique<ScriptedOvsdbPeer>(io_, dir_ + "/db.sock");
    OvsdbSwitchOptions options;
    options.connection.backoff_initial = std::chrono::milliseconds(10);
    options.connection.backoff_max = std::chrono::milliseconds(50);
    options.connection.echo_interval = std::chrono::milliseconds(0);
    client_ = std::make_unique<OvsdbSwitch>(
        io_, Switch{"s1", "unix:" + dir_ + "/db.sock", "br-int", {}}, "me", options);
    client_->start();
  }
  void TearDown() override {
    client_.reset();
    peer_.reset();
    std::filesystem::remove_all(dir_);
  }

  // The `n`th request (0-based) with `method` on the current connection, once it arrived.
  std::optional<json::value> request(std::string_view method, std::size_t n = 0) {
    std::optional<json::value> found;
    run_io_until(io_, [&] {
      std::size_t seen = 0;
      for (json::value& message : peer_->received()) {
        const json::value* name = message.as_object().if_contains("method");
        if (name && name->is_string() && name->get_string() == method && seen++ == n) {
          found = std::move(message);
          return true;
        }
      }
      return false;
    });
    return found;
  }
  std::size_t count(std::string_view method) {
    std::size_t seen = 0;
    for (json::value& message : peer_->received()) {
      const json::value* name = message.as_object().if_contains("method");
      seen += name && name->is_string() && name->get_string() == method;
    }
    return seen;
  }

  void become_ready() {
    auto monitor = request("monitor_cond");
    ASSERT_TRUE(monitor);
    peer_->reply(*monitor, kInitialRows);
    ASSERT_TRUE(run_io_until(io_, [&] { return client_->state() == SwitchState::kReady; }));
  }

  std::shared_ptr<std::optional<Status>> install(const Vm& vm) {
    auto result = std::make_shared<std::optional<Status>>();
    client_->install(vm, [result](Status status) { *result = std::move(status); });
    return result;
  }

  boost::asio::io_context io_;
  std::string dir_;
  std::unique_ptr<ScriptedOvsdbPeer> peer_;
  std::unique_ptr<OvsdbSwitch> client_;
};

TEST_F(OvsdbSwitchScriptedTest, FallsBackToPlainMonitorWhenMonitorCondIsUnknown) {
  auto conditional = request("monitor_cond");
  ASSERT_TRUE(conditional);
  peer_->send(fmt::format(R"({{"id":{},"result":null,"error":"unknown method"}})",
                          json::serialize(conditional->at("id"))));

  auto plain = request("monitor");
  ASSERT_TRUE(plain);
  EXPECT_FALSE(plain->at("params").at(2).at("Port").as_object().contains("where"));
  peer_->reply(*plain, R"({"Bridge": {"b1": {"new": {"name": "br-int", "ports": ["set", []]}}}})");

  ASSERT_TRUE(run_io_until(io_, [&] { return client_->state() == SwitchState::kReady; }));
  EXPECT_FALSE(client_->conditional_monitor_in_use());
}

TEST_F(OvsdbSwitchScriptedTest, AStaleCountIsPlannedAgainOnce) {
  become_ready();
  auto result = install(vm_on_vlan(200));

  auto first = request("transact");
  ASSERT_TRUE(first);
  peer_->reply(*first, R"([{"count": 0}, {}])");
  auto second = request("transact", 1);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->at("params"), first->at("params"));
  peer_->reply(*second, R"([{"count": 1}, {}])");

  ASSERT_TRUE(run_io_until(io_, [&] { return result->has_value(); }));
  EXPECT_TRUE(**result);
}

TEST_F(OvsdbSwitchScriptedTest, AStaleCountTwiceFailsUnavailable) {
  become_ready();
  auto result = install(vm_on_vlan(200));
  for (std::size_t attempt = 0; attempt < 2; ++attempt) {
    auto transact = request("transact", attempt);
    ASSERT_TRUE(transact);
    peer_->reply(*transact, R"([{"count": 0}, {}])");
  }
  ASSERT_TRUE(run_io_until(io_, [&] { return result->has_value(); }));
  ASSERT_FALSE(**result);
  EXPECT_EQ((*result)->error().code, ErrorCode::kUnavailable);
  EXPECT_NE((*result)->error().message.find("kept changing"), std::string::npos);
  EXPECT_EQ(count("transact"), 2u);
}

TEST_F(OvsdbSwitchScriptedTest, ARejectedTransactionIsInternal) {
  become_ready();
  auto result = install(vm_on_vlan(200));
  auto transact = request("transact");
  ASSERT_TRUE(transact);
  peer_->reply(*transact, R"([{"count": 1}, {},
      {"error": "referential integrity violation", "details": "cannot delete"}])");
  ASSERT_TRUE(run_io_until(io_, [&] { return result->has_value(); }));
  ASSERT_FALSE(**result);
  EXPECT_EQ((*result)->error().code, ErrorCode::kInternal);
  EXPECT_NE((*result)->error().message.find("switch s1: install vm vm-1"), std::string::npos)
      << (*result)->error().message;
}

TEST_F(OvsdbSwitchScriptedTest, OperationsOnOneVmRunOneAtATime) {
  become_ready();
  auto first = install(vm_on_vlan(200));
  auto second = install(vm_on_vlan(300));
  auto transact = request("transact");
  ASSERT_TRUE(transact);
  EXPECT_FALSE(run_io_until(
      io_, [&] { return count("transact") > 1; }, std::chrono::milliseconds(50)));

  // The server reports the first change before its reply, as ovsdb-server does.
  peer_->send(R"({"id":null,"method":"update2","params":["steward",
      {"Port": {"p1": {"modify": {"tag": 200}}}}]})");
  peer_->reply(*transact, R"([{"count": 1}, {}])");

  auto next = request("transact", 1);
  ASSERT_TRUE(next);
  EXPECT_EQ(next->at("params").at(1).at("row").at("tag"), 300);
  peer_->reply(*next, R"([{"count": 1}, {}])");
  ASSERT_TRUE(run_io_until(io_, [&] { return first->has_value() && second->has_value(); }));
  EXPECT_TRUE(**first);
  EXPECT_TRUE(**second);
}

TEST_F(OvsdbSwitchScriptedTest, AMalformedUpdateDropsTheSessionAndStartsAfresh) {
  become_ready();
  int changes = 0;
  client_->set_listener([&] { changes++; });

  peer_->send(R"({"id":null,"method":"update2","params":["steward", ["not", "tables"]]})");

  ASSERT_TRUE(run_io_until(io_, [&] { return peer_->accepted() == 2; }));
  EXPECT_NE(client_->state(), SwitchState::kReady);
  EXPECT_GT(changes, 0);
  become_ready();
}

TEST_F(OvsdbSwitchScriptedTest, DestroyingTheSwitchCompletesPendingOperations) {
  become_ready();
  auto result = install(vm_on_vlan(200));
  ASSERT_TRUE(request("transact"));

  client_.reset();

  ASSERT_TRUE(run_io_until(io_, [&] { return result->has_value(); }));
  ASSERT_FALSE(**result);
  EXPECT_EQ((*result)->error().code, ErrorCode::kUnavailable);
}

TEST_F(OvsdbSwitchScriptedTest, StopCompletesPendingReadsAndReportsDisconnected) {
  become_ready();
  std::optional<Result<OwnedRows>> rows;
  client_->read_owned([&](Result<OwnedRows> read) { rows = std::move(read); });
  ASSERT_TRUE(request("transact"));

  client_->stop();

  ASSERT_TRUE(run_io_until(io_, [&] { return rows.has_value(); }));
  ASSERT_FALSE(*rows);
  EXPECT_EQ(rows->error().code, ErrorCode::kUnavailable);
  EXPECT_EQ(client_->state(), SwitchState::kDisconnected);
}

}  // namespace
}  // namespace steward::controller
