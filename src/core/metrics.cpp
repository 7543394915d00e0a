#include "core/metrics.h"

#include <fmt/format.h>

#include <algorithm>

namespace steward::metrics {
namespace {

std::string escape(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

std::string label_text(const Labels& labels, const std::string& extra = {}) {
  if (labels.empty() && extra.empty()) return {};
  std::string out = "{";
  for (const auto& [key, value] : labels) {
    if (out.size() > 1) out += ',';
    out += fmt::format("{}=\"{}\"", key, escape(value));
  }
  if (!extra.empty()) {
    if (out.size() > 1) out += ',';
    out += extra;
  }
  return out + "}";
}

}  // namespace

Registry::Registry() = default;
Registry::~Registry() = default;

Family& Registry::counter(const std::string& name, const std::string& help) {
  return declare(name, help, "counter", {});
}
Family& Registry::gauge(const std::string& name, const std::string& help) {
  return declare(name, help, "gauge", {});
}
Family& Registry::histogram(const std::string& name, const std::string& help,
                            std::vector<double> upper_bounds) {
  return declare(name, help, "histogram", std::move(upper_bounds));
}

Family& Registry::declare(const std::string& name, const std::string& help, const char* type,
                          std::vector<double> bounds) {
  auto& slot = families_[name];
  if (!slot) slot = std::make_unique<Family>(name, help, type, std::move(bounds));
  return *slot;
}

std::string Registry::render() const {
  std::string out;
  for (const auto& [name, family] : families_)
    family->render(out);
  return out;
}

Family::Family(std::string name, std::string help, std::string type, std::vector<double> bounds)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(std::move(type)),
      bounds_(std::move(bounds)) {}

Family::Series& Family::series(const Labels& labels) {
  auto [it, inserted] = series_.try_emplace(labels);
  if (inserted) it->second.buckets.assign(bounds_.size(), 0);
  return it->second;
}

void Family::inc(const Labels& labels, double by) {
  series(labels).value += by;
}
void Family::set(const Labels& labels, double value) {
  series(labels).value = value;
}

void Family::observe(const Labels& labels, double value) {
  Series& s = series(labels);
  s.count++;
  s.sum += value;
  auto first = std::lower_bound(bounds_.begin(), bounds_.end(), value);
  for (auto it = first; it != bounds_.end(); ++it)
    s.buckets[it - bounds_.begin()]++;
}

double Family::value(const Labels& labels) const {
  auto it = series_.find(labels);
  return it == series_.end() ? 0 : it->second.value;
}

void Family::render(std::string& out) const {
  out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name_, help_, name_, type_);
  for (const auto& [labels, s] : series_) {
    if (type_ != "histogram") {
      out += fmt::format("{}{} {}\n", name_, label_text(labels), s.value);
      continue;
    }
    for (size_t i = 0; i < bounds_.size(); ++i) {
      out += fmt::format("{}_bucket{} {}\n", name_,
                         label_text(labels, fmt::format("le=\"{}\"", bounds_[i])), s.buckets[i]);
    }
    out += fmt::format("{}_bucket{} {}\n", name_, label_text(labels, "le=\"+Inf\""), s.count);
    out += fmt::format("{}_sum{} {}\n", name_, label_text(labels), s.sum);
    out += fmt::format("{}_count{} {}\n", name_, label_text(labels), s.count);
  }
}

std::vector<double> latency_bounds() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

}  // namespace steward::metrics
