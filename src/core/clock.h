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
  // Wall-clock microseconds since the Unix epoch, for records shown to people.
  virtual int64_t wall_us() const = 0;
};

// The real clocks.
class SystemClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point now() const override;
  int64_t wall_us() const override;
};

// A clock that moves only when told to. For tests.
class ManualClock final : public Clock {
 public:
  std::chrono::steady_clock::time_point now() const override { return now_; }
  int64_t wall_us() const override { return wall_us_; }
  void advance(std::chrono::microseconds by) {
    now_ += by;
    wall_us_ += by.count();
  }

 private:
  std::chrono::steady_clock::time_point now_{};
  int64_t wall_us_ = 1'700'000'000'000'000;
};

// ISO 8601 UTC text ("2026-12-04T15:04:05.123456Z") for a wall-clock microsecond value.
std::string format_wall_us(int64_t wall_us);

}  // namespace steward
