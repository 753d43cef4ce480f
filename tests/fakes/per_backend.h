#pragma once

// What the suites parameterised by backend share (conformance, ports): the backends they run on
// and one daemon of theirs per backend. Header-only.

#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace agentbox::test_support {

// The backends named in AGENTBOX_CONFORMANCE_BACKENDS (comma-separated) when it is set and not
// empty, else in `fallback` (the CMake cache variable of that name); empty names are left out.
inline std::vector<std::string> ConformanceBackends(const std::string& fallback) {
  const char* env = std::getenv("AGENTBOX_CONFORMANCE_BACKENDS");
  const std::string s = env && *env ? env : fallback;
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t comma = s.find(',', pos);
    if (comma == std::string::npos) {
      comma = s.size();
    }
    if (comma > pos) {
      out.push_back(s.substr(pos, comma - pos));
    }
    pos = comma + 1;
  }
  return out;
}

// The one `Daemon` of `backend`, constructed from that name on first use and destroyed at exit.
// Not thread-safe: suites call it from their test thread.
template <class Daemon>
Daemon& DaemonFor(const std::string& backend) {
  static std::map<std::string, std::unique_ptr<Daemon>> daemons;
  auto& d = daemons[backend];
  if (!d) {
    d = std::make_unique<Daemon>(backend);
  }
  return *d;
}

}  // namespace agentbox::test_support
