#pragma once

#include <cstdint>

namespace agentbox {

// Bounds what this process writes to its log (stderr) over its lifetime: each line is cut to
// `max_line` bytes, and once `max_total` bytes were written, further lines are dropped after one
// `log.budget_spent` line. For agentbox-guest, whose stderr is a file on the host (the jail's
// jail.log) that the sandbox's requests make it write to: a sandbox must not fill the host's disk
// through it. 0 for either means no bound (the default). Thread-safe; call it before logging.
void SetLogBudget(uint64_t max_total, uint64_t max_line);

}  // namespace agentbox
