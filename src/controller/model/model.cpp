#include "controller/model/model.h"

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
  if (text == "prepare")
    return Phase::kPrepare;
  if (text == "complete")
    return Phase::kComplete;
  if (text == "rollback")
    return Phase::kRollback;
  if (text == "full" || text.empty())
    return Phase::kFull;
  return std::nullopt;
}

}  // namespace steward::controller
