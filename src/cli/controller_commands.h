// `steward controller ...`: run the daemon, manage the inventory, migrate, verify.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace steward::cli {

// Adds the `controller` subcommand tree to `app`. The chosen command's action is stored in
// `action`; it returns the process exit code.
void add_controller_commands(CLI::App& app, std::function<int()>& action);

}  // namespace steward::cli
