// Prometheus metrics in the text exposition format (version 0.0.4). A Registry owns its
// families; counters, gauges and histograms are addressed by their label values. Not
// thread-safe: a registry belongs to the daemon's event loop, which also serves /metrics.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace steward::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Family;

class Registry {
 public:
  Registry();
  ~Registry();

  // Declares a family once; later calls with the same name return the same family.
  Family& counter(const std::string& name, const std::string& help);
  Family& gauge(const std::string& name, const std::string& help);
  // Histogram with the given upper bounds (seconds for latencies), ascending.
  Family& histogram(const std::string& name, const std::string& help,
                    std::vector<double> upper_bounds);

  // The whole registry in Prometheus text format.
  std::string render() const;

 private:
  Family& declare(const std::string& name, const std::string& help, const char* type,
                  std::vector<double> bounds);
  std::map<std::string, std::unique_ptr<Family>> families_;
};

class Family {
 public:
  Family(std::string name, std::string help, std::string type, std::vector<double> bounds);

  void inc(const Labels& labels = {}, double by = 1);
  void set(const Labels& labels, double value);
  void observe(const Labels& labels, double value);
  double value(const Labels& labels = {}) const;
  void render(std::string& out) const;

 private:
  struct Series {
    double value = 0;
    std::vector<uint64_t> buckets;
    uint64_t count = 0;
    double sum = 0;
  };
  Series& series(const Labels& labels);

  std::string name_;
  std::string help_;
  std::string type_;
  std::vector<double> bounds_;
  std::map<Labels, Series> series_;
};

// Latency bounds from 100 us to 10 s, for step and request latencies.
std::vector<double> latency_bounds();

}  // namespace steward::metrics
