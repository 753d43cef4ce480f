#include "common/metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace agentbox {

const std::vector<double>& Metrics::DefaultBuckets() {
  static const std::vector<double> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                               0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                               1,      2.5,     5,      10,    30,     60,
                                               120,    300};
  return kBuckets;
}

std::string EscapeLabelValue(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

std::string RenderLabels(const Labels& labels, const std::string& extra_key = {},
                         const std::string& extra_value = {}) {
  if (labels.empty() && extra_key.empty()) {
    return {};
  }
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    out += (first ? "" : ",") + k + "=\"" + EscapeLabelValue(v) + "\"";
    first = false;
  }
  if (!extra_key.empty()) {
    out += (first ? "" : ",") + extra_key + "=\"" + extra_value + "\"";
  }
  return out + "}";
}

std::string Number(double v) {
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    return fmt::format("{}", static_cast<int64_t>(v));
  }
  return fmt::format("{}", v);
}

}  // namespace

void Metrics::Describe(const std::string& name, const std::string& type, const std::string& help) {
  std::lock_guard<std::mutex> lock(mu_);
  Family& f = families_[name];
  f.type = type;
  f.help = help;
}

void Metrics::Increment(const std::string& name, const Labels& labels, double by) {
  std::lock_guard<std::mutex> lock(mu_);
  Family& f = families_[name];
  if (f.type == "untyped") {
    f.type = "counter";
  }
  f.values[labels] += by;
}

void Metrics::Set(const std::string& name, const Labels& labels, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  Family& f = families_[name];
  if (f.type == "untyped") {
    f.type = "gauge";
  }
  f.values[labels] = value;
}

void Metrics::ResetGauge(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  families_[name].values.clear();
}

void Metrics::Observe(const std::string& name, const Labels& labels, double value,
                      const std::vector<double>& buckets) {
  std::lock_guard<std::mutex> lock(mu_);
  Family& f = families_[name];
  f.type = "histogram";
  Histogram& h = f.histograms[labels];
  if (h.bounds.empty()) {
    h.bounds = buckets;
    h.counts.assign(buckets.size() + 1, 0);
  }
  const size_t i = static_cast<size_t>(std::lower_bound(h.bounds.begin(), h.bounds.end(), value) -
                                       h.bounds.begin());
  ++h.counts[i];
  h.sum += value;
  ++h.count;
}

double Metrics::Value(const std::string& name, const Labels& labels) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto f = families_.find(name);
  if (f == families_.end()) {
    return 0;
  }
  auto v = f->second.values.find(labels);
  return v == f->second.values.end() ? 0 : v->second;
}

std::string Metrics::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& [name, f] : families_) {
    // A described family is listed even before its first sample, so dashboards and alert rules
    // can be checked against what the daemon exports; an undescribed empty one is not.
    if (f.values.empty() && f.histograms.empty() && f.type != "counter" && f.help.empty()) {
      continue;
    }
    if (!f.help.empty()) {
      out += "# HELP " + name + " " + f.help + "\n";
    }
    out += "# TYPE " + name + " " + f.type + "\n";
    for (const auto& [labels, v] : f.values) {
      out += name + RenderLabels(labels) + " " + Number(v) + "\n";
    }
    for (const auto& [labels, h] : f.histograms) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h.bounds.size(); ++i) {
        cumulative += h.counts[i];
        out += name + "_bucket" + RenderLabels(labels, "le", Number(h.bounds[i])) + " " +
               std::to_string(cumulative) + "\n";
      }
      out += name + "_bucket" + RenderLabels(labels, "le", "+Inf") + " " + std::to_string(h.count) +
             "\n";
      out += name + "_sum" + RenderLabels(labels) + " " + Number(h.sum) + "\n";
      out += name + "_count" + RenderLabels(labels) + " " + std::to_string(h.count) + "\n";
    }
  }
  return out;
}

}  // namespace agentbox
