#pragma once

#include <chrono>

namespace agentbox {

// The EEVDF scheduler's slice requested for the calling thread (sched_setattr with
// sched_runtime on SCHED_NORMAL; Linux 6.12 and later). Threads and processes it starts
// afterwards inherit it.
//
// Why (docs/reliability.md §4, "CPU"): on a machine with few cores, a woken task waits for the
// task on its CPU to use up its slice (0.75 ms x (1 + log2 CPUs) by default) before it runs. A
// sandbox running a CPU-bound loop thus adds up to a few milliseconds to every step of another
// sandbox's call (daemon, guest, shell). With a short slice on the daemon and on every sandbox's
// tasks, the CPU-bound loop yields within the short slice: another sandbox's exec p99 under the
// hostile bench's exec_stdout attack went from medians of 5.9-6.3x its quiet value to 1.6-3.8x.
// The cost is more context switches for CPU-bound tasks.
inline constexpr std::chrono::microseconds kShortSchedulerSlice{100};

// True when the kernel took it; false (errno kept) on kernels without custom slices, where
// nothing changes.
bool RequestSchedulerSlice(std::chrono::microseconds slice);

// The calling thread's slice as the kernel reports it (sched_getattr), zero when unknown.
std::chrono::microseconds CurrentSchedulerSlice();

}  // namespace agentbox
