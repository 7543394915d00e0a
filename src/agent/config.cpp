#include "agent/config.h"

#include "agent/model/instruction.h"
#include "core/config.h"

#include <toml++/toml.h>

#include <fstream>

namespace steward::agent {
namespace {

using steward::config::invalid;
using steward::config::only_known;

Result<std::vector<std::string>> argv_of(const toml::node& node, const std::string& what,
                                         const std::string& path) {
  const toml::array* array = node.as_array();
  std::vector<std::string> out;
  if (array) {
    for (const auto& item : *array) {
      if (auto text = item.value<std::string>()) out.push_back(*text);
    }
  }
  if (!array || out.empty() || out.size() != array->size()) {
    return invalid(path, what + " must be a non-empty array of strings (the command's argv)");
  }
  return out;
}

Status read_broker(const toml::table& table, BrokerOptions& broker, const std::string& path) {
  if (auto status = only_known(table,
                               {"uri", "client_id", "ca_file", "cert_file", "key_file",
                                "verify_hostname", "username", "password_file", "keep_alive_s"},
                               "agent.broker", path);
      !status)
    return status;
  broker.uri = table["uri"].value_or(broker.uri);
  broker.client_id = table["client_id"].value_or(broker.client_id);
  broker.ca_file = table["ca_file"].value_or(broker.ca_file);
  broker.cert_file = table["cert_file"].value_or(broker.cert_file);
  broker.key_file = table["key_file"].value_or(broker.key_file);
  broker.verify_hostname = table["verify_hostname"].value_or(broker.verify_hostname);
  broker.username = table["username"].value_or(broker.username);
  if (auto file = table["password_file"].value<std::string>()) {
    std::ifstream in(*file);
    if (!in || !std::getline(in, broker.password)) {
      return invalid(path, "cannot read agent.broker.password_file " + *file);
    }
  }
  broker.keep_alive =
      std::chrono::seconds(table["keep_alive_s"].value_or(broker.keep_alive.count()));
  return ok();
}

Status read_logind(const toml::table& table, LogindOptions& logind, const std::string& path) {
  if (auto status = only_known(table, {"bus_address", "seat", "sessions"}, "agent.logind", path);
      !status)
    return status;
  logind.bus_address = table["bus_address"].value_or(logind.bus_address);
  logind.seat = table["seat"].value_or(logind.seat);
  if (const toml::table* sessions = table["sessions"].as_table()) {
    for (const auto& [session, system] : *sessions) {
      auto id = system.value<std::string>();
      if (!id) return invalid(path, "agent.logind.sessions values must be system ids");
      logind.sessions[std::string(session.str())] = *id;
    }
  }
  return ok();
}

Status read_commands(const toml::table& table, SystemConfig& system, const std::string& path) {
  auto& options = system.command;
  for (const char* key : {"commands", "checks"}) {
    const toml::table* commands = table[key].as_table();
    if (!commands) continue;
    bool checks = std::string_view(key) == "checks";
    for (const auto& [type, node] : *commands) {
      std::string name(type.str());
      auto argv = argv_of(node, fmt::format("agent.systems.{}.{}", key, name), path);
      if (!argv) return argv.error();
      CommandSpec& spec = name == "*" ? options.fallback : options.by_type[name];
      (checks ? spec.check : spec.run) = *argv;
    }
  }
  return ok();
}

Status read_system(const toml::table& table, SystemConfig& system, const std::string& path) {
  if (auto status = only_known(table,
                               {"id", "enrolment", "executor", "timeout_ms", "commands", "checks",
                                "dry_run", "modprobe_dir"},
                               "agent.systems", path);
      !status)
    return status;
  system.id = table["id"].value_or(std::string());
  if (!valid_system_id(system.id))
    return invalid(path, "agent.systems: 'id' is missing or invalid");
  system.enrolment = table["enrolment"].value_or(system.enrolment);
  system.executor = table["executor"].value_or(system.executor);
  auto timeout = std::chrono::milliseconds(table["timeout_ms"].value_or(int64_t{10000}));
  system.command.system = system.id;
  system.command.timeout = timeout;
  system.builtin.timeout = timeout;
  system.builtin.dry_run = table["dry_run"].value_or(system.builtin.dry_run);
  system.builtin.modprobe_dir = table["modprobe_dir"].value_or(system.builtin.modprobe_dir);
  return read_commands(table, system, path);
}

Status read_agent(const toml::table& table, AgentConfig& config, const std::string& path) {
  config.terminal = table["terminal"].value_or(config.terminal);
  config.database = table["database"].value_or(config.database);
  config.socket = table["socket"].value_or(config.socket);
  if (const toml::array* uids = table["socket_uids"].as_array()) {
    config.socket_uids.clear();
    for (const auto& uid : *uids)
      config.socket_uids.insert(static_cast<uid_t>(uid.value_or(int64_t{0})));
  }
  config.listen_address = table["listen_address"].value_or(config.listen_address);
  int64_t port = table["port"].value_or(int64_t{config.port});
  if (port < 0 || port > 65535) return invalid(path, "agent.port out of range");
  config.port = static_cast<uint16_t>(port);
  config.port_file = table["port_file"].value_or(config.port_file);
  config.log_level = table["log_level"].value_or(config.log_level);
  config.server_public_key = table["server_public_key"].value_or(config.server_public_key);
  config.foreground_source = table["foreground_source"].value_or(config.foreground_source);
  config.initial_foreground = table["initial_foreground"].value_or(config.initial_foreground);
  config.expiry_check =
      std::chrono::milliseconds(table["expiry_check_ms"].value_or(config.expiry_check.count()));
  return ok();
}

}  // namespace

Status load_config_file(const std::string& path, AgentConfig& config) {
  auto parsed = steward::config::parse_file(path);
  if (!parsed) return parsed.error();
  toml::table& root = *parsed;
  const toml::table* table = root["agent"].as_table();
  if (!table) return ok();
  if (auto status =
          only_known(*table,
                     {"terminal", "database", "socket", "socket_uids", "listen_address", "port",
                      "port_file", "log_level", "server_public_key", "foreground_source",
                      "initial_foreground", "expiry_check_ms", "broker", "logind", "systems"},
                     "agent", path);
      !status)
    return status;
  if (auto status = read_agent(*table, config, path); !status) return status;
  if (const toml::table* broker = (*table)["broker"].as_table()) {
    if (auto status = read_broker(*broker, config.broker, path); !status) return status;
  }
  if (const toml::table* logind = (*table)["logind"].as_table()) {
    if (auto status = read_logind(*logind, config.logind, path); !status) return status;
  }
  if (const toml::array* systems = (*table)["systems"].as_array()) {
    config.systems.clear();
    for (const auto& node : *systems) {
      const toml::table* entry = node.as_table();
      if (!entry) return invalid(path, "agent.systems must be an array of tables");
      SystemConfig system;
      if (auto status = read_system(*entry, system, path); !status) return status;
      config.systems.push_back(std::move(system));
    }
  }
  return ok();
}

Status validate(const AgentConfig& config) {
  auto invalid_config = [](std::string message) {
    return Error{ErrorCode::kInvalidArgument, std::move(message)};
  };
  if (!valid_system_id(config.terminal)) {
    return invalid_config("terminal id missing or invalid: set agent.terminal or --terminal");
  }
  if (config.systems.empty()) {
    return invalid_config("no operating systems configured: add [[agent.systems]] entries");
  }
  std::set<std::string> ids;
  for (const SystemConfig& system : config.systems) {
    if (!ids.insert(system.id).second) return invalid_config("system " + system.id + " twice");
    if (system.executor != "command" && system.executor != "linux" && system.executor != "noop") {
      return invalid_config("system " + system.id +
                            ": executor must be \"command\", \"linux\" or \"noop\"");
    }
  }
  if (config.foreground_source != "local" && config.foreground_source != "logind") {
    return invalid_config("foreground_source must be \"local\" or \"logind\"");
  }
  return ok();
}

}  // namespace steward::agent
