#include "controller/model/model.h"

#include <utility>

namespace steward::controller {

const char* to_string(Phase phase) {
  switch (phase) {
    case Phase::kPrepare:
      return "prepare";
    case Phase::kComplete:
      return "complete";
    case Phase::kRollback:
      return "rollback";
    case Phase::kFull:
      return "full";
  }
  return "unknown";
}

std::optional<Phase> parse_phase(const std::string& text) {
  if (text == "prepare") return Phase::kPrepare;
  if (text == "complete") return Phase::kComplete;
  if (text == "rollback") return Phase::kRollback;
  if (text == "full" || text.empty()) return Phase::kFull;
  return std::nullopt;
}

namespace {
constexpr std::pair<MigrationState, const char*> kStateNames[] = {
    {MigrationState::kPreparing, "preparing"},
    {MigrationState::kPrepared, "prepared"},
    {MigrationState::kCompleting, "completing"},
    {MigrationState::kCompleted, "completed"},
    {MigrationState::kRollingBack, "rolling_back"},
    {MigrationState::kRolledBack, "rolled_back"},
    {MigrationState::kFailed, "failed"},
};
}  // namespace

const char* to_string(MigrationState state) {
  for (const auto& [value, name] : kStateNames) {
    if (value == state) return name;
  }
  return "unknown";
}

std::optional<MigrationState> parse_migration_state(const std::string& text) {
  for (const auto& [value, name] : kStateNames) {
    if (text == name) return value;
  }
  return std::nullopt;
}

bool is_active(MigrationState state) {
  return state == MigrationState::kPreparing || state == MigrationState::kPrepared ||
         state == MigrationState::kCompleting || state == MigrationState::kRollingBack;
}

}  // namespace steward::controller
