#pragma once

// A raw byte pipe between two connected sockets (a sandbox port's TCP connection relayed through
// the guest and agentboxd, docs/ports.md): bytes move both ways at once with splice(2), an end
// of stream on one side is passed on as a half-close (shutdown SHUT_WR) to the other, and the
// pipe ends when both directions have ended or either side fails.

#include <chrono>
#include <cstdint>

#include "common/error.h"

namespace agentbox::http {

struct PipeStats {
  uint64_t a_to_b = 0;
  uint64_t b_to_a = 0;
};

// Relays between `a` and `b` (made non-blocking) until both directions reached their end.
// `idle` bounds a silence of both sides (kTimeout); zero or less waits forever. A reset or
// error on either side ends the pipe (kUnavailable). Thread-compatible: one call per pair.
Result<PipeStats> PipeBoth(int a, int b, std::chrono::milliseconds idle);

}  // namespace agentbox::http
