#include "backends/jail/namespaces.h"

#include <sched.h>
#include <unistd.h>

#include <cerrno>

namespace agentbox::jail {

unsigned long CloneFlags(const NetNsConfig& net) {
  unsigned long flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
  if (!net.share_host) {
    flags |= CLONE_NEWNET;
  }
  return flags;
}

Result<void> SetHostname(const std::string& hostname) {
  if (::sethostname(hostname.data(), hostname.size()) != 0) {
    return Fail(ErrnoError(errno, "sethostname '" + hostname + "'"));
  }
  return {};
}

Result<void> EnterCgroupNamespace() {
  if (::unshare(CLONE_NEWCGROUP) != 0) {
    return Fail(ErrnoError(errno, "unshare(CLONE_NEWCGROUP)"));
  }
  return {};
}

}  // namespace agentbox::jail
