#include "core/metrics.h"

#include <gtest/gtest.h>

namespace steward::metrics {
namespace {

TEST(Metrics, CounterRendersWithLabels) {
  Registry registry;
  registry.counter("steward_x_total", "x").inc({{"outcome", "ok"}}, 2);
  EXPECT_NE(registry.render().find("steward_x_total{outcome=\"ok\"} 2"), std::string::npos);
}

TEST(Metrics, HistogramCountsEveryBucketAtOrAboveTheValue) {
  Registry registry;
  auto& h = registry.histogram("steward_latency_seconds", "l", {0.1, 1});
  h.observe({}, 0.5);
  std::string text = registry.render();
  EXPECT_NE(text.find("steward_latency_seconds_bucket{le=\"0.1\"} 0"), std::string::npos);
  EXPECT_NE(text.find("steward_latency_seconds_bucket{le=\"1\"} 1"), std::string::npos);
  EXPECT_NE(text.find("steward_latency_seconds_count 1"), std::string::npos);
}

}  // namespace
}  // namespace steward::metrics
