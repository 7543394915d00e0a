#include "controller/southbound/ovsdb/cache.h"

#include <algorithm>
#include <charconv>
#include <optional>

namespace steward::ovsdb {
namespace {

using controller::Interface;
using controller::ObservedInterface;

constexpr int kMaxVlan = 4095;

std::optional<Table> table_named(std::string_view name) {
  for (std::size_t i = 0; i < kTableCount; ++i) {
    if (kTableNames[i] == name) return static_cast<Table>(i);
  }
  return std::nullopt;
}

std::optional<std::string_view> external_id(const Row& row, std::string_view key) {
  const json::value* ids = row.if_contains("external_ids");
  return ids ? map_lookup(*ids, key) : std::nullopt;
}

std::string vm_of(const Row& port) {
  return std::string(external_id(port, controller::kVmKey).value_or(""));
}

std::string_view text_column(const Row& row, std::string_view column) {
  const json::value* value = row.if_contains(column);
  return value ? string_atom(*value).value_or("") : "";
}

int64_t integer_column(const Row& row, std::string_view column) {
  const json::value* value = row.if_contains(column);
  return value ? integer_atom(*value).value_or(0) : 0;
}

// The uuids in a set-of-uuid (or optional uuid) column.
std::vector<std::string_view> uuid_column(const Row& row, std::string_view column) {
  std::vector<std::string_view> uuids;
  const json::value* value = row.if_contains(column);
  if (value == nullptr) return uuids;
  for (const json::value* element : set_elements(*value)) {
    if (auto uuid = uuid_atom(*element)) uuids.push_back(*uuid);
  }
  return uuids;
}

std::vector<int> vlan_column(const Row& row, std::string_view column) {
  std::vector<int> vlans;
  const json::value* value = row.if_contains(column);
  if (value == nullptr) return vlans;
  for (const json::value* element : set_elements(*value)) {
    auto vlan = integer_atom(*element);
    if (vlan && *vlan >= 0 && *vlan <= kMaxVlan) vlans.push_back(static_cast<int>(*vlan));
  }
  std::sort(vlans.begin(), vlans.end());
  vlans.erase(std::unique(vlans.begin(), vlans.end()), vlans.end());
  return vlans;
}

std::vector<std::string> split_ips(std::string_view joined) {
  std::vector<std::string> ips;
  while (!joined.empty()) {
    std::size_t comma = joined.find(',');
    ips.emplace_back(joined.substr(0, comma));
    if (comma == std::string_view::npos) break;
    joined.remove_prefix(comma + 1);
  }
  return ips;
}

int64_t parse_rate(std::string_view text) {
  int64_t rate = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), rate);
  if (error != std::errc() || end != text.data() + text.size() || rate < 0) return 0;
  return rate;
}

void read_interface(const Row& row, Interface& config) {
  config.ingress_policing_rate_kbps = integer_column(row, "ingress_policing_rate");
  config.ingress_policing_burst_kb = integer_column(row, "ingress_policing_burst");
  const json::value* ids = row.if_contains("external_ids");
  if (ids == nullptr) return;
  for (auto& [key, value] : string_map(*ids)) {
    if (key == kAttachedMacKey)
      config.mac = value;
    else if (key == kIpsKey)
      config.ips = split_ips(value);
    else if (!is_reserved_key(key))
      config.external_ids.emplace(key, std::move(value));
  }
}

}  // namespace

ObservedInterface observe_port(const std::string& port_uuid, const Row& port,
                               const RowsByUuid& interfaces, const RowsByUuid& qos) {
  ObservedInterface seen;
  seen.port_uuid = port_uuid;
  seen.vm_id = vm_of(port);
  Interface& config = seen.config;
  config.id = external_id(port, controller::kInterfaceKey).value_or("");
  config.device = text_column(port, "name");
  if (auto tag = vlan_column(port, "tag"); !tag.empty()) config.vlan = tag.front();
  config.trunks = vlan_column(port, "trunks");

  if (auto uuids = uuid_column(port, "interfaces"); !uuids.empty()) {
    seen.interface_uuid = uuids.front();
    if (auto found = interfaces.find(seen.interface_uuid); found != interfaces.end())
      read_interface(found->second, config);
  }
  if (auto uuids = uuid_column(port, "qos"); !uuids.empty()) {
    if (auto found = qos.find(std::string(uuids.front())); found != qos.end()) {
      seen.qos_uuid = found->first;
      // A row whose type was changed (by hand) is not the max-rate Steward configured: reading
      // it as no rate makes it differ, and the next install rewrites its type and rate.
      const json::value* other = found->second.if_contains("other_config");
      if (other != nullptr && text_column(found->second, "type") == kQosType)
        config.egress_max_rate_bps = parse_rate(map_lookup(*other, kMaxRateKey).value_or(""));
    }
  }
  return seen;
}

MonitorCache::MonitorCache(std::string bridge, std::string owner)
    : bridge_(std::move(bridge)), owner_(std::move(owner)) {}

void MonitorCache::clear() {
  for (RowsByUuid& rows : tables_)
    rows.clear();
  bridge_uuid_.clear();
  bridge_ports_.clear();
  ports_by_vm_.clear();
  port_by_interface_.clear();
  port_by_qos_.clear();
  qos_by_vm_.clear();
  owned_.clear();
  vm_by_device_.clear();
}

std::size_t MonitorCache::row_count() const {
  std::size_t count = 0;
  for (const RowsByUuid& rows : tables_)
    count += rows.size();
  return count;
}

Status MonitorCache::reset(const json::value& table_updates, Format format) {
  clear();
  if (auto applied = apply(table_updates, format); !applied) return applied.error();
  rebuild_all();
  return ok();
}

Result<bool> MonitorCache::apply(const json::value& table_updates, Format format) {
  const json::object* tables = table_updates.if_object();
  if (tables == nullptr)
    return Error{ErrorCode::kInternal, "malformed update: table-updates is not an object"};
  Touched touched;
  for (const auto& [name, row_updates] : *tables) {
    auto table = table_named(name);
    if (!table) continue;
    if (auto status = apply_table(*table, row_updates, format, touched); !status)
      return status.error();
  }
  // A port may have moved to another VM: rebuild the VMs it belongs to now as well.
  for (const std::string& port : touched.ports) {
    const RowsByUuid& ports = tables_[static_cast<std::size_t>(Table::kPort)];
    if (auto found = ports.find(port); found != ports.end())
      touched.vms.insert(vm_of(found->second));
  }
  rebuild(touched);
  return !touched.vms.empty();
}

Status MonitorCache::apply_table(Table table, const json::value& row_updates, Format format,
                                 Touched& touched) {
  const json::object* rows = row_updates.if_object();
  if (rows == nullptr)
    return Error::make(ErrorCode::kInternal, "malformed update: {} rows are not an object",
                       kTableNames[static_cast<std::size_t>(table)]);
  for (const auto& [uuid, row_update] : *rows) {
    if (auto status = apply_row(table, uuid, row_update, format, touched); !status) return status;
  }
  return ok();
}

Status MonitorCache::apply_row(Table table, const std::string& uuid, const json::value& row_update,
                               Format format, Touched& touched) {
  const json::object* update = row_update.if_object();
  if (update == nullptr)
    return Error::make(ErrorCode::kInternal, "malformed update: row {} is not an object", uuid);
  if (format == Format::kUpdate) {
    // RFC 7047: "new" holds every monitored column of an inserted or modified row.
    if (const json::value* row = update->if_contains("new")) {
      if (!row->is_object())
        return Error::make(ErrorCode::kInternal, "malformed update: new row {}", uuid);
      put_row(table, uuid, row->get_object(), touched);
    } else if (update->contains("old")) {
      erase_row(table, uuid, touched);
    }
    return ok();
  }
  for (const auto& [kind, row] : *update) {
    if (kind == "delete") {
      erase_row(table, uuid, touched);
      continue;
    }
    const json::object* columns = row.if_object();
    if (columns == nullptr)
      return Error::make(ErrorCode::kInternal, "malformed update2: {} of row {}", kind, uuid);
    if (kind == "initial" || kind == "insert")
      put_row(table, uuid, *columns, touched);
    else if (kind == "modify")
      modify_row(table, uuid, *columns, touched);
  }
  return ok();
}

bool MonitorCache::belongs(Table table, const Row& row) const {
  if (table == Table::kBridge) return text_column(row, "name") == bridge_;
  return external_id(row, controller::kOwnerKey) == owner_;
}

void MonitorCache::put_row(Table table, const std::string& uuid, Row row, Touched& touched) {
  RowsByUuid& rows = tables_[static_cast<std::size_t>(table)];
  auto found = rows.find(uuid);
  if (found != rows.end()) {
    unlink(table, uuid, found->second, touched);
    found->second = std::move(row);
  } else {
    found = rows.emplace(uuid, std::move(row)).first;
  }
  settle(table, found, touched);
}

void MonitorCache::modify_row(Table table, const std::string& uuid, const json::object& diff,
                              Touched& touched) {
  RowsByUuid& rows = tables_[static_cast<std::size_t>(table)];
  auto found = rows.find(uuid);
  if (found == rows.end()) return;
  unlink(table, uuid, found->second, touched);
  for (const auto& [column, change] : diff) {
    if (table == Table::kBridge && column == "ports")
      toggle_bridge_ports(change, touched);
    else
      apply_diff(column_kind(table, column), found->second[column], change);
  }
  settle(table, found, touched);
}

void MonitorCache::erase_row(Table table, const std::string& uuid, Touched& touched) {
  RowsByUuid& rows = tables_[static_cast<std::size_t>(table)];
  auto found = rows.find(uuid);
  if (found == rows.end()) return;
  unlink(table, uuid, found->second, touched);
  drop(table, found, touched);
}

void MonitorCache::unlink(Table table, const std::string& uuid, const Row& row, Touched& touched) {
  touch(table, uuid, touched);
  if (table == Table::kPort) unindex_port(uuid, row);
  if (table == Table::kQos) {
    if (auto vm = qos_by_vm_.find(vm_of(row)); vm != qos_by_vm_.end()) {
      vm->second.erase(uuid);
      if (vm->second.empty()) qos_by_vm_.erase(vm);
    }
  }
}

void MonitorCache::settle(Table table, RowsByUuid::iterator row, Touched& touched) {
  if (!belongs(table, row->second)) {
    drop(table, row, touched);
    return;
  }
  if (table == Table::kPort)
    index_port(row->first, row->second);
  else if (table == Table::kBridge)
    index_bridge(row->first, row->second, touched);
  else if (table == Table::kQos)
    qos_by_vm_[vm_of(row->second)].insert(row->first);
  touch(table, row->first, touched);
}

void MonitorCache::drop(Table table, RowsByUuid::iterator row, Touched& touched) {
  if (table == Table::kBridge && row->first == bridge_uuid_) {
    Row no_ports{{"ports", empty_set()}};
    index_bridge({}, no_ports, touched);
  }
  tables_[static_cast<std::size_t>(table)].erase(row);
}

void MonitorCache::touch(Table table, const std::string& uuid, Touched& touched) const {
  std::string port = uuid;
  if (table == Table::kInterface || table == Table::kQos) {
    const auto& index = table == Table::kInterface ? port_by_interface_ : port_by_qos_;
    auto found = index.find(uuid);
    if (found == index.end()) {
      // A QoS row no owned port refers to is its VM's orphan: it changes that VM's view.
      const RowsByUuid& qos = tables_[static_cast<std::size_t>(Table::kQos)];
      if (auto row = qos.find(uuid); table == Table::kQos && row != qos.end())
        touched.vms.insert(vm_of(row->second));
      return;
    }
    port = found->second;
  } else if (table != Table::kPort) {
    return;
  }
  const RowsByUuid& ports = tables_[static_cast<std::size_t>(Table::kPort)];
  if (auto found = ports.find(port); found != ports.end()) touched.vms.insert(vm_of(found->second));
  touched.ports.insert(std::move(port));
}

void MonitorCache::index_port(const std::string& uuid, const Row& row) {
  ports_by_vm_[vm_of(row)].insert(uuid);
  for (std::string_view interface : uuid_column(row, "interfaces"))
    port_by_interface_[std::string(interface)] = uuid;
  for (std::string_view qos : uuid_column(row, "qos"))
    port_by_qos_[std::string(qos)] = uuid;
}

void MonitorCache::unindex_port(const std::string& uuid, const Row& row) {
  if (auto vm = ports_by_vm_.find(vm_of(row)); vm != ports_by_vm_.end()) {
    vm->second.erase(uuid);
    if (vm->second.empty()) ports_by_vm_.erase(vm);
  }
  auto forget = [&](auto& index, std::string_view key) {
    auto found = index.find(std::string(key));
    if (found != index.end() && found->second == uuid) index.erase(found);
  };
  for (std::string_view interface : uuid_column(row, "interfaces"))
    forget(port_by_interface_, interface);
  for (std::string_view qos : uuid_column(row, "qos"))
    forget(port_by_qos_, qos);
}

void MonitorCache::index_bridge(const std::string& uuid, Row& row, Touched& touched) {
  bridge_uuid_ = uuid;
  json::value* column = row.if_contains("ports");
  if (column == nullptr) return;  // a modify without "ports": the set is already current
  std::unordered_set<std::string> ports;
  for (const json::value* element : set_elements(*column)) {
    if (auto port = uuid_atom(*element)) ports.emplace(*port);
  }
  // Ports that joined or left the bridge change the view of their VMs.
  for (const std::string& port : ports) {
    if (!bridge_ports_.contains(port)) touch(Table::kPort, port, touched);
  }
  for (const std::string& port : bridge_ports_) {
    if (!ports.contains(port)) touch(Table::kPort, port, touched);
  }
  bridge_ports_ = std::move(ports);
  // The set lives in bridge_ports_ only: update2 diffs then cost the size of the diff, not of
  // the bridge (a bridge holds thousands of ports).
  row.erase("ports");
}

void MonitorCache::toggle_bridge_ports(const json::value& diff, Touched& touched) {
  for (const json::value* element : set_elements(diff)) {
    auto port = uuid_atom(*element);
    if (!port) continue;
    std::string key(*port);
    if (!bridge_ports_.erase(key)) bridge_ports_.insert(key);
    touch(Table::kPort, key, touched);
  }
}

void MonitorCache::rebuild(const Touched& touched) {
  for (const std::string& vm : touched.vms)
    rebuild_vm(vm);
}

void MonitorCache::rebuild_vm(const std::string& vm_id) {
  if (auto before = owned_.find(vm_id); before != owned_.end()) {
    for (const controller::ObservedInterface& seen : before->second) {
      auto device = vm_by_device_.find(seen.config.device);
      if (device != vm_by_device_.end() && device->second == vm_id) vm_by_device_.erase(device);
    }
  }
  auto ports = ports_by_vm_.find(vm_id);
  std::vector<controller::ObservedInterface> seen;
  if (ports != ports_by_vm_.end()) {
    const RowsByUuid& port_rows = tables_[static_cast<std::size_t>(Table::kPort)];
    for (const std::string& port : ports->second) {
      auto row = port_rows.find(port);
      if (row != port_rows.end() && bridge_ports_.contains(port))
        seen.push_back(observe(port, row->second));
    }
  }
  // Owned QoS rows of the VM that none of its ports refers to (its port was deleted by hand,
  // say): entries with only qos_uuid set, so that they show as drift and the next install or
  // remove of the VM deletes them.
  if (auto qos = qos_by_vm_.find(vm_id); qos != qos_by_vm_.end()) {
    for (const std::string& uuid : qos->second) {
      if (port_by_qos_.contains(uuid)) continue;
      controller::ObservedInterface orphan;
      orphan.qos_uuid = uuid;
      orphan.vm_id = vm_id;
      seen.push_back(std::move(orphan));
    }
  }
  if (seen.empty()) {
    owned_.erase(vm_id);
    return;
  }
  std::sort(seen.begin(), seen.end(),
            [](const auto& a, const auto& b) { return a.config.id < b.config.id; });
  for (const controller::ObservedInterface& interface : seen) {
    if (!interface.config.device.empty()) vm_by_device_[interface.config.device] = vm_id;
  }
  owned_[vm_id] = std::move(seen);
}

void MonitorCache::rebuild_all() {
  owned_.clear();
  vm_by_device_.clear();
  for (const auto& [vm, ports] : ports_by_vm_)
    rebuild_vm(vm);
  for (const auto& [vm, qos] : qos_by_vm_) {
    if (!ports_by_vm_.contains(vm)) rebuild_vm(vm);
  }
}

controller::ObservedInterface MonitorCache::observe(const std::string& port_uuid,
                                                    const Row& port) const {
  return observe_port(port_uuid, port, tables_[static_cast<std::size_t>(Table::kInterface)],
                      tables_[static_cast<std::size_t>(Table::kQos)]);
}

Status MonitorCache::load_select(const json::value& result) {
  clear();
  const json::array* results = result.if_array();
  if (results == nullptr || results->size() < kTableCount)
    return Error{ErrorCode::kInternal, "malformed select reply: expected one result per table"};
  Touched touched;
  for (std::size_t i = 0; i < kTableCount; ++i) {
    const json::object* op = (*results)[i].if_object();
    const json::value* rows = op ? op->if_contains("rows") : nullptr;
    if (rows == nullptr || !rows->is_array())
      return Error::make(ErrorCode::kInternal, "malformed select reply for table {}",
                         kTableNames[i]);
    for (const json::value& row : rows->get_array()) {
      const json::object* columns = row.if_object();
      const json::value* uuid = columns ? columns->if_contains("_uuid") : nullptr;
      auto id = uuid ? uuid_atom(*uuid) : std::nullopt;
      if (!id) return Error::make(ErrorCode::kInternal, "malformed row in {}", kTableNames[i]);
      put_row(static_cast<Table>(i), std::string(*id), *columns, touched);
    }
  }
  rebuild_all();
  return ok();
}

}  // namespace steward::ovsdb
