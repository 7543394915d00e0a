// `steward`: the one command of every component. `steward <component> <verb>`.
#include "cli/agent_commands.h"
#include "cli/api_client.h"
#include "cli/controller_commands.h"
#include "cli/vpn_commands.h"

#include <CLI/CLI.hpp>

#include <functional>

int main(int argc, char** argv) {
  CLI::App app{"Steward keeps policy bound to its owner and applies it where the owner is live"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "steward 0.1.0");
  std::function<int()> action;
  steward::cli::add_controller_commands(app, action);
  steward::cli::add_agent_commands(app, action);
  steward::cli::add_vpn_commands(app, action);
  steward::cli::remember_words_after_dashes(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& error) {
    int code = app.exit(error);
    return code == 0 ? 0 : steward::cli::kExitUsage;
  }
  return action ? action() : steward::cli::kExitUsage;
}
