// Logging: one spdlog logger per component ("controller", "ovsdb", "api", ...), lower-case
// `key=value` messages, and the id of the migration or switch on every line.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace steward::log {

// Sets the level ("debug", "info", "warn", "error") and the line format for every logger.
// Returns false for an unknown level name. Call once at start-up, before other threads.
bool configure(const std::string& level);

// The logger named `component`, created on first use. Thread-safe.
std::shared_ptr<spdlog::logger> get(const std::string& component);

}  // namespace steward::log
