// Reading the daemons' TOML configuration files: parse errors that name the file and line, and
// refusal of keys nobody reads (a typo must not pass for a default). Each daemon reads its own
// table ([controller], [agent], [vpn]) with these.
#pragma once

#include "core/result.h"

#include <toml++/toml.h>

#include <set>
#include <string>
#include <string_view>

namespace steward::config {

// Parses `path`. Errors: kInvalidArgument naming the file, the problem and its line.
Result<toml::table> parse_file(const std::string& path);

// An error about the contents of `path`: "config <path>: <message>".
Error invalid(const std::string& path, std::string_view message);

// Refuses the first key of `table` that is not in `known`, naming it as `<where>.<key>` (just
// `<key>` when `where` is empty, for a file's top level).
Status only_known(const toml::table& table, const std::set<std::string>& known,
                  std::string_view where, const std::string& path);

}  // namespace steward::config
