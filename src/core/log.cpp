#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <mutex>

namespace steward::log {
namespace {
// Operators read these lines: timestamp, short level, component, then key=value facts.
constexpr const char* kPattern = "%Y-%m-%dT%H:%M:%S.%e %L %n %v";
}  // namespace

bool configure(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off") return false;
  spdlog::set_level(parsed);
  spdlog::set_pattern(kPattern);
  return true;
}

std::shared_ptr<spdlog::logger> get(const std::string& component) {
  static std::mutex creating;
  std::lock_guard lock(creating);
  if (auto existing = spdlog::get(component)) return existing;
  auto logger = spdlog::stderr_color_mt(component);
  logger->set_pattern(kPattern);
  logger->set_level(spdlog::get_level());
  return logger;
}

}  // namespace steward::log
