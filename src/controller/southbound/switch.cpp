#include "controller/southbound/switch.h"

#include <algorithm>

namespace steward::controller {

const char* to_string(SwitchState state) {
  switch (state) {
    case SwitchState::kDisconnected:
      return "disconnected";
    case SwitchState::kConnecting:
      return "connecting";
    case SwitchState::kReady:
      return "ready";
  }
  return "unknown";
}

bool matches(const Vm& vm, const std::vector<ObservedInterface>& observed) {
  if (observed.size() != vm.interfaces.size()) return false;
  for (const Interface& wanted : vm.interfaces) {
    auto found = std::find_if(observed.begin(), observed.end(),
                              [&](const auto& seen) { return seen.config.id == wanted.id; });
    if (found == observed.end() || !(found->config == wanted)) return false;
  }
  return true;
}

}  // namespace steward::controller
