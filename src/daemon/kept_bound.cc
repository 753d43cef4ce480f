#include "daemon/kept_bound.h"

#include <algorithm>
#include <utility>

namespace agentbox::daemon {

std::vector<std::string> SnapshotsOverBudget(const std::map<std::string, size_t>& bytes,
                                             size_t max_bytes) {
  size_t total = 0;
  std::vector<std::pair<size_t, std::string>> by_size;
  for (const auto& [session, n] : bytes) {
    total += n;
    by_size.emplace_back(n, session);
  }
  std::vector<std::string> drop;
  if (total <= max_bytes) {
    return drop;
  }
  std::sort(by_size.rbegin(), by_size.rend());
  for (const auto& [n, session] : by_size) {
    if (total <= max_bytes || n == 0) {
      break;
    }
    drop.push_back(session);
    total -= n;
  }
  return drop;
}

}  // namespace agentbox::daemon
