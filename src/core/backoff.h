// Exponential backoff with full jitter, for reconnecting to peers and retrying steps.
#pragma once

#include <chrono>
#include <cstdint>
#include <random>

namespace steward {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(initial), max_(max) {}

  // The delay before the next attempt: grows 2x per failure up to `max`, jittered in
  // [delay/2, delay] so that many retries do not fire together.
  std::chrono::milliseconds next() {
    auto delay = initial_ * (int64_t{1} << std::min(attempts_, 20));
    if (delay > max_) delay = max_;
    attempts_++;
    // Seeded at the first failure, not at construction: most backoffs never fail (one is made
    // per migration), and seeding from std::random_device is not free.
    if (!seeded_) {
      rng_.seed(std::random_device{}());
      seeded_ = true;
    }
    std::uniform_int_distribution<int64_t> spread(delay.count() / 2, delay.count());
    return std::chrono::milliseconds(spread(rng_));
  }
  void reset() { attempts_ = 0; }
  int attempts() const { return attempts_; }

 private:
  std::chrono::milliseconds initial_;
  std::chrono::milliseconds max_;
  int attempts_ = 0;
  bool seeded_ = false;
  std::mt19937_64 rng_;
};

}  // namespace steward
