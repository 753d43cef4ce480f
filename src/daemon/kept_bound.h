#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <vector>

namespace agentbox::daemon {

// What the session keeper holds of one sandbox is bounded (a sandbox chooses how large its
// sessions' states are: exported variables, functions): given each session's snapshot size in
// bytes (as dumped JSON), returns the sessions whose snapshots to drop, largest first, until the
// rest hold at most `max_bytes`. A dropped session keeps its working directory only.
std::vector<std::string> SnapshotsOverBudget(const std::map<std::string, size_t>& bytes,
                                             size_t max_bytes);

}  // namespace agentbox::daemon
