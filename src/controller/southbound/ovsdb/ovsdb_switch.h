// OvsdbSwitch: the SwitchClient for an Open vSwitch, spoken to over OVSDB (RFC 7047) on one
// Connection. It monitors the rows Steward owns, keeps them in a MonitorCache, and turns
// install/remove into one checked `transact` each.
//
// Row layout on the switch, for each interface of a VM (all in the spec's bridge):
//   Port       name = device; interfaces = [the Interface]; tag = vlan (when set);
//              trunks = trunk VLANs; qos = the QoS row when egress_max_rate_bps > 0;
//              external_ids = {steward-owner: <owner>, steward-vm: <vm id>,
//                              steward-iface: <interface id>}
//   Interface  name = device; type = "" (a system device: the hypervisor's tap);
//              ingress_policing_rate / ingress_policing_burst;
//              external_ids = the three markers above, plus attached-mac = mac,
//                             iface-id = interface id, vm-id = vm id,
//                             steward-ips = the ips joined by "," in the configured order,
//                             plus the interface's own extra external_ids
//   QoS        type = linux-htb; other_config = {max-rate: "<bps>"}; external_ids = markers
// Bridge.ports holds the Port. Port and Interface rows are garbage-collected by the server once
// no Bridge refers to them; QoS is a root table, so Steward deletes its QoS rows explicitly (in
// the same transaction that drops the Port, after clearing Port.qos). Reading back gives the
// configuration exactly as written: trunks ascending, ips in order, mac as written, extra
// external_ids = every key but the reserved ones (layout.h).
//
// Operations on one VM run one at a time, each planned from the cache once the previous one's
// reply arrived (ovsdb-server sends a transaction's updates before its reply, so the cache is
// current then); operations on different VMs are pipelined. A transaction whose update matched
// no row (the cache was stale) is planned again once; a second miss fails with kUnavailable.
//
// Ownership: owned by the controller; holds its Connection. The listener must not destroy the
// client from inside the call. Threading: the io_context's thread only, as SwitchClient says.
// Failures: see SwitchClient; every error message names the switch. A malformed update from the
// server drops the session (kUnavailable for what was in flight) and starts a fresh one.
#pragma once

#include "controller/southbound/ovsdb/cache.h"
#include "controller/southbound/ovsdb/connection.h"
#include "controller/southbound/ovsdb/transaction.h"
#include "controller/southbound/switch.h"

#include <boost/asio/io_context.hpp>

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>

namespace spdlog {
class logger;
}

namespace steward::controller {

struct OvsdbSwitchOptions {
  ovsdb::ConnectionOptions connection;
  // Use the OVS `monitor_cond` extension (the server filters rows). Without it, or when the
  // server does not know the method, plain RFC 7047 `monitor` is used.
  bool conditional_monitor = true;
};

class OvsdbSwitch final : public SwitchClient {
 public:
  // `owner_name` is written as steward-owner on every row and selects the rows this client may
  // change. Nothing happens until start().
  OvsdbSwitch(boost::asio::io_context& io, const Switch& spec, std::string owner_name,
              OvsdbSwitchOptions options = {});
  ~OvsdbSwitch() override;
  OvsdbSwitch(const OvsdbSwitch&) = delete;
  OvsdbSwitch& operator=(const OvsdbSwitch&) = delete;

  const Switch& spec() const override { return spec_; }
  SwitchState state() const override { return state_; }
  std::string last_error() const override { return last_error_; }
  void start() override;
  void stop() override;
  void install(const Vm& vm, StatusCallback done) override;
  void remove(const std::string& vm_id, StatusCallback done) override;
  const OwnedRows* owned() const override;
  void read_owned(OwnedRowsCallback done) override;
  void set_listener(std::function<void()> on_change) override { listener_ = std::move(on_change); }

  // Whether the session uses `monitor_cond` (false after falling back to `monitor`).
  bool conditional_monitor_in_use() const { return conditional_in_use_; }

 private:
  struct Operation {
    uint64_t sequence = 0;
    bool remove = false;
    Vm vm;  // for remove only vm.id is set
    StatusCallback done;
    int attempts = 0;
    ovsdb::PlannedTransaction plan;
  };

  void on_connected();
  void on_disconnected(const Error& reason);
  void on_notification(std::string_view method, boost::json::value& params);
  void send_monitor(bool conditional);
  void on_monitor_reply(uint64_t session, bool conditional, Result<boost::json::value> reply);
  bool update_readiness();
  bool set_state(SwitchState state, std::string error);
  void notify();

  void enqueue(Operation operation);
  void run_next(const std::string& vm_id);
  Result<ovsdb::PlannedTransaction> plan(const Operation& operation) const;
  void on_transact_reply(const std::string& vm_id, uint64_t sequence,
                         Result<boost::json::value> reply);
  // Deletes owned QoS rows of `vm_id` left without their port, in a transaction of their own.
  void clean_orphans(const std::string& vm_id);
  void finish_front(const std::string& vm_id, Status status);
  void fail_all(const Error& error);
  void complete(StatusCallback done, Status status);
  Error not_ready() const;

  boost::asio::io_context& io_;
  Switch spec_;
  std::string owner_;
  OvsdbSwitchOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<ovsdb::Connection> connection_;
  ovsdb::MonitorCache cache_;
  SwitchState state_ = SwitchState::kDisconnected;
  std::string last_error_ = "not started";
  std::function<void()> listener_;
  bool monitoring_ = false;
  bool conditional_in_use_ = true;
  uint64_t session_ = 0;
  uint64_t next_sequence_ = 1;
  std::unordered_map<std::string, std::deque<Operation>> queues_;
  // Handlers posted or registered with `this` check this token, so none runs after destruction.
  std::shared_ptr<int> lifetime_ = std::make_shared<int>(0);
};

}  // namespace steward::controller
