#include "controller/southbound/ovsdb/transaction.h"

#include "controller/southbound/ovsdb/datum.h"
#include "controller/southbound/ovsdb/layout.h"

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <set>

namespace steward::ovsdb {
namespace {

using controller::Interface;
using controller::ObservedInterface;
using controller::Vm;

constexpr int kMaxVlan = 4095;

// A "where" of one condition: [[column, function, value]]. Built by hand, because
// json::array{json::array{...}} is one level deep or two depending on the compiler (clang takes
// the single braced element as a copy, gcc as the one element of a new list).
json::array where_one(json::array condition) {
  json::array where;
  where.emplace_back(std::move(condition));
  return where;
}

json::array where_uuid(std::string_view uuid) {
  return where_one({"_uuid", "==", uuid_value(uuid)});
}

json::value owner_condition(const std::string& owner) {
  std::map<std::string, std::string> marker{{controller::kOwnerKey, owner}};
  return where_one({"external_ids", "includes", string_map_value(marker)});
}

json::value table_condition(Table table, const std::string& bridge, const std::string& owner) {
  if (table == Table::kBridge) return where_one({"name", "==", bridge});
  return owner_condition(owner);
}

json::array column_names(Table table, bool with_uuid) {
  json::array names;
  if (with_uuid) names.emplace_back("_uuid");
  for (const Column& column : monitored_columns(table))
    names.emplace_back(column.name);
  return names;
}

json::value int_set(const std::vector<int>& values) {
  std::set<int> sorted(values.begin(), values.end());
  json::array elements;
  for (int value : sorted)
    elements.emplace_back(value);
  return set_value(std::move(elements));
}

std::vector<int> sorted_unique(std::vector<int> values) {
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  return values;
}

std::string join_ips(const std::vector<std::string>& ips) {
  std::string joined;
  for (const std::string& ip : ips) {
    if (!joined.empty()) joined += ',';
    joined += ip;
  }
  return joined;
}

// --- validation ---------------------------------------------------------------------------

Status check_vlans(const Interface& interface) {
  auto bad = [](int vlan) { return vlan < 0 || vlan > kMaxVlan; };
  if (interface.vlan && bad(*interface.vlan))
    return Error::make(ErrorCode::kInvalidArgument, "interface {}: vlan {} is not in 0..4095",
                       interface.id, *interface.vlan);
  for (int trunk : interface.trunks) {
    if (bad(trunk))
      return Error::make(ErrorCode::kInvalidArgument, "interface {}: trunk {} is not in 0..4095",
                         interface.id, trunk);
  }
  return ok();
}

Status check_values(const Interface& interface) {
  if (interface.ingress_policing_rate_kbps < 0 || interface.ingress_policing_burst_kb < 0 ||
      interface.egress_max_rate_bps < 0)
    return Error::make(ErrorCode::kInvalidArgument, "interface {}: rates must not be negative",
                       interface.id);
  for (const std::string& ip : interface.ips) {
    if (ip.empty() || ip.find(',') != std::string::npos)
      return Error::make(ErrorCode::kInvalidArgument, "interface {}: invalid ip address '{}'",
                         interface.id, ip);
  }
  for (const auto& [key, value] : interface.external_ids) {
    if (is_reserved_key(key))
      return Error::make(ErrorCode::kInvalidArgument,
                         "interface {}: external_ids key '{}' is reserved for Steward",
                         interface.id, key);
  }
  return check_vlans(interface);
}

Status validate(const Vm& vm) {
  if (vm.id.empty()) return Error{ErrorCode::kInvalidArgument, "vm id is empty"};
  std::set<std::string_view> ids;
  std::set<std::string_view> devices;
  for (const Interface& interface : vm.interfaces) {
    if (interface.id.empty() || interface.device.empty())
      return Error::make(ErrorCode::kInvalidArgument, "vm {}: interface id and device are required",
                         vm.id);
    if (!ids.insert(interface.id).second || !devices.insert(interface.device).second)
      return Error::make(ErrorCode::kInvalidArgument,
                         "vm {}: interface {} (device {}) is configured twice", vm.id, interface.id,
                         interface.device);
    if (auto status = check_values(interface); !status) return status;
  }
  return ok();
}

Error owned_elsewhere(const std::string& device, const std::string& other_vm) {
  return Error::make(ErrorCode::kConflict,
                     "port {} is already Steward's for vm {}; remove it there first", device,
                     other_vm);
}

Status check_other_vms(const Vm& vm, const controller::OwnedRows& owned,
                       const DeviceOwners* device_owners) {
  if (device_owners != nullptr) {
    for (const Interface& wanted : vm.interfaces) {
      auto found = device_owners->find(wanted.device);
      if (found != device_owners->end() && found->second != vm.id)
        return owned_elsewhere(wanted.device, found->second);
    }
    return ok();
  }
  for (const auto& [other_vm, rows] : owned) {
    if (other_vm == vm.id) continue;
    for (const ObservedInterface& row : rows) {
      for (const Interface& wanted : vm.interfaces) {
        if (row.config.device == wanted.device) return owned_elsewhere(wanted.device, other_vm);
      }
    }
  }
  return ok();
}

// --- the transaction being built ----------------------------------------------------------

class Planner {
 public:
  Planner(std::string_view vm_id, std::string_view owner, std::string_view bridge_uuid)
      : vm_id_(vm_id), owner_(owner), bridge_uuid_(bridge_uuid) {
    plan_.params.emplace_back(kDatabase);
  }

  void insert(const Interface& wanted);
  void update(const ObservedInterface& seen, const Interface& wanted);
  void remove(const ObservedInterface& seen);
  void remove_orphan(const ObservedInterface& seen) {
    add_delete("QoS", seen.qos_uuid);
    plan_.removed++;
  }
  PlannedTransaction finish(std::string_view action);

 private:
  std::map<std::string, std::string> markers(const Interface& interface) const;
  std::map<std::string, std::string> interface_ids(const Interface& interface) const;
  json::object qos_row(const Interface& interface) const;
  json::object port_changes(const ObservedInterface& seen, const Interface& wanted);
  bool interface_differs(const Interface& seen, const Interface& wanted) const;
  std::string next_name(std::string_view prefix) { return fmt::format("{}{}", prefix, names_++); }
  void add(json::object op, bool counted);
  void add_insert(std::string_view table, const std::string& name, json::object row);
  void add_update(std::string_view table, std::string_view uuid, json::object row);
  void add_delete(std::string_view table, std::string_view uuid);

  std::string_view vm_id_;
  std::string_view owner_;
  std::string_view bridge_uuid_;
  PlannedTransaction plan_;
  json::array new_ports_;
  json::array old_ports_;
  int names_ = 0;
};

void Planner::add(json::object op, bool counted) {
  if (counted) plan_.counted_ops.push_back(plan_.params.size() - 1);
  plan_.params.emplace_back(std::move(op));
}

void Planner::add_insert(std::string_view table, const std::string& name, json::object row) {
  add({{"op", "insert"}, {"table", table}, {"uuid-name", name}, {"row", std::move(row)}}, false);
}

void Planner::add_update(std::string_view table, std::string_view uuid, json::object row) {
  add({{"op", "update"}, {"table", table}, {"where", where_uuid(uuid)}, {"row", std::move(row)}},
      true);
}

void Planner::add_delete(std::string_view table, std::string_view uuid) {
  add({{"op", "delete"}, {"table", table}, {"where", where_uuid(uuid)}}, true);
}

std::map<std::string, std::string> Planner::markers(const Interface& interface) const {
  return {{controller::kOwnerKey, std::string(owner_)},
          {controller::kVmKey, std::string(vm_id_)},
          {controller::kInterfaceKey, interface.id}};
}

std::map<std::string, std::string> Planner::interface_ids(const Interface& interface) const {
  std::map<std::string, std::string> ids = interface.external_ids;
  for (auto& [key, value] : markers(interface))
    ids[key] = std::move(value);
  ids[std::string(kIfaceIdKey)] = interface.id;
  ids[std::string(kVmIdKey)] = vm_id_;
  if (!interface.mac.empty()) ids[std::string(kAttachedMacKey)] = interface.mac;
  if (!interface.ips.empty()) ids[std::string(kIpsKey)] = join_ips(interface.ips);
  return ids;
}

json::object Planner::qos_row(const Interface& interface) const {
  std::map<std::string, std::string> other{
      {std::string(kMaxRateKey), std::to_string(interface.egress_max_rate_bps)}};
  return {{"type", kQosType},
          {"other_config", string_map_value(other)},
          {"external_ids", string_map_value(markers(interface))}};
}

void Planner::insert(const Interface& wanted) {
  std::string interface_name = next_name("iface");
  add_insert("Interface", interface_name,
             {{"name", wanted.device},
              {"type", ""},
              {"ingress_policing_rate", wanted.ingress_policing_rate_kbps},
              {"ingress_policing_burst", wanted.ingress_policing_burst_kb},
              {"external_ids", string_map_value(interface_ids(wanted))}});

  json::object port{{"name", wanted.device},
                    {"interfaces", named_uuid_value(interface_name)},
                    {"external_ids", string_map_value(markers(wanted))}};
  if (wanted.vlan) port["tag"] = *wanted.vlan;
  if (!wanted.trunks.empty()) port["trunks"] = int_set(wanted.trunks);
  if (wanted.egress_max_rate_bps > 0) {
    std::string qos_name = next_name("qos");
    add_insert("QoS", qos_name, qos_row(wanted));
    port["qos"] = named_uuid_value(qos_name);
  }
  std::string port_name = next_name("port");
  add_insert("Port", port_name, std::move(port));
  new_ports_.push_back(named_uuid_value(port_name));
  plan_.inserted++;
}

json::object Planner::port_changes(const ObservedInterface& seen, const Interface& wanted) {
  json::object changes;
  if (seen.config.vlan != wanted.vlan)
    changes["tag"] = wanted.vlan ? json::value(*wanted.vlan) : empty_set();
  if (seen.config.trunks != sorted_unique(wanted.trunks))
    changes["trunks"] = int_set(wanted.trunks);

  bool want_qos = wanted.egress_max_rate_bps > 0;
  bool have_qos = !seen.qos_uuid.empty();
  if (want_qos && !have_qos) {
    std::string qos_name = next_name("qos");
    add_insert("QoS", qos_name, qos_row(wanted));
    changes["qos"] = named_uuid_value(qos_name);
  } else if (want_qos && seen.config.egress_max_rate_bps != wanted.egress_max_rate_bps) {
    json::object row = qos_row(wanted);
    row.erase("external_ids");
    add_update("QoS", seen.qos_uuid, std::move(row));
  } else if (!want_qos && have_qos) {
    // A QoS row is a root row: it must lose its last reference before it can be deleted.
    changes["qos"] = empty_set();
  }
  return changes;
}

bool Planner::interface_differs(const Interface& seen, const Interface& wanted) const {
  return seen.mac != wanted.mac || seen.ips != wanted.ips ||
         seen.external_ids != wanted.external_ids ||
         seen.ingress_policing_rate_kbps != wanted.ingress_policing_rate_kbps ||
         seen.ingress_policing_burst_kb != wanted.ingress_policing_burst_kb;
}

void Planner::update(const ObservedInterface& seen, const Interface& wanted) {
  std::size_t ops_before = plan_.params.size();
  json::object port = port_changes(seen, wanted);
  bool drop_qos = port.contains("qos") && !seen.qos_uuid.empty();
  if (!port.empty()) add_update("Port", seen.port_uuid, std::move(port));
  if (drop_qos) add_delete("QoS", seen.qos_uuid);
  if (interface_differs(seen.config, wanted) && !seen.interface_uuid.empty()) {
    add_update("Interface", seen.interface_uuid,
               {{"ingress_policing_rate", wanted.ingress_policing_rate_kbps},
                {"ingress_policing_burst", wanted.ingress_policing_burst_kb},
                {"external_ids", string_map_value(interface_ids(wanted))}});
  }
  if (plan_.params.size() != ops_before) plan_.updated++;
}

void Planner::remove(const ObservedInterface& seen) {
  // An owned QoS row left without its port goes in a transaction of its own
  // (plan_orphan_cleanup), so that a port of someone else still using it cannot fail this one.
  if (seen.port_uuid.empty()) return;
  if (!seen.qos_uuid.empty()) {
    // The port goes away with the bridge reference at commit, but the QoS row is a root row and
    // must lose its reference inside this transaction before it can be deleted.
    add_update("Port", seen.port_uuid, {{"qos", empty_set()}});
    add_delete("QoS", seen.qos_uuid);
  }
  old_ports_.push_back(uuid_value(seen.port_uuid));
  plan_.removed++;
}

PlannedTransaction Planner::finish(std::string_view action) {
  if (plan_.empty()) return std::move(plan_);
  json::array mutations;
  if (!old_ports_.empty())
    mutations.push_back(json::array{"ports", "delete", set_value(std::move(old_ports_))});
  if (!new_ports_.empty())
    mutations.push_back(json::array{"ports", "insert", set_value(std::move(new_ports_))});
  if (!mutations.empty())
    add({{"op", "mutate"},
         {"table", "Bridge"},
         {"where", where_uuid(bridge_uuid_)},
         {"mutations", std::move(mutations)}},
        true);
  // Shows up in the server's database log, so operators can tell whose change it was.
  add({{"op", "comment"}, {"comment", fmt::format("steward {} vm={}", action, vm_id_)}}, false);
  return std::move(plan_);
}

const std::vector<ObservedInterface>* rows_of(const controller::OwnedRows& owned,
                                              const std::string& vm_id) {
  auto found = owned.find(vm_id);
  return found == owned.end() ? nullptr : &found->second;
}

Error reply_error(const json::object& failure) {
  auto text = [&](std::string_view key) -> std::string {
    const json::value* value = failure.if_contains(key);
    if (value == nullptr) return {};
    if (const json::string* string = value->if_string()) return std::string(*string);
    return json::serialize(*value);
  };
  std::string error = text("error");
  std::string details = text("details");
  if (error == "constraint violation" && details.find("index") != std::string::npos)
    return Error::make(ErrorCode::kConflict,
                       "a port or interface of that name already exists and is not Steward's "
                       "(remove it or rename the device): {}",
                       details);
  return Error::make(ErrorCode::kInternal, "switch rejected the transaction: {}: {}", error,
                     details);
}

}  // namespace

json::array monitor_params(std::string_view monitor_id, const std::string& bridge,
                           const std::string& owner, bool conditional) {
  json::object requests;
  for (std::size_t i = 0; i < kTableCount; ++i) {
    auto table = static_cast<Table>(i);
    json::object request{{"columns", column_names(table, false)}};
    if (conditional) {
      request["where"] = table_condition(table, bridge, owner);
      requests[kTableNames[i]] = json::array{std::move(request)};
    } else {
      requests[kTableNames[i]] = std::move(request);
    }
  }
  return json::array{kDatabase, monitor_id, std::move(requests)};
}

json::array select_owned_params(const std::string& bridge, const std::string& owner) {
  json::array params{kDatabase};
  for (std::size_t i = 0; i < kTableCount; ++i) {
    auto table = static_cast<Table>(i);
    params.push_back(json::object{{"op", "select"},
                                  {"table", kTableNames[i]},
                                  {"where", table_condition(table, bridge, owner)},
                                  {"columns", column_names(table, true)}});
  }
  return params;
}

Result<PlannedTransaction> plan_install(const Vm& vm, const std::string& owner,
                                        const std::string& bridge_uuid,
                                        const controller::OwnedRows& owned,
                                        const DeviceOwners* device_owners) {
  if (auto status = validate(vm); !status) return status.error();
  if (auto status = check_other_vms(vm, owned, device_owners); !status) return status.error();

  Planner planner(vm.id, owner, bridge_uuid);
  const std::vector<ObservedInterface>* current = rows_of(owned, vm.id);
  std::vector<bool> kept(current ? current->size() : 0, false);
  for (const Interface& wanted : vm.interfaces) {
    const ObservedInterface* seen = nullptr;
    for (std::size_t i = 0; current && i < current->size() && !seen; ++i) {
      if (!kept[i] && (*current)[i].config.id == wanted.id) {
        kept[i] = true;
        seen = &(*current)[i];
      }
    }
    if (seen == nullptr) {
      planner.insert(wanted);
    } else if (seen->config.device != wanted.device) {
      // Port and Interface names cannot change: replace the rows.
      planner.remove(*seen);
      planner.insert(wanted);
    } else {
      planner.update(*seen, wanted);
    }
  }
  for (std::size_t i = 0; i < kept.size(); ++i) {
    if (!kept[i]) planner.remove((*current)[i]);
  }
  return planner.finish("install");
}

PlannedTransaction plan_remove(const std::string& vm_id, const std::string& bridge_uuid,
                               const controller::OwnedRows& owned) {
  Planner planner(vm_id, {}, bridge_uuid);
  if (const std::vector<ObservedInterface>* current = rows_of(owned, vm_id)) {
    for (const ObservedInterface& seen : *current)
      planner.remove(seen);
  }
  return planner.finish("remove");
}

PlannedTransaction plan_orphan_cleanup(const std::string& vm_id,
                                       const controller::OwnedRows& owned) {
  Planner planner(vm_id, {}, {});
  if (const std::vector<ObservedInterface>* current = rows_of(owned, vm_id)) {
    for (const ObservedInterface& seen : *current) {
      if (seen.port_uuid.empty() && !seen.qos_uuid.empty()) planner.remove_orphan(seen);
    }
  }
  return planner.finish("clean-up");
}

Result<Outcome> check_transact_reply(const PlannedTransaction& plan, const json::value& result) {
  const json::array* results = result.if_array();
  std::size_t op_count = plan.params.size() - 1;
  if (results == nullptr || results->size() < op_count)
    return Error::make(ErrorCode::kInternal,
                       "malformed transact reply: expected {} results, got {}", op_count,
                       results ? results->size() : 0);
  // An error object sits at the failing op, or one past the last op for a commit failure.
  for (const json::value& entry : *results) {
    const json::object* op = entry.if_object();
    if (op != nullptr && op->contains("error")) return reply_error(*op);
  }
  for (std::size_t index : plan.counted_ops) {
    const json::object* op = (*results)[index].if_object();
    const json::value* count = op ? op->if_contains("count") : nullptr;
    if (count == nullptr || integer_atom(*count) != 1) return Outcome::kStale;
  }
  return Outcome::kCommitted;
}

}  // namespace steward::ovsdb
