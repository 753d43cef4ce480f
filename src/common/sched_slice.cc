#include "common/sched_slice.h"

#include <linux/sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>

namespace agentbox {
namespace {

// struct sched_attr of sched_setattr(2) (glibc 2.36 has no wrapper or declaration).
struct SchedAttr {
  uint32_t size;
  uint32_t sched_policy;
  uint64_t sched_flags;
  int32_t sched_nice;
  uint32_t sched_priority;
  uint64_t sched_runtime;
  uint64_t sched_deadline;
  uint64_t sched_period;
};

}  // namespace

bool RequestSchedulerSlice(std::chrono::microseconds slice) {
  SchedAttr a{};
  a.size = sizeof(a);
  a.sched_policy = SCHED_NORMAL;
  a.sched_nice = static_cast<int32_t>(::getpriority(PRIO_PROCESS, 0));
  a.sched_runtime = static_cast<uint64_t>(std::chrono::nanoseconds(slice).count());
  return ::syscall(SYS_sched_setattr, 0, &a, 0) == 0;
}

bool UseDefaultSchedulerSlice() {
  SchedAttr a{};
  a.size = sizeof(a);
  a.sched_policy = SCHED_NORMAL;
  a.sched_nice = static_cast<int32_t>(::getpriority(PRIO_PROCESS, 0));
  a.sched_runtime = 0;  // no custom slice: the kernel's default
  return ::syscall(SYS_sched_setattr, 0, &a, 0) == 0;
}

DefaultSliceScope::DefaultSliceScope()
    : short_(CurrentSchedulerSlice() == kShortSchedulerSlice && UseDefaultSchedulerSlice()) {}

DefaultSliceScope::~DefaultSliceScope() {
  if (short_) {
    (void)RequestSchedulerSlice(kShortSchedulerSlice);
  }
}

std::chrono::microseconds CurrentSchedulerSlice() {
  SchedAttr a{};
  if (::syscall(SYS_sched_getattr, 0, &a, sizeof(a), 0) != 0) {
    return std::chrono::microseconds(0);
  }
  return std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::nanoseconds(a.sched_runtime));
}

}  // namespace agentbox
