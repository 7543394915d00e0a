// The agent's configuration: every key has a default; a TOML file ([agent] table) and then the
// command line override them. docs/agent.md lists every key.
#pragma once

#include "agent/executors/command_executor.h"
#include "agent/executors/linux_executor.h"
#include "agent/foreground/logind.h"
#include "agent/transport/mqtt.h"
#include "core/result.h"

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace steward::agent {

// One operating system of the terminal and the executor that acts in it.
struct SystemConfig {
  std::string id;
  std::string enrolment = "1";  // change it to re-enrol: the OS's stored instructions are dropped
  std::string executor = "command";  // "command", "linux" or "noop"
  CommandExecutorOptions command;
  LinuxExecutorOptions builtin;  // executor = "linux"
};

struct AgentConfig {
  std::string terminal;  // required
  std::string database = "/var/lib/steward/agent.db";
  std::string socket = "/run/steward/agent.sock";
  std::set<uid_t> socket_uids = {0};  // the agent's own uid is always allowed too
  std::string listen_address = "127.0.0.1";
  uint16_t port = 8471;  // /metrics and /v1/status; 0 picks a free port
  std::string port_file;
  std::string log_level = "info";
  std::string server_public_key;            // PEM file; when set, unsigned messages are rejected
  std::string foreground_source = "local";  // "local" or "logind"
  std::string initial_foreground;           // local source: the OS in the foreground at start
  std::chrono::milliseconds expiry_check{1000};
  BrokerOptions broker;  // client_id defaults to steward-agent-<terminal>
  LogindOptions logind;
  std::vector<SystemConfig> systems;
};

// Reads the [agent] table of a TOML file over the defaults in `config`. Unknown keys are errors.
Status load_config_file(const std::string& path, AgentConfig& config);
// Checks what no default can fill in (terminal id, at least one OS, known executor kinds).
Status validate(const AgentConfig& config);

}  // namespace steward::agent
