// The controller daemon (`steward controller run`): wires the store, the inventory, the
// switches, the migration engine, the reconciler and the HTTP API onto one event loop.
#pragma once

#include "core/result.h"

#include <chrono>
#include <cstdint>
#include <string>

namespace steward::controller {

// Every key has a default; a TOML file ([controller] table) and then the command line
// override them.
struct ControllerConfig {
  std::string listen_address = "127.0.0.1";
  uint16_t port = 8470;  // 0 picks a free port
  std::string database = "/var/lib/steward/controller.db";
  std::string token_file;         // default: <database dir>/controller.token
  std::string port_file;          // when set, the bound port is written here
  std::string owner = "steward";  // steward-owner value on switch rows
  std::string log_level = "info";
  std::chrono::milliseconds reconcile_interval{5000};
  std::chrono::milliseconds reconcile_settle{500};
  std::chrono::milliseconds retry_initial{100};
  std::chrono::milliseconds retry_max{5000};
  std::chrono::milliseconds ovsdb_echo_interval{5000};
};

// Reads the [controller] table of a TOML file over the defaults in `config`. Unknown keys are
// errors (a typo must not silently fall back to a default).
Status load_config_file(const std::string& path, ControllerConfig& config);

// The token file to use: the configured one, else controller.token beside the database.
std::string token_path(const ControllerConfig& config);

// Reads the bearer token; when the file does not exist, creates it (mode 0600) with a new
// random token. STEWARD_TOKEN in the environment, when set, wins.
Result<std::string> load_or_create_token(const std::string& path);

// Runs until SIGINT or SIGTERM. Returns the process exit code; prints why it could not start.
int run_controller(const ControllerConfig& config);

}  // namespace steward::controller
