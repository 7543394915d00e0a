// ControllerFixture: the GoogleTest fixture of the controller's end-to-end tests. Each test gets
// three real ovsdb-server switches sw-1..sw-3 (OvsSandbox, bridge br-int), hosts
// compute-1..compute-3 attached to them, and the real daemon (ControllerProcess) with those
// switches and hosts registered over its HTTP API. Helpers speak to the daemon over HTTP and
// read the switches with ovs-vsctl (SwitchRows), never through the daemon's own client.
//
// TearDown stops the daemon with SIGTERM and fails the test when its log holds a sanitizer report;
// when a test failed, it prints the tail of the daemon's log before everything is removed.
// Waiting is always on a condition with a deadline (eventually()), never a fixed sleep.
#pragma once

#include "support/controller_process.h"
#include "support/ovs_sandbox.h"
#include "support/switch_rows.h"

#include <gtest/gtest.h>
#include <boost/json/value.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace steward::testing {

class ControllerFixture : public ::testing::Test {
 public:
  static constexpr int kSwitchCount = 3;
  static constexpr std::chrono::milliseconds kDeadline{15'000};

  // The daemon's answer to one request; `body` is null when the answer is empty or not JSON.
  struct Answer {
    int status = 0;
    boost::json::value body;
    std::string text;
    // body.error.message, or "" when the answer is no error.
    std::string error_message() const;
  };

  // Host, switch and sandbox n (1-based): compute-n attaches to sw-n, run by sandbox n.
  static std::string host(int n);
  static std::string switch_id(int n);
  // An interface description for POST /v1/vms.
  static boost::json::object interface(const std::string& id, const std::string& device,
                                       const std::string& mac);

 protected:
  OvsSandbox& sandbox(int n) { return *sandboxes_.at(n - 1); }
  ControllerProcess& controller() { return *controller_; }

  void SetUp() override;
  void TearDown() override;
  // Options of the daemon the fixture starts; override to change timings.
  virtual ControllerProcess::Options controller_options() const { return {}; }

  // HTTP, with the daemon's token. A transport failure is a test failure (status 0).
  Answer call(const std::string& method, const std::string& target, const std::string& body = {});
  Answer get(const std::string& target) { return call("GET", target); }
  Answer post(const std::string& target, const boost::json::value& body);

  // Registers `vm` (POST /v1/vms, expecting 201) and waits until its host's switch holds it.
  void add_vm(const boost::json::object& vm);
  // POST /v1/migrations?wait=<ms>; `phase` empty for a phase-less migration.
  Answer migrate(const std::string& vm, const std::string& source, const std::string& target,
                 const std::string& phase = "",
                 std::chrono::milliseconds wait = std::chrono::milliseconds(10'000));
  // POST /v1/notifications/nova?wait=<ms>.
  Answer notify_nova(const boost::json::value& notification,
                     std::chrono::milliseconds wait = std::chrono::milliseconds(10'000));
  boost::json::value migration(int64_t id);
  // The migration's state, "" when it cannot be read.
  std::string state_of(int64_t id);
  // The VM's recorded host (GET /v1/vms/{id}).
  std::string host_of(const std::string& vm);
  // GET /v1/migrations?vm=<vm>.
  boost::json::array migrations_of(const std::string& vm);
  // GET /v1/verify.
  boost::json::value verify();

  // The rows of switch n, read with ovs-vsctl. A read failure is a test failure (empty rows).
  SwitchRows rows(int n);
  // Switch numbers whose Steward-owned rows include `vm`.
  std::vector<int> switches_holding(const std::string& vm);
  // Whether `vm` has exactly `interfaces` owned ports on switch n and none on the others.
  bool only_on(const std::string& vm, int n, size_t interfaces);

  // Polls `condition` (every few ms) until it holds or `timeout` passes.
  bool eventually(const std::function<bool()>& condition,
                  std::chrono::milliseconds timeout = kDeadline);
  // Until GET /v1/migrations/{id} shows `state`.
  bool reaches_state(int64_t id, const std::string& state,
                     std::chrono::milliseconds timeout = kDeadline);

  std::vector<std::unique_ptr<OvsSandbox>> sandboxes_;
  std::unique_ptr<ControllerProcess> controller_;
};

// A readable rendering of a JSON value for failure messages.
std::string to_text(const boost::json::value& value);

}  // namespace steward::testing
