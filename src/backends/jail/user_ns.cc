#include "backends/jail/user_ns.h"

#include <fcntl.h>
#include <grp.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "common/unique_fd.h"

namespace agentbox::jail {
namespace {

Result<void> WriteProcFile(pid_t pid, const char* name, const std::string& content) {
  const std::string path = "/proc/" + std::to_string(pid) + "/" + name;
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) {
    return Fail(ErrnoError(errno, "open " + path));
  }
  // These files accept exactly one write(2) holding the whole content.
  const ssize_t n = ::write(fd.Get(), content.data(), content.size());
  if (n != static_cast<ssize_t>(content.size())) {
    return Fail(ErrnoError(n < 0 ? errno : EIO, "write " + path + " '" + content + "'"));
  }
  return {};
}

}  // namespace

Result<void> WriteIdMaps(pid_t pid, const UserNsConfig& cfg) {
  if (cfg.count == 0) {
    return Fail(ErrorCode::kInvalidArgument, "user namespace: empty id range");
  }
  const std::string uid_map =
      "0 " + std::to_string(cfg.host_uid) + " " + std::to_string(cfg.count) + "\n";
  const std::string gid_map =
      "0 " + std::to_string(cfg.host_gid) + " " + std::to_string(cfg.count) + "\n";
  if (auto r = WriteProcFile(pid, "uid_map", uid_map); !r) {
    return r;
  }
  if (cfg.unprivileged) {
    if (auto r = WriteProcFile(pid, "setgroups", "deny"); !r) {
      return r;
    }
  }
  return WriteProcFile(pid, "gid_map", gid_map);
}

Result<void> BecomeNamespaceRoot(const UserNsConfig& cfg) {
  if (::setresgid(0, 0, 0) != 0) {
    return Fail(ErrnoError(errno, "setresgid(0) in the user namespace"));
  }
  // With setgroups denied (unprivileged mapping) the group list is already fixed and empty of
  // anything mapped; otherwise clear whatever the helper inherited from the host.
  if (!cfg.unprivileged && ::setgroups(0, nullptr) != 0) {
    return Fail(ErrnoError(errno, "setgroups([]) in the user namespace"));
  }
  if (::setresuid(0, 0, 0) != 0) {
    return Fail(ErrnoError(errno, "setresuid(0) in the user namespace"));
  }
  return {};
}

}  // namespace agentbox::jail
