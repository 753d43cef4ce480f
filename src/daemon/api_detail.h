#pragma once

// Small helpers shared by the files that implement DaemonApi (daemon_api.cc, sandbox_routes.cc,
// guest_relay.cc, admin_routes.cc). Not part of the daemon's interface.

#include <chrono>
#include <string>
#include <vector>

#include "api/sandbox_backend.h"
#include "common/error.h"
#include "common/time_util.h"

namespace agentbox::daemon::detail {

using Clock = std::chrono::steady_clock;

// Whether an operation counts as the backend's success: a refusal of the caller's input (a 4xx,
// such as an image that does not exist) is not the backend failing, and must not feed the
// rollout's breaker.
template <class T>
bool BackendOk(const Result<T>& r) {
  return r.has_value() || HttpStatus(r.error().code) < 500;
}

// How long the sandbox still lives: the longest a call to its guest can legitimately wait.
inline double RemainingSeconds(const SandboxInfo& info) {
  return info.expires_at > 0 ? std::max(0.0, info.expires_at - NowUnix()) : 7 * 86400.0;
}

// The non-empty segments of a URL path.
std::vector<std::string> SplitPath(const std::string& path);

}  // namespace agentbox::daemon::detail
