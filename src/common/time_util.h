#pragma once

#include <chrono>

namespace agentbox {

// Wall-clock time in unix seconds, with a fraction: the unit of every timestamp the API and the
// backends' records carry (created_at, expires_at).
inline double NowUnix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace agentbox
