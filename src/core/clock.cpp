#include "core/clock.h"

#include <fmt/chrono.h>
#include <fmt/format.h>

namespace steward {

std::chrono::steady_clock::time_point SystemClock::now() const {
  return std::chrono::steady_clock::now();
}

int64_t SystemClock::wall_us() const {
  using namespace std::chrono;
  return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

std::string format_wall_us(int64_t wall_us) {
  using namespace std::chrono;
  sys_time<microseconds> at{microseconds(wall_us)};
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", at);
}

}  // namespace steward
