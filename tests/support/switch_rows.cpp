#include "support/switch_rows.h"

#include <boost/json.hpp>

#include <sstream>

namespace steward::testing {
namespace {

namespace json = boost::json;

// Readers of OVSDB's JSON data notation (RFC 7047 §5.1) as `ovs-vsctl --data=json` prints it:
// atoms as themselves, ["uuid", u], ["set", [...]] (a one-element set may be the bare atom) and
// ["map", [[k, v], ...]].
bool is_tagged(const json::value& value, std::string_view tag) {
  return value.is_array() && value.as_array().size() == 2 && value.as_array()[0].is_string() &&
         value.as_array()[0].as_string() == tag;
}

std::string atom_text(const json::value& value) {
  if (is_tagged(value, "uuid")) return std::string(value.as_array()[1].as_string());
  if (value.is_string()) return std::string(value.as_string());
  return json::serialize(value);
}

std::vector<json::value> set_items(const json::value& value) {
  if (is_tagged(value, "set")) {
    const json::array& items = value.as_array()[1].as_array();
    return {items.begin(), items.end()};
  }
  return {value};
}

std::map<std::string, std::string> map_items(const json::value& value) {
  std::map<std::string, std::string> out;
  if (!is_tagged(value, "map")) return out;
  for (const json::value& pair : value.as_array()[1].as_array())
    out[atom_text(pair.as_array()[0])] = atom_text(pair.as_array()[1]);
  return out;
}

int64_t integer_of(const json::value& value) {
  auto items = set_items(value);
  return items.empty() || !items[0].is_int64() ? 0 : items[0].as_int64();
}

// One table as printed by `list`: rows as heading -> cell.
using Table = std::vector<std::map<std::string, json::value>>;

Result<Table> table_of(const std::string& line) {
  boost::system::error_code ec;
  json::value parsed = json::parse(line, ec);
  if (ec || !parsed.is_object() || !parsed.as_object().contains("data"))
    return Error::make(ErrorCode::kInternal, "unreadable ovs-vsctl output: {}", line);
  const json::array& headings = parsed.at("headings").as_array();
  Table table;
  for (const json::value& row : parsed.at("data").as_array()) {
    std::map<std::string, json::value> cells;
    for (size_t i = 0; i < headings.size(); ++i)
      cells[std::string(headings[i].as_string())] = row.as_array()[i];
    table.push_back(std::move(cells));
  }
  return table;
}

template <typename Row>
std::vector<const Row*> owned_by(const std::map<std::string, Row>& rows, const std::string& owner) {
  std::vector<const Row*> out;
  for (const auto& [key, row] : rows) {
    auto found = row.external_ids.find("steward-owner");
    if (found != row.external_ids.end() && found->second == owner) out.push_back(&row);
  }
  return out;
}

}  // namespace

std::vector<const PortRow*> SwitchRows::owned_ports(const std::string& owner) const {
  return owned_by(ports, owner);
}

std::vector<const InterfaceRow*> SwitchRows::owned_interfaces(const std::string& owner) const {
  return owned_by(interfaces, owner);
}

std::vector<const QosRow*> SwitchRows::owned_qos(const std::string& owner) const {
  return owned_by(qos, owner);
}

std::map<std::string, const PortRow*> SwitchRows::ports_of_vm(const std::string& vm,
                                                              const std::string& owner) const {
  std::map<std::string, const PortRow*> out;
  for (const PortRow* port : owned_ports(owner)) {
    auto found = port->external_ids.find("steward-vm");
    if (found != port->external_ids.end() && found->second == vm) out[port->name] = port;
  }
  return out;
}

std::set<std::string> SwitchRows::vms(const std::string& owner) const {
  std::set<std::string> out;
  for (const PortRow* port : owned_ports(owner)) {
    auto found = port->external_ids.find("steward-vm");
    if (found != port->external_ids.end()) out.insert(found->second);
  }
  return out;
}

std::set<std::string> SwitchRows::all_uuids() const {
  std::set<std::string> out;
  for (const auto& [name, port] : ports)
    out.insert(port.uuid);
  for (const auto& [name, interface] : interfaces)
    out.insert(interface.uuid);
  for (const auto& [uuid, row] : qos)
    out.insert(uuid);
  return out;
}

Result<SwitchRows> read_switch(OvsSandbox& sandbox) {
  // One ovs-vsctl run, one transaction: the four tables are a consistent snapshot.
  auto listed = sandbox.vsctl(
      {"--format=json", "--data=json", "--columns=_uuid,name,ports", "list", "Bridge", "--",
       "--columns=_uuid,name,tag,trunks,qos,interfaces,external_ids", "list", "Port", "--",
       "--columns=_uuid,name,ingress_policing_rate,ingress_policing_burst,external_ids", "list",
       "Interface", "--", "--columns=_uuid,type,other_config,external_ids", "list", "QoS"});
  if (!listed) return listed.error();
  std::vector<Table> tables;
  std::istringstream lines(*listed);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty()) continue;
    auto table = table_of(line);
    if (!table) return table.error();
    tables.push_back(std::move(*table));
  }
  if (tables.size() != 4)
    return Error::make(ErrorCode::kInternal, "expected 4 tables from ovs-vsctl, got: {}", *listed);

  SwitchRows rows;
  std::set<std::string> bridge_ports;
  for (auto& bridge : tables[0]) {
    for (const json::value& port : set_items(bridge["ports"]))
      bridge_ports.insert(atom_text(port));
  }
  for (auto& cells : tables[1]) {
    PortRow port;
    port.uuid = atom_text(cells["_uuid"]);
    port.name = atom_text(cells["name"]);
    auto tag = set_items(cells["tag"]);
    if (!tag.empty()) port.tag = tag[0].as_int64();
    for (const json::value& trunk : set_items(cells["trunks"]))
      port.trunks.push_back(trunk.as_int64());
    auto qos = set_items(cells["qos"]);
    if (!qos.empty()) port.qos = atom_text(qos[0]);
    for (const json::value& interface : set_items(cells["interfaces"]))
      port.interfaces.push_back(atom_text(interface));
    port.external_ids = map_items(cells["external_ids"]);
    port.in_bridge = bridge_ports.contains(port.uuid);
    rows.ports[port.name] = std::move(port);
  }
  for (auto& cells : tables[2]) {
    InterfaceRow interface {
      atom_text(cells["_uuid"]), atom_text(cells["name"]),
          integer_of(cells["ingress_policing_rate"]), integer_of(cells["ingress_policing_burst"]),
          map_items(cells["external_ids"])
    };
    rows.interfaces[interface.name] = std::move(interface);
  }
  for (auto& cells : tables[3]) {
    QosRow qos{atom_text(cells["_uuid"]), atom_text(cells["type"]),
               map_items(cells["other_config"]), map_items(cells["external_ids"])};
    rows.qos[qos.uuid] = std::move(qos);
  }
  return rows;
}

}  // namespace steward::testing
