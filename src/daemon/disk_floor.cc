#include "daemon/disk_floor.h"

#include <sys/statvfs.h>

#include <cerrno>

#include "common/error.h"

namespace agentbox::daemon {
namespace {

std::string Human(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(units)) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

}  // namespace

DiskFloor CheckDiskFloor(const std::string& path, uint64_t floor_bytes) {
  DiskFloor f;
  f.path = path;
  f.floor_bytes = floor_bytes;
  struct statvfs v {};
  if (::statvfs(path.c_str(), &v) != 0) {
    const int err = errno;
    f.ok = floor_bytes == 0;
    if (!f.ok) {
      f.message = "cannot check the free space of the state directory: " +
                  ErrnoError(err, "statvfs " + path).message;
    }
    return f;
  }
  f.free_bytes = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
  if (floor_bytes > 0 && f.free_bytes < floor_bytes) {
    f.ok = false;
    f.message = "not enough free disk space for new sandboxes: the state directory " + path +
                " has " + Human(f.free_bytes) + " free, below AGENTBOX_MIN_FREE_BYTES (" +
                Human(floor_bytes) + ")";
  }
  return f;
}

Json DiskFloorJson(const DiskFloor& f) {
  return {{"path", f.path},
          {"free_bytes", f.free_bytes},
          {"min_free_bytes", f.floor_bytes},
          {"ok", f.ok},
          {"detail", f.message}};
}

std::map<std::string, uint64_t> DiskUsedByBackend(const std::vector<SandboxInfo>& sandboxes) {
  std::map<std::string, uint64_t> out;
  for (const auto& s : sandboxes) {
    out[s.backend] += s.disk_used_bytes.value_or(0);
  }
  return out;
}

Json SandboxDiskJson(const SandboxInfo& info) {
  return {{"used_bytes", info.disk_used_bytes ? Json(*info.disk_used_bytes) : Json(nullptr)},
          {"limit_bytes",
           info.spec.limits.disk_bytes ? Json(*info.spec.limits.disk_bytes) : Json(nullptr)}};
}

}  // namespace agentbox::daemon
