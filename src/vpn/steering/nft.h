// libnftables, one batch at a time. Internal to src/vpn.
#pragma once

#include "core/result.h"

#include <string>

namespace steward::vpn::nft {

// Runs `commands` (nft syntax) as one atomic transaction in the calling thread's network
// namespace. The error carries nft's own message.
Status run(const std::string& commands);

// Deletes `table` ("inet steward"); ok when it does not exist.
Status delete_table(const std::string& table);

// Runs one listing command and returns nft's JSON output.
Result<std::string> list_json(const std::string& command);

// True when `table` exists.
bool table_exists(const std::string& table);

}  // namespace steward::vpn::nft
