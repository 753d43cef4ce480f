#include "api/sandbox_backend.h"

#include <algorithm>
#include <cctype>

namespace agentbox {

const char* NetworkModeName(NetworkMode m) {
  switch (m) {
    case NetworkMode::kHost:
      return "host";
    case NetworkMode::kEgress:
      return "egress";
    case NetworkMode::kNone:
      break;
  }
  return "none";
}

std::optional<NetworkMode> NetworkModeFromName(std::string_view name) {
  for (NetworkMode m : {NetworkMode::kNone, NetworkMode::kHost, NetworkMode::kEgress}) {
    if (name == NetworkModeName(m)) {
      return m;
    }
  }
  return std::nullopt;
}

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
    case SandboxState::kUnresponsive:
      return "unresponsive";
    case SandboxState::kUnreachable:
      return "unreachable";
  }
  return "failed";
}

ResourceLimits DefaultSandboxLimits() {
  ResourceLimits l;
  l.memory_bytes = 1ull << 30;
  l.pids = 1024;
  l.tmp_bytes = 256ull << 20;
  l.open_files = 4096;
  l.disk_bytes = 10ull << 30;
  return l;
}

Json LimitsToJson(const ResourceLimits& l) {
  return {{"memory_bytes", OptToJson(l.memory_bytes)},
          {"cpus", OptToJson(l.cpus)},
          {"pids", OptToJson(l.pids)},
          {"tmp_bytes", OptToJson(l.tmp_bytes)},
          {"open_files", OptToJson(l.open_files)},
          {"file_size_bytes", OptToJson(l.file_size_bytes)},
          {"disk_bytes", OptToJson(l.disk_bytes)}};
}

ResourceLimits LimitsFromJson(const Json& j) {
  ResourceLimits l;
  l.memory_bytes = OptFromJson<uint64_t>(j, "memory_bytes");
  l.cpus = OptFromJson<double>(j, "cpus");
  l.pids = OptFromJson<uint32_t>(j, "pids");
  l.tmp_bytes = OptFromJson<uint64_t>(j, "tmp_bytes");
  l.open_files = OptFromJson<uint32_t>(j, "open_files");
  l.file_size_bytes = OptFromJson<uint64_t>(j, "file_size_bytes");
  l.disk_bytes = OptFromJson<uint64_t>(j, "disk_bytes");
  return l;
}

Error SandboxNotFound(const std::string& id) {
  return Error(ErrorCode::kNotFound, "no sandbox '" + id + "'");
}

bool CreatedBefore(const SandboxInfo& a, const SandboxInfo& b) {
  return a.created_at < b.created_at || (a.created_at == b.created_at && a.id < b.id);
}

bool ValidSandboxId(const std::string& id) {
  if (id.empty() || id.size() > 64 || id[0] == '.') {
    return false;
  }
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

Result<void> ValidateCreate(const std::string& id, const SandboxSpec& spec) {
  if (!ValidSandboxId(id)) {
    return Fail(ErrorCode::kInvalidArgument,
                "sandbox id must be 1-64 characters of [A-Za-z0-9_.-], not starting with '.'");
  }
  for (const auto& [name, value] : spec.env) {
    if (name.empty() || name.find('=') != std::string::npos ||
        name.find('\0') != std::string::npos || value.find('\0') != std::string::npos) {
      return Fail(ErrorCode::kInvalidArgument, "invalid environment variable name '" + name + "'");
    }
  }
  return {};
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
  fill(l.disk_bytes, defaults.disk_bytes);
  return l;
}

}  // namespace agentbox
