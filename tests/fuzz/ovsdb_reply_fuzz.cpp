// Fuzzes what an OVSDB server (or anything pretending to be one) can send Steward: the bytes go
// through the stream framing in chunks (the first byte picks the chunk size), each message is
// classified, and updates, monitor replies, select results and transact results are fed to the
// parsers that consume them. Besides crashes and sanitizer reports, it traps when the owned-rows
// view breaks its contract: a row filed under the wrong VM, unsorted trunks, or a view that
// Steward's own planner would not reproduce (installing exactly what was read must be a no-op
// or be refused as invalid, never a transaction).
#include "controller/southbound/ovsdb/cache.h"
#include "controller/southbound/ovsdb/message.h"
#include "controller/southbound/ovsdb/transaction.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace {

namespace json = boost::json;
using steward::controller::OwnedRows;
using steward::controller::Vm;
using steward::ovsdb::MonitorCache;

constexpr std::size_t kMaxMessage = 1 << 20;

void check_view(const OwnedRows& owned) {
  for (const auto& [vm_id, rows] : owned) {
    Vm vm;
    vm.id = vm_id;
    int ports = 0;
    for (const auto& row : rows) {
      if (row.vm_id != vm_id || !std::is_sorted(row.config.trunks.begin(), row.config.trunks.end()))
        __builtin_trap();
      // An owned QoS row no port refers to shows as an entry with only its QoS uuid; it is not
      // an interface, and plan_orphan_cleanup deletes it, not plan_install or plan_remove.
      if (row.port_uuid.empty()) {
        if (row.qos_uuid.empty()) __builtin_trap();
        continue;
      }
      vm.interfaces.push_back(row.config);
      ports++;
    }
    // A QoS row without a usable max-rate reads as "no rate": the planner drops such a row.
    bool useless_qos = std::any_of(rows.begin(), rows.end(), [](const auto& row) {
      return !row.port_uuid.empty() && !row.qos_uuid.empty() && row.config.egress_max_rate_bps == 0;
    });
    auto again = steward::ovsdb::plan_install(vm, "owner", "bridge", owned);
    if (again && !again->empty() && !useless_qos) __builtin_trap();
    auto removal = steward::ovsdb::plan_remove(vm_id, "bridge", owned);
    if (removal.removed != ports) __builtin_trap();
  }
}

const steward::ovsdb::PlannedTransaction& sample_plan() {
  static const steward::ovsdb::PlannedTransaction plan = [] {
    steward::controller::Interface interface;
    interface.id = "eth0";
    interface.device = "tap0";
    interface.vlan = 5;
    interface.egress_max_rate_bps = 10;
    Vm vm;
    vm.id = "vm";
    vm.interfaces = {interface};
    return steward::ovsdb::plan_install(vm, "owner", "bridge", {}).value();
  }();
  return plan;
}

void on_reply(const json::value& result) {
  (void)steward::ovsdb::check_transact_reply(sample_plan(), result);
  MonitorCache rows("br-int", "owner");
  if (result.is_array()) {
    if (rows.load_select(result)) check_view(rows.owned());
  } else if (rows.reset(result, MonitorCache::Format::kUpdate2)) {
    check_view(rows.owned());
  }
}

void on_message(MonitorCache& cache, json::value& value) {
  auto message = steward::ovsdb::classify(value);
  if (!message) return;
  switch (message->kind) {
    case steward::ovsdb::Message::Kind::kRequest:
      (void)steward::ovsdb::serialize_reply(*message->id, *message->params);
      return;
    case steward::ovsdb::Message::Kind::kReply:
      if (message->result != nullptr) on_reply(*message->result);
      return;
    case steward::ovsdb::Message::Kind::kNotification:
      break;
  }
  const json::array& params = message->params->get_array();
  if (params.size() != 2 || (message->method != "update" && message->method != "update2")) return;
  auto format =
      message->method == "update2" ? MonitorCache::Format::kUpdate2 : MonitorCache::Format::kUpdate;
  if (!cache.apply(params[1], format)) {
    cache.clear();  // what the switch client does: drop the session and start afresh
    return;
  }
  check_view(cache.owned());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::size_t chunk = data[0] % 64 == 0 ? size : data[0] % 64;
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);

  steward::ovsdb::MessageReader reader(kMaxMessage);
  MonitorCache cache("br-int", "owner");
  while (!bytes.empty()) {
    std::string_view piece = bytes.substr(0, chunk);
    bytes.remove_prefix(piece.size());
    auto status = reader.feed(piece, [&](json::value&& value) {
      on_message(cache, value);
      return true;
    });
    if (!status) break;
  }
  return 0;
}
