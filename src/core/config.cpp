#include "core/config.h"

#include <filesystem>

namespace steward::config {

Result<toml::table> parse_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return Error::make(ErrorCode::kInvalidArgument, "config {}: {}", path,
                       std::filesystem::exists(path, ec) ? "not a regular file" : "no such file");
  }
  try {
    return toml::parse_file(path);
  } catch (const toml::parse_error& error) {
    return Error::make(ErrorCode::kInvalidArgument, "config {}: {} (line {})", path,
                       error.description(), error.source().begin.line);
  }
}

Error invalid(const std::string& path, std::string_view message) {
  return Error::make(ErrorCode::kInvalidArgument, "config {}: {}", path, message);
}

Status only_known(const toml::table& table, const std::set<std::string>& known,
                  std::string_view where, const std::string& path) {
  for (const auto& [key, value] : table) {
    if (known.count(std::string(key.str()))) continue;
    return where.empty() ? invalid(path, fmt::format("unknown key {}", key.str()))
                         : invalid(path, fmt::format("unknown key {}.{}", where, key.str()));
  }
  return ok();
}

}  // namespace steward::config
