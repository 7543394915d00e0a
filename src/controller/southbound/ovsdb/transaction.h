// The OVSDB requests Steward sends, built as pure functions of the configuration and the owned
// rows last seen (so tests and benchmarks can build them without a switch), and the checks of
// their replies. The row layout they write is described in ovsdb_switch.h.
#pragma once

#include "controller/model/model.h"
#include "controller/southbound/switch.h"
#include "core/result.h"

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace steward::ovsdb {

namespace json = boost::json;

// Params of `monitor_cond` (conditional: the server sends only the spec's Bridge and the rows
// marked steward-owner=<owner>, as `update2`) or of plain RFC 7047 `monitor` (every row of the
// four tables, as `update`; the cache filters).
json::array monitor_params(std::string_view monitor_id, const std::string& bridge,
                           const std::string& owner, bool conditional);

// Params of a `transact` that selects the same rows as the monitor, in the table order of
// layout.h; its result feeds MonitorCache::load_select.
json::array select_owned_params(const std::string& bridge, const std::string& owner);

// One transaction ready to send, and what its reply must show to count as committed.
struct PlannedTransaction {
  json::array params;                    // ["Open_vSwitch", op, ...]: the `transact` params
  std::vector<std::size_t> counted_ops;  // ops (0-based) whose reply must report count 1
  int inserted = 0;                      // interfaces created
  int updated = 0;                       // interfaces changed in place
  int removed = 0;                       // interfaces deleted
  bool empty() const { return inserted + updated + removed == 0; }
};

// The VM id owning each Steward device (port name) of `owned`, as MonitorCache::vm_by_device()
// keeps it. Port names are unique on a switch, so one lookup answers what a scan of every
// owned row would.
using DeviceOwners = std::unordered_map<std::string, std::string>;

// The transaction that makes the bridge hold exactly `vm`'s interfaces, given the owned rows
// last seen (`owned`, all VMs) and the bridge's row uuid: inserts what is missing, updates rows
// that differ in place, removes owned interfaces of `vm` that are no longer configured. Empty
// when the switch already matches. Fails with kInvalidArgument when the configuration cannot
// be written (duplicate devices, VLAN out of range, reserved external_ids keys, ...) and with
// kConflict when a device is already a Steward port of another VM. `device_owners`, when
// given, must describe `owned`; it makes that check one lookup per interface instead of a scan
// of every owned row (which, once per install, grows quadratic with the VMs on the switch).
Result<PlannedTransaction> plan_install(const controller::Vm& vm, const std::string& owner,
                                        const std::string& bridge_uuid,
                                        const controller::OwnedRows& owned,
                                        const DeviceOwners* device_owners = nullptr);

// The transaction that removes every owned interface of `vm_id` (Port and Interface through the
// Bridge's `ports`, QoS rows explicitly). Empty when nothing is owned.
PlannedTransaction plan_remove(const std::string& vm_id, const std::string& bridge_uuid,
                               const controller::OwnedRows& owned);

// Deletes the VM's owned QoS rows that no owned port refers to any more (entries of `owned`
// with only qos_uuid set). Apart from installs and removes: a port Steward does not own that
// still refers to such a row makes this transaction fail, and only this one.
PlannedTransaction plan_orphan_cleanup(const std::string& vm_id,
                                       const controller::OwnedRows& owned);

// How a committed transaction went: kStale when an update matched no row, i.e. the rows changed
// since they were read and only part of the plan took effect; plan again from fresh rows.
enum class Outcome { kCommitted, kStale };

// Checks a `transact` result against its plan: every op succeeded and every counted op matched
// one row. Fails with kConflict when a name is already used by a row that is not Steward's
// (index constraint violation) and kInternal for any other rejection or a malformed reply.
Result<Outcome> check_transact_reply(const PlannedTransaction& plan, const json::value& result);

}  // namespace steward::ovsdb
