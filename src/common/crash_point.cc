#include "common/crash_point.h"

#include <atomic>

namespace agentbox {
namespace {

std::atomic<CrashHandler> g_handler{nullptr};

}  // namespace

void InstallCrashHandler(CrashHandler handler) { g_handler.store(handler); }

void CrashPoint(std::string_view point) {
  if (CrashHandler h = g_handler.load(std::memory_order_relaxed)) {
    h(point);
  }
}

}  // namespace agentbox
