#pragma once

#include <string>

#include "backends/jail/net_ns.h"
#include "common/error.h"

namespace agentbox::jail {

// The namespaces a jail gets from clone(2): user, mount, pid, ipc, uts, and net unless the
// host's network is shared. The cgroup namespace is entered later (EnterCgroupNamespace), once
// the child sits in its own cgroups, so that those become its cgroup root.
unsigned long CloneFlags(const NetNsConfig& net);

// Child side: gives the jail its own hostname (in its UTS namespace).
Result<void> SetHostname(const std::string& hostname);

// Child side: unshares the cgroup namespace; the cgroups the child is in become its root.
Result<void> EnterCgroupNamespace();

}  // namespace agentbox::jail
