#include "controller/model/json.h"

#include <boost/json.hpp>

#include <algorithm>
#include <cctype>
#include <set>

namespace steward::controller {
namespace json = boost::json;
namespace {

constexpr size_t kMaxTextBytes = 4 * 1024 * 1024;
constexpr size_t kMaxDevice = 15;  // IFNAMSIZ - 1
constexpr size_t kMaxInterfaces = 64;

Error invalid(std::string message) {
  return Error{ErrorCode::kInvalidArgument, std::move(message)};
}

// Field readers: absent optional fields keep the default; present fields must have the type.
class Fields {
 public:
  Fields(const json::object& object, std::string_view what) : object_(object), what_(what) {}

  Status string(std::string_view key, std::string& out, bool required) const {
    const json::value* found = object_.if_contains(key);
    if (!found || found->is_null()) {
      if (required) return invalid(fmt::format("{}: field '{}' is required", what_, key));
      return ok();
    }
    if (!found->is_string()) return invalid(fmt::format("{}: '{}' must be a string", what_, key));
    out = std::string(found->get_string());
    return ok();
  }

  Status integer(std::string_view key, int64_t& out) const {
    const json::value* found = object_.if_contains(key);
    if (!found || found->is_null()) return ok();
    if (found->is_int64()) {
      out = found->get_int64();
    } else if (found->is_uint64() && found->get_uint64() <= INT64_MAX) {
      out = static_cast<int64_t>(found->get_uint64());
    } else {
      return invalid(fmt::format("{}: '{}' must be an integer", what_, key));
    }
    if (out < 0) return invalid(fmt::format("{}: '{}' must not be negative", what_, key));
    return ok();
  }

  const json::value* find(std::string_view key) const {
    const json::value* found = object_.if_contains(key);
    return found && !found->is_null() ? found : nullptr;
  }

  std::string_view what() const { return what_; }

 private:
  const json::object& object_;
  std::string_view what_;
};

Result<const json::object*> as_object(const json::value& value, std::string_view what) {
  if (!value.is_object()) return invalid(fmt::format("{} must be a JSON object", what));
  return &value.get_object();
}

bool is_identifier(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == ':';
  });
}

Status check_id(std::string_view id, std::string_view what) {
  if (is_identifier(id)) return ok();
  return invalid(fmt::format(
      "{}: id '{}' must be 1-128 characters of letters, digits, '-', '_', '.', ':'", what, id));
}

bool is_mac(std::string_view mac) {
  if (mac.size() != 17) return false;
  for (size_t i = 0; i < mac.size(); ++i) {
    bool colon = i % 3 == 2;
    if (colon != (mac[i] == ':')) return false;
    if (!colon && !std::isxdigit(static_cast<unsigned char>(mac[i]))) return false;
  }
  return true;
}

bool is_reserved_key(std::string_view key) {
  return key.starts_with("steward-") || key == "attached-mac" || key == "iface-id" ||
         key == "vm-id";
}

Status read_ips(const Fields& fields, Interface& out) {
  const json::value* ips = fields.find("ips");
  if (!ips) return ok();
  if (!ips->is_array()) return invalid(fmt::format("{}: 'ips' must be an array", fields.what()));
  for (const json::value& ip : ips->get_array()) {
    if (!ip.is_string() || ip.get_string().empty() ||
        ip.get_string().find(',') != json::string::npos) {
      return invalid(fmt::format("{}: every entry of 'ips' must be a non-empty string without ','",
                                 fields.what()));
    }
    out.ips.emplace_back(ip.get_string());
  }
  return ok();
}

Status read_vlans(const Fields& fields, Interface& out) {
  if (const json::value* vlan = fields.find("vlan")) {
    if (!vlan->is_int64() || vlan->get_int64() < 0 || vlan->get_int64() > 4095) {
      return invalid(fmt::format("{}: 'vlan' must be an integer 0-4095", fields.what()));
    }
    out.vlan = static_cast<int>(vlan->get_int64());
  }
  if (const json::value* trunks = fields.find("trunks")) {
    if (!trunks->is_array()) {
      return invalid(fmt::format("{}: 'trunks' must be an array", fields.what()));
    }
    for (const json::value& trunk : trunks->get_array()) {
      if (!trunk.is_int64() || trunk.get_int64() < 0 || trunk.get_int64() > 4095) {
        return invalid(fmt::format("{}: every trunk must be an integer 0-4095", fields.what()));
      }
      out.trunks.push_back(static_cast<int>(trunk.get_int64()));
    }
  }
  return ok();
}

Status read_external_ids(const Fields& fields, Interface& out) {
  const json::value* ids = fields.find("external_ids");
  if (!ids) return ok();
  if (!ids->is_object()) {
    return invalid(fmt::format("{}: 'external_ids' must be an object", fields.what()));
  }
  for (const auto& [key, value] : ids->get_object()) {
    if (!value.is_string()) {
      return invalid(fmt::format("{}: external_ids['{}'] must be a string", fields.what(), key));
    }
    out.external_ids[std::string(key)] = std::string(value.get_string());
  }
  return ok();
}

}  // namespace

Result<json::value> parse_json(std::string_view text) {
  if (text.size() > kMaxTextBytes) return invalid("request body larger than 4 MiB");
  json::parse_options options;
  options.max_depth = 32;
  boost::system::error_code ec;
  json::value value = json::parse(text, ec, {}, options);
  if (ec) return invalid(fmt::format("malformed JSON: {}", ec.message()));
  return value;
}

Status validate(const Switch& value) {
  if (auto status = check_id(value.id, "switch"); !status) return status;
  const std::string& endpoint = value.endpoint;
  bool known_scheme =
      endpoint.starts_with("unix:") || endpoint.starts_with("tcp:") || endpoint.starts_with("ssl:");
  if (!known_scheme || endpoint.find(':') + 1 >= endpoint.size()) {
    return invalid(
        fmt::format("switch {}: endpoint '{}' must be unix:/path, tcp:host:port or ssl:host:port",
                    value.id, endpoint));
  }
  if (endpoint.starts_with("ssl:") && (value.tls.ca_cert.empty() || value.tls.certificate.empty() ||
                                       value.tls.private_key.empty())) {
    return invalid(fmt::format(
        "switch {}: an ssl: endpoint needs tls.ca_cert, tls.certificate and tls.private_key",
        value.id));
  }
  if (value.bridge.empty() || value.bridge.size() > kMaxDevice) {
    return invalid(fmt::format("switch {}: bridge must be 1-15 characters", value.id));
  }
  return ok();
}

Status validate(const Host& value) {
  if (auto status = check_id(value.id, "host"); !status) return status;
  return check_id(value.switch_id, fmt::format("host {}: switch", value.id));
}

Status validate(const Vm& value) {
  if (auto status = check_id(value.id, "vm"); !status) return status;
  if (auto status = check_id(value.host, fmt::format("vm {}: host", value.id)); !status) {
    return status;
  }
  if (value.interfaces.size() > kMaxInterfaces) {
    return invalid(fmt::format("vm {}: at most {} interfaces", value.id, kMaxInterfaces));
  }
  std::set<std::string> ids;
  std::set<std::string> devices;
  for (const Interface& interface : value.interfaces) {
    std::string where = fmt::format("vm {} interface {}", value.id, interface.id);
    if (auto status = check_id(interface.id, where); !status) return status;
    if (!ids.insert(interface.id).second) return invalid(where + ": duplicate interface id");
    if (interface.device.empty() || interface.device.size() > kMaxDevice ||
        interface.device.find_first_of("/ \t\n") != std::string::npos) {
      return invalid(where + ": device must be 1-15 characters without '/' or spaces");
    }
    if (!devices.insert(interface.device).second) return invalid(where + ": duplicate device");
    if (!is_mac(interface.mac)) return invalid(where + ": mac must look like 52:54:00:12:34:56");
    if (interface.vlan && !interface.trunks.empty()) {
      return invalid(where + ": give either 'vlan' (access port) or 'trunks', not both");
    }
    for (const auto& [key, unused] : interface.external_ids) {
      if (is_reserved_key(key)) {
        return invalid(where + ": external_ids key '" + key + "' is reserved for Steward");
      }
    }
  }
  return ok();
}

Result<Switch> switch_from_json(const json::value& value) {
  auto object = as_object(value, "switch");
  if (!object) return object.error();
  Fields fields(**object, "switch");
  Switch out;
  out.bridge = "br-int";
  for (auto status :
       {fields.string("id", out.id, true), fields.string("endpoint", out.endpoint, true),
        fields.string("bridge", out.bridge, false)}) {
    if (!status) return status.error();
  }
  if (const json::value* tls = fields.find("tls")) {
    auto tls_object = as_object(*tls, "switch tls");
    if (!tls_object) return tls_object.error();
    Fields tls_fields(**tls_object, "switch tls");
    for (auto status : {tls_fields.string("ca_cert", out.tls.ca_cert, false),
                        tls_fields.string("certificate", out.tls.certificate, false),
                        tls_fields.string("private_key", out.tls.private_key, false)}) {
      if (!status) return status.error();
    }
  }
  if (auto status = validate(out); !status) return status.error();
  return out;
}

Result<Host> host_from_json(const json::value& value) {
  auto object = as_object(value, "host");
  if (!object) return object.error();
  Fields fields(**object, "host");
  Host out;
  for (auto status :
       {fields.string("id", out.id, true), fields.string("switch", out.switch_id, true)}) {
    if (!status) return status.error();
  }
  if (auto status = validate(out); !status) return status.error();
  return out;
}

Result<Interface> interface_from_json(const json::value& value) {
  auto object = as_object(value, "interface");
  if (!object) return object.error();
  Fields fields(**object, "interface");
  Interface out;
  for (auto status :
       {fields.string("id", out.id, true), fields.string("device", out.device, true),
        fields.string("mac", out.mac, true), read_ips(fields, out), read_vlans(fields, out),
        fields.integer("ingress_policing_rate_kbps", out.ingress_policing_rate_kbps),
        fields.integer("ingress_policing_burst_kb", out.ingress_policing_burst_kb),
        fields.integer("egress_max_rate_bps", out.egress_max_rate_bps),
        read_external_ids(fields, out)}) {
    if (!status) return status.error();
  }
  std::transform(out.mac.begin(), out.mac.end(), out.mac.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::sort(out.trunks.begin(), out.trunks.end());
  out.trunks.erase(std::unique(out.trunks.begin(), out.trunks.end()), out.trunks.end());
  return out;
}

Result<Vm> vm_from_json(const json::value& value) {
  auto object = as_object(value, "vm");
  if (!object) return object.error();
  Fields fields(**object, "vm");
  Vm out;
  for (auto status : {fields.string("id", out.id, true), fields.string("name", out.name, false),
                      fields.string("host", out.host, true)}) {
    if (!status) return status.error();
  }
  if (const json::value* interfaces = fields.find("interfaces")) {
    if (!interfaces->is_array()) return invalid("vm: 'interfaces' must be an array");
    for (const json::value& item : interfaces->get_array()) {
      auto interface = interface_from_json(item);
      if (!interface) return interface.error().wrap(fmt::format("vm {}", out.id));
      out.interfaces.push_back(std::move(*interface));
    }
  }
  if (auto status = validate(out); !status) return status.error();
  return out;
}

Result<MigrationRequest> migration_request_from_json(const json::value& value) {
  auto object = as_object(value, "migration");
  if (!object) return object.error();
  Fields fields(**object, "migration");
  MigrationRequest out;
  std::string phase;
  for (auto status :
       {fields.string("vm", out.vm, true), fields.string("source_host", out.source_host, true),
        fields.string("target_host", out.target_host, true),
        fields.string("phase", phase, false)}) {
    if (!status) return status.error();
  }
  auto parsed = parse_phase(phase);
  if (!parsed) {
    return invalid(fmt::format(
        "migration: phase '{}' must be one of prepare, complete, rollback, or absent", phase));
  }
  out.phase = *parsed;
  out.origin = "api";
  return out;
}

json::value to_json(const Switch& value) {
  json::object out{{"id", value.id}, {"endpoint", value.endpoint}, {"bridge", value.bridge}};
  if (!(value.tls == TlsFiles{})) {
    out["tls"] = json::object{{"ca_cert", value.tls.ca_cert},
                              {"certificate", value.tls.certificate},
                              {"private_key", value.tls.private_key}};
  }
  return out;
}

json::value to_json(const Host& value) {
  return json::object{{"id", value.id}, {"switch", value.switch_id}};
}

json::value to_json(const Interface& value) {
  json::object out{{"id", value.id}, {"device", value.device}, {"mac", value.mac}};
  json::array ips;
  for (const auto& ip : value.ips)
    ips.emplace_back(ip);
  out["ips"] = std::move(ips);
  if (value.vlan) out["vlan"] = *value.vlan;
  if (!value.trunks.empty()) {
    json::array trunks;
    for (int trunk : value.trunks)
      trunks.emplace_back(trunk);
    out["trunks"] = std::move(trunks);
  }
  if (value.ingress_policing_rate_kbps) {
    out["ingress_policing_rate_kbps"] = value.ingress_policing_rate_kbps;
  }
  if (value.ingress_policing_burst_kb) {
    out["ingress_policing_burst_kb"] = value.ingress_policing_burst_kb;
  }
  if (value.egress_max_rate_bps) out["egress_max_rate_bps"] = value.egress_max_rate_bps;
  if (!value.external_ids.empty()) {
    json::object ids;
    for (const auto& [key, id] : value.external_ids)
      ids[key] = id;
    out["external_ids"] = std::move(ids);
  }
  return out;
}

json::value to_json(const Vm& value) {
  json::array interfaces;
  for (const auto& interface : value.interfaces)
    interfaces.push_back(to_json(interface));
  return json::object{{"id", value.id},
                      {"name", value.name},
                      {"host", value.host},
                      {"interfaces", std::move(interfaces)}};
}

}  // namespace steward::controller
