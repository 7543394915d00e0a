// `steward agent ...`: run the agent on a terminal; send instructions and read reports from the
// management side; switch the foreground and list what is pending on the terminal.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace steward::cli {

// Adds the `agent` subcommand tree to `app`. The chosen command's action is stored in `action`;
// it returns the process exit code.
void add_agent_commands(CLI::App& app, std::function<int()>& action);

}  // namespace steward::cli
