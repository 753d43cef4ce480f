#include "backends/jail/caps.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <string>

namespace agentbox::jail {

std::vector<int> DefaultKeptCapabilities() {
  return {CAP_CHOWN,  CAP_DAC_OVERRIDE, CAP_FOWNER,  CAP_FSETID,           CAP_KILL,
          CAP_SETGID, CAP_SETUID,       CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT,
          CAP_MKNOD,  CAP_AUDIT_WRITE,  CAP_SETFCAP};
}

Result<void> DropCapabilities(const CapsConfig& cfg) {
  auto kept = [&](int cap) {
    return std::find(cfg.keep.begin(), cfg.keep.end(), cap) != cfg.keep.end();
  };
  // PR_CAPBSET_READ fails with EINVAL past the last capability this kernel knows.
  for (int cap = 0; ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; ++cap) {
    if (!kept(cap) && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      return Fail(
          ErrnoError(errno, "drop capability " + std::to_string(cap) + " from bounding set"));
    }
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return Fail(ErrnoError(errno, "clear ambient capabilities"));
  }
  struct __user_cap_header_struct header {};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  for (int cap : cfg.keep) {
    if (cap < 0 || cap >= 32 * _LINUX_CAPABILITY_U32S_3) {
      return Fail(ErrorCode::kInvalidArgument,
                  "capability " + std::to_string(cap) + " out of range");
    }
    data[cap / 32].permitted |= 1u << (cap % 32);
    data[cap / 32].effective |= 1u << (cap % 32);
  }
  if (::syscall(SYS_capset, &header, data) != 0) {
    return Fail(ErrnoError(errno, "capset"));
  }
  return {};
}

Result<void> SetNoNewPrivs() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return Fail(ErrnoError(errno, "prctl(PR_SET_NO_NEW_PRIVS)"));
  }
  return {};
}

}  // namespace agentbox::jail
