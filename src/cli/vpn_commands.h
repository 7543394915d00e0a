// `steward vpn ...`: connect to an OpenConnect gateway and run the daemon (`connect`), start a
// command admitted to the intranet (`run`), admit a running process (`admit`), show the
// tunnel (`status`) and end it (`disconnect`). Exit codes are listed in docs/vpn.md.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace steward::cli {

// Adds the `vpn` subcommand tree to `app`. The chosen command's action is stored in `action`;
// it returns the process exit code.
// Keeps the words after the first "--" of the command line exactly as given, for `vpn run --
// CMD...` (the parser would read "[a,b]" as a list and split it).
void remember_words_after_dashes(int argc, char** argv);

void add_vpn_commands(CLI::App& app, std::function<int()>& action);

}  // namespace steward::cli
