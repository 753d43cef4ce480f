#pragma once

#include <chrono>

namespace agentbox {

// The EEVDF scheduler's slice requested for the calling thread (sched_setattr with
// sched_runtime on SCHED_NORMAL; Linux 6.12 and later). Threads and processes it starts
// afterwards inherit it.
//
// Why (docs/reliability.md §4, "CPU"): on a machine with few cores, a woken task waits for the
// task on its CPU until that one has run its slice (0.75 ms x (1 + log2 CPUs) by default), and
// often until the next scheduler tick (4 ms here): the kernel only lets a woken task preempt at
// once when its slice is shorter than the running task's, and otherwise protects the running
// task for its whole slice. So the daemon's threads, each guest and everything a sandbox runs ask
// for the short slice (the kernel's minimum): a sandbox's CPU-bound process holds a CPU for at
// most that long against another sandbox's woken shell, guest or the daemon. Only agentbox's own
// bulk work keeps the kernel's default (worker pools doing file operations, the helpers agentboxd
// starts), so that every woken short-sliced task preempts it at once. The cost is more context
// switches for CPU-bound tasks.
inline constexpr std::chrono::microseconds kShortSchedulerSlice{100};

// True when the kernel took it; false (errno kept) on kernels without custom slices, where
// nothing changes.
bool RequestSchedulerSlice(std::chrono::microseconds slice);

// Back to the kernel's default slice for the calling thread (what it starts inherits that).
// Only system calls: safe between fork and exec.
bool UseDefaultSchedulerSlice();

// The calling thread's slice as the kernel reports it (sched_getattr), zero when unknown.
std::chrono::microseconds CurrentSchedulerSlice();

// For a thread with the short slice: the kernel's default while in scope, the short one again
// after. For starting a process (posix_spawn) that must not inherit the short slice. (The kernel
// reports a default slice as its length, so only the short slice is recognised and restored.)
class DefaultSliceScope {
 public:
  DefaultSliceScope();
  ~DefaultSliceScope();
  DefaultSliceScope(const DefaultSliceScope&) = delete;
  DefaultSliceScope& operator=(const DefaultSliceScope&) = delete;

 private:
  bool short_;
};

}  // namespace agentbox
