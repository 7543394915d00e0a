// Small file and program helpers shared by the test peers (ovsdb sandboxes, mosquitto, the
// controller process, the VPN lab).
#pragma once

#include "core/result.h"

#include <string>

namespace steward::testing {

// The whole file, or "" when it cannot be read.
std::string read_file(const std::string& path);
// Appends `line` and a newline.
void append_line(const std::string& path, const std::string& line);
// Without trailing newlines and spaces.
std::string trim(std::string text);
// The executable `name` on PATH (plus the sbin directories), looked up before a fork: the
// child may only make async-signal-safe calls. A name with a slash is returned as is.
Result<std::string> find_program(const std::string& name);

}  // namespace steward::testing
