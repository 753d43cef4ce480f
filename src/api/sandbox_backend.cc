#include "api/sandbox_backend.h"

namespace agentbox {

const char* SandboxStateName(SandboxState s) {
  switch (s) {
    case SandboxState::kCreating:
      return "creating";
    case SandboxState::kRunning:
      return "running";
    case SandboxState::kStopped:
      return "stopped";
    case SandboxState::kFailed:
      return "failed";
  }
  return "failed";
}

ResourceLimits MergeLimits(const ResourceLimits& spec, const ResourceLimits& defaults) {
  auto fill = [](auto& field, const auto& fallback) {
    if (!field) {
      field = fallback;
    }
  };
  ResourceLimits l = spec;
  fill(l.memory_bytes, defaults.memory_bytes);
  fill(l.cpus, defaults.cpus);
  fill(l.pids, defaults.pids);
  fill(l.tmp_bytes, defaults.tmp_bytes);
  fill(l.open_files, defaults.open_files);
  fill(l.file_size_bytes, defaults.file_size_bytes);
  return l;
}

}  // namespace agentbox
