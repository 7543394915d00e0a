// Time, injectable: production code reads a Clock so tests can drive time by hand.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace steward {

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic time for durations and deadlines.
  virtual std::chrono::steady_clock::time_point now() const = 0;
  // Wall-clock milliseconds since the Unix epoch, for records shown to people.
  virtual int64_t wall_ms() const = 0;
};

// The real clocks.
class SystemClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point now() const override;
  int64_t wall_ms() const override;
};

// A clock that moves only when told to. For tests.
class ManualClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point now() const override { return now_; }
  int64_t wall_ms() const override { return wall_ms_; }
  void advance(std::chrono::milliseconds by) {
    now_ += by;
    wall_ms_ += by.count();
  }

 private:
  std::chrono::steady_clock::time_point now_{};
  int64_t wall_ms_ = 1'700'000'000'000;
};

// ISO 8601 UTC text ("2026-12-04T15:04:05.123Z") for a wall-clock millisecond value.
std::string format_wall_ms(int64_t wall_ms);

}  // namespace steward
