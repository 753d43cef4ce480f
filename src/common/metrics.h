#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace agentbox {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Prometheus metrics held in memory and rendered in the text exposition format (version 0.0.4).
// Families are created on first use; label sets are kept in the order given. Thread-safe.
class Metrics {
 public:
  // Default latency buckets in seconds: 100 µs .. 60 s.
  static const std::vector<double>& DefaultBuckets();

  void Describe(const std::string& name, const std::string& type, const std::string& help);
  void Increment(const std::string& name, const Labels& labels, double by = 1);
  void Set(const std::string& name, const Labels& labels, double value);
  // Replaces every series of a gauge family (e.g. sandboxes by state, recomputed on scrape).
  void ResetGauge(const std::string& name);
  void Observe(const std::string& name, const Labels& labels, double value,
               const std::vector<double>& buckets = DefaultBuckets());
  // Value of a counter or gauge series (0 when absent); for tests and decisions.
  double Value(const std::string& name, const Labels& labels) const;

  std::string Render() const;

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;  // per bucket, not cumulative
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    std::string type = "untyped";
    std::string help;
    std::map<Labels, double> values;
    std::map<Labels, Histogram> histograms;
  };
  mutable std::mutex mu_;
  std::map<std::string, Family> families_;
};

// Escapes a label value for the text format (backslash, double quote, newline).
std::string EscapeLabelValue(const std::string& v);

}  // namespace agentbox
